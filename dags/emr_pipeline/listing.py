"""The run's input, fixed once: its manifest, from a listing of the input or from the latest S3
Inventory report of its bucket (for catalogues too large to list per run).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from emr_pipeline.contract import contract, manifest_format
from emr_pipeline.s3 import (
    DENIED,
    EXAMPLES,
    NOT_FOUND,
    PreflightError,
    error_code,
    examples,
    list_pages,
)
from emr_pipeline.uris import as_prefix, split_s3_uri

SETTING = "deployment setting inventory_uri"

# A report's folder: the time its scan began, e.g. 2016-11-06T21-32Z (sorts by time).
REPORT_FOLDER = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}-\d{2}Z")

READABLE_FORMATS = ("CSV", "Parquet")

# AWS spells one schema twice: fileSchema's CSV field names, and Parquet's column names.
CSV_FIELDS = {
    "Bucket": "bucket",
    "Key": "key",
    "VersionId": "version_id",
    "IsLatest": "is_latest",
    "IsDeleteMarker": "is_delete_marker",
    "Size": "size",
    "LastModifiedDate": "last_modified_date",
    "ETag": "e_tag",
}

REQUIRED = {"key": "Key", "size": "Size", "e_tag": "ETag"}

# Parquet's fileSchema is a message type: "optional int64 size; optional binary e_tag (UTF8);"
_PARQUET_FIELD = re.compile(r"\b(?:binary|boolean|int32|int64|int96|float|double)\s+(\w+)")

_BATCH_ROWS = 65_536  # rows of a Parquet data file turned into Python objects at a time

# (key, size, bare ETag, last modified or None): one object, as a listing gives it.
Row = tuple[str, int, str, datetime | None]


class Requests:
    """The S3 requests (LIST pages and GETs) a read took, for the manifest's summary."""

    def __init__(self) -> None:
        self.count = 0


@dataclass(frozen=True)
class InventoryReport:
    uri: str  # its manifest.json
    bucket: str  # the bucket that holds its data files (inventory_uri's)
    source_bucket: str
    file_format: str  # CSV or Parquet
    columns: tuple[str, ...]  # Parquet's names; for CSV in the files' column order
    files: tuple[str, ...]  # data files' keys in `bucket`
    created: str  # when the report's scan began, ISO 8601 UTC


def latest_report(s3: Any, inventory_uri: str, requests: Requests) -> InventoryReport:
    """The newest report under `inventory_uri` that has a manifest.json (a report still being
    written has none yet), checked for what the manifest needs."""
    bucket, key = split_s3_uri(inventory_uri)
    prefix = as_prefix(key) if key.strip("/") else ""
    folders = []
    for page in list_pages(s3, bucket, prefix, SETTING, inventory_uri, Delimiter="/"):
        requests.count += 1
        for common in page.get("CommonPrefixes", []):
            name = common["Prefix"][len(prefix) :].rstrip("/")
            if REPORT_FOLDER.fullmatch(name):
                folders.append(name)
    for folder in sorted(folders, reverse=True):
        manifest_key = f"{prefix}{folder}/manifest.json"
        requests.count += 1
        body = _read(s3, bucket, manifest_key)
        if body is not None:
            return _parse_report(body, f"s3://{bucket}/{manifest_key}", bucket, folder)
    raise PreflightError(
        f"{SETTING}: no S3 Inventory report under {as_prefix(inventory_uri)} (no "
        "YYYY-MM-DDTHH-MMZ/manifest.json below it); the setting names an inventory "
        "configuration's destination as AWS writes it: "
        "s3://<destination-bucket>/<prefix>/<source-bucket>/<configuration id>/"
    )


def _read(s3: Any, bucket: str, key: str) -> bytes | None:
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.ClientError as exc:
        code = error_code(exc)
        if code in NOT_FOUND:
            return None
        if code in DENIED or code.startswith("KMS"):
            raise PreflightError(
                f"{SETTING}: the Airflow connection may not read s3://{bucket}/{key} ({code}); "
                "it needs s3:GetObject (and kms:Decrypt for an SSE-KMS report) on the reports"
            ) from exc
        raise


def _parse_report(body: bytes, uri: str, bucket: str, folder: str) -> InventoryReport:
    try:
        manifest = json.loads(body)
        file_format = str(manifest["fileFormat"])
        schema = str(manifest.get("fileSchema", ""))
        files = tuple(str(entry["key"]) for entry in manifest["files"])
        source_bucket = str(manifest["sourceBucket"])
    except (ValueError, KeyError, TypeError) as exc:
        raise PreflightError(f"{SETTING}: {uri} is not an S3 Inventory manifest ({exc})") from exc
    if file_format not in READABLE_FORMATS:
        raise PreflightError(
            f"{SETTING}: the S3 Inventory report {uri} is {file_format}, which preflight does "
            "not read; configure the inventory's output format as CSV or Parquet"
        )
    if file_format == "CSV":
        columns = tuple(CSV_FIELDS.get(name.strip(), name.strip()) for name in schema.split(","))
    else:
        # Read from the message type; each data file's own schema is checked again.
        columns = tuple(_PARQUET_FIELD.findall(schema))
    if columns:
        _require_columns(columns, uri, schema)
    return InventoryReport(
        uri=uri,
        bucket=bucket,
        source_bucket=source_bucket,
        file_format=file_format,
        columns=columns,
        files=files,
        created=_created(manifest.get("creationTimestamp"), folder),
    )


def _require_columns(columns: tuple[str, ...] | list[str], uri: str, schema: str) -> None:
    missing = [field for name, field in REQUIRED.items() if name not in columns]
    if missing:
        raise PreflightError(
            f"{SETTING}: the S3 Inventory report {uri} has no {' or '.join(missing)} field "
            f"(its schema: {schema}); configure the inventory with Size and ETag (optional "
            "fields of its configuration): the manifest needs both to tell a changed image"
        )


def _created(timestamp: Any, folder: str) -> str:
    """creationTimestamp (epoch milliseconds, as a string) as ISO 8601; else the folder's."""
    try:
        moment = datetime.fromtimestamp(int(timestamp) / 1000, UTC)
    except (TypeError, ValueError, OverflowError):
        moment = datetime.strptime(folder, "%Y-%m-%dT%H-%MZ").replace(tzinfo=UTC)
    return moment.isoformat(timespec="seconds")


def report_rows(s3: Any, report: InventoryReport, prefix: str, requests: Requests) -> Iterator[Row]:
    """The report's current objects under `prefix` (not a delete marker, the latest version
    where the report lists versions), one data file at a time."""
    read = _csv_rows if report.file_format == "CSV" else _parquet_rows
    for key in report.files:
        requests.count += 1
        yield from read(s3, report, key, prefix)


def _csv_rows(s3: Any, report: InventoryReport, key: str, prefix: str) -> Iterator[Row]:
    """A gzip'd CSV data file, streamed: no header, fields in fileSchema's order, keys
    URL-encoded (spaces as '+')."""
    at = {name: index for index, name in enumerate(report.columns)}
    key_at, size_at, etag_at = at["key"], at["size"], at["e_tag"]
    modified_at = at.get("last_modified_date")
    latest_at, deleted_at = at.get("is_latest"), at.get("is_delete_marker")
    body = s3.get_object(Bucket=report.bucket, Key=key)["Body"]
    uri = f"s3://{report.bucket}/{key}"
    with gzip.GzipFile(fileobj=body) as raw, io.TextIOWrapper(raw, "utf-8", newline="") as text:
        for line, record in enumerate(csv.reader(text), start=1):
            if not record:
                continue
            try:
                name = unquote_plus(record[key_at])
                if not name.startswith(prefix):
                    continue
                if latest_at is not None and record[latest_at].lower() != "true":
                    continue
                if deleted_at is not None and record[deleted_at].lower() == "true":
                    continue
                modified = record[modified_at] if modified_at is not None else ""
                yield (
                    name,
                    int(record[size_at]),
                    record[etag_at],
                    datetime.fromisoformat(modified) if modified else None,
                )
            except (IndexError, ValueError) as exc:
                raise PreflightError(
                    f"{SETTING}: line {line} of the S3 Inventory file {uri} does not match its "
                    f"fileSchema ({exc})"
                ) from exc


def _parquet_rows(s3: Any, report: InventoryReport, key: str, prefix: str) -> Iterator[Row]:
    """A Parquet data file: copied to a local temporary file (Parquet's footer comes last),
    then read a batch at a time, filtered in Arrow before any row becomes Python objects."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    uri = f"s3://{report.bucket}/{key}"
    with tempfile.TemporaryFile(prefix="inventory-", suffix=".parquet") as local:
        body = s3.get_object(Bucket=report.bucket, Key=key)["Body"]
        shutil.copyfileobj(body, local, 1 << 20)
        local.seek(0)
        data = pq.ParquetFile(local)
        names = data.schema_arrow.names
        _require_columns(names, uri, ", ".join(names))
        wanted = ["key", "size", "e_tag", "last_modified_date", "is_latest", "is_delete_marker"]
        for batch in data.iter_batches(_BATCH_ROWS, columns=[n for n in wanted if n in names]):
            keep = pc.is_valid(batch.column("size"))
            if prefix:
                keep = pc.and_(keep, pc.starts_with(batch.column("key"), prefix))
            if "is_latest" in names:
                keep = pc.and_(keep, pc.fill_null(batch.column("is_latest"), True))
            if "is_delete_marker" in names:
                deleted = pc.fill_null(batch.column("is_delete_marker"), False)
                keep = pc.and_(keep, pc.invert(deleted))
            batch = batch.filter(keep)
            if "last_modified_date" in names:
                moments = pc.cast(batch.column("last_modified_date"), pa.timestamp("ms", "UTC"))
                modified: Any = moments.to_pylist()
            else:
                modified = [None] * batch.num_rows
            yield from zip(
                batch.column("key").to_pylist(),
                batch.column("size").to_pylist(),
                batch.column("e_tag").to_pylist(),
                modified,
                strict=True,
            )


IMAGE_NAME_PATTERN = contract.IMAGE_NAME_PATTERN  # what featurize reads as an image


@dataclass
class InputManifest:
    """The manifest written to `local_path` (a temporary file) and its summary."""

    summary: Any  # the manifest format's ManifestSummary (loaded by path: emr_pipeline.contract)
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
    requests = Requests()
    if inventory_uri:
        report = latest_report(s3, inventory_uri, requests)
        if report.source_bucket != bucket:
            raise PreflightError(
                f"{SETTING}: its S3 Inventory report {report.uri} lists the bucket "
                f"{report.source_bucket}, not the input's ({bucket}); name the inventory "
                f"configuration of s3://{bucket}"
            )
        summary.source = fmt.FROM_INVENTORY
        summary.inventory = {"manifest": report.uri, "created": report.created}
        rows: Iterable[Row] = report_rows(s3, report, prefix, requests)
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
    requests: Requests,
    page_size: int | None,
) -> Iterable[Row]:
    for page in list_pages(s3, bucket, prefix, "input_uri", input_uri, page_size):
        requests.count += 1
        for obj in page.get("Contents", ()):
            yield obj["Key"], obj["Size"], obj["ETag"], obj["LastModified"]


def _write(
    fmt: Any,
    manifest: InputManifest,
    bucket: str,
    prefix: str,
    rows: Iterable[Row],
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
