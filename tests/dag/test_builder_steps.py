"""The pure builders' steps: the spark-submit arguments of featurize, pca and validate (run-scoped
outputs, progress files, the base run, runtime and precision), and the jobs' own argument parsers
accepting them, with the same runtime and precision choices and defaults."""

from __future__ import annotations

import pytest

from emr_pipeline.options import RunOptions, progress_seconds
from tests.dag.builder_cases import options, plan


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
    # No step names the input: each reads the run's manifest (<out>/manifest.parquet), which
    # preflight wrote, so the input is fixed once.
    for step in p.steps.values():
        assert not any("in-bucket" in arg for arg in _args(step[0]))
    assert "--input" not in featurize and "--conf" not in featurize
    # The nodes read the run's own copy of the weights, next to the job code.
    assert p.weights_uri == "s3://models/mnv2.weights.h5"
    assert p.weights_copy_uri == p.artifacts_uri + "weights/mnv2.weights.h5"
    assert featurize[featurize.index("--weights") + 1] == p.weights_copy_uri
    assert featurize[featurize.index("--partitions") + 1] == "8"
    # Exported models are kept for the runs after this one: beside the runs' folders, not in one.
    cache = featurize[featurize.index("--model-cache") + 1]
    assert cache == p.artifacts_uri.rstrip("/").rsplit("/", 1)[0] + "/model-cache"
    assert not cache.startswith(p.artifacts_uri)
    pca = _args(p.steps["pca"][0])
    assert pca[pca.index("--input") + 1] == f"{out}/features"
    assert pca[-6:-4] == ["--variance", "0.95"]
    validate = _args(p.steps["validate"][0])
    assert validate[-6:-4] == ["--output", out]


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
    out = p.output_uri.rstrip("/")
    featurize = parsed["featurize"]
    assert (featurize.input, featurize.output.rstrip("/")) == (None, out)
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
    assert validate.output.rstrip("/") == out


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
