"""Preflight against moto S3: no images, missing bucket, finished output, overwrite."""

from __future__ import annotations

import json

import pytest

from emr_pipeline.preflight import (
    PreflightError,
    check_output_free,
    list_images,
    require_bucket,
)

OUT = "s3://out-bucket/runs/manual__1/"
REPORT = OUT + "report.json"


@pytest.fixture
def buckets(s3):
    for name in ("in-bucket", "out-bucket"):
        s3.create_bucket(Bucket=name)
    return s3


def put(s3, uri: str, body: bytes | str = b"x") -> None:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    s3.put_object(Bucket=bucket, Key=key, Body=body)


def test_counts_images_per_label_any_case(buckets):
    for key in ("Apple/a.jpg", "Apple/b.JPEG", "Banana Split/c.Png", "Banana Split/notes.txt"):
        put(buckets, f"s3://in-bucket/fruits/{key}")
    put(buckets, "s3://in-bucket/fruitsalad/x.jpg")  # a sibling prefix, not under fruits/
    listing = list_images(buckets, "s3://in-bucket/fruits")
    assert listing.images == 3
    assert listing.labels == {"Apple": 2, "Banana Split": 1}


def test_no_images_fails_before_any_cluster(buckets):
    put(buckets, "s3://in-bucket/fruits/readme.txt")
    with pytest.raises(PreflightError, match="holds no .jpg, .jpeg or .png image"):
        list_images(buckets, "s3://in-bucket/fruits/")
    with pytest.raises(PreflightError, match="holds no"):
        list_images(buckets, "s3://in-bucket/empty/")


def test_missing_bucket(s3):
    with pytest.raises(PreflightError, match="input bucket 'nope' does not exist"):
        list_images(s3, "s3://nope/fruits/")
    with pytest.raises(PreflightError, match="output bucket 'nope' does not exist"):
        check_output_free(s3, "s3://nope/runs/x/", "s3://nope/runs/x/report.json", False)
    with pytest.raises(PreflightError, match="artifacts bucket"):
        require_bucket(s3, "s3://nope/arts/", "artifacts")


def test_free_output(buckets):
    assert "free" in check_output_free(buckets, OUT, REPORT, overwrite=False)


def test_finished_output_is_refused_unless_overwrite(buckets):
    put(buckets, REPORT, json.dumps({"status": "passed"}))
    with pytest.raises(PreflightError, match="already holds a finished run.*overwrite=true"):
        check_output_free(buckets, OUT, REPORT, overwrite=False)
    assert "removed the earlier report" in check_output_free(buckets, OUT, REPORT, overwrite=True)
    # The stale report is gone: the report sensor can only see this attempt's report.
    assert buckets.list_objects_v2(Bucket="out-bucket", Prefix="runs/").get("KeyCount") == 0


def test_a_failed_earlier_attempt_does_not_block(buckets):
    put(buckets, REPORT, json.dumps({"status": "failed"}))
    put(buckets, OUT + "features/part-0.parquet")
    assert "status 'failed'" in check_output_free(buckets, OUT, REPORT, overwrite=False)
