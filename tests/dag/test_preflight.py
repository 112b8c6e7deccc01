"""Preflight against moto S3: the input's manifest from one listing, weights, who owns the
output prefix, the manifest published under the run's prefix.

The same guards through the real DAG on the emulator: test_guards_on_emulator.py."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from emr_pipeline import preflight
from emr_pipeline.contract import contract, manifest_format
from emr_pipeline.listing import InputManifest, build_manifest
from emr_pipeline.plan import RUN_MARKER, RunPlan
from emr_pipeline.preflight import (
    check_run,
    check_run_prefix,
    check_weights,
    claim_run_prefix,
    marker_body,
    publish_manifest,
)
from emr_pipeline.s3 import PreflightError, require_bucket
from tests.dag.dag_shapes import put

OUT = "s3://out-bucket/runs/manual__1/"
REPORT = OUT + "report.json"


@pytest.fixture
def buckets(s3):
    for name in ("in-bucket", "out-bucket"):
        s3.create_bucket(Bucket=name)
    return s3


@pytest.fixture(autouse=True)
def own_temp_dir(tmp_path, monkeypatch) -> Path:
    """The manifests' local files go here, so a test sees what is left behind."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def rows(manifest: InputManifest) -> list[dict]:
    return pq.read_table(manifest.local_path).to_pylist()


def test_counts_images_per_label_any_case(buckets):
    for key in ("Apple/a.jpg", "Apple/b.JPEG", "Banana Split/c.Png", "Banana Split/notes.txt"):
        put(buckets, f"s3://in-bucket/fruits/{key}")
    put(buckets, "s3://in-bucket/fruitsalad/x.jpg")  # a sibling prefix, not under fruits/
    manifest = build_manifest(buckets, "s3://in-bucket/fruits")
    assert manifest.images == 3
    assert manifest.labels == {"Apple": 2, "Banana Split": 1}
    assert manifest.describe() == "3 images in 2 labels under s3://in-bucket/fruits/"


# Keys as they are: what Hadoop's listing hid or broke on is an image like any other now.
KEYS = [
    "Apple/a.jpg",
    "Apple/_DSC0001.JPG",
    "Apple/10:30.jpg",
    "Apple//double-slash.jpg",
    ".cache/e.png",
    "Kiwi/sub/k.jpeg",
    "Kiwi/",  # a console "folder"
    "Kiwi/notes.txt",
    "Kiwi/folder.jpg/",  # a "folder" with an image's name
    "Apple/g.jpg\n",  # not an image: the name ends in a newline
]


def test_the_manifest_holds_every_listed_image_as_it_is(buckets, own_temp_dir):
    for number, key in enumerate(KEYS):
        put(buckets, f"s3://in-bucket/fruits/{key}", b"x" * (number + 1))
    put(buckets, "s3://in-bucket/elsewhere/z.jpg")
    listed = buckets.list_objects_v2(Bucket="in-bucket", Prefix="fruits/")["Contents"]
    manifest = build_manifest(buckets, "s3://in-bucket/fruits/", page_size=3)

    images = [o for o in listed if contract.IMAGE_NAME_PATTERN.search(o["Key"])]
    images = [o for o in images if not o["Key"].endswith("/")]
    assert rows(manifest) == [
        {
            "path": f"s3://in-bucket/{o['Key']}",
            "label": manifest_format().label_of(o["Key"]),
            "size": o["Size"],
            "etag": o["ETag"].strip('"'),
            "last_modified": o["LastModified"],
        }
        for o in images
    ]
    assert {row["path"] for row in rows(manifest)} == {
        f"s3://in-bucket/fruits/{key}" for key in KEYS[:6]
    }
    assert all('"' not in row["etag"] and len(row["etag"]) == 32 for row in rows(manifest))
    # The label is the key's last folder name, as label_of says: '' after a '//'.
    assert manifest.labels == {"": 1, ".cache": 1, "Apple": 3, "sub": 1}
    summary = manifest.summary
    assert (summary.source, summary.input_uri, summary.region) == (
        "listing",
        "s3://in-bucket/fruits/",
        "us-east-1",
    )
    assert summary.images == 6 and summary.bytes == sum(o["Size"] for o in images)
    assert summary.list_requests == 4  # 10 keys, 3 a page
    assert summary.inventory is None and summary.created_at
    assert list(own_temp_dir.iterdir()) == [manifest.local_path]


def test_a_whole_bucket_is_an_input_too(buckets):
    put(buckets, "s3://in-bucket/top.jpg")
    put(buckets, "s3://in-bucket/Apple/a.jpg")
    manifest = build_manifest(buckets, "s3://in-bucket")
    assert [row["path"] for row in rows(manifest)] == [
        "s3://in-bucket/Apple/a.jpg",
        "s3://in-bucket/top.jpg",
    ]
    assert manifest.labels == {"": 1, "Apple": 1} and manifest.summary.list_requests == 1


def test_no_images_fails_before_any_cluster(buckets, own_temp_dir):
    put(buckets, "s3://in-bucket/fruits/readme.txt")
    with pytest.raises(PreflightError, match="holds no .jpg, .jpeg or .png image$"):
        build_manifest(buckets, "s3://in-bucket/fruits/")
    with pytest.raises(PreflightError, match="holds no"):
        build_manifest(buckets, "s3://in-bucket/empty/")
    assert not list(own_temp_dir.iterdir())  # a refused run leaves no local manifest


def test_missing_bucket(s3):
    with pytest.raises(PreflightError, match="input_uri: the bucket of s3://nope/fruits/ does"):
        build_manifest(s3, "s3://nope/fruits/")
    with pytest.raises(PreflightError, match="output_uri: the bucket of s3://nope/runs/x/ does"):
        check_run_prefix(s3, _plan("s3://nope/runs/x/"), "dag", "run-1", False)
    with pytest.raises(PreflightError, match="artifacts: the bucket of"):
        require_bucket(s3, "s3://nope/arts/", "artifacts")


def _plan(output: str = OUT, weights: str | None = None, inventory: str | None = None) -> RunPlan:
    return RunPlan(
        run_key="k",
        output_uri=output,
        report_uri=output + "report.json",
        artifacts_uri="s3://out-bucket/arts/",
        log_uri="s3://out-bucket/logs/",
        job_flow_overrides={},
        steps={},
        weights_uri=weights,
        max_image_bytes=10,
        inventory_uri=inventory,
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
    put(buckets, MARKER, json.dumps(marker_body("dag", "run-1", "")))
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


def test_images_over_the_limit_are_refused_with_examples(buckets, own_temp_dir):
    put(buckets, "s3://in-bucket/fruits/Apple/ok.jpg", b"x" * 10)
    big = [f"s3://in-bucket/fruits/Apple/big{n}.jpg" for n in range(7)]
    for uri in big:
        put(buckets, uri, b"x" * 11)
    with pytest.raises(PreflightError) as caught:
        build_manifest(buckets, "s3://in-bucket/fruits/", max_image_bytes=10)
    message = str(caught.value)
    assert message.startswith(
        "input_uri: 7 images under s3://in-bucket/fruits/ are larger than 10 bytes "
        "(deployment setting max_image_bytes"
    )
    assert ", ".join(big[:5]) + " and 2 more" in message
    assert not list(own_temp_dir.iterdir())


def test_weights_must_exist_and_be_mobilenet_v2s(buckets, random_weights_file):
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
    with pytest.raises(PreflightError, match="is not MobileNetV2's weights: it cannot be read"):
        check_weights(buckets, uri)
    put(buckets, uri, preflight.HDF5_SIGNATURE + bytes(64 * 2**20))
    with pytest.raises(PreflightError, match="is 67,108,872 bytes; MobileNetV2's weights file"):
        check_weights(buckets, uri)
    put(buckets, uri, random_weights_file.read_bytes())
    check_weights(buckets, uri)


def test_a_refused_listing_names_the_parameter(buckets, monkeypatch):
    from botocore.exceptions import ClientError

    class Refused:
        def paginate(self, **kwargs):
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "ListObjectsV2")

    monkeypatch.setattr(buckets, "get_paginator", lambda name: Refused())
    with pytest.raises(PreflightError, match="input_uri: the Airflow connection may not list"):
        build_manifest(buckets, "s3://in-bucket/fruits/")


def test_check_run_says_what_it_found_and_returns_the_manifest(buckets):
    put(buckets, "s3://in-bucket/fruits/Apple/a.jpg")
    said: list[str] = []
    manifest = check_run(
        buckets, _plan(), "s3://in-bucket/fruits", "dag", "run-1", False, said.append
    )
    assert manifest.images == 1 and manifest.local_path.is_file()
    assert said[0] == "1 images in 1 labels under s3://in-bucket/fruits/"
    assert "free" in said[1] and said[2].startswith("run output: " + OUT)


def test_a_refused_check_after_the_listing_leaves_no_local_manifest(buckets, own_temp_dir):
    put(buckets, "s3://in-bucket/fruits/Apple/a.jpg")
    plan = _plan(weights="s3://in-bucket/missing.weights.h5")
    with pytest.raises(PreflightError, match="weights: .* does not exist"):
        check_run(buckets, plan, "s3://in-bucket/fruits/", "dag", "run-1", False, print)
    assert not list(own_temp_dir.iterdir())


def test_publish_puts_the_manifest_and_its_summary_under_the_run(buckets, own_temp_dir):
    for key in ("Apple/a.jpg", "Apple/_DSC0001.JPG", "Kiwi/b.png"):
        put(buckets, f"s3://in-bucket/fruits/{key}")
    manifest = build_manifest(buckets, "s3://in-bucket/fruits/")
    expected = rows(manifest)
    encryption = {"ServerSideEncryption": "AES256"}
    uri = publish_manifest(buckets, manifest, OUT, encryption)

    assert uri == OUT + "manifest.parquet"
    assert not list(own_temp_dir.iterdir())  # the local file is gone
    key = uri.removeprefix("s3://out-bucket/")
    body = buckets.get_object(Bucket="out-bucket", Key=key)
    assert body["ServerSideEncryption"] == "AES256"
    local = own_temp_dir / "read-back.parquet"
    local.write_bytes(body["Body"].read())
    assert pq.read_table(local).to_pylist() == expected
    answer = buckets.get_object(Bucket="out-bucket", Key=key.replace(".parquet", ".json"))
    assert answer["ServerSideEncryption"] == "AES256"
    summary = manifest_format().ManifestSummary.from_json(answer["Body"].read())
    assert summary == manifest.summary
    assert (summary.images, summary.labels) == (3, {"Apple": 2, "Kiwi": 1})
