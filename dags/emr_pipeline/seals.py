"""Seals, and the base run they allow: what the Airflow connection, and nothing on a cluster,
vouches for.

Every cluster of the DAG runs with one instance role, which may write every run's folder and the
model cache: a cluster could forge a run's report and features, or put other weights into a
cached model. So what a later run trusts is sealed by the connection, in a folder the instance
role may read but not write (`<artifacts>/<dag_id>/seals/`, iam/emr-instance-role-policy.json):

* a run's seal, written by the run's last task once it passed and its cluster ended: the ETags
  of its features, rejects, featurize summary and report, what its vectors were made of and in
  which precisions;
* a model cache entry's seal: the sizes and SHA-256 of the entry's files, as the featurize step
  that exported them computed them.

An incremental run's base is the latest sealed earlier run of this DAG whose sealed objects are
unchanged, made for the same input and model, with vectors in the precision this run asks for.
What the seal says is used, never the folder's marker or report. Anything unreadable is skipped,
and the log says why. Featurize checks the seal again before it reuses anything
(jobs/imagefeatures/incremental.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from emr_pipeline.contract import contract
from emr_pipeline.options import RunOptions
from emr_pipeline.plan import RUN_MARKER, RunPlan, model_seals_uri, run_seal_uri
from emr_pipeline.s3 import put_json, read_json, read_json_or_why
from emr_pipeline.uris import as_prefix, join_uri, split_s3_uri


def sealed_objects(s3: Any, run_uri: str) -> dict[str, str]:
    """{key under the run's folder: ETag} of the objects a seal vouches for, as S3 lists them
    now (one listing of the folder)."""
    return contract.sealed_run_objects(s3, *split_s3_uri(as_prefix(run_uri)))


def seal_run(
    s3: Any,
    *,
    run_uri: str,
    seals_uri: str,
    identity: dict[str, str],
    features_of: dict[str, str],
    encryption: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Seal the passed run under `run_uri` (its `identity`: dag_id, deployment, run_id; what
    its vectors are made of, from the run's plan), and the model cache entry its featurize
    stored, if any. Returns the run's seal."""
    bucket, key = split_s3_uri(as_prefix(run_uri))
    report = read_json(s3, bucket, key + contract.REPORT) or {}
    if report.get("status") != "passed":
        raise ValueError(f"{run_uri} has no passed report: a run that did not pass is not sealed")
    summary = read_json(s3, bucket, key + contract.FEATURIZE_SUMMARY) or {}
    now = datetime.now(UTC).isoformat()
    seal = {
        "run_uri": as_prefix(run_uri),
        **identity,
        "sealed_at": now,
        "features_of": features_of,
        "vectors_per_precision": (report.get("model") or {}).get("vectors_per_precision"),
        "objects": sealed_objects(s3, run_uri),
    }
    put_json(s3, run_seal_uri(seals_uri, run_uri), seal, encryption or {})
    cache = summary.get("model_cache") or {}
    if cache.get("stored") and isinstance(cache.get("digests"), dict):
        model_seal = {"key": cache["key"], "files": cache["digests"], "sealed_at": now}
        model_seal["exported_by"] = as_prefix(run_uri)
        name = contract.model_seal_name(cache["key"])
        put_json(s3, join_uri(model_seals_uri(seals_uri), name), model_seal, encryption or {})
    return seal


def check_run_seal(s3: Any, seals_uri: str, run_uri: str) -> tuple[dict[str, Any] | None, str]:
    """(the seal of the run under `run_uri`, "") when it has one and every object it vouches
    for is unchanged; (None, why not) otherwise."""
    uri = run_seal_uri(seals_uri, run_uri)
    bucket, key = split_s3_uri(uri)
    seal, unreadable = read_json_or_why(s3, bucket, key)
    if unreadable:
        return None, f"its seal {uri} is {unreadable}"
    if seal is None:
        return None, (
            "it has no seal (its last task, seal_run, never ran: it failed, was failed by hand, "
            "or is still running)"
        )
    if seal.get("run_uri") != as_prefix(run_uri):
        return None, f"its seal {uri} names another folder ({seal.get('run_uri')})"
    changed = contract.seal_problem(seal.get("objects") or {}, sealed_objects(s3, run_uri))
    if changed:
        return None, changed
    return seal, ""


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
