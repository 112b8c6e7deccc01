"""Our features equal the notebook's method on the same RGB images and weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.notebook_method import notebook_feature_model, notebook_featurize_series
from imagefeatures.model import build_feature_model
from tests.spark.conftest import FEATURE_ROUND_OFF, GOOD_LABELS


def test_features_match_the_notebook_within_round_off(spark, pipeline_run):
    rows = [
        row
        for row in spark.read.parquet(str(pipeline_run.output / "features")).collect()
        if row.label in GOOD_LABELS
    ]
    assert len(rows) >= 20
    contents = pd.Series([Path(row.path.removeprefix("file:")).read_bytes() for row in rows])
    # The notebook broadcasts the cut model's weights and sets them on a fresh model.
    model = notebook_feature_model(build_feature_model("random").get_weights())
    expected = np.stack(notebook_featurize_series(model, contents))
    ours = np.array([row.features for row in rows], dtype=np.float32)
    assert ours.shape == expected.shape == (len(rows), 1280)
    difference = np.abs(ours - expected).max()
    assert difference < FEATURE_ROUND_OFF, f"max abs difference {difference}"
    assert np.abs(expected).max() > 1.0  # the comparison is not between two near-zero arrays
