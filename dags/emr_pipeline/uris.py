"""S3 URIs: parsing, joining, and the run-scoped prefixes every run writes under."""

from __future__ import annotations

import hashlib
import re

# EMR reports LogUri with the s3n:// scheme, users sometimes write s3a://: all name S3.
_S3_SCHEMES = ("s3://", "s3n://", "s3a://")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_RUN_KEY = 120


def split_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of an s3:// (or s3n://, s3a://) URI; the key may be empty."""
    for scheme in _S3_SCHEMES:
        if uri.startswith(scheme):
            bucket, _, key = uri[len(scheme) :].partition("/")
            if not _BUCKET.match(bucket):
                raise ValueError(f"not a valid S3 bucket name in {uri!r}")
            return bucket, key
    raise ValueError(f"expected an s3:// URI, got {uri!r}")


def s3_uri(bucket: str, key: str = "") -> str:
    return f"s3://{bucket}/{key.lstrip('/')}"


def join_uri(base: str, *parts: str) -> str:
    """`base` and `parts` joined by single slashes (URIs are not OS paths)."""
    pieces = [base.rstrip("/"), *(p.strip("/") for p in parts if p.strip("/"))]
    return "/".join(pieces)


def as_prefix(uri: str) -> str:
    """The URI with exactly one trailing slash: a "folder" to list or to write under."""
    return uri.rstrip("/") + "/"


def run_key(run_id: str) -> str:
    """A path segment for the run: run_id with anything but [A-Za-z0-9._-] replaced.

    Airflow 3 manual runs may have no logical date, so outputs are keyed by run_id, which
    every run has and which is unique per DAG. Long ids keep a hash so they stay unique.
    """
    key = _UNSAFE_KEY_CHARS.sub("_", run_id).strip("._") or "run"
    if len(key) > _MAX_RUN_KEY:
        digest = hashlib.sha256(run_id.encode()).hexdigest()[:12]
        key = f"{key[: _MAX_RUN_KEY - 13]}-{digest}"
    return key
