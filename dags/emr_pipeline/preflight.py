"""Checks made before any money is spent: the input holds images (and its manifest is written,
locally), the weights exist, the run's output prefix is free or this run's own.

Functions take a boto3 S3 client (the DAG passes the one from its Airflow connection), so
tests run them against moto. The checks only read S3; `run_prefix.claim_run_prefix` writes or
deletes, and the DAG calls it once every check has passed, then `publish_manifest` (the claim
clears what an earlier attempt wrote under the run's prefix, its manifest included).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from typing import Any

from emr_pipeline.input_listing import InputManifest, build_manifest
from emr_pipeline.job_contract import contract
from emr_pipeline.plan import RunPlan
from emr_pipeline.run_prefix import check_run_prefix
from emr_pipeline.s3_reads import DENIED, NOT_FOUND, PreflightError, error_code, require_bucket
from emr_pipeline.uris import join_uri, split_s3_uri

log = logging.getLogger(__name__)

# The first bytes of every HDF5 file (Keras .weights.h5 files are HDF5).
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def check_weights(s3: Any, weights_uri: str) -> None:
    """The weights file exists, the Airflow connection can read it, and it holds the whole
    MobileNetV2's weights (the arrays and values featurize loads): its first bytes are read,
    which proves what a HeadObject would not (an archived object, a KMS key the connection may
    not use), then, if it is an HDF5 file of a plausible size, the whole file. The run copies
    the file next to its job code, where the nodes' instance role reads it."""
    bucket, key = split_s3_uri(weights_uri)
    try:
        answer = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{len(HDF5_SIGNATURE) - 1}")
        first_bytes = answer["Body"].read()
    except s3.exceptions.ClientError as exc:
        code = error_code(exc)
        if code in NOT_FOUND:
            raise PreflightError(f"weights: {weights_uri} does not exist") from exc
        if code == "InvalidObjectState":
            raise PreflightError(
                f"weights: {weights_uri} is archived (Glacier); restore it or copy it first"
            ) from exc
        if code == "InvalidRange":  # a 0-byte object has no first byte
            raise PreflightError(f"weights: {weights_uri} is empty (0 bytes)") from exc
        if code in DENIED or code.startswith("KMS"):
            raise PreflightError(
                f"weights: the Airflow connection cannot read {weights_uri} ({code}); the run "
                "copies the file next to its job code for the cluster, so it must be readable "
                "(s3:GetObject, and kms:Decrypt for an SSE-KMS object)"
            ) from exc
        raise
    if first_bytes != HDF5_SIGNATURE:
        raise PreflightError(
            f"weights: {weights_uri} is not an HDF5 file (a Keras .weights.h5 file starts "
            f"with {HDF5_SIGNATURE!r}, this one with {first_bytes!r})"
        )
    size = int(answer["ContentRange"].rpartition("/")[2])
    if size > contract.MAX_WEIGHTS_BYTES:
        raise PreflightError(
            f"weights: {weights_uri} is {size:,} bytes; MobileNetV2's weights file is about "
            f"15 MB, and a file over {contract.MAX_WEIGHTS_BYTES:,} bytes is not one"
        )
    # Its arrays, before a cluster is paid for: an HDF5 file of another model would fail
    # featurize on the cluster.
    content = s3.get_object(Bucket=bucket, Key=key, IfMatch=answer["ETag"])["Body"].read()
    if problem := contract.weights_problem(io.BytesIO(content)):
        raise PreflightError(f"weights: {weights_uri} is not MobileNetV2's weights: {problem}")


def check_run(
    s3: Any,
    plan: RunPlan,
    input_uri: str,
    dag_id: str,
    run_id: str,
    overwrite: bool,
    say: Callable[[str], None] = log.info,
) -> InputManifest:
    """Every read-only preflight check, in order of what is most likely wrong; `say`s what it
    found. Returns the input's manifest, written to a local file that `publish_manifest` puts
    under the run's prefix (or `discard()` removes, when the run stops before)."""
    manifest = build_manifest(s3, input_uri, plan.max_image_bytes, plan.inventory_uri)
    try:
        say(manifest.describe())
        if plan.weights_uri:
            check_weights(s3, plan.weights_uri)
        say(check_run_prefix(s3, plan, dag_id, run_id, overwrite))
        require_bucket(s3, plan.artifacts_uri, "deployment setting artifacts_uri")
        require_bucket(s3, plan.log_uri, "deployment setting log_uri")
    except BaseException:
        manifest.discard()
        raise
    say(f"run output: {plan.output_uri}  artifacts: {plan.artifacts_uri}")
    return manifest


def publish_manifest(
    s3: Any, manifest: InputManifest, output_uri: str, encryption: dict[str, str] | None
) -> str:
    """Put the manifest (parquet, a multipart upload when large) and its summary (JSON) under
    the run's output prefix, with the deployment's encryption; remove the local file. Call it
    after `claim_run_prefix`, which clears the prefix of an earlier attempt. Returns the
    manifest's URI, which the steps read."""
    uri = join_uri(output_uri, contract.MANIFEST)
    bucket, key = split_s3_uri(uri)
    _, summary_key = split_s3_uri(contract.manifest_summary_uri(uri))
    extra = dict(encryption or {})
    s3.upload_file(str(manifest.local_path), bucket, key, ExtraArgs=extra)
    s3.put_object(
        Bucket=bucket,
        Key=summary_key,
        Body=manifest.summary.as_json().encode(),
        ContentType="application/json",
        **extra,
    )
    manifest.discard()
    return uri
