"""Preflight against moto S3: the input as Spark lists it, weights, who owns the output prefix.

The same guards through the real DAG on the emulator: test_guards_on_emulator.py."""

from __future__ import annotations

import json

import pytest

from emr_pipeline import preflight
from emr_pipeline.input_listing import list_images
from emr_pipeline.plan import RunPlan
from emr_pipeline.preflight import check_weights
from emr_pipeline.run_prefix import RUN_MARKER, check_run_prefix, claim_run_prefix, marker_body
from emr_pipeline.s3_reads import PreflightError, require_bucket
from tests.dag.dag_shapes import put

OUT = "s3://out-bucket/runs/manual__1/"
REPORT = OUT + "report.json"


@pytest.fixture
def buckets(s3):
    for name in ("in-bucket", "out-bucket"):
        s3.create_bucket(Bucket=name)
    return s3


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
    with pytest.raises(PreflightError, match="input_uri: the bucket of s3://nope/fruits/ does"):
        list_images(s3, "s3://nope/fruits/")
    with pytest.raises(PreflightError, match="output_uri: the bucket of s3://nope/runs/x/ does"):
        check_run_prefix(s3, _plan("s3://nope/runs/x/"), "dag", "run-1", False)
    with pytest.raises(PreflightError, match="artifacts: the bucket of"):
        require_bucket(s3, "s3://nope/arts/", "artifacts")


def _plan(output: str = OUT, weights: str | None = None) -> RunPlan:
    return RunPlan(
        run_key="k",
        output_uri=output,
        report_uri=output + "report.json",
        artifacts_uri="s3://out-bucket/arts/",
        log_uri="s3://out-bucket/logs/",
        job_flow_overrides={},
        steps={},
        weights_uri=weights,
    )


MARKER = OUT + RUN_MARKER


def test_an_empty_prefix_is_free_and_claiming_writes_the_marker_first(buckets):
    assert "free" in check_run_prefix(buckets, _plan(), "dag", "run-1", overwrite=False)
    assert claim_run_prefix(buckets, _plan(), "dag", "run-1") == 0
    body = json.loads(
        buckets.get_object(Bucket="out-bucket", Key=MARKER[len("s3://out-bucket/") :])[
            "Body"
        ].read()
    )
    assert (body["dag_id"], body["run_id"]) == ("dag", "run-1")


def test_this_runs_finished_output_is_refused_unless_overwrite(buckets):
    put(buckets, MARKER, json.dumps(marker_body("dag", "run-1")))
    put(buckets, REPORT, json.dumps({"status": "passed"}))
    with pytest.raises(PreflightError, match="finished output.*overwrite=true"):
        check_run_prefix(buckets, _plan(), "dag", "run-1", overwrite=False)
    check_run_prefix(buckets, _plan(), "dag", "run-1", overwrite=True)
    # What an earlier attempt's cluster wrote while it was being terminated goes too.
    put(buckets, OUT + "features/part-1.parquet")
    assert claim_run_prefix(buckets, _plan(), "dag", "run-1") == 2
    keys = [o["Key"] for o in buckets.list_objects_v2(Bucket="out-bucket")["Contents"]]
    assert keys == [MARKER[len("s3://out-bucket/") :]]  # only the marker is left


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("marker", [None, {"dag_id": "dag", "run_id": "run-2"}, "not json"])
def test_what_this_run_did_not_write_is_never_cleared(buckets, overwrite, marker):
    if marker is not None:
        put(buckets, MARKER, marker if isinstance(marker, str) else json.dumps(marker))
    put(buckets, REPORT, json.dumps({"status": "passed"}))
    with pytest.raises(PreflightError, match="output_uri: .*nothing was deleted"):
        check_run_prefix(buckets, _plan(), "dag", "run-1", overwrite=overwrite)


def test_hadoop_hidden_names_are_skipped_like_spark_does(buckets):
    for key in ("Apple/a.jpg", "Apple/.b.jpg", "Apple/_c.jpg", "_tmp/Kiwi/d.jpg",
                ".cache/e.jpg", "Kiwi/_metadata.jpg", "year=2024/_p=1/f.png", "Kiwi/",
                "Apple/g.jpg\n",  # Hadoop's glob matches whole names: not an image
                "_tmp/10:30.jpg", ".cache//x.jpg"):  # fmt: skip  # never listed by Hadoop
        put(buckets, f"s3://in-bucket/fruits/{key}")
    listing = list_images(buckets, "s3://in-bucket/fruits")
    assert listing.labels == {"Apple": 1, "Kiwi": 1, "_p=1": 1}
    assert listing.hidden == 6


@pytest.mark.parametrize(
    ("key", "size", "message"),
    [
        ("Apple/10:30.jpg", 1, "':' in their key"),
        ("Apple//a.jpg", 1, "empty folder name"),
        ("Apple/big.jpg", 11, "larger than 10 bytes"),
        ("Apple/.hidden:name.jpg", 1, "':' in their key"),  # its folder's listing breaks
    ],
)
def test_what_spark_cannot_read_is_refused_with_examples(buckets, key, size, message):
    put(buckets, "s3://in-bucket/fruits/Apple/ok.jpg")
    put(buckets, f"s3://in-bucket/fruits/{key}", b"x" * size)
    with pytest.raises(PreflightError, match=message) as caught:
        list_images(buckets, "s3://in-bucket/fruits/", max_image_bytes=10)
    assert f"s3://in-bucket/fruits/{key}" in str(caught.value)


def test_weights_must_exist_and_be_hdf5(buckets):
    uri = "s3://in-bucket/m.weights.h5"
    with pytest.raises(PreflightError, match="weights: s3://in-bucket/m.weights.h5 does not"):
        check_weights(buckets, uri)
    put(buckets, uri, b"")
    with pytest.raises(PreflightError, match="is empty"):
        check_weights(buckets, uri)
    put(buckets, uri, b"<html>not a model</html>")
    with pytest.raises(PreflightError, match="is not an HDF5 file"):
        check_weights(buckets, uri)
    put(buckets, uri, preflight.HDF5_SIGNATURE + b"rest of the file")
    check_weights(buckets, uri)


def test_a_refused_listing_names_the_parameter(buckets, monkeypatch):
    from botocore.exceptions import ClientError

    class Refused:
        def paginate(self, **kwargs):
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "ListObjectsV2")

    monkeypatch.setattr(buckets, "get_paginator", lambda name: Refused())
    with pytest.raises(PreflightError, match="input_uri: the Airflow connection may not list"):
        list_images(buckets, "s3://in-bucket/fruits/")
