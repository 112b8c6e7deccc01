"""The model, from a weights spec to what each Spark worker runs: the weights file shipped with
the job, the OpenVINO model exported once (ahead of Spark, or from the model cache), and the
checks that fail the job in the driver, before any task, when the weights are unusable.

Runtimes (contract.RUNTIMES): openvino: the driver exports the model once and workers run it
without TensorFlow, about twice as fast (openvino_runtime); tensorflow: each worker builds the
Keras model (the reference). Precisions: bf16 only on OpenVINO, and only where the CPU has it
(BENCHMARKS.md: features within cosine 0.999 of f32; on AMX 1.4x f32's rate in Spark, 2x in
one process); f32 gives TensorFlow's.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from pyspark import SparkFiles
from pyspark.sql import SparkSession

from imagefeatures.contract import (
    BUILTIN_WEIGHTS,
    PRECISIONS,
    RUNTIMES,
    WEIGHTS_SUFFIX,
    WEIGHTS_SUFFIXES,
    precision_problem,
)
from imagefeatures.errors import JobInputError, first_line
from imagefeatures.model import check_weights_file, get_feature_fn

_SHIPPED_WEIGHTS_PREFIX = "sparkfiles:"
_OPENVINO_PREFIX = "openvino:"
# OpenVINO exports started before Spark, by weights spec (export_model_ahead).
_EXPORTS_AHEAD: dict[str, Future] = {}


def take_export_ahead(weights: str, runtime: str) -> Future | None:
    """The export export_model_ahead started for `weights`, if any (each is used once)."""
    return _EXPORTS_AHEAD.pop(weights, None) if runtime == "openvino" else None


def ship_weights(spark: SparkSession, weights: str) -> str:
    """A reference the workers can resolve: `imagenet`, `random`, or a weights file
    (local path or any URI Spark reads, s3:// included) distributed with addFile."""
    if weights in BUILTIN_WEIGHTS:
        return weights
    name = PurePosixPath(weights).name
    if not name.endswith(WEIGHTS_SUFFIXES):
        raise JobInputError(
            f"--weights {weights}: expected imagenet, random, or a Keras weights file "
            f"(*{WEIGHTS_SUFFIX}) of the whole MobileNetV2"
        )
    try:
        spark.sparkContext.addFile(weights)
    except Exception as exc:  # py4j wraps FileNotFoundException and friends
        raise JobInputError(f"--weights {weights} cannot be read: {first_line(exc)}") from exc
    return _SHIPPED_WEIGHTS_PREFIX + name


def export_model_ahead(weights: str, runtime: str, model_cache: str | None = None) -> None:
    """Start the OpenVINO export in another process before Spark starts, so that its seconds
    of TensorFlow import and conversion overlap Spark's start-up and the input's listing; for
    weights the driver reads without Spark (a builtin name or a local path). run_featurize
    uses the result, and reports its errors as it reports its own. With a model cache, only
    when the cache is a local folder without the model: a cache in S3 can be read only once
    Spark runs, and an export started on speculation would take CPU from a run that then
    finds the model there (the usual case: a miss happens once per model and versions).

    A process where it is safe to fork one (spark-submit's driver before Spark starts): the
    import and the conversion hold the GIL for seconds, which slowed the driver's own start-up
    beside a thread, and the driver then never holds TensorFlow's memory.
    """
    if runtime != "openvino" or not (weights in BUILTIN_WEIGHTS or not urlsplit(weights).scheme):
        return
    if model_cache and not _missing_from_local_cache(model_cache, weights):
        return
    from imagefeatures.openvino_runtime import export_ir, new_export_folder

    folder = new_export_folder()  # this process removes it at exit, after the workers' fetch
    executor: Executor
    if threading.active_count() == 1:  # spark-submit's driver, before its SparkSession
        # fork: the child starts with the job's modules imported (spawn cost 6 s more).
        executor = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))
    else:
        # A fork of a process that runs other threads (a caller's SparkSession, py4j) can
        # inherit a lock one of them holds, and hang: it hung a test run.
        executor = ThreadPoolExecutor(1, thread_name_prefix="model-export")
    _EXPORTS_AHEAD[weights] = executor.submit(export_ir, weights, folder)
    executor.shutdown(wait=False)


def _missing_from_local_cache(model_cache: str, weights: str) -> bool:
    from imagefeatures import model_cache as cache

    if not cache.is_local(model_cache):
        return False
    try:
        key = cache.cache_key(cache.weights_identity(weights))
    except OSError:
        return True  # an unreadable weights file: the export reports it
    return not cache.has_local_entry(model_cache, key)


def ship_model(
    spark: SparkSession,
    weights_ref: str,
    runtime: str,
    exported: Future | None = None,
    model_cache: str | None = None,
    model_key: str | None = None,
    model_seals: str | None = None,
) -> tuple[str, dict | None]:
    """(What the workers load, what the model cache did): the weights reference itself for
    TensorFlow; for OpenVINO, the model found in `model_cache`, else exported here once or by
    `exported` (an unusable weights spec fails here, before any task) and stored there.
    `model_key`: model_key_of(weights_ref), when the caller has it already; `model_seals`:
    where the Airflow connection's seals of cache entries are (an entry is used only if
    sealed as it is)."""
    if runtime == "tensorflow":
        check_weights_load(weights_ref)
        return weights_ref, None
    from imagefeatures import model_cache as cache
    from imagefeatures.openvino_runtime import export_ir, new_export_folder

    cached = None
    with unusable_weights_fail_the_job(weights_ref):
        weights = resolve_weights_ref(weights_ref)
        if model_cache:
            key = model_key or cache.cache_key(cache.weights_identity(weights))
            xml = cache.fetch(spark, model_cache, key, new_export_folder(), model_seals)
            cached = {"uri": model_cache, "key": key, "hit": xml is not None}
        if not cached or not cached["hit"]:
            xml = exported.result() if exported is not None else export_ir(weights)
    if cached and not cached["hit"]:
        digests = cache.store(spark, model_cache, cached["key"], xml)
        cached["stored"] = digests is not None
        if digests is not None:  # what the connection seals once the run passed
            cached["digests"] = digests
    spark.sparkContext.addFile(str(xml))
    spark.sparkContext.addFile(str(xml.with_suffix(".bin")))  # found beside the .xml
    return _OPENVINO_PREFIX + xml.name, cached


def model_key_of(weights_ref: str) -> str:
    """The digest of the weights and of the packages that build the model (a model cache
    entry's key); an unreadable weights file fails the job."""
    from imagefeatures import model_cache as cache

    with unusable_weights_fail_the_job(weights_ref):
        return cache.cache_key(cache.weights_identity(resolve_weights_ref(weights_ref)))


def worker_feature_fn(model_ref: str, threads: int | None, precision: str = "f32"):
    """(batch -> features, the precision it runs in) of a Python worker, for a ship_model
    reference."""
    if model_ref.startswith(_OPENVINO_PREFIX):
        from imagefeatures import openvino_runtime

        xml = SparkFiles.get(model_ref[len(_OPENVINO_PREFIX) :])
        return openvino_runtime.get_feature_fn(xml, threads, precision)
    return get_feature_fn(resolve_weights_ref(model_ref), threads=threads), "f32"


def check_model_choice(runtime: str, precision: str) -> None:
    """Refuse a runtime or precision the job does not have, before anything runs."""
    if runtime not in RUNTIMES:
        raise JobInputError(f"runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
    if precision not in PRECISIONS:
        raise JobInputError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    problem = precision_problem(runtime, precision)
    if problem:
        raise JobInputError(problem)


def resolve_weights_ref(weights_ref: str) -> str:
    if weights_ref.startswith(_SHIPPED_WEIGHTS_PREFIX):
        return SparkFiles.get(weights_ref[len(_SHIPPED_WEIGHTS_PREFIX) :])
    return weights_ref


def check_weights_load(weights_ref: str) -> None:
    """Fail the job before any task runs when the weights are unusable.

    A weights file is checked by reading its HDF5 index (no TensorFlow in the driver: building
    the model there would cost seconds of every run); `imagenet` is built once here, so a
    download that cannot happen fails with one clear line instead of in every task.
    """
    if weights_ref == "random":
        return
    with unusable_weights_fail_the_job(weights_ref):
        if weights_ref == "imagenet":
            get_feature_fn(weights_ref)
        else:
            check_weights_file(resolve_weights_ref(weights_ref))


@contextmanager
def unusable_weights_fail_the_job(weights_ref: str) -> Iterator[None]:
    """Any error while the driver loads the weights becomes one clear JobInputError."""
    try:
        yield
    except Exception as exc:
        raise JobInputError(f"weights {weights_ref!r} cannot be loaded: {first_line(exc)}") from exc
