"""The pure builders: run options, run-scoped URIs, the cluster request and the steps."""

from __future__ import annotations

import re

import pytest

from emr_pipeline.cluster import NODE_PYTHON
from emr_pipeline.options import InvalidRunOptionsError, RunOptions
from emr_pipeline.plan import make_plan
from emr_pipeline.settings import DeploymentSettings, ParseTimeSettings
from emr_pipeline.step_watch import progress_seconds
from emr_pipeline.uris import join_uri, normalize_s3_uri, overlaps, run_key, split_s3_uri
from emr_pipeline.worker_support import check_worker_support

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


# --- options ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"input_uri": "file:///tmp/in"}, "input_uri"),
        ({"output_uri": "s3://in-bucket/fruits"}, "input_uri .* and output_uri .* overlap"),
        ({"output_uri": "s3://in-bucket/fruits/runs"}, "overlap"),
        ({"input_uri": "s3://out-bucket/runs/x/../in"}, "overlap"),
        ({"release_label": "emr-6.15.0"}, "release_label: emr-6.15.0's nodes have no Python 3.11"),
        ({"release_label": "emr-spark-5.0.0"}, "release_label: .* no Python 3.11"),
        ({"release_label": "emr-07.0.0"}, "release_label: expected"),
        ({"sensor_timeout_seconds": 10**15}, "sensor_timeout_seconds must be at most"),
        ({"pca_k": 2.0}, "pca_k: expected an integer, got 2.0"),
        ({"core_instance_count": True}, "core_instance_count: expected an integer"),
        ({"input_uri": "s3://in-bucket/fruits/\n"}, "input_uri: control characters"),
        ({"core_instance_type": "m5.xlarge\n"}, "core_instance_type: control characters"),
        ({"release_label": " emr-7.13.0"}, "release_label: leading or trailing whitespace"),
        ({"input_uri": "s3://in-bucket/fruits:2024/"}, "input_uri: .* holds :"),
        ({"output_uri": "s3://out-bucket/runs/*/"}, "output_uri: .* holds \\*"),
        ({"poke_interval_seconds": 0.5}, "poke_interval_seconds must be at least 1"),
        ({"pca_kk": 3}, "pca_kk: not a parameter of this DAG.*pca_k"),
        ({"weights": "/home/me/model.weights.h5"}, "weights"),
        ({"weights": "s3://b/model.keras"}, "weights"),
        ({"pca_k": None, "pca_variance": None}, "pca_k or pca_variance"),
        ({"pca_variance": 0.0}, "pca_variance"),
        ({"idle_timeout_seconds": 30}, "idle_timeout_seconds"),
        ({"core_spot": True, "core_instance_count": 0}, "core_spot"),
        ({"runtime": "onnx"}, "runtime: expected one of openvino, tensorflow, got 'onnx'"),
        ({"runtime": "OpenVINO"}, "runtime: expected one of"),
        ({"precision": "fp16"}, "precision: expected one of f32, bf16, got 'fp16'"),
        (
            {"runtime": "tensorflow", "precision": "bf16"},
            "precision: bf16 runs only with runtime openvino.*"
            "choose runtime openvino, or precision f32",
        ),
    ],
)
def test_invalid_options_name_the_parameter(overrides, message):
    with pytest.raises(InvalidRunOptionsError, match=message):
        options(**overrides)


def test_runtime_and_precision_default_to_openvino_f32_and_bf16_runs_on_openvino():
    assert (options().runtime, options().precision) == ("openvino", "f32")
    assert options(precision="bf16").precision == "bf16"
    assert options(runtime="tensorflow", precision="f32").runtime == "tensorflow"


def test_variance_wins_over_k():
    opts = options(pca_k=5, pca_variance=0.9)
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
    defaults = settings.param_defaults
    assert defaults["input_uri"] == "s3://mine/in/"
    assert defaults["core_instance_count"] == 5 and defaults["core_spot"] is True
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
    assert jf["JobFlowRole"] == "EMR_EC2_DefaultRole"
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
        assert args[:3] == ["spark-submit", "--deploy-mode", "client"]
        entrypoint = args.index(p.artifacts_uri + f"jobs/{name}.py")
        assert args[entrypoint - 2 : entrypoint] == ["--py-files", zip_uri]
        assert args[args.index("--output") + 1] == out
        # Each step's progress, under the run's prefix, rewritten at the poke interval (60 s).
        assert args[-4:] == [
            "--progress", f"{out}/_progress/{name}.json", "--progress-seconds", "60"
        ]  # fmt: skip
    featurize = _args(p.steps["featurize"][0])
    assert featurize[featurize.index("--input") + 1] == "s3://in-bucket/fruits"
    # The nodes read the run's own copy of the weights, next to the job code.
    assert p.weights_uri == "s3://models/mnv2.weights.h5"
    assert p.weights_copy_uri == p.artifacts_uri + "weights/mnv2.weights.h5"
    assert featurize[featurize.index("--weights") + 1] == p.weights_copy_uri
    # Spark's binaryFile limit is the one preflight applied to the listing.
    limit = f"spark.sql.sources.binaryFile.maxLength={p.max_image_bytes}"
    assert featurize[featurize.index("--conf") + 1] == limit
    assert featurize[featurize.index("--partitions") + 1] == "8"
    # Exported models are kept for the runs after this one: beside the runs' folders, not in one.
    cache = featurize[featurize.index("--model-cache") + 1]
    assert cache == p.artifacts_uri.rstrip("/").rsplit("/", 1)[0] + "/model-cache"
    assert not cache.startswith(p.artifacts_uri)
    pca = _args(p.steps["pca"][0])
    assert pca[pca.index("--input") + 1] == f"{out}/features"
    assert pca[-6:-4] == ["--variance", "0.95"]
    validate = _args(p.steps["validate"][0])
    assert validate[-8:-4] == ["--input", "s3://in-bucket/fruits", "--output", out]


@pytest.mark.parametrize(("poke", "expected"), [(1, 5.0), (30, 30.0), (60.5, 60.0), (3600, 60.0)])
def test_a_progress_file_is_rewritten_as_often_as_it_is_read_within_bounds(poke, expected):
    assert progress_seconds(poke) == expected


def test_featurize_gets_the_base_run_or_why_there_is_none():
    base = "s3://out-bucket/runs/scheduled__2025-06-23-0123456789abcdef/"
    incremental = _args(plan(base_run_uri=base).steps["featurize"][0])
    assert incremental[incremental.index("--base") + 1] == base
    assert "--full-run-reason" not in incremental
    full = _args(plan(full_run_reason="full_refresh=true").steps["featurize"][0])
    assert full[full.index("--full-run-reason") + 1] == "full_refresh=true"
    assert "--base" not in full
    # What the marker keeps, so that a later run knows what these vectors are made of.
    assert plan().features_of == {
        "input_uri": "s3://in-bucket/fruits", "weights": "imagenet", "runtime": "openvino",
        "precision": "f32",
    }  # fmt: skip


def _option(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, ("openvino", "f32")),
        ({"precision": "bf16"}, ("openvino", "bf16")),
        ({"runtime": "tensorflow"}, ("tensorflow", "f32")),
    ],
)
def test_featurize_step_passes_the_runtime_and_precision(overrides, expected):
    steps = plan(options(**overrides)).steps
    featurize = _args(steps["featurize"][0])
    assert (_option(featurize, "--runtime"), _option(featurize, "--precision")) == expected
    for name in ("pca", "validate"):  # only featurize runs the model
        assert "--runtime" not in _args(steps[name][0])


def test_job_cli_accepts_the_step_arguments():
    """The entrypoints' own argument parsers accept what the steps pass."""
    pytest.importorskip("pyspark")
    from imagefeatures.featurize import parse_args as featurize_args
    from imagefeatures.pca import parse_args as pca_args
    from imagefeatures.validate import parse_args as validate_args

    p = plan(options(partitions=4, pca_k=3, batch_size=16, precision="bf16"))
    parsed = {}
    for name, parse in (
        ("featurize", featurize_args),
        ("pca", pca_args),
        ("validate", validate_args),
    ):
        args = _args(p.steps[name][0])
        parsed[name] = parse(args[args.index(p.artifacts_uri + f"jobs/{name}.py") + 1 :])
    out, input_uri = p.output_uri.rstrip("/"), "s3://in-bucket/fruits"
    featurize = parsed["featurize"]
    assert (featurize.input.rstrip("/"), featurize.output.rstrip("/")) == (input_uri, out)
    assert (featurize.weights, featurize.batch_size, featurize.partitions) == ("imagenet", 16, 4)
    assert (featurize.runtime, featurize.precision) == ("openvino", "bf16")
    pca = parsed["pca"]
    assert (pca.input, pca.output.rstrip("/"), pca.k, pca.variance) == (
        f"{out}/features",
        out,
        3,
        None,
    )
    validate = parsed["validate"]
    assert (validate.input.rstrip("/"), validate.output.rstrip("/")) == (input_uri, out)


def test_runtime_and_precision_choices_and_defaults_are_the_jobs():
    """The form offers what featurize accepts, and a run with the form's defaults runs what
    featurize would run by itself."""
    pytest.importorskip("pyspark")
    from emr_pipeline.options import PRECISIONS, RUNTIMES
    from imagefeatures import featurize

    assert set(RUNTIMES) == set(featurize.RUNTIMES)
    assert set(PRECISIONS) == set(featurize.PRECISIONS)
    job_defaults = featurize.parse_args(["--input", "s3://in/", "--output", "s3://out/run"])
    assert (job_defaults.runtime, job_defaults.precision) == (
        RunOptions.runtime,
        RunOptions.precision,
    )


# --- the spend guard ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({"core_instance_type": "p5.48xlarge"}, "allowed_instance_families"),
        ({"master_instance_type": "x2iedn.32xlarge"}, "allowed_instance_families"),
        ({"core_instance_count": 21}, "max_core_instances"),
        ({"idle_timeout_seconds": 10801}, "max_idle_timeout_seconds"),
    ],
)
def test_the_spend_guard_names_the_setting_that_would_allow_the_run(overrides, setting):
    with pytest.raises(InvalidRunOptionsError, match=f"deployment setting {setting}"):
        plan(options(**overrides))
    loose = DeploymentSettings(
        allowed_instance_families="m5,p5,x2iedn", max_core_instances="50",
        max_idle_timeout_seconds="20000",
    )  # fmt: skip
    plan(options(**overrides), loose)


def test_a_malformed_spend_setting_is_refused():
    with pytest.raises(InvalidRunOptionsError, match="max_core_instances: expected a positive"):
        plan(deployment=DeploymentSettings(max_core_instances="20 "))
