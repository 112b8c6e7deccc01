"""Why a step failed: its FailureDetails and the tails of its logs from the cluster's LogUri.

EmrStepSensor only says "step FAILED" with the details' one-liners; the real reason is in
<LogUri>/<cluster-id>/steps/<step-id>/{stdout,stderr}.gz, which EMR copies to S3 shortly after
the step ends. Both matter: spark-submit merges the Python driver's stderr (the job's
"error: ..." line, a Python traceback) into its stdout, while Spark's own errors go to stderr.
"""

from __future__ import annotations

import gzip
import time
from typing import Any

from emr_pipeline.uris import join_uri, split_s3_uri

TAIL_LINES = 60


STEP_LOGS = ("stdout", "stderr")


def step_log_uri(log_uri: str, cluster_id: str, step_id: str, stream: str = "stderr") -> str:
    return join_uri(log_uri, cluster_id, "steps", step_id, f"{stream}.gz")


def tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def read_log_tail(s3: Any, uri: str, lines: int = TAIL_LINES) -> str | None:
    """The last `lines` of a (gzipped or plain) log object, or None when it is not there."""
    bucket, key = split_s3_uri(uri)
    try:
        data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return tail(data.decode("utf-8", errors="replace"), lines)


def failure_details(step: dict[str, Any]) -> str:
    """One line from a DescribeStep "Step": state, FailureDetails, state change reason."""
    status = step.get("Status", {})
    parts = [f"step {step.get('Name', '?')} ({step.get('Id', '?')}) is {status.get('State')}"]
    details = status.get("FailureDetails") or {}
    for label, field in (("reason", "Reason"), ("message", "Message"), ("log", "LogFile")):
        if details.get(field):
            parts.append(f"{label}: {details[field]}")
    change = (status.get("StateChangeReason") or {}).get("Message")
    if change:
        parts.append(f"state change: {change}")
    return "; ".join(parts)


def cluster_status(cluster: dict[str, Any]) -> str:
    """E.g. a failed bootstrap action shows here, while its steps only say CANCELLED."""
    status = cluster.get("Status", {})
    line = f"cluster {cluster.get('Id', '?')} is {status.get('State')}"
    reason = status.get("StateChangeReason") or {}
    if reason.get("Message") or reason.get("Code"):
        line += f": {reason.get('Code', '')} {reason.get('Message', '')}".rstrip()
    return line


def bootstrap_log_uris(s3: Any, log_uri: str, cluster_id: str) -> list[str]:
    """The bootstrap actions' logs of a cluster: <LogUri>/<cluster>/node/<instance>/
    bootstrap-actions/<n>/{stderr,stdout}.gz, stderr first."""
    bucket, prefix = split_s3_uri(join_uri(log_uri, cluster_id, "node") + "/")
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", []) if "/bootstrap-actions/" in o["Key"]]
    ordered = sorted(keys, key=lambda key: (not key.endswith("stderr.gz"), key))
    return [f"s3://{bucket}/{key}" for key in ordered if key.endswith((".gz", ".log"))]


def explain_step_failure(
    emr: Any,
    s3: Any,
    cluster_id: str,
    step_id: str,
    wait_seconds: float = 0,
    poll_seconds: float = 10,
) -> str:
    """A multi-line explanation of a failed step, for the task log and the exception.

    Waits up to `wait_seconds` for the logs to reach S3 (EMR uploads step logs with a lag).
    """
    step = emr.describe_step(ClusterId=cluster_id, StepId=step_id)["Step"]
    lines = [failure_details(step)]
    cluster = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]
    lines.append(cluster_status(cluster))
    log_uri = cluster.get("LogUri")
    if not log_uri:
        lines.append("the cluster has no LogUri: no step logs to show")
        return "\n".join(lines)
    if (cluster["Status"].get("StateChangeReason") or {}).get("Code") == "BOOTSTRAP_FAILURE":
        # The step never ran: the bootstrap action's own log says why.
        uris = bootstrap_log_uris(s3, log_uri, cluster_id)
        for uri in uris:
            lines.append(f"last lines of {uri}:\n{read_log_tail(s3, uri)}")
        if not uris:
            lines.append(f"no bootstrap action logs under {join_uri(log_uri, cluster_id)} yet")
        return "\n".join(lines)
    uris = {stream: step_log_uri(log_uri, cluster_id, step_id, stream) for stream in STEP_LOGS}
    deadline = time.monotonic() + wait_seconds
    while True:
        tails = {stream: read_log_tail(s3, uri) for stream, uri in uris.items()}
        if any(t is not None for t in tails.values()) or time.monotonic() >= deadline:
            break
        time.sleep(poll_seconds)
    for stream, uri in uris.items():
        if tails[stream] is None:
            lines.append(f"no {stream} at {uri} yet (EMR uploads step logs a few minutes late)")
        else:
            lines.append(f"last lines of {uri}:\n{tails[stream]}")
    return "\n".join(lines)
