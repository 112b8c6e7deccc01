"""The run's report.json (written by the validate job): checked, summarised for the log and the
Asset event, and given the run's cost once record_cost has it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from emr_pipeline import cost
from emr_pipeline.contract import contract
from emr_pipeline.s3 import put_json
from emr_pipeline.uris import split_s3_uri


def add_to_report(
    s3_client: Any,
    report_uri: str,
    block: dict[str, Any],
    encryption: dict[str, str],
    say: Callable[[str], None] = print,
) -> bool:
    """Adds `"cost": block` to the report at `report_uri` (read, modify, write); False when
    the run wrote no report (a failed step)."""
    bucket, key = split_s3_uri(report_uri)
    # Listed first, not read and caught: S3 answers a read of a missing key with 403, not
    # 404, to a role that may list the bucket only under some prefixes (this connection).
    listed = s3_client.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1).get("Contents", [])
    if not listed or listed[0]["Key"] != key:
        say(f"no report at {report_uri} (no step wrote one): the cost is in the cost file only")
        return False
    report = json.loads(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())
    _put_report(s3_client, report_uri, {**report, "cost": block}, encryption, say)
    return True


def _put_report(
    s3_client: Any,
    report_uri: str,
    report: dict[str, Any],
    encryption: dict[str, str],
    say: Callable[[str], None],
) -> None:
    put_json(s3_client, report_uri, report, encryption)
    say(f"added the cost to {report_uri}")


class ReportError(RuntimeError):
    """The report says the run's output is not valid."""


def check_report(report: dict[str, Any], expected_images: int | None = None) -> None:
    if report.get("status") != "passed":
        failed = [c for c in report.get("checks", []) if not c.get("passed", True)]
        raise ReportError(f"report status is {report.get('status')!r}; failed checks: {failed}")
    if expected_images is not None and report.get("images") != expected_images:
        # Validate counts the run's manifest, which preflight wrote: another count means the
        # report is not of this run's input.
        raise ReportError(
            f"report counts {report.get('images')} images, the run's manifest holds "
            f"{expected_images}"
        )


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    """The small dict returned as XCom and attached to the asset event."""
    pca = report.get("pca") or {}
    cumulative = pca.get("cumulative_variance") or []
    model = report.get("model") or {}
    return {
        "status": report.get("status"),
        "images": report.get("images"),
        "features": report.get("features"),
        "rejects": report.get("rejects"),
        "labels": len(report.get("labels") or {}),
        "pca_k": pca.get("k"),
        "explained_variance": pca.get("explained_variance"),
        "cumulative_variance": cumulative[-1] if cumulative else None,
        "output": report.get("output"),
        "runtime": model.get("runtime"),
        # What ran: bf16 asked for on a CPU without it ran f32; "mixed" if workers differed.
        "precision": model.get("precision"),
        # The earlier run whose vectors of unchanged images this run reused (None: a full run).
        "base_run": (report.get("incremental") or {}).get("base_run"),
        # What the cluster used and cost (added by record_cost after the teardown).
        **cost.summary_fields(report.get("cost")),
    }


def describe_model(report: dict[str, Any]) -> str | None:
    """What ran the model, for a summary line: `openvino, f32 (weights random; model from the
    cache)`; None for a report from before the runtime choice (no model block)."""
    model = report.get("model")
    if not model:
        return None
    details = [f"weights {model.get('weights')}"]
    cache = model.get("model_cache")
    if cache:  # openvino with a cache: did this run pay the export?
        if cache.get("hit"):
            details.append("model from the cache")
        else:
            stored = "cached" if cache.get("stored") else "NOT cached (see the step's log)"
            details.append(f"model exported and {stored}")
    made_in = model.get("vectors_per_precision") or {}
    if len(made_in) > 1:  # "mixed": how many of each
        details.insert(0, ", ".join(f"{n} vectors {name}" for name, n in sorted(made_in.items())))
    return f"{model.get('runtime')}, {model.get('precision')} ({'; '.join(details)})"


def describe_incremental(report: dict[str, Any]) -> str | None:
    """Which earlier run's vectors the run reused, and what it featurized: `base run s3://…:
    3 new, 1 changed, 0 other_precision, 0 retried, 960 reused, 2 removed`, or `full run
    (why)`; None for a report from before incremental runs."""
    increment = report.get("incremental")
    if not increment:
        return None
    if not increment.get("base_run"):
        reason = increment.get("reason")
        return "full run" + (f" ({reason})" if reason else "")
    counts = ", ".join(
        f"{increment.get(name, 0)} {name}"
        for name in ("new", "changed", "other_precision", "retried", "reused", "removed")
    )
    return f"base run {increment['base_run']}: {counts}"


def describe_manifest(report: dict[str, Any]) -> str | None:
    """Where the run's input list came from: `listing of s3://in/ (2026-12-07T09:00:00+00:00,
    3 LIST requests)` or `S3 Inventory report of <date>`; None for a report without one."""
    manifest = report.get("manifest")
    if not manifest:
        return None
    if manifest.get("source") == "inventory":
        created = (manifest.get("inventory") or {}).get("created")
        return f"S3 Inventory report of {created} (read {manifest.get('created_at')})"
    requests = manifest.get("list_requests")
    made = f", {requests} LIST requests" if requests else ""
    return f"{manifest.get('source')} of {report.get('input')} ({manifest.get('created_at')}{made})"


def format_summary(report: dict[str, Any]) -> str:
    """Human-readable lines: totals, per-label counts, the model, explained variance."""
    s = summarize(report)
    lines = [
        f"{s['images']} images: {s['features']} featurized, {s['rejects']} rejected, "
        f"{s['labels']} labels",
    ]
    manifest = describe_manifest(report)
    if manifest:
        lines.append(f"input: {manifest}")
    for label, counts in sorted((report.get("labels") or {}).items()):
        lines.append(f"  {label}: {counts.get('features', 0)} features, "
                     f"{counts.get('rejects', 0)} rejects")  # fmt: skip
    model = describe_model(report)
    if model:
        lines.append(f"model: {model}")
    incremental = describe_incremental(report)
    if incremental:
        lines.append(f"incremental: {incremental}")
    if s["explained_variance"] is not None:
        variance = ", ".join(f"{v:.4f}" for v in s["explained_variance"])
        lines.append(f"PCA k={s['pca_k']}: explained variance [{variance}]")
        if s["cumulative_variance"] is not None:
            lines.append(f"  cumulative: {s['cumulative_variance']:.4f}")
    for reject in (report.get("rejected_files") or [])[:10]:
        lines.append(f"  rejected {reject.get('path')}: {reject.get('error')}")
    if report.get("cost"):
        lines.append(cost.format_cost(report["cost"]))
    return "\n".join(lines)


def record_run_cost(
    emr_client: Any,
    s3_client: Any,
    cluster_id: str,
    *,
    report_uri: str,
    encryption: dict[str, str] | None,
    say: Callable[[str], None] = print,
    **how: Any,
) -> dict[str, Any]:
    """The DAG's record_cost task: the run's cost in its cost files (emr_pipeline.cost.cost_run,
    given `how`), then in its report at `report_uri` when a step wrote one. Returns the block."""
    block, records = cost.cost_run(
        emr_client, s3_client, cluster_id, encryption=encryption, say=say, **how
    )
    extra = encryption or {}
    # The report as read with the run's records (no second listing and read), when it is
    # the one at `report_uri`.
    known = records is not None and report_uri == records.run_uri + contract.REPORT
    if known and not records.has_report:
        say(f"no report at {report_uri} (no step wrote one): the cost is in the cost file only")
    elif known and records.report is not None:
        _put_report(s3_client, report_uri, {**records.report, "cost": block}, extra, say)
    else:
        add_to_report(s3_client, report_uri, block, extra, say)
    return block


def read_report(
    s3: Any, report_uri: str, expected_images: int, say: Callable[[str], None] = print
) -> dict[str, Any]:
    """The read_report task: report.json read back and summarised in the log; ReportError
    unless it passed for the run's manifest. Returns the summary (XCom, Asset event)."""
    bucket, key = split_s3_uri(report_uri)
    body = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    say(format_summary(body))
    check_report(body, expected_images=expected_images)
    return summarize(body)
