"""Which earlier run's features an incremental run may reuse: its base run.

A base must be a run of this DAG (its marker names the DAG), made for the same input and model
(the marker's `features_of`: input_uri, weights, runtime), whose report passed and counts
vectors made in the precision this run asks for (what ran, not what that run asked: bf16 asked
on a CPU without it made f32 vectors): never a run that failed or is still running, another
DAG's output or another input's. Of those, the latest by the time its marker was written (when
the run started). Anything unreadable is skipped, and the log says why. Featurize checks the
model and the code again by digest, and each vector's precision, so a weights file rewritten in
place still gets a full run (jobs/imagefeatures/incremental.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from emr_pipeline.options import RunOptions
from emr_pipeline.plan import REPORT_NAME, RunPlan
from emr_pipeline.run_prefix import RUN_MARKER
from emr_pipeline.s3_reads import read_json_or_why
from emr_pipeline.uris import as_prefix, split_s3_uri


@dataclass(frozen=True)
class BaseChoice:
    uri: str | None  # the base run's output prefix; None: a full run
    reason: str  # what was chosen, or why there is none
    skipped: list[str] = field(default_factory=list)  # newer runs passed over, and why

    def describe(self) -> str:
        head = f"incremental: base run {self.uri}" if self.uri else "full run"
        lines = [f"{head}: {self.reason}"]
        lines += [f"  skipped {line}" for line in self.skipped]
        return "\n".join(lines)


def _run_folders(s3: Any, bucket: str, root: str) -> list[str]:
    folders = []
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=root, Delimiter="/"):
        folders += [entry["Prefix"] for entry in page.get("CommonPrefixes", [])]
    return folders


def _markers_newest_first(
    s3: Any, bucket: str, folders: list[str]
) -> tuple[list[tuple[str, dict]], list[str]]:
    """(folder, marker) of every folder holding a readable run marker, the latest claimed
    first (with max_active_runs=1, runs finish in the order they start); and the folders whose
    marker exists but cannot be read, with why (one archived marker must not stop every run)."""
    marked, unreadable = [], []
    for folder in folders:
        marker, why = read_json_or_why(s3, bucket, folder + RUN_MARKER)
        if why:
            unreadable.append(f"s3://{bucket}/{folder}: its marker is {why}")
        elif marker is not None:
            marked.append((folder, marker))
    marked.sort(key=lambda item: str(item[1].get("claimed_at", "")), reverse=True)
    return marked, unreadable


def _why_not(
    s3: Any, bucket: str, folder: str, marker: dict, dag_id: str, wanted: dict[str, str]
) -> str:
    """Why this run cannot be the base; "" when it can."""
    if not marker:
        return f"its marker {RUN_MARKER} is unreadable"
    if marker.get("dag_id") != dag_id:
        return f"another DAG's run ({marker.get('dag_id')!r})"
    made_for = marker.get("features_of")
    if not isinstance(made_for, dict):
        return "its marker does not say what its features were made of (an older run)"
    # The precision is checked against what ran (the report), not what that run asked for.
    differs = sorted(
        name for name in wanted if name != "precision" and made_for.get(name) != wanted[name]
    )
    if differs:
        return f"its {', '.join(differs)} differ"
    report, unreadable = read_json_or_why(s3, bucket, folder + REPORT_NAME)
    if unreadable:
        return f"its report is {unreadable}"
    if report is None:
        return "it has no report (it failed, or is still running)"
    if report.get("status") != "passed":
        return f"its report did not pass (status {report.get('status')!r})"
    made_in = (report.get("model") or {}).get("vectors_per_precision")
    if not isinstance(made_in, dict):
        return "its report does not say which precision made its vectors (an older run)"
    if not made_in.get(wanted["precision"]):
        return f"none of its vectors were made in {wanted['precision']} ({made_in})"
    return ""


def base_for_run(s3: Any, options: RunOptions, plan: RunPlan, dag_id: str) -> BaseChoice:
    """The run's base as its params ask: none for full_refresh or incremental=false."""
    if options.full_refresh:
        return BaseChoice(None, "full_refresh=true: every image is featurized")
    if not options.incremental:
        return BaseChoice(None, "incremental=false: every image is featurized")
    return choose_base_run(s3, options.output_uri, plan.output_uri, dag_id, plan.features_of)


def choose_base_run(
    s3: Any, output_root: str, run_output_uri: str, dag_id: str, wanted: dict[str, str]
) -> BaseChoice:
    """The latest earlier run under `output_root` whose features this run may reuse."""
    bucket, key = split_s3_uri(as_prefix(output_root))
    root = as_prefix(key) if key.strip("/") else ""
    this_run = split_s3_uri(run_output_uri)[1]
    folders = [f for f in _run_folders(s3, bucket, root) if as_prefix(f) != as_prefix(this_run)]
    marked, skipped = _markers_newest_first(s3, bucket, folders)
    for folder, marker in marked:
        why = _why_not(s3, bucket, folder, marker, dag_id, wanted)
        uri = f"s3://{bucket}/{folder}"
        if not why:
            return BaseChoice(uri, "the latest earlier run of this input and model", skipped)
        skipped.append(f"{uri}: {why}")
    return BaseChoice(None, "no earlier run of this input and model passed", skipped)
