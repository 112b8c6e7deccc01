"""What a run ships to S3 before its cluster starts (the layout: emr_pipeline.plan): the job
entrypoints, the jobs package zip, bootstrap/ and a server-side copy of the weights file, in one
folder per run, so a run's cluster always executes the code deployed when the run started.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emr_pipeline.contract import PACKAGE_NAME, load_job_module
from emr_pipeline.plan import BOOTSTRAP_SCRIPT, CONSTRAINTS_FILE, REQUIREMENTS_FILE
from emr_pipeline.uris import join_uri, split_s3_uri

ENTRYPOINTS = ("featurize.py", "pca.py", "validate.py")


def local_artifacts(
    jobs_dir: Path, bootstrap_dir: Path, workdir: Path, constraints: Path | None = None
) -> dict[str, Path]:
    """{relative key: local file} for every artifact; the zip is built into `workdir`."""
    files = {f"jobs/{name}": jobs_dir / name for name in ENTRYPOINTS}
    archive = workdir / f"{PACKAGE_NAME}.zip"
    load_job_module(jobs_dir, "packaging").build_package_zip(archive, jobs_dir / PACKAGE_NAME)
    files[f"jobs/{PACKAGE_NAME}.zip"] = archive
    files[f"bootstrap/{BOOTSTRAP_SCRIPT}"] = bootstrap_dir / BOOTSTRAP_SCRIPT
    files[f"bootstrap/{REQUIREMENTS_FILE}"] = bootstrap_dir / REQUIREMENTS_FILE
    if constraints is not None:
        files[f"bootstrap/{CONSTRAINTS_FILE}"] = constraints
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"artifacts missing on this worker: {', '.join(missing)}")
    return files


def _unchanged(
    s3: Any, bucket: str, key: str, data: bytes, encryption: dict[str, str] | None = None
) -> bool:
    """True when the object already holds these bytes (single-part ETag = MD5), encrypted
    as asked."""
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError:
        return False
    wanted = (encryption or {}).get("ServerSideEncryption")
    if wanted and head.get("ServerSideEncryption") != wanted:
        return False
    return head.get("ETag", "").strip('"') == hashlib.md5(data).hexdigest()


def upload_artifacts(
    s3: Any,
    prefix: str,
    jobs_dir: Path,
    bootstrap_dir: Path,
    constraints: Path | None = None,
    encryption: dict[str, str] | None = None,
) -> dict[str, str]:
    """Upload every artifact under `prefix` with a boto3 S3 client; {key: "uploaded"|"unchanged"}.

    Idempotent: a retry re-puts only what differs, and the zip's bytes are reproducible.
    `encryption` (e.g. {"ServerSideEncryption": "AES256"}) is passed to every put.
    """
    bucket, base_key = split_s3_uri(prefix)
    outcome: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="fruit-emr-") as workdir:
        files = local_artifacts(jobs_dir, bootstrap_dir, Path(workdir), constraints)
        for relative, path in sorted(files.items()):
            key = join_uri(base_key, relative) if base_key.strip("/") else relative
            data = path.read_bytes()
            if _unchanged(s3, bucket, key, data, encryption):
                outcome[key] = "unchanged"
                continue
            s3.put_object(Bucket=bucket, Key=key, Body=data, **(encryption or {}))
            outcome[key] = "uploaded"
    return outcome


def copy_weights(
    s3: Any, source_uri: str, copy_uri: str, encryption: dict[str, str] | None = None
) -> str:
    """Server-side copy of the weights file into the run's artifacts; "copied"|"unchanged"."""
    bucket, key = split_s3_uri(source_uri)
    copy_bucket, copy_key = split_s3_uri(copy_uri)
    source = s3.head_object(Bucket=bucket, Key=key)
    try:
        existing = s3.head_object(Bucket=copy_bucket, Key=copy_key)
    except s3.exceptions.ClientError:
        existing = None
    if existing is not None and existing.get("ETag") == source.get("ETag"):
        return "unchanged"
    s3.copy({"Bucket": bucket, "Key": key}, copy_bucket, copy_key, ExtraArgs=dict(encryption or {}))
    return "copied"


def ship_artifacts(
    s3: Any,
    prefix: str,
    jobs_dir: Path,
    bootstrap_dir: Path,
    constraints: Path | None,
    encryption: dict[str, str],
    weights: tuple[str | None, str | None] = (None, None),
    say: Callable[[str], None] = print,
) -> dict[str, str]:
    """The upload_artifacts task: every artifact under `prefix`, and `weights` (the user's file,
    the run's copy of it) copied server-side; {key: what happened}, each said."""
    outcome = upload_artifacts(s3, prefix, jobs_dir, bootstrap_dir, constraints, encryption)
    for key, what in outcome.items():
        say(f"{what}: s3://{split_s3_uri(prefix)[0]}/{key}")
    weights_uri, copy_uri = weights
    if weights_uri and copy_uri:
        what = copy_weights(s3, weights_uri, copy_uri, encryption)
        say(f"{what}: {copy_uri} (from {weights_uri})")
        outcome[split_s3_uri(copy_uri)[1]] = what
    return outcome
