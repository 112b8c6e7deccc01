"""Argument parsing of the three jobs."""

from __future__ import annotations

import dataclasses

import pytest

from imagefeatures import featurize, pca, validate
from imagefeatures.contract import precision_problem


def test_featurize_defaults():
    args = featurize.parse_args(["--input", "s3://in/", "--output", "s3://out/run1"])
    assert (args.weights, args.batch_size, args.partitions) == ("imagenet", 32, None)
    assert args.files_per_task == featurize.DEFAULT_FILES_PER_TASK == 512
    # OpenVINO by default, in f32: TensorFlow's features (the reference, chosen explicitly).
    assert (args.runtime, args.precision) == ("openvino", "f32")


def test_each_jobs_config_has_its_command_lines_defaults():
    # A test's config and a spark-submit run with the same required arguments are the same run.
    argv = ["--input", "i", "--output", "o"]
    assert featurize.parse_args(argv) == featurize.FeaturizeConfig(input="i", output="o")
    assert featurize.parse_args(["--output", "o"]).input is None
    assert pca.parse_args(argv) == pca.PcaConfig(input="i", output="o")
    assert validate.parse_args(["--output", "o"]) == validate.ValidateConfig(output="o")
    with pytest.raises(dataclasses.FrozenInstanceError):
        featurize.parse_args(argv).batch_size = 1


def test_bf16_runs_only_on_openvino():
    assert precision_problem("openvino", "bf16") == precision_problem("tensorflow", "f32") == ""
    assert "bf16 runs only on the openvino runtime" in precision_problem("tensorflow", "bf16")


def test_dag_defaults_are_the_jobs_defaults():
    from emr_pipeline.operators import build_params
    from emr_pipeline.options import RunOptions
    from emr_pipeline.settings import ParseTimeSettings

    params = build_params(ParseTimeSettings.from_env({}))
    assert RunOptions.batch_size == featurize.DEFAULT_BATCH_SIZE
    assert params["batch_size"].value == featurize.DEFAULT_BATCH_SIZE
    assert RunOptions.runtime == params["runtime"].value == featurize.DEFAULT_RUNTIME


def test_featurize_options():
    args = featurize.parse_args(
        ["--input", "in", "--output", "out", "--weights", "random", "--batch-size", "8"]
        + ["--partitions", "3", "--files-per-task", "16", "--runtime", "tensorflow"]
    )
    assert (args.weights, args.batch_size, args.partitions) == ("random", 8, 3)
    assert args.runtime == "tensorflow"
    assert args.files_per_task == 16


@pytest.mark.parametrize(
    "argv",
    [
        ["--input", "in"],
        ["--input", "in", "--output", "out", "--batch-size", "0"],
        ["--input", "in", "--output", "out", "--partitions", "-2"],
        ["--input", "in", "--output", "out", "--files-per-task", "0"],
        ["--input", "in", "--output", "out", "--batch-size", "many"],
        ["--input", "in", "--output", "out", "--runtime", "onnx"],
        ["--input", "in", "--output", "out", "--precision", "fp16"],
    ],
)
def test_featurize_rejects_bad_arguments(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        featurize.parse_args(argv)
    assert exit_info.value.code == 2
    assert "error" in capsys.readouterr().err


def test_pca_k_defaults_to_notebook_value():
    args = pca.parse_args(["--input", "o/features", "--output", "o"])
    assert (args.k, args.variance) == (2, None)  # the notebook's k
    assert pca.parse_args(["--input", "i", "--output", "o", "--variance", "0.9"]).variance == 0.9


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--k", "0"], "positive integer"),
        (["--k", "1281"], "at most 1280"),
        (["--variance", "1.5"], "in (0, 1]"),
        (["--variance", "0"], "in (0, 1]"),
        (["--k", "2", "--variance", "0.9"], "not allowed with"),
    ],
)
def test_pca_rejects_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit):
        pca.parse_args(["--input", "o/features", "--output", "o", *argv])
    assert message in capsys.readouterr().err


def test_validate_needs_input_and_output(capsys):
    with pytest.raises(SystemExit):
        validate.parse_args(["--input", "in"])
    assert "--output" in capsys.readouterr().err
