"""The PCA job on local Spark."""

from __future__ import annotations

import json

import pytest

from imagefeatures.errors import JobInputError
from imagefeatures.pca import PcaConfig, run_pca, smallest_k_for_variance


def test_pca_outputs_k2_by_default(spark, pipeline_run):
    out = pipeline_run.output
    pca = spark.read.parquet(str(out / "pca"))
    assert pca.schema.simpleString() == "struct<path:string,label:string,pca:array<double>>"
    assert {r[0] for r in pca.selectExpr("size(pca)").distinct().collect()} == {2}
    assert pca.count() == pipeline_run.featurize["features"]
    summary = json.loads((out / "pca_summary.json").read_text())
    assert summary["k"] == 2 and summary["rows"] == pipeline_run.featurize["features"]
    assert len(summary["explained_variance"]) == 2
    assert summary["cumulative_variance"][-1] == pytest.approx(sum(summary["explained_variance"]))
    assert (out / "pca_model" / "metadata").is_dir()


def test_saved_model_reproduces_the_output(spark, pipeline_run):
    from pyspark.ml.feature import PCAModel

    from imagefeatures.pca import project, to_vectors

    model = PCAModel.load(str(pipeline_run.output / "pca_model"))
    features = spark.read.parquet(str(pipeline_run.output / "features"))
    again = {r.path: r.pca for r in project(model, to_vectors(features)).collect()}
    for row in spark.read.parquet(str(pipeline_run.output / "pca")).collect():
        assert row.pca == pytest.approx(again[row.path])


def test_variance_target_picks_the_smallest_k(spark, pipeline_run, tmp_path):
    config = PcaConfig(
        input=str(pipeline_run.output / "features"), output=str(tmp_path), variance=0.8
    )
    summary = run_pca(spark, config)
    k = summary["k"]
    assert summary["cumulative_variance"][-1] >= 0.8 - 1e-9
    if k > 1:
        assert summary["cumulative_variance"][-2] < 0.8
    written = spark.read.parquet(str(tmp_path / "pca"))
    assert {r[0] for r in written.selectExpr("size(pca)").distinct().collect()} == {k}


def test_explicit_k(spark, pipeline_run, tmp_path):
    config = PcaConfig(input=str(pipeline_run.output / "features"), output=str(tmp_path), k=5)
    summary = run_pca(spark, config)
    assert summary["k"] == 5 and len(summary["explained_variance"]) == 5


def test_too_few_rows_is_a_clear_error(spark, pipeline_run, tmp_path):
    one_row = tmp_path / "one"
    spark.read.parquet(str(pipeline_run.output / "features")).limit(1).write.parquet(str(one_row))
    with pytest.raises(JobInputError, match="1 row"):
        run_pca(spark, PcaConfig(input=str(one_row), output=str(tmp_path / "out")))


def test_empty_features_is_a_clear_error(spark, pipeline_run, tmp_path):
    no_rows = tmp_path / "empty"
    spark.read.parquet(str(pipeline_run.output / "features")).limit(0).write.parquet(str(no_rows))
    with pytest.raises(JobInputError, match="0 row"):
        run_pca(spark, PcaConfig(input=str(no_rows), output=str(tmp_path / "out")))
    assert not (tmp_path / "out").exists()


def test_missing_features_is_named(spark, tmp_path):
    with pytest.raises(JobInputError, match="nowhere"):
        run_pca(spark, PcaConfig(input=str(tmp_path / "nowhere"), output=str(tmp_path / "out")))


@pytest.mark.parametrize(
    ("shares", "target", "k"),
    [([0.5, 0.3, 0.2], 0.5, 1), ([0.5, 0.3, 0.2], 0.8, 2), ([0.5, 0.3, 0.2], 0.81, 3)],
)
def test_smallest_k_for_variance(shares, target, k):
    assert smallest_k_for_variance(shares, target) == k


def test_fit_equals_spark_ml_pca(spark, pipeline_run):
    """Partial moments in the tasks + eigh on the driver give Spark ML PCA's own model."""
    import numpy as np
    from pyspark.ml.feature import PCA

    from imagefeatures.pca import feature_moments, fit_pca, to_vectors

    features = spark.read.parquet(str(pipeline_run.output / "features"))
    # Several partitions, so that partial moments really are merged.
    features = features.repartition(3)
    vectors = to_vectors(features)
    moments = feature_moments(features)
    assert moments.count == features.count()
    ours = fit_pca(spark, moments.covariance(), k=4, variance=None)
    reference = PCA(k=4, inputCol="vector", outputCol="p").fit(vectors)
    assert ours.getK() == 4
    np.testing.assert_allclose(
        ours.explainedVariance.toArray(), reference.explainedVariance.toArray(), atol=1e-9
    )
    # Components are defined up to sign.
    np.testing.assert_allclose(np.abs(ours.pc.toArray()), np.abs(reference.pc.toArray()), atol=1e-6)
