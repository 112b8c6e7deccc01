"""EMR steps: spark-submit of each job through command-runner.jar, with run-scoped outputs."""

from __future__ import annotations

from typing import Any

from emr_pipeline.artifacts import ArtifactUris
from emr_pipeline.job_contract import contract
from emr_pipeline.options import RunOptions
from emr_pipeline.step_watch import progress_seconds, progress_uri
from emr_pipeline.uris import join_uri

# A failed step terminates the cluster at once, cancelling the steps queued behind it;
# Airflow's teardown would do the same a poke later.
ACTION_ON_FAILURE = "TERMINATE_CLUSTER"
STEP_NAMES = contract.STEP_NAMES  # the order EMR runs them in


def spark_step(
    name: str,
    entrypoint_uri: str,
    package_zip_uri: str,
    args: list[str],
    spark_conf: dict[str, str] | None = None,
) -> dict:
    """One step running `spark-submit <entrypoint> <args>` in client mode on the primary node.

    Client mode keeps the driver's output in the step's own logs (stdout.gz: the job's
    messages, which spark-submit merges from Python's stderr; stderr.gz: Spark's), which is
    what the DAG shows when the step fails.
    """
    return {
        "Name": name,
        "ActionOnFailure": ACTION_ON_FAILURE,
        "HadoopJarStep": {
            "Jar": "command-runner.jar",
            "Args": [
                "spark-submit",
                "--deploy-mode",
                "client",
                *(f for k, v in (spark_conf or {}).items() for f in ("--conf", f"{k}={v}")),
                "--py-files",
                package_zip_uri,
                entrypoint_uri,
                *args,
            ],
        },
    }


def build_steps(
    options: RunOptions,
    artifacts: ArtifactUris,
    run_output_uri: str,
    weights: str | None = None,
    model_cache: str | None = None,
    base_run: str | None = None,
    full_run_reason: str | None = None,
    seals: tuple[str, str | None] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """{"featurize": [step], "pca": [step], "validate": [step]} for this run.

    Every step reads the run's input from its manifest (<run>/manifest.parquet, written by
    preflight), never from options.input_uri: the input is fixed once.
    `weights` replaces options.weights (the run's copy of a weights file);
    `model_cache` is where featurize keeps exported models between runs; `base_run` the
    earlier run whose vectors of unchanged images featurize reuses, or `full_run_reason` why
    there is none. `seals`: (the model cache entries' seals, the base run's seal): what the
    Airflow connection vouches for, which featurize checks before it trusts an entry or a base.
    """

    def step(name: str, args: list[str], conf: dict[str, str] | None = None) -> list[dict]:
        args = [
            *args,
            "--progress", progress_uri(run_output_uri, name),
            "--progress-seconds", f"{progress_seconds(options.poke_interval_seconds):g}",
        ]  # fmt: skip
        return [
            spark_step(name, artifacts.entrypoint(f"{name}.py"), artifacts.package_zip, args, conf)
        ]

    featurize_args = [
        "--output", run_output_uri,
        "--weights", weights or options.weights,
        "--batch-size", str(options.batch_size),
        "--runtime", options.runtime,
        "--precision", options.precision,
    ]  # fmt: skip
    if options.partitions:
        featurize_args += ["--partitions", str(options.partitions)]
    model_seals, base_seal = seals or (None, None)
    if model_cache:
        featurize_args += ["--model-cache", model_cache]
        if model_seals:
            featurize_args += ["--model-seals", model_seals]
    if base_run:
        featurize_args += ["--base", base_run]
        if base_seal:
            featurize_args += ["--base-seal", base_seal]
    elif full_run_reason:
        featurize_args += ["--full-run-reason", full_run_reason]
    return {
        "featurize": step("featurize", featurize_args),
        "pca": step(
            "pca",
            [
                "--input",
                join_uri(run_output_uri, contract.FEATURES),
                "--output",
                run_output_uri,
                *options.pca_args,
            ],
        ),  # fmt: skip
        "validate": step("validate", ["--output", run_output_uri]),
    }
