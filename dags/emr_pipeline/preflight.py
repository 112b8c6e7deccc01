"""Checks made before any money is spent: the input holds images, the output is free.

Functions take a boto3 S3 client (the DAG passes the one from its Airflow connection), so
tests run them against moto.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from emr_pipeline.plan import RunPlan
from emr_pipeline.uris import as_prefix, split_s3_uri

log = logging.getLogger(__name__)

# Same rule as IMAGE_NAME_PATTERN in jobs/imagefeatures/images.py (that module needs numpy/PIL).
IMAGE_NAME_PATTERN = re.compile(r"(?i)\.(jpg|jpeg|png)$")


class PreflightError(RuntimeError):
    """The run must not start; the message says why and what to change."""


@dataclass(frozen=True)
class InputListing:
    images: int
    labels: dict[str, int]  # images per label (= parent folder)


def _error_code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


def list_images(s3: Any, input_uri: str) -> InputListing:
    """Count the images under `input_uri`, per label; fail if the bucket is missing or empty."""
    bucket, key = split_s3_uri(input_uri)
    prefix = as_prefix(key) if key.strip("/") else ""
    labels: dict[str, int] = {}
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                name = obj["Key"]
                if IMAGE_NAME_PATTERN.search(name):
                    parts = name.split("/")
                    label = parts[-2] if len(parts) > 1 else ""
                    labels[label] = labels.get(label, 0) + 1
    except s3.exceptions.NoSuchBucket as exc:
        raise PreflightError(f"input bucket {bucket!r} does not exist ({input_uri})") from exc
    except s3.exceptions.ClientError as exc:
        if _error_code(exc) in ("NoSuchBucket", "404"):
            raise PreflightError(f"input bucket {bucket!r} does not exist ({input_uri})") from exc
        raise
    if not labels:
        raise PreflightError(f"input {input_uri} holds no .jpg, .jpeg or .png image")
    return InputListing(images=sum(labels.values()), labels=dict(sorted(labels.items())))


def _read_json(s3: Any, bucket: str, key: str) -> dict | None:
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return {}


def require_bucket(s3: Any, uri: str, what: str) -> None:
    """Fail clearly when the bucket of `uri` is missing (EMR would only fail much later)."""
    bucket, _ = split_s3_uri(uri)
    try:
        s3.head_bucket(Bucket=bucket)
    except s3.exceptions.ClientError as exc:
        if _error_code(exc) in ("404", "NoSuchBucket", "NotFound"):
            raise PreflightError(f"{what} bucket {bucket!r} does not exist ({uri})") from exc
        raise


def check_output_free(s3: Any, output_uri: str, report_uri: str, overwrite: bool) -> str:
    """Make sure this run may write under `output_uri`; returns what was found, for the log.

    A passed report.json means the run already finished: refuse unless `overwrite`. Any
    leftover report (a failed attempt, or the one being overwritten) is deleted, so the
    report sensor can only ever see the report this attempt writes.
    """
    require_bucket(s3, output_uri, "output")
    bucket, key = split_s3_uri(report_uri)
    report = _read_json(s3, bucket, key)
    if report is None:
        return f"{output_uri} holds no report: free"
    if report.get("status") == "passed" and not overwrite:
        raise PreflightError(
            f"{output_uri} already holds a finished run ({report_uri}); "
            "trigger with overwrite=true to run it again"
        )
    s3.delete_object(Bucket=bucket, Key=key)
    return f"removed the earlier report {report_uri} (status {report.get('status')!r})"


def check_run(s3: Any, input_uri: str, plan: RunPlan, overwrite: bool) -> InputListing:
    """Every preflight check, in order of what is most likely wrong; logs what it found."""
    listing = list_images(s3, input_uri)
    log.info("%d images in %d labels under %s", listing.images, len(listing.labels), input_uri)
    log.info("%s", check_output_free(s3, plan.output_uri, plan.report_uri, overwrite))
    require_bucket(s3, plan.artifacts_uri, "artifacts")
    log.info("run output: %s  artifacts: %s", plan.output_uri, plan.artifacts_uri)
    return listing
