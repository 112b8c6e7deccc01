"""What a run ships to S3 before the cluster starts, and where each piece lands.

Layout under s3://<artifacts>/<dag_id>/<run>/ (one folder per run, so a run's cluster always
executes the code that was deployed when the run started):

    jobs/featurize.py  jobs/pca.py  jobs/validate.py  jobs/imagefeatures.zip
    bootstrap/install-python-deps.sh  bootstrap/requirements-emr.txt  [bootstrap/constraints.txt]
    [weights/<name>.weights.h5]: a server-side copy of the run's weights file, where the nodes'
    instance role reads it as it reads the job code (and pinned for the run)

and one folder shared by the DAG's runs, s3://<artifacts>/<dag_id>/model-cache/: featurize's
exported OpenVINO models, one entry per weights and package versions (written by the nodes).
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emr_pipeline.job_contract import PACKAGE_NAME, load_job_module
from emr_pipeline.uris import join_uri, split_s3_uri

ENTRYPOINTS = ("featurize.py", "pca.py", "validate.py")
BOOTSTRAP_SCRIPT = "install-python-deps.sh"
REQUIREMENTS_FILE = "requirements-emr.txt"
CONSTRAINTS_FILE = "constraints.txt"
MODEL_CACHE_FOLDER = "model-cache"


@dataclass(frozen=True)
class ArtifactUris:
    """Where this run's artifacts live in S3 (a pure function of the run prefix)."""

    prefix: str

    def entrypoint(self, name: str) -> str:
        return join_uri(self.prefix, "jobs", name)

    @property
    def package_zip(self) -> str:
        return join_uri(self.prefix, "jobs", f"{PACKAGE_NAME}.zip")

    @property
    def bootstrap_script(self) -> str:
        return join_uri(self.prefix, "bootstrap", BOOTSTRAP_SCRIPT)

    @property
    def requirements(self) -> str:
        return join_uri(self.prefix, "bootstrap", REQUIREMENTS_FILE)

    @property
    def constraints(self) -> str:
        return join_uri(self.prefix, "bootstrap", CONSTRAINTS_FILE)

    def weights(self, name: str) -> str:
        return join_uri(self.prefix, "weights", name)


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
