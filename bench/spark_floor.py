"""The floor of our jobs' fixed cost: a Spark application that starts, reads the run's manifest,
writes its rows as parquet, reads the count back and stops, with nothing else: no model, no
Python worker. `make bench` runs it with the featurize step's own command line
(bench.dag_steps.with_application), so it pays what every step pays before its own work.

    spark-submit ... bench/spark_floor.py --manifest <run>/manifest.parquet --output <folder>
"""

from __future__ import annotations

import argparse
import sys

from pyspark.sql import SparkSession


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    spark = SparkSession.builder.appName("spark-floor").getOrCreate()
    spark.read.parquet(args.manifest).write.mode("overwrite").parquet(args.output)
    rows = spark.read.parquet(args.output).count()
    spark.stop()
    print(f"spark floor: {rows} manifest rows written back", flush=True)
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
