"""The pure builders' plan of a run: the URI helpers (run keys, normalised and overlapping s3://
URIs), the run-scoped outputs and artifacts, and the cluster request (instances, bootstrap action,
Spark's configuration)."""

from __future__ import annotations

import re

import pytest

from emr_pipeline.cluster import NODE_PYTHON
from emr_pipeline.options import InvalidRunOptionsError
from emr_pipeline.settings import DeploymentSettings
from emr_pipeline.uris import join_uri, normalize_s3_uri, overlaps, run_key, split_s3_uri
from tests.dag.builder_cases import RUN_ID, options, plan

# --- URIs ---------------------------------------------------------------------------------


def test_run_key_is_a_safe_path_segment_distinct_per_run_id():
    assert run_key(RUN_ID).startswith("manual__2026-01-02T03_04_05.678901_00_00-")
    assert run_key("scheduled__2026-01-01T00:00:00+00:00") != run_key(RUN_ID)
    long = run_key("x" * 500)
    assert len(long) <= 120 and long != run_key("x" * 499)
    # Ids that read alike once made safe, and a hand-typed id copying another run's key.
    lookalikes = [
        "a:b",
        "a/b",
        "a_b",
        "a b",
        run_key("a_b"),
        "scheduled__2025-01-01T00_00_00_00_00",
    ]
    lookalikes.append("scheduled__2025-01-01T00:00:00+00:00")
    keys = [run_key(run_id) for run_id in lookalikes]
    assert len(set(keys)) == len(keys)
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", key) for key in keys)


def test_uris_are_normalised_as_hadoop_resolves_them():
    assert normalize_s3_uri("s3a://bkt//x/./y/../z/") == "s3://bkt/x/z"
    assert normalize_s3_uri("s3n://bkt/") == "s3://bkt"
    with pytest.raises(ValueError, match="above its bucket"):
        normalize_s3_uri("s3://bkt/x/../../y")
    assert overlaps("s3://bkt/in", "s3a://bkt/in/out/")
    assert overlaps("s3://bkt/in/out/..", "s3://bkt//in")
    assert not overlaps("s3://bkt/fruits", "s3://bkt/fruitsalad")
    assert not overlaps("s3://bkt/in", "s3://ckt/in")


def test_split_and_join_uris():
    assert split_s3_uri("s3://bucket/a/b/") == ("bucket", "a/b/")
    assert split_s3_uri("s3n://bucket") == ("bucket", "")
    assert join_uri("s3://b/x/", "/y/", "z") == "s3://b/x/y/z"
    with pytest.raises(ValueError, match="expected an s3://"):
        split_s3_uri("/tmp/x")


# --- the plan -------------------------------------------------------------------------------


def test_outputs_and_artifacts_are_scoped_by_run():
    p = plan()
    key = run_key(RUN_ID)
    assert p.output_uri == f"s3://out-bucket/runs/{key}/"
    assert p.report_uri == f"s3://out-bucket/runs/{key}/report.json"
    assert p.artifacts_uri == f"s3://out-bucket/emr-artifacts/fruit_features_emr/{key}/"
    assert p.log_uri == "s3://out-bucket/emr-artifacts/emr-logs/"
    other = plan(run_id="scheduled__2026-01-09T00:00:00+00:00")
    assert other.output_uri != p.output_uri and other.artifacts_uri != p.artifacts_uri


@pytest.mark.parametrize("run_id", ["rerun~1", "aws:run", "x" * 257, "tab\there"])
def test_a_run_id_that_cannot_tag_the_cluster_is_refused(run_id):
    with pytest.raises(InvalidRunOptionsError, match="run_id: .* cannot be an EMR tag value"):
        plan(run_id=run_id)


def test_deployment_locations_are_used():
    deployment = DeploymentSettings(artifacts_uri="s3://arts/x", log_uri="s3://logs/emr")
    p = plan(deployment=deployment)
    assert p.artifacts_uri.startswith("s3://arts/x/fruit_features_emr/")
    assert p.job_flow_overrides["LogUri"] == "s3://logs/emr/"
    with pytest.raises(InvalidRunOptionsError, match="log_uri"):
        plan(deployment=DeploymentSettings(log_uri="hdfs:///logs"))


def test_xcom_is_json():
    import json

    xcom = plan().as_xcom()
    assert json.loads(json.dumps(xcom)) == xcom
    assert {"featurize_steps", "pca_steps", "validate_steps", "job_flow_overrides"} <= set(xcom)


# --- the cluster --------------------------------------------------------------------------


def test_cluster_defaults():
    jf = plan().job_flow_overrides
    assert jf["ReleaseLabel"] == "emr-7.13.0"
    assert jf["Applications"] == [{"Name": "Spark"}]
    assert jf["ServiceRole"] == "EMR_DefaultRole"
    assert jf["JobFlowRole"] == "fruit-features-emr-nodes"
    # The steps go in with the cluster, in order; EMR ends it after the last one.
    assert [step["Name"] for step in jf["Steps"]] == ["featurize", "pca", "validate"]
    assert jf["Instances"]["KeepJobFlowAliveWhenNoSteps"] is False
    assert jf["Instances"]["TerminationProtected"] is False
    assert jf["AutoTerminationPolicy"] == {"IdleTimeout": 3600}
    groups = {g["InstanceRole"]: g for g in jf["Instances"]["InstanceGroups"]}
    assert groups["MASTER"]["InstanceType"] == "m5.xlarge"
    assert groups["MASTER"]["Market"] == "ON_DEMAND"
    assert groups["CORE"] == {
        "Name": "core",
        "InstanceRole": "CORE",
        "Market": "ON_DEMAND",
        "InstanceType": "m5.2xlarge",
        "InstanceCount": 2,
        # Set, not left to EMR's defaults, so that the cost prices what was provisioned.
        "EbsConfiguration": {
            "EbsBlockDeviceConfigs": [
                {
                    "VolumeSpecification": {"VolumeType": "gp3", "SizeInGB": 32},
                    "VolumesPerInstance": 1,
                }
            ]
        },
    }
    assert groups["MASTER"]["EbsConfiguration"] == groups["CORE"]["EbsConfiguration"]
    assert (jf["EbsRootVolumeSize"], jf["EbsRootVolumeIops"], jf["EbsRootVolumeThroughput"]) == (
        15, 3000, 125,
    )  # fmt: skip
    for optional in ("Ec2SubnetId", "Ec2KeyName"):
        assert optional not in jf["Instances"]
    assert "SecurityConfiguration" not in jf
    tags = {t["Key"]: t["Value"] for t in jf["Tags"]}
    assert tags == {
        "dag_id": "fruit_features_emr", "deployment": "", "run_id": RUN_ID, "owner": "data-team",
    }  # fmt: skip


def test_cluster_options():
    opts = options(
        release_label="emr-spark-8.0.0",
        core_spot=True,
        core_instance_count=4,
        core_instance_type="c5.4xlarge",
        idle_timeout_seconds=900,
    )
    deployment = DeploymentSettings(
        subnet_id="subnet-123", ec2_key_name="ops", security_configuration="encrypted"
    )
    jf = plan(opts, deployment).job_flow_overrides
    assert jf["ReleaseLabel"] == "emr-spark-8.0.0"
    core = jf["Instances"]["InstanceGroups"][1]
    assert (core["Market"], core["InstanceCount"], core["InstanceType"]) == (
        "SPOT",
        4,
        "c5.4xlarge",
    )
    assert jf["Instances"]["Ec2SubnetId"] == "subnet-123"
    assert jf["Instances"]["Ec2KeyName"] == "ops"
    assert jf["SecurityConfiguration"] == "encrypted"
    assert jf["AutoTerminationPolicy"] == {"IdleTimeout": 900}


def test_single_node_cluster_has_no_core_group():
    jf = plan(options(core_instance_count=0)).job_flow_overrides
    assert [g["InstanceRole"] for g in jf["Instances"]["InstanceGroups"]] == ["MASTER"]


def test_bootstrap_action_installs_the_uploaded_requirements():
    p = plan()
    (action,) = p.job_flow_overrides["BootstrapActions"]
    script = action["ScriptBootstrapAction"]
    assert script["Path"] == p.artifacts_uri + "bootstrap/install-python-deps.sh"
    assert script["Args"] == [
        p.artifacts_uri + "bootstrap/requirements-emr.txt",
        "--constraints",
        p.artifacts_uri + "bootstrap/constraints.txt",
        "--cache-imagenet-weights",
    ]
    bare = plan(options(weights="random"), with_constraints=False)
    (action,) = bare.job_flow_overrides["BootstrapActions"]
    assert action["ScriptBootstrapAction"]["Args"] == [
        bare.artifacts_uri + "bootstrap/requirements-emr.txt"
    ]


def test_spark_uses_the_bootstrapped_python_and_suits_tensorflow():
    jf = plan(options(batch_size=32, task_cpus=4)).job_flow_overrides
    config = {c["Classification"]: c for c in jf["Configurations"]}
    (export,) = config["spark-env"]["Configurations"]
    assert export["Classification"] == "export"
    assert export["Properties"]["PYSPARK_PYTHON"] == NODE_PYTHON == "/usr/bin/python3.11"
    defaults = config["spark-defaults"]["Properties"]
    assert defaults["spark.pyspark.python"] == NODE_PYTHON
    assert defaults["spark.sql.execution.arrow.maxRecordsPerBatch"] == "32"
    assert defaults["spark.task.cpus"] == "4"
    assert defaults["spark.executorEnv.TF_NUM_INTRAOP_THREADS"] == "4"
    assert defaults["spark.python.worker.reuse"] == "true"
    assert all(isinstance(v, str) for v in defaults.values())
