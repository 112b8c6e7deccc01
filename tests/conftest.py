"""Shared fixtures: local Spark environment, a session-scoped SparkSession, tiny images."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from localdev.local_spark import LOCAL_DRIVER_JAVA_OPTIONS, use_local_spark_env

# Before pyspark or TensorFlow start: workers on this interpreter, Java 17, quiet TF.
use_local_spark_env()
os.environ.setdefault("KERAS_HOME", str(Path(__file__).resolve().parent.parent / ".keras"))


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
