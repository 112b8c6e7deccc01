"""Everything a run does before money is spent (`run_preflight`, the preflight task's body): check
the parameters and settings, fix the plan and the input's manifest, choose the base run, end
what an earlier attempt of the run left running, claim the run's output prefix.

Every refusal comes before anything is written, deleted or started: the checks only read, and
only a run that passed them all claims its prefix (its marker first, then what an earlier
attempt wrote there is cleared, never anything this run did not write).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from emr_pipeline.cluster import run_tags
from emr_pipeline.contract import contract
from emr_pipeline.listing import InputManifest, build_manifest
from emr_pipeline.options import RunOptions, check_worker_support
from emr_pipeline.parameter import InvalidRunOptionsError
from emr_pipeline.plan import COSTS_FOLDER, RUN_MARKER, RunPlan, make_plan
from emr_pipeline.run_clusters import end_earlier_attempts
from emr_pipeline.s3 import (
    DENIED,
    NOT_FOUND,
    PreflightError,
    error_code,
    examples,
    list_objects,
    read_json,
    require_bucket,
)
from emr_pipeline.seals import base_for_run
from emr_pipeline.settings import DeploymentIdError, DeploymentSettings, with_deployment_id
from emr_pipeline.uris import as_prefix, join_uri, split_s3_uri


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


# A verdict on the run's inputs, not a hiccup: the task fails without retrying.
REFUSALS = (InvalidRunOptionsError, PreflightError, DeploymentIdError)


def run_preflight(
    s3: Any,
    emr: Any,
    params: Mapping[str, Any],
    *,
    dag_id: str,
    run_id: str,
    owner: str,
    with_constraints: bool,
    variable: Callable[[str], str | None],
    store: Callable[[str, str], None],
    say: Callable[[str], None] = log.info,
) -> dict[str, Any]:
    """The preflight task: the run's plan as XCom (and its manifest's image count), once every
    check passed, the earlier attempts' clusters ended and the run's prefix claimed. Raises one
    of REFUSALS when the run must not start. `variable(name)`: an Airflow Variable or None;
    `store(name, value)` keeps the deployment id made at a deployment's first run."""
    options = RunOptions.from_params(params)
    check_worker_support(options)
    deployment = with_deployment_id(DeploymentSettings.resolve(variable), store=store)
    plan = make_plan(
        options,
        deployment,
        dag_id=dag_id,
        run_id=run_id,
        owner=owner,
        with_constraints=with_constraints,
    )
    # The run's input, fixed once: every step reads this manifest, none lists the input.
    manifest = check_run(s3, plan, options.input_uri, dag_id, run_id, options.overwrite, say=say)
    with manifest:  # its local file goes whatever happens below
        # Incremental: featurize reuses this earlier run's vectors of unchanged images.
        base = base_for_run(s3, options, plan, dag_id)
        say(base.describe())
        if base.uri:  # featurize checks the base's seal again before it reuses anything
            plan = plan.with_base(options, base.uri, base.seal_uri)
        else:  # featurize keeps the reason in its summary, and so in report.json
            plan = plan.with_base(options, full_run_reason=base.reason)
        # The run starts (again): a cluster an earlier attempt of this run left behind ends
        # first, and the run's prefix starts empty but for its marker and costs.
        tags = run_tags(plan.job_flow_overrides["Tags"])
        ended = end_earlier_attempts(emr, tags, poll_seconds=options.poke_interval_seconds)
        if ended:
            say(f"terminated clusters left running by an earlier attempt of this run: {ended}")
        removed = claim_run_prefix(s3, plan, dag_id, run_id, plan.s3_encryption)
        if removed:
            say(f"removed {removed} objects of an earlier attempt under {plan.output_uri}")
        written = publish_manifest(s3, manifest, plan.output_uri, plan.s3_encryption)
        say(f"the run's manifest: {written} ({manifest.images} images)")
    return {**plan.as_xcom(), "images": manifest.images}
