"""The pure builders' checks of a run's inputs: the run options made from the parameters (each
invalid one named, the defaults, PCA's arguments, deferrable waits needing aiobotocore), settings
read from the environment and from Airflow Variables, and the spend guard, which names the
deployment setting that would allow a refused run."""

from __future__ import annotations

import pytest

from emr_pipeline.options import InvalidRunOptionsError, check_worker_support
from emr_pipeline.settings import DeploymentSettings, ParseTimeSettings
from tests.dag.builder_cases import options, plan

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
            "precision bf16 runs only on the openvino runtime, not on tensorflow.*"
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
    pca_step = plan(options(pca_k=5, pca_variance=0.9)).steps["pca"][0]["HadoopJarStep"]["Args"]
    assert "--variance" in pca_step and "--k" not in pca_step
    assert pca_step[pca_step.index("--variance") + 1] == "0.9"
    pca_step = plan(options(pca_k=5)).steps["pca"][0]["HadoopJarStep"]["Args"]
    assert pca_step[pca_step.index("--k") + 1] == "5" and "--variance" not in pca_step


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
    assert resolved.job_flow_role == "fruit-features-emr-nodes"


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
