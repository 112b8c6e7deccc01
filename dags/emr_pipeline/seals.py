"""Seals: what the Airflow connection, and nothing on a cluster, vouches for.

Every cluster of the DAG runs with one instance role, which may write every run's folder and the
model cache: a cluster (or anyone on that role) could forge a run's report and features, or put
other weights into a cached model, and later runs would reuse them. So what a later run trusts
is sealed by the connection, in a folder the instance role may read but not write
(`<artifacts>/<dag_id>/seals/`, iam/emr-instance-role-policy.json):

* a run's seal (`seals/runs/<digest of the run's folder>.json`), written by the run's last task
  once the run passed and its cluster ended: the ETags of its features, rejects, featurize
  summary and report, what its vectors were made of and in which precisions. Only a sealed run
  is a base, and only while those objects are unchanged (checked in preflight, and by featurize
  again just before it reuses them);
* a model cache entry's seal (`seals/model-cache/<key>.json`): the sizes and SHA-256 of the
  entry's files, as the featurize step that exported them computed them. Featurize uses an entry
  only if its files match their seal, else exports again.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from emr_pipeline.job_contract import contract
from emr_pipeline.s3_reads import put_json, read_json, read_json_or_why
from emr_pipeline.uris import as_prefix, join_uri, split_s3_uri

SEALS_FOLDER = "seals"
RUN_SEALS, MODEL_SEALS = "runs", "model-cache"


def run_seal_uri(seals_uri: str, run_uri: str) -> str:
    """Where the seal of the run whose folder is `run_uri` lives."""
    digest = hashlib.sha256(as_prefix(run_uri).encode()).hexdigest()[:32]
    return join_uri(seals_uri, RUN_SEALS, f"{digest}.json")


def model_seals_uri(seals_uri: str) -> str:
    """The folder of the model cache entries' seals (featurize's --model-seals)."""
    return join_uri(seals_uri, MODEL_SEALS)


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
