"""PCA job: feature vectors -> their first k principal components, as a Spark ML PCAModel.

The fit is Spark ML's PCA, computed in two parts: the covariance matrix in one pass over the
rows, each task folding its rows into partial moments with NumPy's BLAS (imagefeatures.moments)
and Spark merging them in a tree; then its eigen-decomposition on the driver by NumPy's LAPACK.
Spark's own PCA.fit does both with netlib's pure-Java fallback when no native BLAS loads (as
on these machines): one rank-1 update per row, then a full SVD, which took most of the job's
time. The result is the same model (same components up to sign, same explained variance; a
test checks it), and every component's share comes out of one pass, so --variance needs no
refit. The projection is Spark's own PCAModel.transform, with arrays becoming vectors and back
through the native array_to_vector / vector_to_array.
"""

from __future__ import annotations

import argparse
import time
import uuid
from dataclasses import dataclass

import numpy as np
from pyspark.ml.common import _py2java
from pyspark.ml.feature import PCAModel
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.ml.linalg import DenseMatrix, DenseVector
from pyspark.sql import DataFrame, SparkSession

from imagefeatures import storage
from imagefeatures.cli_types import positive_int
from imagefeatures.contract import DEFAULT_PCA_K, FEATURE_SIZE, PCA, PCA_MODEL, PCA_SUMMARY
from imagefeatures.errors import JobInputError
from imagefeatures.moments import Moments, merge_optional, moments_of_row, partition_moments
from imagefeatures.progress import JobProgress, ProgressOptions, add_progress_arguments

_MOMENTS_SCHEMA = "count long, mean binary, m2 binary"


def to_vectors(features: DataFrame) -> DataFrame:
    """(path, label, features array<float>) -> (path, label, vector)."""
    return features.select("path", "label", array_to_vector("features").alias("vector"))


def feature_moments(features: DataFrame) -> Moments | None:
    """Count, mean and centred cross-products of the `features` column; None without rows.

    Partial moments merge in the executors (treeAggregate), so the driver receives one
    d x d matrix whatever the number of partitions.
    """
    partials = features.select("features").mapInArrow(partition_moments, _MOMENTS_SCHEMA)
    return partials.rdd.map(moments_of_row).treeAggregate(None, merge_optional, merge_optional)


def principal_components(covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(components as columns, explained variance share of each), largest first.

    Each component's sign is fixed so that its largest entry is positive: the same data
    always gives the same projection.
    """
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues = np.clip(eigenvalues[order], 0.0, None)
    eigenvectors = eigenvectors[:, order]
    largest = np.abs(eigenvectors).argmax(axis=0)
    eigenvectors = eigenvectors * np.sign(eigenvectors[largest, np.arange(len(order))])
    total = eigenvalues.sum()
    shares = eigenvalues / total if total > 0 else np.zeros_like(eigenvalues)
    return eigenvectors, shares


def make_pca_model(
    spark: SparkSession, components: np.ndarray, shares: np.ndarray, k: int
) -> PCAModel:
    """A Spark ML PCAModel holding the first k components (saved and loaded as any other)."""
    context = spark.sparkContext
    pc = DenseMatrix(components.shape[0], k, components[:, :k].flatten(order="F").tolist())
    explained = DenseVector(shares[:k].tolist())
    java_model = context._jvm.org.apache.spark.ml.feature.PCAModel(
        "pca_" + uuid.uuid4().hex[:12], _py2java(context, pc), _py2java(context, explained)
    )
    model = PCAModel(java_model)
    # Python-side params reach the JVM model before transform() and save().
    model.set(model.k, k)
    return model.setInputCol("vector").setOutputCol("pca_vector")


def fit_pca(
    spark: SparkSession, covariance: np.ndarray, k: int, variance: float | None
) -> PCAModel:
    """k components of `covariance`, or the fewest reaching `variance` of the total."""
    components, shares = principal_components(covariance)
    if variance is not None:
        k = smallest_k_for_variance(shares.tolist(), variance)
    return make_pca_model(spark, components, shares, min(k, len(shares)))


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


@dataclass(frozen=True, kw_only=True)
class PcaConfig(ProgressOptions):
    """Everything a PCA run takes: its command line (parse_args), or a test's choice.
    `input`: the features dataset; `variance`, when given, chooses k (the fewest components
    reaching that share of the variance) and `k` is unused."""

    input: str
    output: str
    k: int = DEFAULT_PCA_K
    variance: float | None = None


def run_pca(spark: SparkSession, config: PcaConfig, progress: JobProgress | None = None) -> dict:
    """Write <output>/pca, <output>/pca_model and <output>/pca_summary.json; `progress`: where
    the job says which phase it is in (none by default)."""
    started = time.time()
    progress = progress or JobProgress(spark, None, "pca")
    progress.phase("summing the features' moments")
    input_uri, variance = config.input, config.variance
    try:
        features = spark.read.parquet(input_uri)
    except Exception as exc:
        raise JobInputError(f"features {input_uri} cannot be read: {exc}") from exc
    moments = feature_moments(features)
    rows = moments.count if moments else 0
    if rows < 2:
        raise JobInputError(f"features {input_uri} hold {rows} row(s); PCA needs at least 2")
    progress.phase("fitting")
    model = fit_pca(spark, moments.covariance(), config.k, variance)
    progress.phase("projecting")
    # A second read of the features rather than a cache: parquet is cheap to read again.
    project(model, to_vectors(features)).write.mode("overwrite").parquet(
        storage.join_uri(config.output, PCA)
    )
    model.write().overwrite().save(storage.join_uri(config.output, PCA_MODEL))
    summary = summarize(model, rows, time.time() - started)
    if variance is not None:
        summary["variance_target"] = variance
    storage.write_json(spark, storage.join_uri(config.output, PCA_SUMMARY), summary)
    progress.phase("projected")
    return summary


def k_components(text: str) -> int:
    value = positive_int(text)
    if value > FEATURE_SIZE:
        raise argparse.ArgumentTypeError(f"must be at most {FEATURE_SIZE}, got {text}")
    return value


def variance_share(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def parse_args(argv: list[str]) -> PcaConfig:
    parser = argparse.ArgumentParser(
        prog="pca.py", description="Feature vectors -> PCA components (Spark ML)."
    )
    parser.add_argument("--input", required=True, help="the features dataset (<out>/features)")
    parser.add_argument("--output", required=True, help="run folder: pca/, pca_model/")
    reduction = parser.add_mutually_exclusive_group()
    # The default is filled in after parsing: argparse does not see `--k 2 --variance 0.9` as
    # a conflict when 2 is the argument's own default.
    reduction.add_argument("--k", type=k_components, help=f"components (default {DEFAULT_PCA_K})")
    reduction.add_argument(
        "--variance", type=variance_share, default=None, help="smallest k reaching this share"
    )
    add_progress_arguments(parser)
    args = parser.parse_args(argv)
    if args.k is None:
        args.k = DEFAULT_PCA_K  # unused when --variance is given: that target chooses k
    return PcaConfig(**vars(args))
