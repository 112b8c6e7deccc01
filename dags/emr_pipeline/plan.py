"""A run's plan: every URI, the cluster request and its steps, fixed once in preflight.

The downstream tasks take their arguments from this plan (as XCom), so the whole run is decided
by one pure function of (params, deployment settings, dag_id, run_id). Where each thing lands:

    <output_uri>/<run>/                 the run's results: manifest, features, pca, report.json
    <artifacts>/<dag_id>/<run>/         jobs/ (entrypoints, package zip), bootstrap/, weights/
    <artifacts>/<dag_id>/model-cache/   featurize's exported models, shared by the DAG's runs
    <artifacts>/<dag_id>/seals/         what the Airflow connection vouches for (emr_pipeline.seals)

The steps are spark-submit of each job through command-runner.jar; they go in with the cluster.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from typing import Any

from emr_pipeline.cluster import ClusterContext, build_job_flow_overrides
from emr_pipeline.contract import PACKAGE_NAME, contract
from emr_pipeline.options import BUILTIN_WEIGHTS, RunOptions, progress_seconds
from emr_pipeline.parameter import InvalidRunOptionsError
from emr_pipeline.settings import (
    SPARK_MAX_FILE_BYTES,
    DeploymentSettings,
    SpendLimits,
    check_spend,
    max_image_bytes,
    s3_encryption,
    setting_uri,
)
from emr_pipeline.uris import as_prefix, check_prefixes_apart, join_uri, run_key, split_s3_uri

BOOTSTRAP_SCRIPT = "install-python-deps.sh"

REQUIREMENTS_FILE = "requirements-emr.txt"

CONSTRAINTS_FILE = "constraints.txt"

MODEL_CACHE_FOLDER = "model-cache"


@dataclass(frozen=True)
class ArtifactUris:
    """Where this run's artifacts live in S3 (a pure function of the run prefix)."""

    prefix: str

    def entrypoint(self, name: str) -> str:
        return join_uri(self.prefix, "jobs", name)

    @property
    def package_zip(self) -> str:
        return join_uri(self.prefix, "jobs", f"{PACKAGE_NAME}.zip")

    @property
    def bootstrap_script(self) -> str:
        return join_uri(self.prefix, "bootstrap", BOOTSTRAP_SCRIPT)

    @property
    def requirements(self) -> str:
        return join_uri(self.prefix, "bootstrap", REQUIREMENTS_FILE)

    @property
    def constraints(self) -> str:
        return join_uri(self.prefix, "bootstrap", CONSTRAINTS_FILE)

    def weights(self, name: str) -> str:
        return join_uri(self.prefix, "weights", name)


SEALS_FOLDER = "seals"

RUN_SEALS, MODEL_SEALS = "runs", "model-cache"


def run_seal_uri(seals_uri: str, run_uri: str) -> str:
    """Where the seal of the run whose folder is `run_uri` lives."""
    digest = hashlib.sha256(as_prefix(run_uri).encode()).hexdigest()[:32]
    return join_uri(seals_uri, RUN_SEALS, f"{digest}.json")


def model_seals_uri(seals_uri: str) -> str:
    """The folder of the model cache entries' seals (featurize's --model-seals)."""
    return join_uri(seals_uri, MODEL_SEALS)


# Written first under a run's output prefix, naming the run: the proof that whatever else is
# there was written by this run, so preflight may clear it. Hadoop hides names starting with
# "_": no reader of the run's datasets sees it.
RUN_MARKER = "_fruit_features_run.json"

# Each cluster's cost (<run>/costs/<cluster id>.json, emr_pipeline.cost): what an earlier
# attempt's clusters cost is kept when a rerun clears the prefix.
COSTS_FOLDER = "costs/"

REPORT_NAME = contract.REPORT

# EMR tag values (the run_id tag): letters, digits, spaces and _ . : / = + - @, at most 256.
_TAG_VALUE = re.compile(r"[\w .:/=+\-@]{1,256}")


@dataclass(frozen=True)
class RunPlan:
    run_key: str  # the run's folder name: its deployment and run id
    output_uri: str  # <output_uri>/<run>/: this run's results, and only this run's
    report_uri: str
    artifacts_uri: str  # s3://<artifacts>/<dag_id>/<run>/
    log_uri: str
    job_flow_overrides: dict[str, Any]
    steps: dict[str, list[dict[str, Any]]]
    s3_encryption: dict[str, str] | None = None  # ExtraArgs for the DAG's own S3 writes
    # The user's weights file and the run's own copy of it under artifacts_uri (which the
    # nodes' instance role reads, as it reads the job code); None for imagenet and random.
    weights_uri: str | None = None
    weights_copy_uri: str | None = None
    max_image_bytes: int = SPARK_MAX_FILE_BYTES
    # What the run's vectors are made of, as the DAG knows it (kept in its marker, so that a
    # later incremental run knows whether they are its to reuse: emr_pipeline.seals).
    features_of: dict[str, str] = field(default_factory=dict)
    base_run_uri: str | None = None  # the earlier run whose unchanged vectors featurize reuses
    # The deployment's S3 Inventory destination (settings.inventory_uri); None = list the input.
    inventory_uri: str | None = None
    # The Airflow deployment the run is from (settings.deployment_id): in its key, marker, tags.
    deployment_id: str = ""
    # What the Airflow connection vouches for (emr_pipeline.seals): <artifacts>/<dag_id>/seals/.
    seals_uri: str = ""
    model_cache_uri: str = ""  # featurize's exported models, shared by the DAG's runs

    def with_base(
        self,
        options: RunOptions,
        base_run_uri: str | None = None,
        base_seal_uri: str | None = None,
        full_run_reason: str | None = None,
    ) -> RunPlan:
        """This plan with its steps, for the base run preflight chose (`base_run_uri`, with its
        seal) or for a full run (`full_run_reason`: why)."""
        steps = build_steps(
            options,
            ArtifactUris(self.artifacts_uri),
            self.output_uri.rstrip("/"),
            weights=self.weights_copy_uri,
            model_cache=self.model_cache_uri,
            base_run=base_run_uri,
            full_run_reason=full_run_reason,
            seals=(model_seals_uri(self.seals_uri), base_seal_uri),
        )
        # Every step goes in with the cluster: EMR queues them, so the cluster is never idle
        # between two of them (its idle timeout cannot end it mid-run), and no retry of an
        # add-step call can add one twice.
        queued = [step for name in STEP_NAMES for step in steps[name]]
        return replace(
            self,
            steps=steps,
            job_flow_overrides={**self.job_flow_overrides, "Steps": queued},
            base_run_uri=base_run_uri,
        )

    def as_xcom(self) -> dict[str, Any]:
        """Flat, JSON-serialisable; each key is pushed as its own XCom (multiple_outputs)."""
        return {
            "run_key": self.run_key,
            "deployment_id": self.deployment_id,
            "seals_uri": self.seals_uri,
            "features_of": self.features_of,
            "output_uri": self.output_uri,
            "report_uri": self.report_uri,
            "artifacts_uri": self.artifacts_uri,
            "log_uri": self.log_uri,
            "job_flow_overrides": self.job_flow_overrides,
            "s3_encryption": self.s3_encryption or {},
            "weights_uri": self.weights_uri,
            "weights_copy_uri": self.weights_copy_uri,
            "max_image_bytes": self.max_image_bytes,
            "base_run_uri": self.base_run_uri,
            **{f"{name}_steps": steps for name, steps in self.steps.items()},
        }


def default_artifacts_root(output_uri: str) -> str:
    bucket, _ = split_s3_uri(output_uri)
    return f"s3://{bucket}/emr-artifacts"


def make_plan(
    options: RunOptions,
    deployment: DeploymentSettings,
    *,
    dag_id: str,
    run_id: str,
    owner: str,
    with_constraints: bool = True,
    base_run_uri: str | None = None,
    base_seal_uri: str | None = None,
    full_run_reason: str | None = None,
) -> RunPlan:
    check_run_id(run_id)
    check_spend(options, SpendLimits.from_deployment(deployment))
    image_limit = max_image_bytes(deployment)
    key = run_key(run_id, deployment.deployment_id)
    output = as_prefix(join_uri(options.output_uri, key))
    artifacts_root = setting_uri(
        "artifacts_uri", deployment.artifacts_uri or default_artifacts_root(options.output_uri)
    )
    artifacts = ArtifactUris(as_prefix(join_uri(artifacts_root, dag_id, key)))
    seals = join_uri(artifacts_root, dag_id, SEALS_FOLDER)
    # EMR writes <LogUri>/<cluster-id>/steps/<step-id>/{stdout,stderr}.gz under this.
    log_uri = as_prefix(
        setting_uri("log_uri", deployment.log_uri or join_uri(artifacts_root, "emr-logs"))
    )
    check_prefixes_apart(
        {
            "input_uri": options.input_uri,
            "output_uri": options.output_uri,
            "deployment setting artifacts_uri": join_uri(artifacts_root, dag_id),
            "deployment setting log_uri": log_uri,
        }
    )
    encryption = s3_encryption(deployment)
    weights_copy = None
    if options.weights not in BUILTIN_WEIGHTS:
        weights_copy = artifacts.weights(options.weights.rsplit("/", 1)[-1])
    ctx = ClusterContext(
        dag_id=dag_id,
        run_id=run_id,
        run_key=key,
        deployment_id=deployment.deployment_id,
        owner=owner,
        log_uri=log_uri,
        bootstrap_script_uri=artifacts.bootstrap_script,
        requirements_uri=artifacts.requirements,
        constraints_uri=artifacts.constraints if with_constraints else None,
    )
    plan = RunPlan(
        run_key=key,
        deployment_id=deployment.deployment_id,
        seals_uri=seals,
        output_uri=output,
        report_uri=join_uri(output, REPORT_NAME),
        artifacts_uri=artifacts.prefix,
        log_uri=log_uri,
        job_flow_overrides=build_job_flow_overrides(options, deployment, ctx),
        steps={},
        s3_encryption=encryption,
        weights_uri=None if weights_copy is None else options.weights,
        weights_copy_uri=weights_copy,
        max_image_bytes=image_limit,
        features_of={
            "input_uri": options.input_uri,
            "weights": options.weights,
            "runtime": options.runtime,
            "precision": options.precision,
        },
        # Beside every run's artifacts, not in one: exported models serve the runs after it.
        model_cache_uri=join_uri(artifacts_root, dag_id, MODEL_CACHE_FOLDER),
        inventory_uri=(
            as_prefix(setting_uri("inventory_uri", deployment.inventory_uri))
            if deployment.inventory_uri
            else None
        ),
    )
    return plan.with_base(options, base_run_uri, base_seal_uri, full_run_reason)


def check_run_id(run_id: str) -> None:
    """The run id becomes the cluster's run_id tag, which finds the run's cluster again: EMR
    refuses tag values with other characters, and a cut value could match another run."""
    if not _TAG_VALUE.fullmatch(run_id) or run_id.startswith("aws:"):
        raise InvalidRunOptionsError(
            f"run_id: {run_id!r} cannot be an EMR tag value (at most 256 letters, digits, "
            "spaces and _ . : / = + - @, not starting with aws:); trigger the run with another "
            "run id"
        )


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
    # pca.py takes one of --k / --variance; a variance target wins over the default k.
    pca_choice = (
        ["--variance", str(options.pca_variance)]
        if options.pca_variance is not None
        else ["--k", str(options.pca_k)]
    )
    return {
        "featurize": step("featurize", featurize_args),
        "pca": step(
            "pca",
            [
                "--input",
                join_uri(run_output_uri, contract.FEATURES),
                "--output",
                run_output_uri,
                *pca_choice,
            ],
        ),  # fmt: skip
        "validate": step("validate", ["--output", run_output_uri]),
    }


def progress_uri(run_output_uri: str, step_name: str) -> str:
    """Where step `step_name` of the run under `run_output_uri` publishes its progress."""
    return join_uri(run_output_uri, contract.progress_file(step_name))
