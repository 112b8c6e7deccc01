"""PCA job: feature vectors -> their first k principal components, with Spark ML's PCA.

Arrays become vectors and back with Spark's native array_to_vector / vector_to_array:
no Python UDF touches the 1280 floats of each row.
"""

from __future__ import annotations

import argparse
import time

from pyspark import StorageLevel
from pyspark.ml.feature import PCA, PCAModel
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.sql import DataFrame, SparkSession

from imagefeatures import storage
from imagefeatures.errors import JobInputError
from imagefeatures.featurize import positive_int
from imagefeatures.model import FEATURE_DIM

DEFAULT_K = 2


def to_vectors(features: DataFrame) -> DataFrame:
    """(path, label, features array<float>) -> (path, label, vector)."""
    return features.select("path", "label", array_to_vector("features").alias("vector"))


def fit_pca(vectors: DataFrame, k: int) -> PCAModel:
    return PCA(k=k, inputCol="vector", outputCol="pca_vector").fit(vectors)


def smallest_k_for_variance(explained: list[float], variance: float) -> int:
    """Fewest leading components whose explained variance adds up to at least `variance`."""
    total = 0.0
    for index, share in enumerate(explained, start=1):
        total += share
        if total >= variance - 1e-12:
            return index
    return len(explained)


def project(model: PCAModel, vectors: DataFrame) -> DataFrame:
    """(path, label, vector) -> (path, label, pca array<double>[k])."""
    return model.transform(vectors).select(
        "path", "label", vector_to_array("pca_vector", dtype="float64").alias("pca")
    )


def summarize(model: PCAModel, rows: int, seconds: float) -> dict:
    explained = [float(v) for v in model.explainedVariance.toArray()]
    cumulative, total = [], 0.0
    for share in explained:
        total += share
        cumulative.append(total)
    return {
        "k": model.getK(),
        "explained_variance": explained,
        "cumulative_variance": cumulative,
        "rows": rows,
        "seconds": round(seconds, 2),
    }


def run_pca(
    spark: SparkSession,
    input_uri: str,
    output_uri: str,
    k: int | None = None,
    variance: float | None = None,
) -> dict:
    """Write <output>/pca, <output>/pca_model and <output>/pca_summary.json."""
    started = time.time()
    try:
        features = spark.read.parquet(input_uri)
    except Exception as exc:
        raise JobInputError(f"features {input_uri} cannot be read: {exc}") from exc
    vectors = to_vectors(features).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        rows = vectors.count()
        if rows < 2:
            raise JobInputError(f"features {input_uri} hold {rows} row(s); PCA needs at least 2")
        if variance is not None:
            # All components' shares, then the smallest k reaching the target.
            full = fit_pca(vectors, min(FEATURE_DIM, rows))
            k = smallest_k_for_variance(list(full.explainedVariance.toArray()), variance)
        model = fit_pca(vectors, k or DEFAULT_K)
        project(model, vectors).write.mode("overwrite").parquet(storage.join_uri(output_uri, "pca"))
    finally:
        vectors.unpersist()
    model.write().overwrite().save(storage.join_uri(output_uri, "pca_model"))
    summary = summarize(model, rows, time.time() - started)
    if variance is not None:
        summary["variance_target"] = variance
    storage.write_json(spark, storage.join_uri(output_uri, "pca_summary.json"), summary)
    return summary


def k_components(text: str) -> int:
    value = positive_int(text)
    if value > FEATURE_DIM:
        raise argparse.ArgumentTypeError(f"must be at most {FEATURE_DIM}, got {text}")
    return value


def variance_share(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pca.py", description="Feature vectors -> PCA components (Spark ML)."
    )
    parser.add_argument("--input", required=True, help="the features dataset (<out>/features)")
    parser.add_argument("--output", required=True, help="run folder: pca/, pca_model/")
    reduction = parser.add_mutually_exclusive_group()
    reduction.add_argument("--k", type=k_components, default=None, help="components (default 2)")
    reduction.add_argument(
        "--variance", type=variance_share, default=None, help="smallest k reaching this share"
    )
    return parser.parse_args(argv)
