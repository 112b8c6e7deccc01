"""The manifest from an S3 Inventory report (moto S3): reports laid out as AWS writes them,
CSV (gzip'd, URL-encoded keys) and Parquet, the latest complete one read, and the refusals."""

from __future__ import annotations

import csv
import gzip
import io
import json
from datetime import UTC, datetime
from hashlib import md5
from urllib.parse import quote_plus

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from emr_pipeline.listing import build_manifest
from emr_pipeline.plan import RunPlan
from emr_pipeline.preflight import check_run
from emr_pipeline.s3 import PreflightError
from emr_pipeline.settings import DeploymentSettings
from tests.dag import builder_cases

INVENTORY = "s3://inv-bucket/reports/in-bucket/daily/"
INPUT = "s3://in-bucket/fruits/"
OLD, LATEST, UNFINISHED = "2024-05-01T01-00Z", "2024-05-08T01-00Z", "2024-05-15T01-00Z"
CSV_SCHEMA = (
    "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, "
    "StorageClass, IsMultipartUploaded"
)
PARQUET_SCHEMA = (
    "message s3.inventory { required binary bucket (UTF8); required binary key (UTF8); "
    "optional binary version_id (UTF8); optional boolean is_latest; optional boolean "
    "is_delete_marker;  optional int64 size;  optional int64 last_modified_date "
    "(TIMESTAMP_MILLIS);  optional binary e_tag (UTF8);  optional binary storage_class (UTF8);"
    "  optional boolean is_multipart_uploaded;}"
)
WHEN = datetime(2024, 5, 7, 12, 30, 15, 123000, tzinfo=UTC)
# (key, version, is_latest, is_delete_marker, size, etag)
LATEST_ROWS = [
    ("fruits/Apple/a.jpg", "v2", True, False, 10, "e1" * 16),
    ("fruits/Apple/a.jpg", "v1", False, False, 9, "e0" * 16),  # an older version
    ("fruits/Apple/red apple+1.jpg", "v1", True, False, 11, "e2" * 16),  # '+' and ' '
    ("fruits/Apple/_DSC0001.JPG", "v1", True, False, 12, "e3" * 16),
    ("fruits/Kiwi/10:30.png", "v1", True, False, 13, "e4" * 16),
    ("fruits/Kiwi/gone.jpg", "v3", True, True, None, None),  # a delete marker
    ("fruits/Kiwi/notes.txt", "v1", True, False, 14, "e5" * 16),
    ("fruitsalad/x.jpg", "v1", True, False, 15, "e6" * 16),  # outside the input
    ("other/y.jpg", "v1", True, False, 16, "e7" * 16),
    ("fruits/Lime/big-multipart.jpeg", "v1", True, False, 17, "e8" * 16 + "-3"),
]
EXPECTED = [
    ("s3://in-bucket/fruits/Apple/a.jpg", "Apple", 10, "e1" * 16),
    ("s3://in-bucket/fruits/Apple/red apple+1.jpg", "Apple", 11, "e2" * 16),
    ("s3://in-bucket/fruits/Apple/_DSC0001.JPG", "Apple", 12, "e3" * 16),
    ("s3://in-bucket/fruits/Kiwi/10:30.png", "Kiwi", 13, "e4" * 16),
    ("s3://in-bucket/fruits/Lime/big-multipart.jpeg", "Lime", 17, "e8" * 16 + "-3"),
]


@pytest.fixture
def buckets(s3):
    for name in ("in-bucket", "inv-bucket", "out-bucket"):
        s3.create_bucket(Bucket=name)
    return s3


def _key(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _csv_file(rows: list[tuple], columns: list[str]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\n")
    for key, version, latest, deleted, size, etag in rows:
        values = {
            "Bucket": "in-bucket",
            "Key": quote_plus(key, safe="/"),  # AWS URL-encodes CSV keys
            "VersionId": version,
            "IsLatest": str(latest).lower(),
            "IsDeleteMarker": str(deleted).lower(),
            "Size": "" if size is None else str(size),
            "LastModifiedDate": WHEN.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "ETag": etag or "",
            "StorageClass": "STANDARD",
            "IsMultipartUploaded": "false",
        }
        writer.writerow([values[name] for name in columns])
    return gzip.compress(text.getvalue().encode())


def _parquet_file(rows: list[tuple], drop: tuple[str, ...] = ()) -> bytes:
    keys, versions, latest, deleted, sizes, etags = (list(c) for c in zip(*rows, strict=True))
    table = pa.table(
        {
            "bucket": ["in-bucket"] * len(rows),
            "key": keys,
            "version_id": versions,
            "is_latest": latest,
            "is_delete_marker": deleted,
            "size": pa.array(sizes, pa.int64()),
            "last_modified_date": pa.array([WHEN] * len(rows), pa.timestamp("ms")),
            "e_tag": etags,
            "storage_class": ["STANDARD"] * len(rows),
        }
    ).drop_columns(list(drop))
    out = io.BytesIO()
    pq.write_table(table, out, compression="snappy")
    return out.getvalue()


def write_report(
    s3,
    folder: str,
    file_format: str,
    rows: list[tuple],
    *,
    source: str = "in-bucket",
    schema: str | None = None,
    with_manifest: bool = True,
    drop: tuple[str, ...] = (),
) -> str:
    """One report as AWS lays it out: data files under data/, then <folder>/manifest.json and
    manifest.checksum. Returns the manifest.json's URI."""
    bucket, prefix = _key(INVENTORY)
    if schema is None:
        schema = CSV_SCHEMA if file_format == "CSV" else PARQUET_SCHEMA
    files = []
    halves = [rows[: len(rows) // 2], rows[len(rows) // 2 :]]  # two data files
    for number, part in enumerate(halves):
        if file_format == "CSV":
            body = _csv_file(part, [name.strip() for name in schema.split(",")])
            name = f"{prefix}data/{folder}-{number}.csv.gz"
        else:
            body = _parquet_file(part, drop)
            name = f"{prefix}data/{folder}-{number}.parquet"
        s3.put_object(Bucket=bucket, Key=name, Body=body)
        files.append({"key": name, "size": len(body), "MD5checksum": md5(body).hexdigest()})
    created = datetime.strptime(folder, "%Y-%m-%dT%H-%MZ").replace(tzinfo=UTC)
    manifest = json.dumps(
        {
            "sourceBucket": source,
            "destinationBucket": f"arn:aws:s3:::{bucket}",
            "version": "2016-11-30",
            "creationTimestamp": str(int(created.timestamp() * 1000)),
            "fileFormat": file_format,
            "fileSchema": schema,
            "files": files,
        }
    ).encode()
    s3.put_object(Bucket=bucket, Key=f"{prefix}hive/dt={folder[:10]}-01-00/symlink.txt", Body=b"")
    if with_manifest:
        s3.put_object(Bucket=bucket, Key=f"{prefix}{folder}/manifest.json", Body=manifest)
        checksum = md5(manifest).hexdigest().encode()
        s3.put_object(Bucket=bucket, Key=f"{prefix}{folder}/manifest.checksum", Body=checksum)
    return f"{INVENTORY}{folder}/manifest.json"


@pytest.mark.parametrize("file_format", ["CSV", "Parquet"])
def test_the_manifest_comes_from_the_latest_complete_report(buckets, file_format):
    write_report(buckets, OLD, file_format, LATEST_ROWS[:2])
    latest = write_report(buckets, LATEST, file_format, LATEST_ROWS)
    # A newer report without its manifest.json (not yet, or no more): passed over.
    write_report(buckets, UNFINISHED, file_format, LATEST_ROWS[:2], with_manifest=False)
    bucket, prefix = _key(INVENTORY)
    buckets.put_object(Bucket=bucket, Key=f"{prefix}{UNFINISHED}/manifest.checksum", Body=b"0")

    manifest = build_manifest(buckets, INPUT, max_image_bytes=100, inventory_uri=INVENTORY)
    table = pq.read_table(manifest.local_path).to_pylist()
    assert [(r["path"], r["label"], r["size"], r["etag"]) for r in table] == EXPECTED
    assert {r["last_modified"] for r in table} == {WHEN}
    summary = manifest.summary
    assert summary.source == "inventory"
    assert summary.inventory == {"manifest": latest, "created": "2024-05-08T01:00:00+00:00"}
    # One LIST of the report folders, two manifest.json GETs (the unfinished one's fails),
    # two data files.
    assert summary.list_requests == 5
    assert (summary.images, summary.labels) == (5, {"Apple": 3, "Kiwi": 1, "Lime": 1})
    assert summary.input_uri == INPUT and summary.region == "us-east-1"
    assert manifest.describe() == (
        f"5 images in 3 labels under {INPUT} from the S3 Inventory report of "
        "2024-05-08T01:00:00+00:00"
    )
    manifest.discard()


def test_a_report_of_current_versions_only(buckets):
    schema = "Bucket, Key, Size, LastModifiedDate, ETag"
    current = [row for row in LATEST_ROWS if row[2] and not row[3]]
    write_report(buckets, LATEST, "CSV", current, schema=schema)
    manifest = build_manifest(buckets, INPUT, inventory_uri=INVENTORY)
    assert manifest.images == len(EXPECTED)
    manifest.discard()


def test_the_limit_and_an_empty_input_apply_to_a_report_too(buckets):
    uri = write_report(buckets, LATEST, "Parquet", LATEST_ROWS)
    with pytest.raises(PreflightError, match=r"input_uri: 2 images under .* larger than 12 bytes"):
        build_manifest(buckets, INPUT, max_image_bytes=12, inventory_uri=INVENTORY)
    with pytest.raises(PreflightError, match=f"holds no .* image in the S3 Inventory report {uri}"):
        build_manifest(buckets, "s3://in-bucket/vegetables/", inventory_uri=INVENTORY)


@pytest.mark.parametrize(
    ("report", "message"),
    [
        (
            {"file_format": "ORC", "schema": "struct<bucket:string,key:string>"},
            r"is ORC, which preflight does not read; configure the inventory's output format as "
            r"CSV or Parquet",
        ),
        (
            {"file_format": "CSV", "schema": "Bucket, Key, Size, LastModifiedDate"},
            r"has no ETag field .*configure the inventory with Size and ETag",
        ),
        (
            {"file_format": "CSV", "schema": "Bucket, Key"},
            r"has no Size or ETag field",
        ),
        (
            {"file_format": "Parquet", "schema": "", "drop": ("e_tag",)},
            r"inv-bucket/reports/in-bucket/daily/data/.*\.parquet has no ETag field",
        ),
        (
            {"file_format": "CSV", "source": "another-bucket"},
            r"lists the bucket another-bucket, not the input's \(in-bucket\)",
        ),
        (
            {"file_format": "CSV", "with_manifest": False},
            r"no S3 Inventory report under s3://inv-bucket/reports/in-bucket/daily/ .*"
            r"s3://<destination-bucket>/<prefix>/<source-bucket>/<configuration id>/",
        ),
    ],
    ids=["orc", "no-etag", "no-size", "parquet-without-etag", "other-bucket", "no-manifest"],
)
def test_a_report_preflight_cannot_use_is_refused(buckets, report, message):
    if report["file_format"] == "ORC":
        bucket, prefix = _key(INVENTORY)
        body = json.dumps(
            {
                "sourceBucket": "in-bucket",
                "destinationBucket": f"arn:aws:s3:::{bucket}",
                "creationTimestamp": "1715130000000",
                "fileFormat": "ORC",
                "fileSchema": report["schema"],
                "files": [{"key": f"{prefix}data/x.orc", "size": 1, "MD5checksum": "0"}],
            }
        )
        buckets.put_object(Bucket=bucket, Key=f"{prefix}{LATEST}/manifest.json", Body=body)
    else:
        fmt = report.pop("file_format")
        write_report(buckets, LATEST, fmt, LATEST_ROWS, **report)
    with pytest.raises(PreflightError, match=message) as caught:
        build_manifest(buckets, INPUT, inventory_uri=INVENTORY)
    assert str(caught.value).startswith("deployment setting inventory_uri: ")


def test_a_missing_inventory_bucket_names_the_setting(buckets):
    with pytest.raises(PreflightError, match="inventory_uri: the bucket of s3://nope/inv/ does"):
        build_manifest(buckets, INPUT, inventory_uri="s3://nope/inv/")


def test_the_deployment_setting_reaches_preflight(buckets, monkeypatch):
    monkeypatch.setenv("FRUIT_EMR_INVENTORY_URI", "s3://inv-bucket//reports/in-bucket/daily")
    deployment = DeploymentSettings.resolve(lambda _: None)
    assert DeploymentSettings().inventory_uri == ""
    assert builder_cases.plan().inventory_uri is None
    plan: RunPlan = builder_cases.plan(deployment=deployment)
    assert plan.inventory_uri == INVENTORY
    write_report(buckets, LATEST, "CSV", LATEST_ROWS)
    said: list[str] = []
    manifest = check_run(buckets, plan, INPUT, "dag", "run-1", False, said.append)
    assert said[0].endswith("from the S3 Inventory report of 2024-05-08T01:00:00+00:00")
    manifest.discard()
