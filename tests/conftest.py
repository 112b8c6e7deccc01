"""Shared by every test: the local Spark environment (set before pyspark or TensorFlow start),
the markers that say which tests are slow (set here by where a test lives, and only here), a
session-scoped SparkSession and the `random` model's weights file."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from localdev.local_spark import local_driver_java_options, use_local_spark_env

# Before pyspark or TensorFlow start: workers on this interpreter, Java 17, quiet TF.
use_local_spark_env()
os.environ.setdefault("KERAS_HOME", str(Path(__file__).resolve().parent.parent / ".keras"))
# py4j says "Closing down clientserver connection" (INFO) from a destructor at interpreter
# exit, after pytest has closed the stream its handler writes to: a "Logging error" traceback
# would end make test's output, after pytest's summary.
logging.getLogger("py4j").setLevel(logging.WARNING)


# What each slow test costs, by where it lives (pyproject.toml describes the markers). The
# README's quick loop deselects them: -m "not spark and not e2e and not model".
MARKS_BY_PATH = (
    ("tests/spark/", ("spark",)),
    ("tests/emulator/test_emr_fidelity.py", ("spark",)),  # one of its steps runs spark-submit
    ("tests/localdev/test_jvm_archive.py", ("spark",)),  # spark-submit with the class archive
    ("tests/jobs/test_model.py", ("model",)),  # builds MobileNetV2 in TensorFlow subprocesses
    ("tests/emulator/test_spark_steps.py", ("e2e",)),
    ("tests/dag/on_emulator/", ("e2e",)),
    ("tests/dag/test_dag_run.py", ("e2e",)),
    ("tests/stack/", ("e2e", "stack")),
)


# The costliest files first, so that make test's workers (pytest-xdist, a file each) do not
# end on one long file started last. A file's tests stay together (a stable sort by file cost).
COST_ORDER = ("stack", "e2e", "spark", "model")


def _cost_rank(item: pytest.Item) -> int:
    marks = {mark.name for mark in item.iter_markers()}
    return next((i for i, name in enumerate(COST_ORDER) if name in marks), len(COST_ORDER))


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by them
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        where = item.path.relative_to(config.rootpath).as_posix()
        for prefix, marks in MARKS_BY_PATH:
            if where.startswith(prefix):
                for mark in marks:
                    item.add_marker(mark)
    items.sort(key=_cost_rank)


@pytest.fixture(scope="session")
def spark():
    from pyspark.sql import SparkSession

    from imagefeatures.session import get_spark

    session = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.driver.memory", "2g")
        .config("spark.driver.extraJavaOptions", local_driver_java_options())
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
