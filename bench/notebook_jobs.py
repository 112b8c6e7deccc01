"""The notebook's two Spark stages as spark-submit jobs, for the benchmark.

featurize: binaryFile (*.jpg) -> label from the folder -> repartition(24) -> a scalar-iterator
pandas UDF that builds the model in every partition and calls model.predict per batch.
pca: read the features back, a Python UDF turning arrays into vectors, Spark ML PCA(k=2).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [_REPO, os.path.join(_REPO, "jobs")]  # bench/ and imagefeatures


def featurize(spark: SparkSession, input_uri: str, output_uri: str, weights_file: str) -> None:
    import pandas as pd

    from bench.notebook_method import notebook_feature_model, notebook_featurize_series
    from imagefeatures.model import build_feature_model

    images = (
        spark.read.format("binaryFile")
        .option("pathGlobFilter", "*.jpg")
        .option("recursiveFileLookup", "true")
        .load(input_uri)
    )
    images = images.withColumn("label", F.element_at(F.split(images["path"], "/"), -2))
    # The notebook broadcasts the cut model's weights from the driver.
    broadcast_weights = spark.sparkContext.broadcast(
        build_feature_model(weights_file).get_weights()
    )

    @F.pandas_udf("array<float>", F.PandasUDFType.SCALAR_ITER)
    def featurize_udf(batches):
        model = notebook_feature_model(broadcast_weights.value, base_weights=weights_file)
        for contents in batches:
            yield notebook_featurize_series(model, contents)

    features = images.repartition(24).select(
        F.col("path"), F.col("label"), featurize_udf("content").alias("features")
    )
    features.write.mode("overwrite").parquet(output_uri)
    del pd


def pca(spark: SparkSession, input_uri: str, output_uri: str) -> None:
    from pyspark.ml.feature import PCA
    from pyspark.ml.linalg import Vectors, VectorUDT

    features = spark.read.parquet(input_uri)
    to_vector = F.udf(lambda array: Vectors.dense(array), VectorUDT())
    vectors = features.withColumn("features_vector", to_vector(F.col("features")))
    model = PCA(k=2, inputCol="features_vector", outputCol="pca_features").fit(vectors)
    model.transform(vectors).select("path", "label", "pca_features").write.mode(
        "overwrite"
    ).parquet(output_uri)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("stage", choices=["featurize", "pca"])
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--weights", default="")
    args = parser.parse_args()
    from imagefeatures.session import get_spark

    spark = get_spark(f"notebook-{args.stage}")
    spark.sparkContext.addPyFile(_bench_zip())
    started = time.time()
    if args.stage == "featurize":
        featurize(spark, args.input, args.output, args.weights)
    else:
        pca(spark, args.input, args.output)
    print(f"notebook {args.stage}: {time.time() - started:.1f}s after Spark start", flush=True)
    return 0


def _bench_zip() -> str:
    """bench/ as a zip for the workers (the UDF uses bench.notebook_method)."""
    import tempfile
    from pathlib import Path

    from imagefeatures.packaging import build_package_zip

    bench_dir = Path(__file__).resolve().parent
    archive = Path(tempfile.mkdtemp(prefix="bench-")) / "bench.zip"
    return str(build_package_zip(archive, bench_dir))


if __name__ == "__main__":
    raise SystemExit(main())
