"""Checks made before any money is spent: the input is what Spark will read, the weights exist,
the run's output prefix is free or this run's own.

Functions take a boto3 S3 client (the DAG passes the one from its Airflow connection), so
tests run them against moto. Everything here reads; only `claim_run_prefix` writes or deletes,
and the DAG calls it once every check has passed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from emr_pipeline.job_contract import contract
from emr_pipeline.plan import RunPlan
from emr_pipeline.uris import as_prefix, split_s3_uri

log = logging.getLogger(__name__)

IMAGE_NAME_PATTERN = contract.IMAGE_NAME_PATTERN  # the rule Spark's glob applies in featurize
# The first bytes of every HDF5 file (Keras .weights.h5 files are HDF5).
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_NOT_FOUND = ("404", "NoSuchKey", "NotFound", "NoSuchBucket")
_DENIED = ("403", "AccessDenied", "Forbidden", "AllAccessDisabled")
# Written first under a run's output prefix, naming the run: the proof that whatever else is
# there was written by this run, so preflight may clear it. Hadoop hides names starting with
# "_": no reader of the run's datasets sees it.
RUN_MARKER = "_fruit_features_run.json"
_EXAMPLES = 5


class PreflightError(RuntimeError):
    """The run must not start; the message says why and what to change."""


@dataclass(frozen=True)
class InputListing:
    images: int
    labels: dict[str, int]  # images per label (= parent folder)
    # Image names Spark skips (a `_` or `.` name on the way), at most a few, and their count.
    hidden_examples: list[str] = field(default_factory=list)
    hidden: int = 0


def _error_code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


def hidden_by_hadoop(name: str) -> bool:
    """Spark's rule for the files and folders its listing skips (HadoopFSUtils
    .shouldFilterOutPathName): a `_` or `.` start, except `_metadata`, `_common_metadata`
    and `_` names holding `=` (partition folders); and `._COPYING_` ends."""
    excluded = (name.startswith("_") and "=" not in name) or name.startswith(".")
    excluded = excluded or name.endswith("._COPYING_")
    kept = name.startswith("_common_metadata") or name.startswith("_metadata")
    return excluded and not kept


def _objects(s3: Any, bucket: str, prefix: str, what: str, uri: str) -> Iterator[dict]:
    """Every object under `prefix`; a missing bucket or a refused listing is a PreflightError
    naming `what` (the parameter), not a retried ClientError."""
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            yield from page.get("Contents", [])
    except s3.exceptions.ClientError as exc:
        raise _named_error(exc, what, uri) from exc


def _named_error(exc: Exception, what: str, uri: str) -> Exception:
    code = _error_code(exc)
    if code in _NOT_FOUND:
        return PreflightError(f"{what}: the bucket of {uri} does not exist")
    if code in _DENIED:
        return PreflightError(f"{what}: the Airflow connection may not list {uri} ({code})")
    return exc


def _examples(keys: list[str], bucket: str) -> str:
    shown = ", ".join(f"s3://{bucket}/{key}" for key in keys[:_EXAMPLES])
    more = f" and {len(keys) - _EXAMPLES} more" if len(keys) > _EXAMPLES else ""
    return shown + more


def list_images(s3: Any, input_uri: str, max_image_bytes: int | None = None) -> InputListing:
    """Count the images under `input_uri` exactly as featurize's Spark listing will see them.

    Skips what Hadoop hides (`_`/`.` names, at any depth below the input); refuses, with
    examples, what Spark cannot read at all: keys with `:` (Hadoop's Path breaks on them and
    the whole listing fails), keys with empty segments (`a//b.jpg`: Hadoop collapses them into
    another path), images over `max_image_bytes` (Spark's binaryFile limit fails the job).
    """
    bucket, key = split_s3_uri(input_uri)
    prefix = as_prefix(key) if key.strip("/") else ""
    input_uri = as_prefix(input_uri)  # shown as the folder it is
    labels: dict[str, int] = {}
    hidden: list[str] = []
    unreadable: dict[str, list[str]] = {"colon": [], "empty segment": [], "too large": []}
    for obj in _objects(s3, bucket, prefix, "input_uri", input_uri):
        name = obj["Key"]
        if name.endswith("/"):
            continue  # a console "folder": no file for Spark
        # Walk down the key as Hadoop's listing does: a name it must turn into a Path breaks
        # on ':' or an empty segment, even a hidden name (its parent's listing makes that
        # Path); below a hidden folder it never looks.
        problem = None
        for segment in name[len(prefix) :].split("/"):
            if ":" in segment:
                problem = "colon"
            elif not segment:
                problem = "empty segment"
            elif hidden_by_hadoop(segment):
                problem = "hidden"
            if problem:
                break
        if problem == "hidden":
            if IMAGE_NAME_PATTERN.search(name):
                hidden.append(name)
            continue
        if problem:
            unreadable[problem].append(name)
            continue
        if not IMAGE_NAME_PATTERN.search(name):
            continue
        if max_image_bytes is not None and obj.get("Size", 0) > max_image_bytes:
            unreadable["too large"].append(name)
            continue
        parts = name.split("/")
        label = parts[-2] if len(parts) > 1 else ""
        labels[label] = labels.get(label, 0) + 1
    if unreadable["colon"]:
        keys = unreadable["colon"]
        raise PreflightError(
            f"input_uri: {len(keys)} objects under {input_uri} have ':' in their key, which "
            f"breaks Hadoop's paths (Spark's listing of the whole input fails): "
            f"{_examples(keys, bucket)}. Rename them or move them out of the input"
        )
    if unreadable["empty segment"]:
        keys = unreadable["empty segment"]
        raise PreflightError(
            f"input_uri: {len(keys)} objects under {input_uri} have an empty folder name "
            f"('//') in their key, which Hadoop reads as another path: {_examples(keys, bucket)}"
            ". Rename them or move them out of the input"
        )
    if unreadable["too large"]:
        keys = unreadable["too large"]
        raise PreflightError(
            f"input_uri: {len(keys)} images under {input_uri} are larger than "
            f"{max_image_bytes} bytes (deployment setting max_image_bytes; Spark's binaryFile "
            f"reader fails the whole job on one): {_examples(keys, bucket)}"
        )
    if not labels:
        raise PreflightError(
            f"input {input_uri} holds no {contract.IMAGE_KINDS} image"
            + (f" that Spark reads ({len(hidden)} hidden by a '_' or '.' name)" if hidden else "")
        )
    return InputListing(
        images=sum(labels.values()),
        labels=dict(sorted(labels.items())),
        hidden_examples=hidden[:_EXAMPLES],
        hidden=len(hidden),
    )


def read_json(s3: Any, bucket: str, key: str) -> dict | None:
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    try:
        found = json.loads(body)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def require_bucket(s3: Any, uri: str, what: str) -> None:
    """Fail clearly when the bucket of `uri` is missing (EMR would only fail much later).

    A listing of the URI's own prefix (one key at most), not HeadBucket: HeadBucket needs
    s3:ListBucket on the whole bucket, which the connection's policy grants only per prefix.
    """
    bucket, key = split_s3_uri(uri)
    try:
        s3.list_objects_v2(Bucket=bucket, Prefix=as_prefix(key), MaxKeys=1)
    except s3.exceptions.ClientError as exc:
        raise _named_error(exc, what, uri) from exc


def check_weights(s3: Any, weights_uri: str) -> None:
    """The weights file exists, is an HDF5 file, and the Airflow connection can read it: its
    first bytes are read, which proves what a HeadObject would not (an archived object, a KMS
    key the connection may not use). The run copies the file next to its job code, where the
    nodes' instance role reads it."""
    bucket, key = split_s3_uri(weights_uri)
    try:
        answer = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{len(HDF5_SIGNATURE) - 1}")
        first_bytes = answer["Body"].read()
    except s3.exceptions.ClientError as exc:
        code = _error_code(exc)
        if code in _NOT_FOUND:
            raise PreflightError(f"weights: {weights_uri} does not exist") from exc
        if code == "InvalidObjectState":
            raise PreflightError(
                f"weights: {weights_uri} is archived (Glacier); restore it or copy it first"
            ) from exc
        if code == "InvalidRange":  # a 0-byte object has no first byte
            raise PreflightError(f"weights: {weights_uri} is empty (0 bytes)") from exc
        if code in _DENIED or code.startswith("KMS"):
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


def marker_body(dag_id: str, run_id: str) -> dict[str, str]:
    return {"dag_id": dag_id, "run_id": run_id}


def _is_this_runs(marker: dict | None, dag_id: str, run_id: str) -> bool:
    ours = marker_body(dag_id, run_id)
    return bool(marker) and {name: marker.get(name) for name in ours} == ours


def check_run_prefix(s3: Any, plan: RunPlan, dag_id: str, run_id: str, overwrite: bool) -> str:
    """May this run write under its output prefix? Reads only; returns what it found.

    The prefix must be empty or hold this run's own marker. Anything else (another run's
    output, files this DAG did not write) is refused whatever `overwrite` says: preflight
    never deletes what is not this run's. A passed report of this same run is refused unless
    `overwrite`.
    """
    bucket, key = split_s3_uri(plan.output_uri)
    prefix = as_prefix(key)
    keys = [obj["Key"] for obj in _objects(s3, bucket, prefix, "output_uri", plan.output_uri)]
    if not keys:
        return f"{plan.output_uri} is empty: free"
    marker_key = prefix + RUN_MARKER
    marker = read_json(s3, bucket, marker_key) if marker_key in keys else None
    if not _is_this_runs(marker, dag_id, run_id):
        owner = (
            f"a marker of another run ({marker})"
            if marker
            else f"no marker {RUN_MARKER} of this run"
        )
        raise PreflightError(
            f"output_uri: {plan.output_uri} already holds {len(keys)} objects with {owner}, "
            f"e.g. {_examples(keys, bucket)}. This run clears only output it wrote itself, "
            "whatever overwrite says; nothing was deleted. Choose another output_uri or "
            "remove those objects yourself"
        )
    report = read_json(s3, bucket, split_s3_uri(plan.report_uri)[1])
    if report is not None and report.get("status") == "passed" and not overwrite:
        raise PreflightError(
            f"{plan.output_uri} already holds this run's finished output ({plan.report_uri}); "
            "trigger with overwrite=true to run it again"
        )
    status = "none" if report is None else repr(report.get("status"))
    return (
        f"{plan.output_uri} holds {len(keys) - 1} objects of an earlier attempt of this run "
        f"(report: {status}): they are cleared before the run starts"
    )


def claim_run_prefix(
    s3: Any,
    plan: RunPlan,
    dag_id: str,
    run_id: str,
    encryption: dict[str, str] | None = None,
) -> int:
    """Write this run's marker (first, into an empty prefix), or find it there, then delete
    everything else under the prefix: what an earlier attempt of this run left, listed now,
    after its cluster has ended. Returns how many objects were deleted.

    Call only after check_run_prefix passed. Should the prefix have gained objects without
    this run's marker since (someone else writing there), nothing is deleted.
    """
    bucket, key = split_s3_uri(plan.output_uri)
    prefix = as_prefix(key)
    marker_key = prefix + RUN_MARKER
    keys = [obj["Key"] for obj in _objects(s3, bucket, prefix, "output_uri", plan.output_uri)]
    marker = read_json(s3, bucket, marker_key) if marker_key in keys else None
    if marker is None and not keys:
        body = json.dumps(
            {
                **marker_body(dag_id, run_id),
                "features_of": plan.features_of,
                "claimed_at": datetime.now(UTC).isoformat(),
            }
        )
        s3.put_object(Bucket=bucket, Key=marker_key, Body=body.encode(), **(encryption or {}))
        return 0
    if not _is_this_runs(marker, dag_id, run_id):
        raise PreflightError(
            f"output_uri: {plan.output_uri} gained objects that this run did not write while "
            f"it started, e.g. {_examples(keys, bucket)}; nothing was deleted"
        )
    # One DeleteObject per key: each call names its object, so the IAM policy (DeleteObject on
    # the outputs' prefix only) is checked object by object.
    leftovers = [k for k in keys if k != marker_key]
    for leftover in leftovers:
        s3.delete_object(Bucket=bucket, Key=leftover)
    return len(leftovers)


def check_run(
    s3: Any,
    plan: RunPlan,
    input_uri: str,
    dag_id: str,
    run_id: str,
    overwrite: bool,
    say: Callable[[str], None] = log.info,
) -> InputListing:
    """Every read-only preflight check, in order of what is most likely wrong; `say`s what it
    found. Returns the input listing."""
    listing = list_images(s3, input_uri, plan.max_image_bytes)
    say(f"{listing.images} images in {len(listing.labels)} labels under {input_uri}")
    if listing.hidden:
        say(
            f"skipped {listing.hidden} images that Spark does not read (a name starting with "
            f"'_' or '.' on the way), e.g. {', '.join(listing.hidden_examples)}"
        )
    if plan.weights_uri:
        check_weights(s3, plan.weights_uri)
    say(check_run_prefix(s3, plan, dag_id, run_id, overwrite))
    require_bucket(s3, plan.artifacts_uri, "deployment setting artifacts_uri")
    require_bucket(s3, plan.log_uri, "deployment setting log_uri")
    say(f"run output: {plan.output_uri}  artifacts: {plan.artifacts_uri}")
    return listing
