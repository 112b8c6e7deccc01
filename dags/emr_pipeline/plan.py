"""A run's plan: every URI, the cluster request and the steps, fixed once in preflight.

The downstream operators take their arguments from this plan (as XCom), so the whole run is
decided by one pure function of (params, deployment settings, dag_id, run_id).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from emr_pipeline.artifacts import MODEL_CACHE_FOLDER, ArtifactUris
from emr_pipeline.cluster import ClusterContext, build_job_flow_overrides
from emr_pipeline.job_contract import contract
from emr_pipeline.options import (
    BUILTIN_WEIGHTS,
    InvalidRunOptionsError,
    RunOptions,
)
from emr_pipeline.seals import SEALS_FOLDER, model_seals_uri
from emr_pipeline.settings import DeploymentSettings, where_to_set
from emr_pipeline.spend_guard import SpendLimits, check_spend
from emr_pipeline.steps import STEP_NAMES, build_steps
from emr_pipeline.uris import (
    as_prefix,
    check_prefixes_apart,
    join_uri,
    normalize_s3_uri,
    run_key,
    split_s3_uri,
)

REPORT_NAME = contract.REPORT
# EMR tag values (the run_id tag): letters, digits, spaces and _ . : / = + - @, at most 256.
_TAG_VALUE = re.compile(r"[\w .:/=+\-@]{1,256}")
# The most a featurize worker reads of one image into memory (a Java int, as Spark's
# binaryFile limit was): larger images are refused before the cluster.
SPARK_MAX_FILE_BYTES = 2**31 - 1


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
    # later incremental run knows whether they are its to reuse: emr_pipeline.base_run).
    features_of: dict[str, str] = field(default_factory=dict)
    base_run_uri: str | None = None  # the earlier run whose unchanged vectors featurize reuses
    # The deployment's S3 Inventory destination (settings.inventory_uri); None = list the input.
    inventory_uri: str | None = None
    # The Airflow deployment the run is from (settings.deployment_id): in its key, marker, tags.
    deployment_id: str = ""
    # What the Airflow connection vouches for (emr_pipeline.seals): <artifacts>/<dag_id>/seals/.
    seals_uri: str = ""

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


SSE_ALGORITHMS = ("AES256", "aws:kms")


def s3_encryption(deployment: DeploymentSettings) -> dict[str, str]:
    """put_object/upload_file arguments for the deployment's server-side encryption."""
    if deployment.s3_sse not in SSE_ALGORITHMS:
        raise InvalidRunOptionsError(
            f"deployment setting s3_sse: expected one of {', '.join(SSE_ALGORITHMS)}, "
            f"got {deployment.s3_sse!r}"
        )
    extra = {"ServerSideEncryption": deployment.s3_sse}
    if deployment.s3_sse_kms_key_id:
        if deployment.s3_sse != "aws:kms":
            raise InvalidRunOptionsError(
                "deployment setting s3_sse_kms_key_id needs s3_sse=aws:kms"
            )
        extra["SSEKMSKeyId"] = deployment.s3_sse_kms_key_id
    return extra


def default_artifacts_root(output_uri: str) -> str:
    bucket, _ = split_s3_uri(output_uri)
    return f"s3://{bucket}/emr-artifacts"


def _setting_uri(setting: str, uri: str) -> str:
    try:
        return normalize_s3_uri(uri)
    except ValueError as exc:
        raise InvalidRunOptionsError(
            f"deployment setting {setting}: {exc} (set in {where_to_set(setting)})"
        ) from exc


def max_image_bytes(deployment: DeploymentSettings) -> int:
    text = deployment.max_image_bytes
    if not re.fullmatch(r"[0-9]+", text) or not 1 <= int(text) <= SPARK_MAX_FILE_BYTES:
        raise InvalidRunOptionsError(
            f"deployment setting max_image_bytes: expected an integer in "
            f"[1, {SPARK_MAX_FILE_BYTES}] (what a worker reads of one image), got {text!r} "
            f"(set in {where_to_set('max_image_bytes')})"
        )
    return int(text)


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
    artifacts_root = _setting_uri(
        "artifacts_uri", deployment.artifacts_uri or default_artifacts_root(options.output_uri)
    )
    artifacts = ArtifactUris(as_prefix(join_uri(artifacts_root, dag_id, key)))
    seals = join_uri(artifacts_root, dag_id, SEALS_FOLDER)
    # EMR writes <LogUri>/<cluster-id>/steps/<step-id>/{stdout,stderr}.gz under this.
    log_uri = as_prefix(
        _setting_uri("log_uri", deployment.log_uri or join_uri(artifacts_root, "emr-logs"))
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
    steps = build_steps(
        options,
        artifacts,
        output.rstrip("/"),
        weights=weights_copy,
        # Beside every run's artifacts, not in one: exported models serve the runs after it.
        model_cache=join_uri(artifacts_root, dag_id, MODEL_CACHE_FOLDER),
        base_run=base_run_uri,
        full_run_reason=full_run_reason,
        seals=(model_seals_uri(seals), base_seal_uri),
    )
    overrides = build_job_flow_overrides(options, deployment, ctx)
    # Every step goes in with the cluster: EMR queues them, so the cluster is never idle
    # between two of them (its idle timeout cannot end it mid-run), and no retry of an
    # add-step call can add one twice.
    overrides["Steps"] = [step for name in STEP_NAMES for step in steps[name]]
    return RunPlan(
        run_key=key,
        deployment_id=deployment.deployment_id,
        seals_uri=seals,
        output_uri=output,
        report_uri=join_uri(output, REPORT_NAME),
        artifacts_uri=artifacts.prefix,
        log_uri=log_uri,
        job_flow_overrides=overrides,
        steps=steps,
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
        base_run_uri=base_run_uri,
        inventory_uri=(
            as_prefix(_setting_uri("inventory_uri", deployment.inventory_uri))
            if deployment.inventory_uri
            else None
        ),
    )


def check_run_id(run_id: str) -> None:
    """The run id becomes the cluster's run_id tag, which finds the run's cluster again: EMR
    refuses tag values with other characters, and a cut value could match another run."""
    if not _TAG_VALUE.fullmatch(run_id) or run_id.startswith("aws:"):
        raise InvalidRunOptionsError(
            f"run_id: {run_id!r} cannot be an EMR tag value (at most 256 letters, digits, "
            "spaces and _ . : / = + - @, not starting with aws:); trigger the run with another "
            "run id"
        )
