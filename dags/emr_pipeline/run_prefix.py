"""A run's output prefix is its own: the marker that proves it, the read-only check that the
prefix is free or this run's, and the claim that clears an earlier attempt's leftovers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from emr_pipeline.plan import RunPlan
from emr_pipeline.s3_reads import (
    DENIED,
    NOT_FOUND,
    PreflightError,
    error_code,
    examples,
    list_objects,
    read_json,
)
from emr_pipeline.uris import as_prefix, split_s3_uri

# Written first under a run's output prefix, naming the run: the proof that whatever else is
# there was written by this run, so preflight may clear it. Hadoop hides names starting with
# "_": no reader of the run's datasets sees it.
RUN_MARKER = "_fruit_features_run.json"
# Each cluster's cost (<run>/costs/<cluster id>.json, emr_pipeline.cost): what an earlier
# attempt's clusters cost is kept when a rerun clears the prefix.
COSTS_FOLDER = "costs/"


def marker_body(dag_id: str, run_id: str, deployment_id: str) -> dict[str, str]:
    return {"dag_id": dag_id, "deployment": deployment_id, "run_id": run_id}


def _is_this_runs(marker: dict | None, dag_id: str, run_id: str, deployment_id: str) -> bool:
    ours = marker_body(dag_id, run_id, deployment_id)
    return bool(marker) and {name: marker.get(name) for name in ours} == ours


def _marker_exists(s3: Any, bucket: str, key: str) -> bool:
    """Whether a run marker is at `key` (HEAD: archived or encrypted, it is still there); False
    where the connection may not look (its policy reads markers wherever runs may write one)."""
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as error:
        if error_code(error) in (*NOT_FOUND, *DENIED):
            return False
        raise


def _check_not_nested(s3: Any, plan: RunPlan, bucket: str, prefix: str, keys: list[str]) -> None:
    """No run folder inside another: a run's clear-and-rerun deletes everything under its
    prefix, so a run inside it would lose its output, and a run around this one would."""
    parts = prefix.rstrip("/").split("/")
    for depth in range(len(parts)):
        around = "".join(f"{part}/" for part in parts[:depth])
        if _marker_exists(s3, bucket, around + RUN_MARKER):
            raise PreflightError(
                f"output_uri: {plan.output_uri} lies inside the folder of another run "
                f"(s3://{bucket}/{around}, which holds its marker {RUN_MARKER}); that run's "
                "rerun would delete it. Choose an output_uri outside every run's folder"
            )
    inner = [k for k in keys if k.endswith("/" + RUN_MARKER) and k != prefix + RUN_MARKER]
    if inner:
        raise PreflightError(
            f"output_uri: {plan.output_uri} holds the folder of another run "
            f"({examples(inner, bucket)}); clearing this run's earlier attempt would delete it, "
            "so nothing was deleted. Move that run's output, or choose another output_uri"
        )


def check_run_prefix(s3: Any, plan: RunPlan, dag_id: str, run_id: str, overwrite: bool) -> str:
    """May this run write under its output prefix? Reads only; returns what it found.

    The prefix must be empty or hold this run's own marker. Anything else (another run's
    output, files this DAG did not write) is refused whatever `overwrite` says: preflight
    never deletes what is not this run's. Nor may it lie inside another run's folder, or hold
    one. A passed report of this same run is refused unless `overwrite`.
    """
    bucket, key = split_s3_uri(plan.output_uri)
    prefix = as_prefix(key)
    keys = [obj["Key"] for obj in list_objects(s3, bucket, prefix, "output_uri", plan.output_uri)]
    _check_not_nested(s3, plan, bucket, prefix, keys)
    if not keys:
        return f"{plan.output_uri} is empty: free"
    marker_key = prefix + RUN_MARKER
    marker = read_json(s3, bucket, marker_key) if marker_key in keys else None
    if not _is_this_runs(marker, dag_id, run_id, plan.deployment_id):
        owner = (
            f"a marker of another run ({marker})"
            if marker
            else f"no marker {RUN_MARKER} of this run"
        )
        raise PreflightError(
            f"output_uri: {plan.output_uri} already holds {len(keys)} objects with {owner}, "
            f"e.g. {examples(keys, bucket)}. This run clears only output it wrote itself, "
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
    costs = sum(k.startswith(prefix + COSTS_FOLDER) for k in keys)
    return (
        f"{plan.output_uri} holds {len(keys) - 1 - costs} objects of an earlier attempt of this "
        f"run (report: {status}): they are cleared before the run starts (the {costs} cost "
        f"records under {COSTS_FOLDER} are kept)"
    )


def claim_run_prefix(
    s3: Any,
    plan: RunPlan,
    dag_id: str,
    run_id: str,
    encryption: dict[str, str] | None = None,
) -> int:
    """Write this run's marker (first, into an empty prefix), or find it there, then delete
    everything else under the prefix but the clusters' costs: what an earlier attempt of this
    run left, listed now, after its cluster has ended. Returns how many objects were deleted.

    Call only after check_run_prefix passed. Should the prefix have gained objects without
    this run's marker since (someone else writing there), nothing is deleted.
    """
    bucket, key = split_s3_uri(plan.output_uri)
    prefix = as_prefix(key)
    marker_key = prefix + RUN_MARKER
    keys = [obj["Key"] for obj in list_objects(s3, bucket, prefix, "output_uri", plan.output_uri)]
    marker = read_json(s3, bucket, marker_key) if marker_key in keys else None
    if marker is None and not keys:
        body = json.dumps(
            {
                **marker_body(dag_id, run_id, plan.deployment_id),
                "features_of": plan.features_of,
                "claimed_at": datetime.now(UTC).isoformat(),
            }
        )
        s3.put_object(Bucket=bucket, Key=marker_key, Body=body.encode(), **(encryption or {}))
        return 0
    if not _is_this_runs(marker, dag_id, run_id, plan.deployment_id):
        raise PreflightError(
            f"output_uri: {plan.output_uri} gained objects that this run did not write while "
            f"it started, e.g. {examples(keys, bucket)}; nothing was deleted"
        )
    # One DeleteObject per key: each call names its object, so the IAM policy (DeleteObject on
    # the outputs' prefix only) is checked object by object.
    leftovers = [k for k in keys if k != marker_key and not k.startswith(prefix + COSTS_FOLDER)]
    for leftover in leftovers:
        s3.delete_object(Bucket=bucket, Key=leftover)
    return len(leftovers)
