"""The pure builders: run options, run-scoped URIs, the cluster request and the steps."""

from __future__ import annotations

import pytest

from emr_pipeline.cluster import NODE_PYTHON
from emr_pipeline.options import InvalidRunOptionsError, RunOptions, check_worker_support
from emr_pipeline.plan import make_plan
from emr_pipeline.settings import DeploymentSettings, ParseTimeSettings
from emr_pipeline.uris import join_uri, run_key, split_s3_uri

RUN_ID = "manual__2026-01-02T03:04:05.678901+00:00"


def options(**overrides) -> RunOptions:
    values = {
        "input_uri": "s3://in-bucket/fruits/",
        "output_uri": "s3://out-bucket/runs",
        **overrides,
    }
    return RunOptions.from_params(values)


def plan(opts: RunOptions | None = None, deployment: DeploymentSettings | None = None, **kw):
    return make_plan(
        opts or options(),
        deployment or DeploymentSettings(),
        dag_id="fruit_features_emr",
        run_id=kw.pop("run_id", RUN_ID),
        owner="data-team",
        **kw,
    )


# --- URIs ---------------------------------------------------------------------------------


def test_run_key_is_a_safe_path_segment():
    assert run_key(RUN_ID) == "manual__2026-01-02T03_04_05.678901_00_00"
    assert run_key("scheduled__2026-01-01T00:00:00+00:00") != run_key(RUN_ID)
    long = run_key("x" * 500)
    assert len(long) <= 120 and long != run_key("x" * 499)


def test_split_and_join_uris():
    assert split_s3_uri("s3://bucket/a/b/") == ("bucket", "a/b/")
    assert split_s3_uri("s3n://bucket") == ("bucket", "")
    assert join_uri("s3://b/x/", "/y/", "z") == "s3://b/x/y/z"
    with pytest.raises(ValueError, match="expected an s3://"):
        split_s3_uri("/tmp/x")


# --- options ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"input_uri": "file:///tmp/in"}, "input_uri"),
        ({"output_uri": "s3://in-bucket/fruits"}, "must differ"),
        ({"weights": "/home/me/model.weights.h5"}, "weights"),
        ({"weights": "s3://b/model.keras"}, "weights"),
        ({"pca_k": None, "pca_variance": None}, "pca_k or pca_variance"),
        ({"pca_variance": 0.0}, "pca_variance"),
        ({"idle_timeout_seconds": 30}, "idle_timeout_seconds"),
        ({"core_spot": True, "core_instance_count": 0}, "core_spot"),
    ],
)
def test_invalid_options_name_the_parameter(overrides, message):
    with pytest.raises(InvalidRunOptionsError, match=message):
        options(**overrides)


def test_unknown_params_are_ignored_and_variance_wins_over_k():
    opts = options(pca_k=5, pca_variance=0.9, something_else=1)
    assert opts.pca_args == ["--variance", "0.9"]
    assert options(pca_k=5).pca_args == ["--k", "5"]


def test_deferrable_needs_aiobotocore():
    missing = lambda name: None  # noqa: E731
    with pytest.raises(InvalidRunOptionsError, match="aiobotocore"):
        check_worker_support(options(deferrable=True), missing)
    check_worker_support(options(deferrable=False), missing)
    check_worker_support(options(deferrable=True), lambda name: object())


def test_settings_from_environment():
    env = {
        "FRUIT_EMR_INPUT_URI": "s3://mine/in/",
        "FRUIT_EMR_CORE_INSTANCE_COUNT": "5",
        "FRUIT_EMR_CORE_SPOT": "true",
        "FRUIT_EMR_SCHEDULE": "none",
    }
    settings = ParseTimeSettings.from_env(env)
    assert settings.input_uri == "s3://mine/in/"
    assert settings.core_instance_count == 5 and settings.core_spot is True
    assert settings.schedule is None
    assert ParseTimeSettings.from_env({}).schedule == "@weekly"


def test_deployment_settings_prefer_variables_then_environment():
    variables = {"fruit_features_emr_service_role": "MyEmrRole"}
    env = {"FRUIT_EMR_SERVICE_ROLE": "EnvRole", "FRUIT_EMR_SUBNET_ID": "subnet-1"}
    resolved = DeploymentSettings.resolve(variables.get, env)
    assert resolved.service_role == "MyEmrRole"
    assert resolved.subnet_id == "subnet-1"
    assert resolved.job_flow_role == "EMR_EC2_DefaultRole"


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
    assert jf["JobFlowRole"] == "EMR_EC2_DefaultRole"
    assert jf["Instances"]["KeepJobFlowAliveWhenNoSteps"] is True
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
    }
    for optional in ("Ec2SubnetId", "Ec2KeyName"):
        assert optional not in jf["Instances"]
    assert "SecurityConfiguration" not in jf
    tags = {t["Key"]: t["Value"] for t in jf["Tags"]}
    assert tags == {"dag_id": "fruit_features_emr", "run_id": RUN_ID, "owner": "data-team"}


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


# --- the steps ------------------------------------------------------------------------------


def _args(step: dict) -> list[str]:
    return step["HadoopJarStep"]["Args"]


def test_steps_submit_the_uploaded_jobs_with_run_scoped_outputs():
    p = plan(options(weights="s3://models/mnv2.weights.h5", partitions=8, pca_variance=0.95))
    out = p.output_uri.rstrip("/")
    zip_uri = p.artifacts_uri + "jobs/imagefeatures.zip"
    for name in ("featurize", "pca", "validate"):
        (step,) = p.steps[name]
        assert step["Name"] == name
        assert step["HadoopJarStep"]["Jar"] == "command-runner.jar"
        args = _args(step)
        assert args[:5] == ["spark-submit", "--deploy-mode", "client", "--py-files", zip_uri]
        assert args[5] == p.artifacts_uri + f"jobs/{name}.py"
        assert args[args.index("--output") + 1] == out
    featurize = _args(p.steps["featurize"][0])
    assert featurize[featurize.index("--input") + 1] == "s3://in-bucket/fruits/"
    assert featurize[featurize.index("--weights") + 1] == "s3://models/mnv2.weights.h5"
    assert featurize[featurize.index("--partitions") + 1] == "8"
    pca = _args(p.steps["pca"][0])
    assert pca[pca.index("--input") + 1] == f"{out}/features"
    assert pca[-2:] == ["--variance", "0.95"]
    validate = _args(p.steps["validate"][0])
    assert validate[-4:] == ["--input", "s3://in-bucket/fruits/", "--output", out]


def test_job_cli_accepts_the_step_arguments():
    """The entrypoints' own argument parsers accept what the steps pass."""
    pytest.importorskip("pyspark")
    from imagefeatures.featurize import parse_args as featurize_args
    from imagefeatures.pca import parse_args as pca_args
    from imagefeatures.validate import parse_args as validate_args

    p = plan(options(partitions=4))
    for name, parse in (
        ("featurize", featurize_args),
        ("pca", pca_args),
        ("validate", validate_args),
    ):
        parse(_args(p.steps[name][0])[6:])
