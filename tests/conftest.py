"""Shared by every test: the local Spark environment (set before pyspark or TensorFlow start),
a session-scoped SparkSession and the `random` model's weights file."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from localdev.local_spark import LOCAL_DRIVER_JAVA_OPTIONS, use_local_spark_env

# Before pyspark or TensorFlow start: workers on this interpreter, Java 17, quiet TF.
use_local_spark_env()
os.environ.setdefault("KERAS_HOME", str(Path(__file__).resolve().parent.parent / ".keras"))
# py4j says "Closing down clientserver connection" (INFO) from a destructor at interpreter
# exit, after pytest has closed the stream its handler writes to: a "Logging error" traceback
# would end make test's output, after pytest's summary.
logging.getLogger("py4j").setLevel(logging.WARNING)


@pytest.fixture(scope="session")
def spark():
    from pyspark.sql import SparkSession

    from imagefeatures.session import get_spark

    session = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.driver.memory", "2g")
        .config("spark.driver.extraJavaOptions", LOCAL_DRIVER_JAVA_OPTIONS)
        .getOrCreate()
    )
    get_spark("tests")  # the jobs' own set-up: log level, package shipped to workers
    yield session
    session.stop()


@pytest.fixture(scope="session")
def random_weights_file(tmp_path_factory) -> Path:
    """The `random` model's weights saved as a Keras weights file (as a user would pass one)."""
    from imagefeatures.model import save_random_weights

    path = tmp_path_factory.mktemp("weights") / "mobilenet_v2_random.weights.h5"
    save_random_weights(str(path))
    return path
