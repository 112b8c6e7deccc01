"""The run's input, fixed once before any cluster exists: its manifest (one row per image).

Preflight lists the input once (or reads the deployment's S3 Inventory report) and writes
every image's key, size, ETag and last modification to a local parquet file, a row group at a
time; `preflight.publish_manifest` puts it under the run's prefix, and every step reads it
instead of the bucket. Keys are taken as they are: the executors read them by key with boto3,
so no Hadoop listing rule (hidden `_`/`.` names, `:`, `//`) decides what a run sees.

Memory stays flat in the number of objects: nothing holds one entry per key beyond the
writer's current row group and a few example keys for messages.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emr_pipeline import inventory
from emr_pipeline.job_contract import contract, manifest_format
from emr_pipeline.s3_reads import EXAMPLES, PreflightError, examples, list_pages
from emr_pipeline.uris import as_prefix, split_s3_uri

IMAGE_NAME_PATTERN = contract.IMAGE_NAME_PATTERN  # what featurize reads as an image


@dataclass
class InputManifest:
    """The manifest written to `local_path` (a temporary file) and its summary."""

    summary: Any  # the manifest format's ManifestSummary (loaded by path: job_contract)
    local_path: Path

    @property
    def images(self) -> int:
        return self.summary.images

    @property
    def labels(self) -> dict[str, int]:
        return self.summary.labels

    def describe(self) -> str:
        """What preflight logs: the count, and where it came from."""
        said = f"{self.images} images in {len(self.labels)} labels under {self.summary.input_uri}"
        if self.summary.inventory:
            said += f" from the S3 Inventory report of {self.summary.inventory['created']}"
        return said

    def discard(self) -> None:
        """Remove the local file (once published, or when the run is refused)."""
        self.local_path.unlink(missing_ok=True)

    def __enter__(self) -> InputManifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()  # whatever happened: a task that fails leaves no file on the worker


@dataclass
class _Examples:
    """A count of keys and the first few of them, for a message (never every key)."""

    count: int = 0
    keys: list[str] = field(default_factory=list)

    def add(self, key: str) -> None:
        self.count += 1
        if len(self.keys) < EXAMPLES:
            self.keys.append(key)


def build_manifest(
    s3: Any,
    input_uri: str,
    max_image_bytes: int | None = None,
    inventory_uri: str | None = None,
    page_size: int | None = None,
) -> InputManifest:
    """The manifest of the images under `input_uri`: listed with ListObjectsV2 (one pass), or
    read from the latest report under `inventory_uri` when the deployment names one.

    Refuses an input with no image, and images over `max_image_bytes` (with examples).
    `page_size`: keys per LIST request, below S3's 1,000 only for tests.
    """
    fmt = manifest_format()
    bucket, key = split_s3_uri(input_uri)
    prefix = as_prefix(key) if key.strip("/") else ""
    input_uri = as_prefix(input_uri)  # shown as the folder it is
    summary = fmt.ManifestSummary(
        input_uri=input_uri, source=fmt.FROM_LISTING, region=s3.meta.region_name
    )
    requests = inventory.Requests()
    if inventory_uri:
        report = inventory.latest_report(s3, inventory_uri, requests)
        if report.source_bucket != bucket:
            raise PreflightError(
                f"{inventory.SETTING}: its S3 Inventory report {report.uri} lists the bucket "
                f"{report.source_bucket}, not the input's ({bucket}); name the inventory "
                f"configuration of s3://{bucket}"
            )
        summary.source = fmt.FROM_INVENTORY
        summary.inventory = {"manifest": report.uri, "created": report.created}
        rows: Iterable[inventory.Row] = inventory.report_rows(s3, report, prefix, requests)
    else:
        rows = _listed_rows(s3, bucket, prefix, input_uri, requests, page_size)
    handle, name = tempfile.mkstemp(prefix="manifest-", suffix=".parquet")
    os.close(handle)
    manifest = InputManifest(summary=summary, local_path=Path(name))
    try:
        too_large = _write(fmt, manifest, bucket, prefix, rows, max_image_bytes)
        summary.list_requests = requests.count
        _refuse(manifest, bucket, too_large, max_image_bytes)
    except BaseException:
        manifest.discard()
        raise
    return manifest


def _listed_rows(
    s3: Any,
    bucket: str,
    prefix: str,
    input_uri: str,
    requests: inventory.Requests,
    page_size: int | None,
) -> Iterable[inventory.Row]:
    for page in list_pages(s3, bucket, prefix, "input_uri", input_uri, page_size):
        requests.count += 1
        for obj in page.get("Contents", ()):
            yield obj["Key"], obj["Size"], obj["ETag"], obj["LastModified"]


def _write(
    fmt: Any,
    manifest: InputManifest,
    bucket: str,
    prefix: str,
    rows: Iterable[inventory.Row],
    max_image_bytes: int | None,
) -> _Examples:
    """Every image of `rows` into the manifest; the ones over the limit as examples."""
    too_large = _Examples()
    matches = IMAGE_NAME_PATTERN.search
    with fmt.ManifestWriter(manifest.local_path, manifest.summary) as writer:
        for key, size, etag, modified in rows:
            # A console "folder" (a key ending in '/') is no image, whatever its name.
            if key.endswith("/") or not key.startswith(prefix) or not matches(key):
                continue
            if max_image_bytes is not None and size > max_image_bytes:
                too_large.add(key)
                continue
            writer.add(f"s3://{bucket}/{key}", key, size, etag, modified)
    return too_large


def _refuse(
    manifest: InputManifest, bucket: str, too_large: _Examples, max_image_bytes: int | None
) -> None:
    input_uri = manifest.summary.input_uri
    if too_large.count:
        raise PreflightError(
            f"input_uri: {too_large.count} images under {input_uri} are larger than "
            f"{max_image_bytes} bytes (deployment setting max_image_bytes; featurize cannot "
            f"hold a larger file in one row): {examples(too_large.keys, bucket, too_large.count)}"
        )
    if not manifest.images:
        source = ""
        if manifest.summary.inventory:
            source = f" in the S3 Inventory report {manifest.summary.inventory['manifest']}"
        raise PreflightError(f"input {input_uri} holds no {contract.IMAGE_KINDS} image{source}")
