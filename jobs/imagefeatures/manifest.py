"""The run's manifest: the images a run featurizes, fixed once, before any cluster exists.

One row per image (its URI, label, size, ETag and last modification), written as one parquet
file of row groups, so that a writer and a reader each hold one row group at a time whatever
the number of images. Preflight writes it from its S3 listing (or an S3 Inventory report);
featurize writes one for a local folder. Every step reads it; none lists the input again.

Standard library and pyarrow only, no package imports: the DAG loads this file by path
(`emr_pipeline.job_contract`) as it loads the contract.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

# path: the image's URI (s3://bucket/<key as it is>, or file:<absolute path>), as features and
# rejects name it; label: the key's parent folder; etag: S3's, without quotes (for a local
# file the MD5 of its bytes, which is S3's ETag of a single-part upload).
SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("label", pa.string()),
        ("size", pa.int64()),
        ("etag", pa.string()),
        ("last_modified", pa.timestamp("ms", tz="UTC")),
    ]
)
# Rows per row group: about 10 MB of columns, what one Spark task reads at a time.
ROW_GROUP_ROWS = 100_000
# What `source` says in the summary.
FROM_LISTING, FROM_INVENTORY, FROM_FOLDER = "listing", "inventory", "folder"


def label_of(key: str) -> str:
    """The image's label: the name of the folder that holds it ('' at the top of a bucket)."""
    parts = key.split("/")
    return parts[-2] if len(parts) > 1 else ""


def bare_etag(etag: str) -> str:
    """An ETag as S3 lists it ("d41d8..."), without its quotes (as S3 Inventory writes it)."""
    return etag.strip('"')


@dataclass
class ManifestSummary:
    """What the manifest holds and where it came from (manifest.json beside it)."""

    input_uri: str
    source: str  # FROM_LISTING, FROM_INVENTORY or FROM_FOLDER
    images: int = 0
    bytes: int = 0
    labels: dict[str, int] = field(default_factory=dict)
    created_at: str = ""
    # An inventory's report: its manifest.json's URI and creation time (the data's date).
    inventory: dict[str, str] | None = None
    list_requests: int = 0  # LIST (or inventory GET) requests it took
    region: str | None = None  # where the input bucket's requests go

    def as_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> ManifestSummary:
        return cls(**json.loads(text))


class ManifestWriter:
    """Writes manifest rows to a local parquet file a row group at a time; counts labels.

    with ManifestWriter(path, summary) as writer: writer.add(...); the summary's counts are
    final once the block ends.
    """

    def __init__(self, local_path: str | Path, summary: ManifestSummary) -> None:
        self.summary = summary
        self._writer = pq.ParquetWriter(str(local_path), SCHEMA, compression="zstd")
        self._columns: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}

    def add(self, path: str, key: str, size: int, etag: str, last_modified: datetime) -> None:
        label = label_of(key)
        row = (path, label, size, bare_etag(etag), last_modified)
        for column, value in zip(self._columns.values(), row, strict=True):
            column.append(value)
        self.summary.images += 1
        self.summary.bytes += size
        self.summary.labels[label] = self.summary.labels.get(label, 0) + 1
        if len(self._columns["path"]) >= ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._columns["path"]:
            self._writer.write_table(pa.table(self._columns, schema=SCHEMA))
            self._columns = {name: [] for name in SCHEMA.names}

    def close(self) -> ManifestSummary:
        self._flush()
        self._writer.close()
        self.summary.labels = dict(sorted(self.summary.labels.items()))
        self.summary.created_at = self.summary.created_at or now_iso()
        return self.summary

    def __enter__(self) -> ManifestWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
