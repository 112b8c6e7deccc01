"""S3 URIs: parsing, joining, normalising as Hadoop does, and the run's key."""

from __future__ import annotations

import hashlib
import re

from emr_pipeline.parameter import InvalidRunOptionsError

# EMR reports LogUri with the s3n:// scheme, users sometimes write s3a://: all name S3.
_S3_SCHEMES = ("s3://", "s3n://", "s3a://")

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")

_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9._-]+")

_MAX_RUN_KEY = 120

_RUN_KEY_HASH = 16  # 64 bits of the id's SHA-256

# In an S3 key: `:` breaks Hadoop's Path ("Relative path in absolute URI"), and Spark reads the
# input path as a glob pattern, so these characters would select other prefixes than written.
_HADOOP_UNSAFE = re.compile(r"[:*?\[\]{}\\]")


def split_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of an s3:// (or s3n://, s3a://) URI; the key may be empty."""
    for scheme in _S3_SCHEMES:
        if uri.startswith(scheme):
            bucket, _, key = uri[len(scheme) :].partition("/")
            if not _BUCKET.fullmatch(bucket):
                raise ValueError(f"not a valid S3 bucket name in {uri!r}")
            return bucket, key
    raise ValueError(f"expected an s3:// URI, got {uri!r}")


def join_uri(base: str, *parts: str) -> str:
    """`base` and `parts` joined by single slashes (URIs are not OS paths)."""
    pieces = [base.rstrip("/"), *(p.strip("/") for p in parts if p.strip("/"))]
    return "/".join(pieces)


def as_prefix(uri: str) -> str:
    """The URI with exactly one trailing slash: a "folder" to list or to write under."""
    return uri.rstrip("/") + "/"


def run_key(run_id: str, deployment_id: str = "") -> str:
    """A path segment for the run: the deployment's id and a readable form of run_id, plus a
    hash of both, exactly.

    Airflow 3 manual runs may have no logical date, so outputs are keyed by run_id, which
    every run has and which is unique per DAG, in one deployment: two Airflow deployments
    (staging and prod) name their runs alike, so the deployment's id comes first. The readable
    part replaces anything but [A-Za-z0-9._-], so `a:b`, `a/b` and `a_b` read alike; the hash
    of the whole id keeps them (and a hand-typed id that copies another run's key) apart.
    """
    exact = f"{deployment_id}\0{run_id}" if deployment_id else run_id
    digest = hashlib.sha256(exact.encode()).hexdigest()[:_RUN_KEY_HASH]
    readable = _UNSAFE_KEY_CHARS.sub("_", run_id).strip("._") or "run"
    if deployment_id:
        readable = f"{deployment_id}__{readable}"
    return f"{readable[: _MAX_RUN_KEY - _RUN_KEY_HASH - 1]}-{digest}"


def normalize_s3_uri(uri: str) -> str:
    """`uri` as Hadoop's Path resolves it, written s3://bucket/key (no trailing slash).

    s3n:// and s3a:// become s3://, repeated slashes collapse, `.` segments go and `..`
    removes the segment before it; a `..` above the bucket is a ValueError.
    """
    bucket, key = split_s3_uri(uri)
    segments: list[str] = []
    for segment in key.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if not segments:
                raise ValueError(f"{uri!r} climbs above its bucket with '..'")
            segments.pop()
            continue
        segments.append(segment)
    return "/".join([f"s3://{bucket}", *segments]) if segments else f"s3://{bucket}"


def overlaps(first: str, second: str) -> bool:
    """True when one URI's prefix holds the other's, or they are the same (normalised).

    Compared by whole segments: s3://b/fruits and s3://b/fruitsalad do not overlap.
    """
    a, b = normalize_s3_uri(first) + "/", normalize_s3_uri(second) + "/"
    return a.startswith(b) or b.startswith(a)


def hadoop_safe_s3_uri(name: str, value: str) -> str:
    """`value` normalised as Hadoop resolves it; InvalidRunOptionsError naming `name` when it is
    not an s3:// URI or holds a character Hadoop or Spark read differently from S3."""
    try:
        _, key = split_s3_uri(value)
        normalized = normalize_s3_uri(value)
    except ValueError as exc:
        raise InvalidRunOptionsError(f"{name}: {exc}") from exc
    bad = sorted(set(_HADOOP_UNSAFE.findall(key)))
    if bad:
        raise InvalidRunOptionsError(
            f"{name}: {value!r} holds {' '.join(bad)}, which Hadoop or Spark cannot read as "
            "written (':' breaks Hadoop paths; * ? [ ] { } \\ are glob patterns)"
        )
    return normalized


def check_prefixes_apart(prefixes: dict[str, str]) -> None:
    """No two of the named prefixes may hold one another (or be the same), compared as Hadoop
    resolves them. Output inside input makes the next run read our outputs as images; input
    inside output puts the input where a run's output is cleared; logs or job code inside
    either mix with the data."""
    names = list(prefixes)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            if overlaps(prefixes[first], prefixes[second]):
                raise InvalidRunOptionsError(
                    f"{first} ({prefixes[first]}) and {second} ({prefixes[second]}) overlap: "
                    "one holds the other. Choose prefixes apart, so that no run reads or "
                    "deletes what another part of the pipeline wrote"
                )
