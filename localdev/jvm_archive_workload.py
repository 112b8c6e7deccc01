"""The Spark work a local JVM's class-data sharing archive is recorded from (localdev.jvm_archive).

Run by spark-submit with `-XX:ArchiveClassesAtExit`: the JVM archives every class it loaded, so
this touches what the jobs use (parquet and JSON, a pandas UDF over Arrow returning a struct
with an array of floats, range partitioning, the cache, aggregates, a union, Spark ML's PCA
model and vectors) without the jobs' own code, model or data. Standard pyspark only.
"""

from __future__ import annotations

import sys
import tempfile

import pandas as pd
from pyspark import StorageLevel
from pyspark.ml.feature import PCA
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, FloatType, StringType, StructField, StructType

RESULT = StructType(
    [StructField("features", ArrayType(FloatType())), StructField("error", StringType())]
)


@F.pandas_udf(RESULT)
def _vectors(paths: pd.Series) -> pd.DataFrame:
    return pd.DataFrame(
        {"features": [[float(len(p)), 1.0, 2.0] for p in paths], "error": [None] * len(paths)}
    )


def exercise(spark: SparkSession, folder: str) -> int:
    """Write, read, featurize-like, cache, count and project a small dataset in `folder`;
    returns the rows read back (so a broken run is seen)."""
    rows = [(f"file:/images/{i % 3}/{i}.jpg", str(i % 3), i, f"{i:032x}") for i in range(64)]
    manifest: DataFrame = spark.createDataFrame(
        rows, "path string, label string, size long, etag string"
    )
    manifest.write.mode("overwrite").parquet(f"{folder}/manifest.parquet")
    todo = spark.read.parquet(f"{folder}/manifest.parquet").repartitionByRange(2, "path")
    results = todo.select("*", _vectors("path").alias("r")).select("*", "r.*").drop("r")
    results = results.persist(StorageLevel.MEMORY_AND_DISK)
    results.where(F.col("error").isNull()).write.mode("overwrite").parquet(f"{folder}/features")
    results.where(F.col("error").isNotNull()).write.mode("overwrite").parquet(f"{folder}/rejects")
    results.groupBy("label").count().collect()
    results.unpersist()
    features = spark.read.parquet(f"{folder}/features")
    vectors = features.select(array_to_vector("features").alias("v"))
    model = PCA(k=2, inputCol="v", outputCol="p").fit(vectors)
    projected = model.transform(vectors).select(vector_to_array("p").alias("pca"))
    projected.unionByName(projected).write.mode("overwrite").json(f"{folder}/pca")
    return spark.read.parquet(f"{folder}/features").count()


def main() -> int:
    spark = SparkSession.builder.appName("jvm-archive-workload").getOrCreate()
    with tempfile.TemporaryDirectory(prefix="jvm-archive-") as folder:
        read_back = exercise(spark, folder)
    spark.stop()
    if read_back != 64:
        print(f"jvm archive workload: read back {read_back} rows, not 64", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
