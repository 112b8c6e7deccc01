"""The SparkSession the jobs run in, and shipping this package to Spark's Python workers."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from pyspark.sql import SparkSession

from imagefeatures.packaging import PACKAGE_DIR, build_package_zip


def get_spark(app_name: str) -> SparkSession:
    """The active session, or a new one for `app_name` (master from spark-submit)."""
    # Python workers start with PYSPARK_PYTHON; without it they are a bare `python3`
    # without TensorFlow. EMR's spark-env sets it; locally the driver's interpreter is right.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = SparkSession.builder.appName(app_name).getOrCreate()
    # INFO drowns the job's own messages (and the stderr tail the DAG shows on failure).
    spark.sparkContext.setLogLevel(os.environ.get("IMAGEFEATURES_SPARK_LOG_LEVEL", "WARN"))
    ship_package(spark)
    return spark


def ship_package(spark: SparkSession) -> None:
    """Make `imagefeatures` importable in Python workers.

    On EMR it arrives as a zip through --py-files and is already importable. Run from a
    checkout (`spark-submit jobs/featurize.py`), it is a plain folder the workers cannot see:
    zip it once per SparkContext and add it with addPyFile.
    """
    if not PACKAGE_DIR.is_dir():
        return  # imported from the --py-files zip
    context = spark.sparkContext
    if getattr(context, "_imagefeatures_shipped", False):
        return
    archive = Path(tempfile.mkdtemp(prefix="imagefeatures-")) / "imagefeatures.zip"
    build_package_zip(archive)
    context.addPyFile(str(archive))
    context._imagefeatures_shipped = True
