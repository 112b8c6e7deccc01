"""Which earlier run's features an incremental run may reuse: its base run.

A base must be a run of this DAG (its marker names the DAG) sealed by the Airflow connection
(emr_pipeline.seals: its last task ran, so it passed and its cluster ended), whose sealed
objects are unchanged since, made for the same input and model (the seal's `features_of`:
input_uri, weights, runtime), with vectors made in the precision this run asks for (what ran,
not what that run asked: bf16 asked on a CPU without it made f32 vectors): never a run that
failed, was failed by hand or is still running, a run whose report or features a cluster wrote
or rewrote, another DAG's output or another input's. What the seal says is used, not the
folder's marker or report, which the clusters' instance role could rewrite. Of those, the
latest by the time its marker was written (when the run started). Anything unreadable is
skipped, and the log says why. Featurize checks the seal again before it reuses anything, and
the model and the code by digest, and each vector's precision, so a weights file rewritten in
place still gets a full run (jobs/imagefeatures/incremental.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from emr_pipeline.options import RunOptions
from emr_pipeline.plan import RunPlan
from emr_pipeline.run_prefix import RUN_MARKER
from emr_pipeline.s3_reads import read_json_or_why
from emr_pipeline.seals import check_run_seal, run_seal_uri
from emr_pipeline.uris import as_prefix, split_s3_uri


@dataclass(frozen=True)
class BaseChoice:
    uri: str | None  # the base run's output prefix; None: a full run
    reason: str  # what was chosen, or why there is none
    skipped: list[str] = field(default_factory=list)  # newer runs passed over, and why
    seal_uri: str | None = None  # the base's seal, which featurize checks again

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
    s3: Any, seals_uri: str, run_uri: str, marker: dict, dag_id: str, wanted: dict[str, str]
) -> str:
    """Why this run cannot be the base; "" when it can."""
    if not marker:
        return f"its marker {RUN_MARKER} is unreadable"
    if marker.get("dag_id") != dag_id:
        return f"another DAG's run ({marker.get('dag_id')!r})"
    seal, why = check_run_seal(s3, seals_uri, run_uri)
    if seal is None:
        return why
    made_for = seal.get("features_of")
    if not isinstance(made_for, dict):
        return "its seal does not say what its features were made of"
    # The precision is checked against what ran, not what that run asked for.
    differs = sorted(
        name for name in wanted if name != "precision" and made_for.get(name) != wanted[name]
    )
    if differs:
        return f"its {', '.join(differs)} differ"
    made_in = seal.get("vectors_per_precision")
    if not isinstance(made_in, dict):
        return "its seal does not say which precision made its vectors"
    if not made_in.get(wanted["precision"]):
        return f"none of its vectors were made in {wanted['precision']} ({made_in})"
    return ""


def base_for_run(s3: Any, options: RunOptions, plan: RunPlan, dag_id: str) -> BaseChoice:
    """The run's base as its params ask: none for full_refresh or incremental=false."""
    if options.full_refresh:
        return BaseChoice(None, "full_refresh=true: every image is featurized")
    if not options.incremental:
        return BaseChoice(None, "incremental=false: every image is featurized")
    return choose_base_run(
        s3, options.output_uri, plan.output_uri, dag_id, plan.features_of, plan.seals_uri
    )


def choose_base_run(
    s3: Any,
    output_root: str,
    run_output_uri: str,
    dag_id: str,
    wanted: dict[str, str],
    seals_uri: str,
) -> BaseChoice:
    """The latest sealed earlier run under `output_root` whose features this run may reuse."""
    bucket, key = split_s3_uri(as_prefix(output_root))
    root = as_prefix(key) if key.strip("/") else ""
    this_run = split_s3_uri(run_output_uri)[1]
    folders = [f for f in _run_folders(s3, bucket, root) if as_prefix(f) != as_prefix(this_run)]
    marked, skipped = _markers_newest_first(s3, bucket, folders)
    for folder, marker in marked:
        uri = f"s3://{bucket}/{folder}"
        why = _why_not(s3, seals_uri, uri, marker, dag_id, wanted)
        if not why:
            reason = "the latest earlier run of this input and model, sealed"
            return BaseChoice(uri, reason, skipped, run_seal_uri(seals_uri, uri))
        skipped.append(f"{uri}: {why}")
    return BaseChoice(None, "no earlier run of this input and model passed", skipped)
