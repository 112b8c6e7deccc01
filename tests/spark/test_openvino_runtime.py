"""featurize --runtime openvino: the same features as the TensorFlow reference, from a model
the driver exported once (OpenVINO IR shipped with addFile)."""

from __future__ import annotations

import numpy as np

from imagefeatures.featurize import run_featurize
from tests.spark.conftest import FEATURE_ROUND_OFF


def by_path(spark, folder) -> dict[str, np.ndarray]:
    rows = spark.read.parquet(str(folder)).select("path", "features").collect()
    return {row.path: np.asarray(row.features, dtype=np.float32) for row in rows}


def test_openvino_features_equal_tensorflows(spark, pipeline_run, random_weights_file, tmp_path):
    # The weights file holds the `random` model's weights: the run's features must match the
    # TensorFlow run's (weights="random") image by image, within round-off.
    summary = run_featurize(
        spark,
        str(pipeline_run.images),
        str(tmp_path),
        weights=str(random_weights_file),
        batch_size=8,
        runtime="openvino",
    )
    assert summary["runtime"] == "openvino"
    reference = by_path(spark, pipeline_run.output / "features")
    ours = by_path(spark, tmp_path / "features")
    assert sorted(ours) == sorted(reference) and len(ours) == summary["features"]
    worst = max(float(np.abs(ours[path] - reference[path]).max()) for path in reference)
    assert worst <= FEATURE_ROUND_OFF, worst
    assert max(float(np.abs(v).max()) for v in reference.values()) > 1  # not all zeros
    rejects = spark.read.parquet(str(tmp_path / "rejects")).select("path", "error")
    reference_rejects = spark.read.parquet(str(pipeline_run.output / "rejects"))
    assert sorted(rejects.collect()) == sorted(reference_rejects.select("path", "error").collect())
