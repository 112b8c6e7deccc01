"""Fast checks behind the fault suite: parameter rejection, the retry-safety helpers
(emr_pipeline.run_clusters) on moto, and the server-side encryption settings."""

from __future__ import annotations

import re

import pytest

from emr_pipeline import run_clusters
from emr_pipeline.cluster import emrfs_encryption
from emr_pipeline.options import InvalidRunOptionsError, RunOptions
from emr_pipeline.settings import DeploymentSettings, s3_encryption
from tests.dag.dag_shapes import start_tagged_cluster

GOOD = {"input_uri": "s3://example-fruit-images/in/", "output_uri": "s3://example-out/runs/"}


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("pca_k", 0),
        ("pca_k", 1281),
        ("input_uri", "example-fruit-images/in/"),
        ("output_uri", "s3://Bad_Bucket/runs/"),
        ("weights", "/local/model.weights.h5"),
        ("master_instance_type", "m5xlarge"),
        ("core_instance_type", "m5.2xlarge; rm -rf /"),
        ("release_label", "emr-latest"),
        ("core_instance_count", -2),
        ("batch_size", 0),
        ("partitions", -1),
        ("task_cpus", 0),
        ("sensor_timeout_seconds", -5),
        ("poke_interval_seconds", 0),
        ("runtime", "onnx"),
        ("precision", "int8"),
    ],
)
def test_bad_parameters_are_rejected_with_a_message_naming_them(param, value):
    with pytest.raises(InvalidRunOptionsError, match=re.escape(param)):
        RunOptions.from_params({**GOOD, param: value})


@pytest.mark.parametrize(
    "instance_type", ["m5.xlarge", "m7i.2xlarge", "u-6tb1.metal", "c5.4xlarge"]
)
def test_real_instance_types_pass(instance_type):
    RunOptions.from_params({**GOOD, "core_instance_type": instance_type})


def _cluster(emr, run_id: str, dag_id: str = "fruit_features_emr") -> str:
    return start_tagged_cluster(emr, run_id, dag_id)


def test_a_run_finds_only_its_own_active_cluster(emr):
    mine = _cluster(emr, "run-1")
    _cluster(emr, "run-2")
    _cluster(emr, "run-1", dag_id="another_dag")
    tags = {"dag_id": "fruit_features_emr", "run_id": "run-1"}
    assert run_clusters.find_run_clusters(emr, tags) == [mine]
    emr.terminate_job_flows(JobFlowIds=[mine])
    assert run_clusters.find_run_clusters(emr, tags) == []
    with pytest.raises(ValueError):
        run_clusters.find_run_clusters(emr, {})


def test_a_cluster_is_checked_for_every_run_tag_before_anything_acts_on_it(emr):
    tags = {"dag_id": "fruit_features_emr", "run_id": "run-1"}
    run_clusters.check_run_cluster(emr, _cluster(emr, "run-1"), tags)
    other_run = _cluster(emr, "run-2")
    with pytest.raises(run_clusters.ForeignClusterError, match=f"{other_run} is not this run's"):
        run_clusters.check_run_cluster(emr, other_run, tags)
    with pytest.raises(ValueError):
        run_clusters.check_run_cluster(emr, other_run, {})


def test_clusters_not_named_like_the_dags_are_not_described(emr, monkeypatch):
    mine = _cluster(emr, "run-1")
    foreign = emr.run_job_flow(
        Name="analytics-nightly",
        ReleaseLabel="emr-7.13.0",
        Instances={
            "KeepJobFlowAliveWhenNoSteps": True,
            "InstanceCount": 1,
            "MasterInstanceType": "m5.xlarge",
        },  # fmt: skip
        JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole="EMR_DefaultRole",
    )["JobFlowId"]
    described = []
    describe = emr.describe_cluster
    monkeypatch.setattr(
        emr, "describe_cluster", lambda **kw: described.append(kw["ClusterId"]) or describe(**kw)
    )
    tags = {"dag_id": "fruit_features_emr", "run_id": "run-1"}
    assert run_clusters.find_run_clusters(emr, tags) == [mine]
    assert foreign not in described and mine in described


def test_steps_are_found_by_name(emr):
    cluster = _cluster(emr, "run-1")
    step = {"Name": "featurize", "ActionOnFailure": "CONTINUE",
            "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["true"]}}  # fmt: skip
    (step_id,) = emr.add_job_flow_steps(JobFlowId=cluster, Steps=[step])["StepIds"]
    assert run_clusters.find_steps(emr, cluster, ["featurize", "pca"]) == {"featurize": step_id}


def test_earlier_attempts_are_terminated_before_the_run_starts_again(emr):
    earlier = _cluster(emr, "run-1")
    other = _cluster(emr, "run-2")
    tags = {"dag_id": "fruit_features_emr", "run_id": "run-1"}
    assert run_clusters.end_earlier_attempts(emr, tags, poll_seconds=0.01) == [earlier]
    state = emr.describe_cluster(ClusterId=earlier)["Cluster"]["Status"]["State"]
    assert state == "TERMINATED"
    assert emr.describe_cluster(ClusterId=other)["Cluster"]["Status"]["State"] != "TERMINATED"
    assert run_clusters.end_earlier_attempts(emr, tags) == []


def test_server_side_encryption_settings():
    assert s3_encryption(DeploymentSettings()) == {"ServerSideEncryption": "AES256"}
    kms = DeploymentSettings(s3_sse="aws:kms", s3_sse_kms_key_id="alias/fruit")
    assert s3_encryption(kms) == {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/fruit"}
    with pytest.raises(InvalidRunOptionsError, match="s3_sse"):
        s3_encryption(DeploymentSettings(s3_sse="none"))
    ((emrfs,),) = [emrfs_encryption(DeploymentSettings())]
    assert emrfs == {
        "Classification": "emrfs-site",
        "Properties": {"fs.s3.enableServerSideEncryption": "true"},
    }
    assert emrfs_encryption(kms)[0]["Properties"]["fs.s3.serverSideEncryption.kms.keyId"] == (
        "alias/fruit"
    )
    # A security configuration decides the jobs' encryption: EMR refuses both at once.
    assert emrfs_encryption(DeploymentSettings(security_configuration="sc")) == []
