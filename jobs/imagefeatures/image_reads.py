"""Reading one image by the manifest's row, in a Python worker: its bytes, or why there are none.

The manifest fixed each image's size and ETag when the run started. An object that is gone, or
no longer those bytes, when a worker reads it is a reject with that reason, never another
image's vector: S3 is asked for the manifest's ETag (`If-Match`), so a rewrite between the
listing and the read is refused by S3 itself, in the same request. Objects added since belong
to the next run.

S3 is read with boto3's default credential chain (the instance role on EMR; on the emulator
the node's environment names its endpoint, as IMDS names AWS's on a node); local files
(`file:` paths, for runs on a folder) are read and hashed here.
"""

from __future__ import annotations

import hashlib
import threading
from urllib.parse import urlsplit

from imagefeatures.images import EMPTY_FILE_ERROR

GONE = "gone since the run's manifest was made"
CHANGED = "changed since the run's manifest was made"
ARCHIVED = "archived (Glacier) since the run's manifest was made"
S3_SCHEMES = ("s3", "s3a", "s3n")
# GETs in flight per Python worker: S3's latency (tens of ms per small object) hidden behind
# the model, which takes about 0.2 s per batch of 32.
READ_THREADS = 16
# Error codes that concern one object: a reject. Any other refusal (a role without
# s3:GetObject, a wrong region) fails the task, as it would fail every image.
_GONE_CODES = ("NoSuchKey", "404", "NotFound")
_CHANGED_CODES = ("PreconditionFailed", "412")
_ARCHIVED_CODES = ("InvalidObjectState",)

_clients: dict[str | None, object] = {}
_clients_lock = threading.Lock()


class ImageRead:
    """The bytes of one image, or the reason it has none (exactly one is set)."""

    __slots__ = ("content", "error")

    def __init__(self, content: bytes | None = None, error: str | None = None) -> None:
        self.content, self.error = content, error


def split_s3_path(path: str) -> tuple[str, str] | None:
    """(bucket, key) of an s3:// path, the key exactly as written; None for other schemes."""
    scheme, _, rest = path.partition("://")
    if scheme not in S3_SCHEMES or not rest:
        return None
    bucket, _, key = rest.partition("/")
    return bucket, key


def local_file_path(path: str) -> str:
    """The file system path of a `file:` URI (file:/a/b or file:///a/b) or a plain path."""
    if path.startswith("file:"):
        return urlsplit(path).path
    return path


def file_etag(local_path: str) -> str:
    """The MD5 of a local file's bytes: S3's ETag of the same bytes uploaded in one part."""
    digest = hashlib.md5()
    with open(local_path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def s3_client(region: str | None):
    """One boto3 S3 client per worker process and region (clients are thread-safe)."""
    with _clients_lock:
        client = _clients.get(region)
        if client is None:
            import boto3
            from botocore.config import Config

            config = Config(
                retries={"mode": "adaptive", "max_attempts": 10},
                max_pool_connections=READ_THREADS,
            )
            client = boto3.client("s3", region_name=region, config=config)
            _clients[region] = client
        return client


def _error_code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


def read_s3_image(client, bucket: str, key: str, size: int, etag: str) -> ImageRead:
    """GET s3://bucket/key if its ETag is still the manifest's."""
    try:
        answer = client.get_object(Bucket=bucket, Key=key, IfMatch=f'"{etag}"')
        content = answer["Body"].read()
    except client.exceptions.ClientError as exc:
        code = _error_code(exc)
        if code in _GONE_CODES:
            return ImageRead(error=GONE)
        if code in _CHANGED_CODES:
            return ImageRead(error=f"{CHANGED} (its ETag is no longer {etag})")
        if code in _ARCHIVED_CODES:
            return ImageRead(error=ARCHIVED)
        raise
    if len(content) != size:
        return ImageRead(error=f"{CHANGED} ({len(content)} bytes, the manifest says {size})")
    return ImageRead(content=content)


def read_local_image(path: str, size: int, etag: str) -> ImageRead:
    local = local_file_path(path)
    try:
        with open(local, "rb") as handle:
            content = handle.read()
    except FileNotFoundError:
        return ImageRead(error=GONE)
    if len(content) != size:
        return ImageRead(error=f"{CHANGED} ({len(content)} bytes, the manifest says {size})")
    if hashlib.md5(content).hexdigest() != etag:
        return ImageRead(error=f"{CHANGED} (its MD5 is no longer {etag})")
    return ImageRead(content=content)


def read_image(path: str, size: int, etag: str, region: str | None = None) -> ImageRead:
    """The image at `path` as the manifest recorded it (`size` bytes, `etag`), or the reason
    it cannot be had. An empty image is a reject without a request."""
    if size == 0:
        return ImageRead(error=EMPTY_FILE_ERROR)
    location = split_s3_path(path)
    if location is None:
        return read_local_image(path, size, etag)
    return read_s3_image(s3_client(region), *location, size, etag)
