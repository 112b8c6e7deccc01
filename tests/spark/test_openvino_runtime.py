"""The OpenVINO runtime (the default): the TensorFlow reference's features from a model the
driver exported once, and bf16 where the CPU has it."""

from __future__ import annotations

import numpy as np

from imagefeatures.featurize import run_featurize
from tests.spark.conftest import FEATURE_ROUND_OFF

# The bf16 contract: each image's vector points where its f32 vector does.
BF16_MIN_COSINE = 0.999


def by_path(spark, folder) -> dict[str, np.ndarray]:
    rows = spark.read.parquet(str(folder)).select("path", "features").collect()
    return {row.path: np.asarray(row.features, dtype=np.float32) for row in rows}


def test_the_default_run_is_openvino_in_f32(pipeline_run):
    summary = pipeline_run.featurize
    assert (summary["runtime"], summary["precision"]) == ("openvino", "f32")
    assert summary["images_per_precision"] == {"f32": summary["features"]}
    assert pipeline_run.report["model"]["runtime"] == "openvino"


def test_openvino_features_equal_tensorflows(spark, pipeline_run, random_weights_file, tmp_path):
    # The weights file holds the `random` model's weights: the TensorFlow run's features must
    # match the default (OpenVINO) run's image by image, within round-off.
    summary = run_featurize(
        spark,
        str(pipeline_run.images),
        str(tmp_path),
        weights=str(random_weights_file),
        batch_size=8,
        runtime="tensorflow",
    )
    assert (summary["runtime"], summary["precision"]) == ("tensorflow", "f32")
    reference = by_path(spark, tmp_path / "features")
    ours = by_path(spark, pipeline_run.output / "features")
    assert sorted(ours) == sorted(reference) and len(ours) == summary["features"]
    worst = max(float(np.abs(ours[path] - reference[path]).max()) for path in reference)
    assert worst <= FEATURE_ROUND_OFF, worst
    assert max(float(np.abs(v).max()) for v in reference.values()) > 1  # not all zeros
    rejects = spark.read.parquet(str(tmp_path / "rejects")).select("path", "error")
    ours_rejects = spark.read.parquet(str(pipeline_run.output / "rejects"))
    assert sorted(rejects.collect()) == sorted(ours_rejects.select("path", "error").collect())


def test_bf16_runs_where_the_cpu_has_it_and_keeps_each_vectors_direction(
    spark, pipeline_run, tmp_path
):
    summary = run_featurize(
        spark,
        str(pipeline_run.images),
        str(tmp_path),
        weights="random",
        batch_size=8,
        precision="bf16",
    )
    f32 = by_path(spark, pipeline_run.output / "features")
    bf16 = by_path(spark, tmp_path / "features")
    assert sorted(bf16) == sorted(f32)
    # What ran, as recorded, decides what to expect: this machine's CPU may lack bf16.
    assert summary["precision_requested"] == "bf16"
    assert summary["images_per_precision"] == {summary["precision"]: len(bf16)}
    worst = max(float(np.abs(bf16[path] - f32[path]).max()) for path in f32)
    if summary["precision"] == "f32":
        assert worst <= FEATURE_ROUND_OFF, worst
        return
    assert summary["precision"] == "bf16"
    assert worst > FEATURE_ROUND_OFF  # bf16 really ran: its round-off is far larger
    cosines = [
        float(np.dot(bf16[p], f32[p]) / (np.linalg.norm(bf16[p]) * np.linalg.norm(f32[p])))
        for p in f32
    ]
    assert min(cosines) >= BF16_MIN_COSINE, min(cosines)
