"""Logs the emulated nodes write to the cluster's LogUri, gzipped as EMR writes them."""

from __future__ import annotations

import gzip
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from localdev.emr_emulator.staging import parse_s3_uri


def join_s3(base: str, *parts: str) -> str:
    """`base` URI and `parts` joined with single slashes."""
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def put_gzipped_logs(
    s3: Any,
    log_dir: str,
    files: Mapping[str, Path],
    on_error: Callable[[str, Exception], None] | None = None,
) -> None:
    """Upload each local file gzipped as `<log_dir>/<name>` (an s3:// URI; anything else is
    not uploaded). A refused upload goes to `on_error(name, error)` when given, else raises."""
    location = parse_s3_uri(log_dir)
    if location is None:
        return
    bucket, key = location
    for name, path in files.items():
        try:
            s3.put_object(
                Bucket=bucket, Key=join_s3(key, name), Body=gzip.compress(path.read_bytes())
            )
        except ClientError as exc:
            if on_error is None:
                raise
            on_error(name, exc)
