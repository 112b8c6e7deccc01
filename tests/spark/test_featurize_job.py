"""The featurize job on local Spark: outputs, bad input, nothing lost."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from imagefeatures.errors import JobInputError
from imagefeatures.featurize import FeaturizeConfig, run_featurize, spread, write_features
from imagefeatures.image_reads import CHANGED, GONE, read_image
from imagefeatures.incremental import full_run
from imagefeatures.model import ONEDNN_SWITCH
from imagefeatures.run_input import read_manifest, write_folder_manifest
from tests.image_cases import bad_input_cases
from tests.spark.conftest import FEATURE_ROUND_OFF, GOOD_LABELS, GOOD_PER_LABEL

REPO = Path(__file__).resolve().parents[2]


def load_entrypoint(name: str):
    spec = importlib.util.spec_from_file_location(f"entry_{name}", REPO / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def local(path: str) -> str:
    return path.removeprefix("file:")


def test_features_plus_rejects_is_every_input_file(spark, pipeline_run):
    features = spark.read.parquet(str(pipeline_run.output / "features"))
    rejects = spark.read.parquet(str(pipeline_run.output / "rejects"))
    listed = {str(p) for p in pipeline_run.images.rglob("*") if p.suffix.lower() != ".txt"}
    listed = {p for p in listed if Path(p).is_file()}
    featurized = {local(r.path) for r in features.select("path").collect()}
    rejected = {local(r.path) for r in rejects.select("path").collect()}
    assert featurized | rejected == listed
    assert not featurized & rejected
    assert pipeline_run.featurize["features"] + pipeline_run.featurize["rejects"] == len(listed)


def test_output_schemas(spark, pipeline_run):
    features = spark.read.parquet(str(pipeline_run.output / "features"))
    rejects = spark.read.parquet(str(pipeline_run.output / "rejects"))
    # size and etag: as the manifest recorded them (what tells a later run whether the image
    # changed).
    assert features.schema.simpleString() == (
        "struct<path:string,label:string,features:array<float>,size:bigint,etag:string,"
        "precision:string>"
    )
    assert rejects.schema.simpleString() == "struct<path:string,label:string,error:string>"
    lengths = {r[0] for r in features.selectExpr("size(features)").distinct().collect()}
    assert lengths == {1280}


@pytest.mark.parametrize("case", sorted(bad_input_cases()))
def test_each_bad_input_lands_where_expected(spark, pipeline_run, case):
    relative, _, expected = bad_input_cases()[case]
    dataset = spark.read.parquet(str(pipeline_run.output / expected))
    path = str(pipeline_run.images / relative)
    rows = [r for r in dataset.collect() if local(r.path) == path]
    assert len(rows) == 1, f"{case}: {path} not in {expected}"
    if expected == "rejects":
        assert rows[0].error, "a reject carries its reason"


def test_reject_reasons_are_readable(spark, pipeline_run):
    reasons = {
        Path(local(r.path)).name: r.error
        for r in spark.read.parquet(str(pipeline_run.output / "rejects")).collect()
    }
    assert reasons["empty.jpg"] == "empty file (0 bytes)"
    assert "truncated" in reasons["truncated.jpg"]
    assert "cannot identify image file" in reasons["notes.jpg"]


def test_labels_are_parent_folders_kept_as_written(spark, pipeline_run):
    features = spark.read.parquet(str(pipeline_run.output / "features"))
    counts = {r.label: r["count"] for r in features.groupBy("label").count().collect()}
    for label in GOOD_LABELS:
        assert counts[label] == GOOD_PER_LABEL
    assert counts["Pêche Jaune 2"] == 1
    assert counts["Pomme rouge"] == 1  # nested: the immediate parent folder


def test_python_workers_run_tensorflow_with_onednn(spark, pipeline_run):
    """The job set its workers' environment; a worker of this context reports what its
    TensorFlow runs with."""

    def report(batches):
        from tensorflow.python.util import _pywrap_util_port

        for _ in batches:
            pass
        yield pd.DataFrame(
            {"switch": [os.environ.get(ONEDNN_SWITCH)], "on": [_pywrap_util_port.IsMklEnabled()]}
        )

    row = spark.range(1).mapInPandas(report, "switch string, on boolean").first()
    assert (row.switch, row.on) == ("1", True)


def test_same_vectors_run_after_run(spark, pipeline_run, tmp_path):
    again = tmp_path / "again"
    config = FeaturizeConfig(
        input=str(pipeline_run.images / "Kiwi"), output=str(again), weights="random", batch_size=3
    )
    run_featurize(spark, config)
    first = {
        r.path: r.features
        for r in spark.read.parquet(str(pipeline_run.output / "features")).collect()
    }
    for row in spark.read.parquet(str(again / "features")).collect():
        assert row.features == pytest.approx(first[row.path], abs=FEATURE_ROUND_OFF)


def test_an_underscore_or_dot_named_image_is_featurized(spark, pipeline_run):
    """Keys as they are: Hadoop's listing hid `_` and `.` names; the manifest does not."""
    features = spark.read.parquet(str(pipeline_run.output / "features"))
    named = {Path(local(r.path)).name for r in features.select("path").collect()}
    assert {"_DSC0001.JPG", ".IMG_0002.jpg"} <= named


def test_partitions_and_images_per_task(spark, pipeline_run):
    manifest = read_manifest(spark, str(pipeline_run.output))
    images = manifest.count()
    assert spread(manifest, images, 1, 128).rdd.getNumPartitions() == 1
    assert spread(manifest, images, 7, 128).rdd.getNumPartitions() == 7
    # About files_per_task images a task, at least a task per core.
    parallelism = spark.sparkContext.defaultParallelism
    assert spread(manifest, images, None, 2).rdd.getNumPartitions() == -(-images // 2)
    assert spread(manifest, images, None, 10_000).rdd.getNumPartitions() == parallelism


def test_an_image_gone_or_changed_since_the_manifest_is_a_reject_with_its_reason(tmp_path):
    image = tmp_path / "Apple" / "a.jpg"
    image.parent.mkdir()
    image.write_bytes(b"first bytes")
    path, size = f"file:{image}", image.stat().st_size
    from imagefeatures.image_reads import file_etag

    etag = file_etag(str(image))
    assert read_image(path, size, etag).content == b"first bytes"
    image.write_bytes(b"other bytes")  # same size, same second: only the bytes tell
    assert read_image(path, size, etag).error.startswith(CHANGED)
    image.unlink()
    assert read_image(path, size, etag).error == GONE


def test_a_local_folder_gets_a_manifest(spark, tmp_path):
    from localdev.sample_data import generate_images

    generate_images(tmp_path / "images", 10, seed=3)
    summary = write_folder_manifest(str(tmp_path / "images"), tmp_path / "out")
    rows = read_manifest(spark, str(tmp_path / "out")).collect()
    assert summary.images == len(rows) == 10 and summary.source == "folder"
    assert sum(summary.labels.values()) == 10
    for row in rows:
        local_path = Path(local(row.path))
        assert row.label == local_path.parent.name and row.size == local_path.stat().st_size


def test_missing_input_is_named(spark, tmp_path):
    with pytest.raises(JobInputError, match=str(tmp_path / "nowhere")):
        write_folder_manifest(str(tmp_path / "nowhere"), tmp_path / "out")


def test_an_s3_input_needs_the_runs_manifest(spark, tmp_path):
    with pytest.raises(JobInputError, match="manifest"):
        write_folder_manifest("s3://bucket/images/", tmp_path / "out")


def test_empty_input_exits_non_zero_and_writes_nothing(spark, tmp_path, capsys):
    empty = tmp_path / "empty"
    (empty / "Apple").mkdir(parents=True)
    (empty / "Apple" / "notes.txt").write_text("no images here")
    out = tmp_path / "out"
    code = load_entrypoint("featurize").main(
        ["--input", str(empty), "--output", str(out), "--weights", "random"]
    )
    assert code == 2
    assert f"input {empty} holds no .jpg, .jpeg or .png image" in capsys.readouterr().err
    assert not out.exists()


def test_unreadable_weights_fail_before_any_output(spark, pipeline_run, tmp_path, capsys):
    out = tmp_path / "out"
    code = load_entrypoint("featurize").main(
        ["--input", str(pipeline_run.images / "Kiwi"), "--output", str(out)]
        + ["--weights", str(tmp_path / "missing.weights.h5")]
    )
    assert code == 2
    assert "missing.weights.h5" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("runtime", ["openvino", "tensorflow"])
def test_a_corrupt_weights_file_fails_the_job_with_one_line(
    spark, pipeline_run, tmp_path, capsys, runtime
):
    # OpenVINO's export starts before Spark does (export_model_ahead): its failure must still
    # be the job's one clear error, before any output.
    weights = tmp_path / "corrupt.weights.h5"
    weights.write_bytes(b"not an HDF5 file")
    out = tmp_path / "out"
    code = load_entrypoint("featurize").main(
        ["--input", str(pipeline_run.images / "Kiwi"), "--output", str(out)]
        + ["--weights", str(weights), "--runtime", runtime]
    )
    assert code == 2
    assert "cannot be loaded" in capsys.readouterr().err
    assert not out.exists()


def test_weights_file_matches_random_weights(spark, pipeline_run, random_weights_file, tmp_path):
    out = tmp_path / "from_file"
    config = FeaturizeConfig(
        input=str(pipeline_run.images / "Banana"),
        output=str(out),
        weights=str(random_weights_file),
        batch_size=4,
    )
    run_featurize(spark, config)
    first = {
        r.path: r.features
        for r in spark.read.parquet(str(pipeline_run.output / "features")).collect()
    }
    rows = spark.read.parquet(str(out / "features")).collect()
    assert len(rows) == GOOD_PER_LABEL
    for row in rows:
        assert row.features == pytest.approx(first[row.path], abs=FEATURE_ROUND_OFF)


def test_the_last_progress_says_every_image_has_its_outcome(pipeline_run):
    progress = json.loads((pipeline_run.output / "_progress" / "featurize.json").read_text())
    listed = pipeline_run.featurize["listed"]
    assert progress["state"] == "finished" and progress["phase"] == "featurized"
    assert progress["unit"] == "images" and progress["percent"] == 100.0
    assert progress["done"] == progress["total"] == listed
    assert progress["rejects"] == pipeline_run.featurize["rejects"] > 0
    assert progress["writes"] >= 6  # one per phase at least, and the finish
    assert progress["rate_per_second"] > 0 and progress["eta_seconds"] == 0
    # Spark's readers never see it: `_` hides it, and the report names it.
    assert pipeline_run.report["progress"]["featurize"]["done"] == listed


def test_vectors_are_written_without_a_dictionary_and_labels_with_one(spark, tmp_path):
    # Repeated floats would take one; real vectors' floats are all distinct, so the attempt is
    # CPU for nothing. The label, a few values repeated, keeps its dictionary.
    schema = "path string, label string, features array<float>, size long, etag string"
    rows = [(f"file:/i/{i}.jpg", "apple", [0.5, 0.25], 10, "e") for i in range(40)]
    features = spark.createDataFrame([(*row, "f32") for row in rows], f"{schema}, precision string")
    write_features(spark, features, str(tmp_path / "features"), full_run(features, 40, None))
    part = next((tmp_path / "features").glob("*.parquet"))
    group = pq.ParquetFile(part).metadata.row_group(0)
    encodings = {
        group.column(i).path_in_schema: group.column(i).encodings for i in range(group.num_columns)
    }
    assert not [e for e in encodings["features.list.element"] if "DICTIONARY" in e], encodings
    assert [e for e in encodings["label"] if "DICTIONARY" in e], encodings
