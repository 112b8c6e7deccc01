"""The DAG's S3 reads and writes: listings and JSON documents, and the error a refused read becomes.

Each read that S3 refuses (a missing bucket, a connection without the permission) becomes a
PreflightError naming the parameter or setting to change, instead of a retried ClientError.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from emr_pipeline.uris import as_prefix, split_s3_uri

NOT_FOUND = ("404", "NoSuchKey", "NotFound", "NoSuchBucket")

DENIED = ("403", "AccessDenied", "Forbidden", "AllAccessDisabled")

EXAMPLES = 5  # keys named in a message, at most


class PreflightError(RuntimeError):
    """The run must not start; the message says why and what to change."""


def error_code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


def list_objects(s3: Any, bucket: str, prefix: str, what: str, uri: str) -> Iterator[dict]:
    """Every object under `prefix`; a missing bucket or a refused listing is a PreflightError
    naming `what` (the parameter), not a retried ClientError."""
    for page in list_pages(s3, bucket, prefix, what, uri):
        yield from page.get("Contents", [])


def list_pages(
    s3: Any,
    bucket: str,
    prefix: str,
    what: str,
    uri: str,
    page_size: int | None = None,
    **list_args: Any,
) -> Iterator[dict]:
    """Each ListObjectsV2 answer under `prefix` (one request each), errors as list_objects'.

    `page_size` below S3's 1,000 only for tests; `list_args` e.g. Delimiter="/".
    """
    config = {"PageSize": page_size} if page_size else {}
    try:
        yield from s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, PaginationConfig=config, **list_args
        )
    except s3.exceptions.ClientError as exc:
        raise named_error(exc, what, uri) from exc


def named_error(exc: Exception, what: str, uri: str) -> Exception:
    """`exc` as a PreflightError naming `what` when S3 said the bucket is missing or refused
    the listing; `exc` itself otherwise."""
    code = error_code(exc)
    if code in NOT_FOUND:
        return PreflightError(f"{what}: the bucket of {uri} does not exist")
    if code in DENIED:
        return PreflightError(f"{what}: the Airflow connection may not list {uri} ({code})")
    return exc


def examples(keys: list[str], bucket: str, total: int | None = None) -> str:
    """The first few of `keys` as URIs, and how many more there are (of `total`, when only
    the first few keys were kept)."""
    total = len(keys) if total is None else total
    shown = ", ".join(f"s3://{bucket}/{key}" for key in keys[:EXAMPLES])
    more = f" and {total - EXAMPLES} more" if total > EXAMPLES else ""
    return shown + more


def read_json(s3: Any, bucket: str, key: str) -> dict | None:
    """The JSON object at `key`; None when there is no such key, {} when it is not one."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    try:
        found = json.loads(body)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def read_json_or_why(s3: Any, bucket: str, key: str) -> tuple[dict | None, str]:
    """(read_json's answer, "") or (None, why the object exists but cannot be read: archived
    to Glacier, or encrypted under a KMS key the connection may not use, or denied)."""
    try:
        return read_json(s3, bucket, key), ""
    except Exception as exc:  # botocore's ClientError; other errors propagate
        code = error_code(exc)
        if code == "InvalidObjectState":
            return None, "archived (InvalidObjectState: restore it to read it)"
        if code in DENIED or code.startswith("KMS."):
            return None, f"unreadable by this connection ({code}: e.g. a KMS key it may not use)"
        raise


def require_bucket(s3: Any, uri: str, what: str) -> None:
    """Fail clearly when the bucket of `uri` is missing (EMR would only fail much later).

    A listing of the URI's own prefix (one key at most), not HeadBucket: HeadBucket needs
    s3:ListBucket on the whole bucket, which the connection's policy grants only per prefix.
    """
    bucket, key = split_s3_uri(uri)
    try:
        s3.list_objects_v2(Bucket=bucket, Prefix=as_prefix(key), MaxKeys=1)
    except s3.exceptions.ClientError as exc:
        raise named_error(exc, what, uri) from exc


def put_json(s3: Any, uri: str, document: dict[str, Any], encryption: dict[str, str]) -> None:
    """Write `document` to `uri` as the validate job writes report.json (imagefeatures.storage:
    indented, keys sorted), so that a rewrite of a report only adds."""
    bucket, key = split_s3_uri(uri)
    body = (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json", **encryption)
