"""Watching a step from its sensor or trigger: its progress in one line, whether it is stuck, the
new lines of its logs while it runs, and why it failed once it has.

The jobs publish `<run>/_progress/<step>.json` while they run (imagefeatures.progress); EMR
uploads a step's stdout.gz and stderr.gz to LogUri every few minutes while it runs, each time
the whole log so far, and once more shortly after it ends. spark-submit merges the Python
driver's stderr (the job's "error: ..." line) into stdout; Spark's own errors go to stderr.
"""

from __future__ import annotations

import gzip
import json
import time
from dataclasses import dataclass, field
from typing import Any

from emr_pipeline.uris import join_uri, split_s3_uri

# Lines shown per log per look, at most: a chatty step must not flood the task log.
MAX_NEW_LINES = 200

# A progress line is logged at every look when it changed, and otherwise again after this
# long (so at every poke at the default one-minute interval, not every second at 1 s).
REPEAT_SECONDS = 30.0


def duration(seconds: float) -> str:
    """E.g. 2 h 5 min, 2 min 37 s, 45 s."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def describe_progress(step: str, progress: dict[str, Any] | None) -> str:
    """One line, e.g. "featurize: 41,200 / 90,000 images (46%), 310 img/s, 3 rejects,
    ETA 2 min 37 s"."""
    if not progress:
        return f"{step}: no progress published yet"
    phase, unit = progress.get("phase") or "running", progress.get("unit") or "items"
    done, total = progress.get("done") or 0, progress.get("total")
    state = progress.get("state")
    if total is None and not done:
        counted = phase
    else:
        counted = f"{done:,}" + (f" / {total:,}" if total is not None else "") + f" {unit}"
        if progress.get("percent") is not None:
            counted += f" ({progress['percent']:.0f}%)"
        counted += f", {phase}" if unit != "images" else ""
    parts = [counted]
    rate = progress.get("rate_per_second")
    if rate:
        parts.append(f"{rate:,.0f} img/s" if unit == "images" else f"{rate:,.1f} {unit}/s")
    if progress.get("rejects") is not None:
        parts.append(f"{progress['rejects']:,} rejects")
    if state == "running" and progress.get("eta_seconds") is not None:
        parts.append(f"ETA {duration(progress['eta_seconds'])}")
    if state and state != "running":
        parts.append(f"{state} after {duration(progress.get('elapsed_seconds') or 0)}")
    return f"{step}: " + ", ".join(parts)


def read_progress(s3: Any, uri: str) -> dict[str, Any] | None:
    """The progress JSON at `uri`; None when there is none yet (or it is not JSON)."""
    bucket, key = split_s3_uri(uri)
    try:
        found = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except s3.exceptions.NoSuchKey:
        return None
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def moved(progress: dict[str, Any] | None) -> tuple:
    """What changes when a step makes progress. In a counted phase (images, or Spark tasks:
    a total is known) its counts, not its clock: the driver of a hung executor goes on
    rewriting the file. In a phase the driver works through alone (listing, exporting the
    model), its writes: they stop when the driver hangs."""
    if not progress:
        return (None,)
    if progress.get("total") is not None:
        fields = ("phase", "done", "total", "rejects", "state")
    else:
        fields = ("phase", "writes", "state")
    return tuple(progress.get(name) for name in fields)


@dataclass
class StepWatch:
    """What one wait for a step remembers between looks at it."""

    step: str
    progress_uri: str
    stuck_after_seconds: float
    last_move: tuple | None = None
    since: float = field(default_factory=time.monotonic)
    shown_lines: dict[str, int] = field(default_factory=dict)
    etags: dict[str, str] = field(default_factory=dict)
    cluster: dict[str, Any] | None = None  # DescribeCluster's, once its primary node has a name
    application_id: str | None = None  # the step's Spark application, once it published it
    said: tuple[str, float] | None = None  # the last progress line logged, and when
    state: str | None = None  # the step's state at the last look

    def say_state(self, step_id: str, state: str, log: Any) -> None:
        """Log the step's state when it changed since the last look."""
        if state != self.state:
            log.info("Step %s is %s", step_id, state)
            self.state = state

    def say(self, line: str, log: Any, now: float | None = None) -> None:
        """Log `line` when it is news, or when it was said REPEAT_SECONDS ago."""
        now = time.monotonic() if now is None else now
        if self.said is None or self.said[0] != line or now - self.said[1] >= REPEAT_SECONDS:
            log.info("%s", line)
            self.said = (line, now)

    def still_for(self, progress: dict[str, Any] | None, now: float | None = None) -> float:
        """Seconds since the progress last moved (0 when it just did)."""
        now = time.monotonic() if now is None else now
        key = moved(progress)
        if key != self.last_move:
            self.last_move, self.since = key, now
        return now - self.since

    def stuck_message(self, still: float, progress: dict[str, Any] | None = None) -> str | None:
        """What to say when the step's progress has not moved for stuck_after_seconds."""
        if still < self.stuck_after_seconds:
            return None
        return (
            f"STUCK? {self.step}'s progress has not moved for {duration(still)} while the "
            f"step is RUNNING ({describe_progress(self.step, progress)}; "
            f"stuck_after_seconds={self.stuck_after_seconds:g}): a hung "
            f"executor or driver keeps the cluster running until sensor_timeout_seconds. Look "
            f"at the step's logs and the Spark UI; trigger with fail_when_stuck=true to fail "
            f"such a run (its cluster is then terminated)."
        )

    def read_progress(self, s3: Any) -> dict[str, Any] | None:
        """The step's progress now, noting its Spark application id once it appears."""
        progress = read_progress(s3, self.progress_uri)
        if progress and progress.get("spark_application_id"):
            self.application_id = progress["spark_application_id"]
        return progress

    def describe_cluster(self, emr: Any, cluster_id: str) -> dict[str, Any]:
        """The cluster's description, asked again only until its primary node has a name (a
        starting cluster's has none; its LogUri never changes)."""
        if self.cluster is None or not self.cluster.get("MasterPublicDnsName"):
            self.cluster = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]
        return self.cluster

    def new_log_lines(
        self, s3: Any, log_uri: str | None, cluster_id: str, step_id: str
    ) -> list[tuple[str, str]]:
        """(stream, line) for the lines of the step's logs not shown before; a log is read
        only when EMR uploaded a new version of it (its ETag changed)."""
        if not log_uri:
            return []
        found = []
        for stream in STEP_LOGS:
            bucket, key = split_s3_uri(step_log_uri(log_uri, cluster_id, step_id, stream))
            try:
                etag = s3.head_object(Bucket=bucket, Key=key)["ETag"]
            except s3.exceptions.ClientError:
                continue  # not uploaded yet
            if self.etags.get(stream) == etag:
                continue
            data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            self.etags[stream] = etag
            lines = log_text(data).splitlines()
            start = self.shown_lines.get(stream, 0)
            new = lines[start:]
            self.shown_lines[stream] = len(lines)
            if len(new) > MAX_NEW_LINES:
                skipped = len(new) - MAX_NEW_LINES
                found.append((stream, f"... {skipped} lines not shown ..."))
                new = new[-MAX_NEW_LINES:]
            found += [(stream, line) for line in new]
        return found

    def look(self, emr: Any, s3: Any, cluster_id: str, step_id: str, state: str, log: Any) -> str:
        """Log the step's progress and its new log lines; return the stuck message when the
        step is RUNNING and its progress has not moved for stuck_after_seconds, else ""."""
        try:
            progress = self.read_progress(s3)
            self.say(describe_progress(self.step, progress), log)
            log_uri = self.describe_cluster(emr, cluster_id).get("LogUri")
            for stream, line in self.new_log_lines(s3, log_uri, cluster_id, step_id):
                log.info("%s | %s", stream, line)
        except Exception as exc:  # watching must never fail the wait itself
            log.warning("%s: could not read the step's progress or logs: %s", self.step, exc)
            return ""
        if state != "RUNNING":
            return ""
        message = self.stuck_message(self.still_for(progress), progress)
        if message:
            log.warning("%s", message)
        return message or ""


TAIL_LINES = 60

STEP_LOGS = ("stdout", "stderr")


def step_log_uri(log_uri: str, cluster_id: str, step_id: str, stream: str = "stderr") -> str:
    return join_uri(log_uri, cluster_id, "steps", step_id, f"{stream}.gz")


def log_text(data: bytes) -> str:
    """A log object's text: EMR gzips step logs, a log read while it is written may be plain."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return data.decode("utf-8", errors="replace")


def tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def read_log_tail(s3: Any, uri: str, lines: int = TAIL_LINES) -> str | None:
    """The last `lines` of a (gzipped or plain) log object, or None when it is not there."""
    bucket, key = split_s3_uri(uri)
    try:
        data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return tail(log_text(data), lines)


def failure_details(step: dict[str, Any]) -> str:
    """One line from a DescribeStep "Step": state, FailureDetails, state change reason."""
    status = step.get("Status", {})
    parts = [f"step {step.get('Name', '?')} ({step.get('Id', '?')}) is {status.get('State')}"]
    details = status.get("FailureDetails") or {}
    for label, key in (("reason", "Reason"), ("message", "Message"), ("log", "LogFile")):
        if details.get(key):
            parts.append(f"{label}: {details[key]}")
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
