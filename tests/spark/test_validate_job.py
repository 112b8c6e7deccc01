"""The validate job: the report of a good run, and each broken output caught."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from imagefeatures.errors import CheckFailedError
from imagefeatures.validate import ValidateConfig, run_validate
from tests.image_cases import bad_input_cases


def test_report_of_a_good_run(pipeline_run):
    report = json.loads((pipeline_run.output / "report.json").read_text())
    assert report["status"] == "passed"
    assert all(check["passed"] for check in report["checks"])
    assert report["images"] == report["features"] + report["rejects"]
    expected_rejects = [c for c in bad_input_cases().values() if c[2] == "rejects"]
    assert report["rejects"] == len(expected_rejects)
    assert {Path(r["path"]).name for r in report["rejected_files"]} == {
        "truncated.jpg",
        "empty.jpg",
        "notes.jpg",
    }
    assert report["labels"]["Broken"] == {"features": 0, "rejects": 3}
    assert report["labels"]["Kiwi"] == {"features": 8, "rejects": 0}
    assert report["pca"]["k"] == 2 and len(report["pca"]["explained_variance"]) == 2
    assert set(report["timings_seconds"]) == {"featurize", "pca", "validate"}
    with Image.open(pipeline_run.output / "pca.png") as plot:
        assert plot.format == "PNG" and plot.size[0] > 500


@pytest.fixture()
def run_copy(pipeline_run, tmp_path) -> tuple[Path, Path]:
    """The good run's images, and a writable copy of its outputs."""
    return pipeline_run.images, shutil.copytree(pipeline_run.output, tmp_path / "out")


def replace_dataset(spark, output: Path, name: str, transform) -> None:
    """Rewrite <output>/<name> as transform(dataset)."""
    transform(spark.read.parquet(str(output / name))).write.parquet(str(output / "rewritten"))
    shutil.rmtree(output / name)
    (output / "rewritten").rename(output / name)


def test_a_lost_feature_row_is_caught(spark, run_copy):
    from pyspark.sql import functions as F

    _, output = run_copy
    replace_dataset(
        spark,
        output,
        "features",
        lambda df: df.where(~F.col("path").endswith("r_3_100.jpg") | (F.col("label") != "Kiwi")),
    )
    with pytest.raises(CheckFailedError) as failure:
        run_validate(spark, ValidateConfig(output=str(output)))
    message = str(failure.value)
    assert "check failed: features + rejects = input: 33 features + 3 rejects vs 37" in message
    assert "1 missing" in message and "Kiwi/r_3_100.jpg" in message
    assert json.loads((output / "report.json").read_text())["status"] == "failed"


def test_pca_rows_missing_are_caught(spark, run_copy):
    _, output = run_copy
    replace_dataset(spark, output, "pca", lambda df: df.limit(5))
    with pytest.raises(CheckFailedError, match="pca rows = feature rows: 5 pca rows vs"):
        run_validate(spark, ValidateConfig(output=str(output)))


def test_nan_in_features_is_caught(spark, run_copy):
    from pyspark.sql import functions as F

    _, output = run_copy
    replace_dataset(
        spark,
        output,
        "features",
        lambda df: df.withColumn(
            "features",
            F.when(F.col("label") == "Kiwi", F.concat(F.array(F.lit(float("nan"))), "features"))
            .otherwise(F.col("features"))
            .cast("array<float>"),
        ),
    )
    with pytest.raises(CheckFailedError) as failure:
        run_validate(spark, ValidateConfig(output=str(output)))
    message = str(failure.value)
    assert "no nulls or NaN in features: 8 feature rows" in message
    assert "feature vector length" in message
