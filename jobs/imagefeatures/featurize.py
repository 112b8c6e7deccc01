"""Featurize job: image files -> MobileNetV2 vectors (features) and undecodable files (rejects).

Every listed file ends in exactly one of the two datasets, so features + rejects = input. With
`--base` (an earlier run's output), unchanged images keep that run's vectors (incremental).
"""

from __future__ import annotations

import argparse
import multiprocessing
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from functools import reduce
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

import numpy as np
import pandas as pd
from pyspark import SparkFiles, StorageLevel, TaskContext
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from imagefeatures import storage
from imagefeatures.cli_types import positive_int
from imagefeatures.errors import JobInputError, first_line
from imagefeatures.images import EMPTY_FILE_ERROR, IMAGE_GLOB, ImageDecodeError, preprocess_image
from imagefeatures.incremental import (
    FILE_IDENTITY,
    Increment,
    featurizer_key,
    plan_increment,
    read_listed,
)
from imagefeatures.model import (
    WEIGHTS_SUFFIX,
    check_weights_file,
    get_feature_fn,
    model_batches,
    worker_tensorflow_env,
)

# precision: what the model ran in for that image (null for a reject).
RESULT_TYPE = "struct<features:array<float>,error:string,precision:string>"
# 32 images per model call: 64 grew each worker's memory (MobileNetV2's activations) by
# about 0.6 GiB without speeding the model up (BENCHMARKS.md).
DEFAULT_BATCH_SIZE = 32
# Images per scan task. Spark counts each file as at least openCostInBytes (4 MB by
# default), so small photos made tasks of ~32 files, each paying the per-task set-up of the
# JVM and the Python worker; 128 cuts that 4x at the cost of a longer tail (BENCHMARKS.md).
DEFAULT_FILES_PER_TASK = 128
BUILTIN_WEIGHTS = ("imagenet", "random")
# openvino: the driver exports the model once and workers run it without TensorFlow, about
# twice as fast (openvino_runtime); tensorflow: each worker builds the Keras model (the reference).
RUNTIMES = ("openvino", "tensorflow")
DEFAULT_RUNTIME = "openvino"
# bf16 only on OpenVINO, and only where the CPU has it (BENCHMARKS.md: features within cosine
# 0.999 of f32; on AMX 1.4x f32's rate in Spark, 2x in one process); f32 gives TensorFlow's.
PRECISIONS = ("f32", "bf16")
_SHIPPED_WEIGHTS_PREFIX = "sparkfiles:"
_SEPARATOR = "\u0000"  # no file URI holds it
_OPENVINO_PREFIX = "openvino:"
# OpenVINO exports started before Spark, by weights spec (export_model_ahead).
_EXPORTS_AHEAD: dict[str, Future] = {}


def image_files(spark: SparkSession, input_uri: str) -> DataFrame:
    """Spark's binaryFile source over every .jpg/.jpeg/.png under `input_uri`, recursively.

    Raises JobInputError naming the URI when it does not exist or holds no image.
    Content is read only by queries that select it.
    """
    try:
        files = (
            spark.read.format("binaryFile")
            .option("recursiveFileLookup", "true")
            .option("pathGlobFilter", IMAGE_GLOB)
            .load(input_uri)
        )
    except AnalysisException as exc:
        raise JobInputError(f"input {input_uri} cannot be read: {first_line(exc)}") from exc
    if not input_files(files):
        raise JobInputError(f"input {input_uri} holds no .jpg, .jpeg or .png image")
    return files


def with_label(df: DataFrame) -> DataFrame:
    """Add `label`: the name of the file's parent folder, kept exactly as written."""
    return df.withColumn("label", F.element_at(F.split("path", "/"), -2))


def spark_path(uri: str) -> str:
    """The `path` column's form of a file URI from inputFiles() (Hadoop Path.toString):
    percent-escapes decoded, no empty authority (file:///a%20b -> file:/a b)."""
    parts = urlsplit(uri)
    authority = f"//{parts.netloc}" if parts.netloc else ""
    return f"{parts.scheme}:{authority}{unquote(parts.path)}" if parts.scheme else unquote(uri)


def listed_paths(files: DataFrame) -> list[str]:
    """The `path` of every listed file, from Spark's file index rather than a scan.

    A scan silently skips zero-byte files (Spark makes no split for them); the index does not,
    so this is the listing that features + rejects must add up to.
    """
    return [spark_path(uri) for uri in input_files(files)]


def input_files(files: DataFrame) -> list[str]:
    """files.inputFiles() in one py4j call: PySpark's fetches the Java array one element per
    call (1.5 s for 12,000 files, measured; 0.06 s this way)."""
    jvm = files.sparkSession._jvm
    # Hadoop's join takes the String[] as it is (py4j finds no Object[] or varargs overload).
    joined = jvm.org.apache.hadoop.util.StringUtils.join(_SEPARATOR, files._jdf.inputFiles())
    return joined.split(_SEPARATOR) if joined else []


def listing(files: DataFrame, paths: list[str] | None = None) -> DataFrame:
    """(path, label) of every listed file (listed_paths, when not given)."""
    paths = listed_paths(files) if paths is None else paths
    return with_label(local_strings(files.sparkSession, "path", paths))


def local_strings(spark: SparkSession, column: str, values: list[str]) -> DataFrame:
    """A one-column DataFrame held in the query plan, made through Arrow: a parallelized
    Python list would start Python workers to read it back (a second worker boot in every
    run, about 1 s, measured)."""
    arrow = "spark.sql.execution.arrow.pyspark.enabled"
    previous = spark.conf.get(arrow)
    spark.conf.set(arrow, "true")
    try:
        return spark.createDataFrame(
            pd.DataFrame({column: values}, dtype=object), f"{column} string"
        )
    finally:
        spark.conf.set(arrow, previous)


def read_images(spark: SparkSession, input_uri: str) -> tuple[DataFrame, DataFrame]:
    """(images, listing): (path, label, content, length, modificationTime) as scanned, and
    (path, label) as listed."""
    files = image_files(spark, input_uri)
    return as_images(files), listing(files)


def as_images(files: DataFrame) -> DataFrame:
    """binaryFile rows -> (path, label, content, length, modificationTime)."""
    return with_label(files).select("path", "label", "content", *FILE_IDENTITY[1:])


def featurize_contents(
    feature_fn, contents: pd.Series, batch_size: int, precision: str = "f32"
) -> pd.DataFrame:
    """Features (or the decode error) for each image in `contents`, in order, and the
    precision the model ran in for it."""
    inputs, errors = [], []
    for content in contents:
        try:
            inputs.append(preprocess_image(content))
            errors.append(None)
        except ImageDecodeError as exc:
            inputs.append(None)
            errors.append(str(exc))
    decoded = [i for i, array in enumerate(inputs) if array is not None]
    features: list[np.ndarray | None] = [None] * len(inputs)
    for batch in model_batches(len(decoded), batch_size):
        rows = decoded[batch]
        vectors = feature_fn(np.stack([inputs[i] for i in rows]))
        for row, vector in zip(rows, vectors, strict=True):
            features[row] = vector
    ran = [None if vector is None else precision for vector in features]
    return pd.DataFrame({"features": features, "error": errors, "precision": ran})


def make_featurize_udf(model_ref: str, batch_size: int, precision: str = "f32"):
    """A pandas UDF content -> struct(features, error, precision). The model is fetched from
    the per-process cache, so each Python worker builds it once and reuses it for every task."""

    @F.pandas_udf(RESULT_TYPE)
    def featurize_udf(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        task = TaskContext.get()
        threads = task.cpus() if task else None
        feature_fn, ran = worker_feature_fn(model_ref, threads, precision)
        for contents in batches:
            yield featurize_contents(feature_fn, contents, batch_size, ran)

    return featurize_udf


def with_features(
    images: DataFrame,
    model_ref: str,
    batch_size: int = DEFAULT_BATCH_SIZE,
    precision: str = "f32",
) -> DataFrame:
    """(path, label, content, ...) -> (path, label, ..., features, error, precision): the
    columns but content kept; one of features and error is null."""
    # The UDF captures the context's worker environment when it is built; a value set with
    # --conf spark.executorEnv.NAME stays as given.
    environment = images.sparkSession.sparkContext.environment
    for name, value in worker_tensorflow_env().items():
        environment.setdefault(name, value)
    result = make_featurize_udf(model_ref, batch_size, precision)("content").alias("result")
    kept = [name for name in images.columns if name != "content"]
    return images.select(*kept, result).select(*kept, "result.*")


def with_reused(increment: Increment) -> DataFrame:
    """The base run's vectors of unchanged images, as results rows (no error; the precision
    of a run before this one is not known per image)."""
    none = F.lit(None).cast("string")
    return with_label(increment.reused).select(
        "path", "label", *FILE_IDENTITY[1:], "features", none.alias("error"),
        none.alias("precision"),
    )  # fmt: skip


def write_features(
    spark: SparkSession, features: DataFrame, features_uri: str, increment: Increment
) -> None:
    """Write `features` to `features_uri`, after copying the base's part files whose every row
    is reused (increment.copied): those vectors are not read or written again."""
    if not increment.copied:
        features.write.mode("overwrite").parquet(features_uri)
        return
    storage.delete_tree(spark, features_uri)  # what a failed attempt of this step left
    base_features = storage.join_uri(increment.base, "features")
    storage.copy_files(spark, base_features, features_uri, increment.copied)
    reuse = increment.reuse()
    print(
        f"featurize: {len(increment.copied)} part files of {base_features} copied; "
        f"{reuse['rows_rewritten']} reused vectors written again",
        flush=True,
    )
    features.write.mode("append").parquet(features_uri)


def accepted(results: DataFrame) -> DataFrame:
    """Features, with the file's size and modification time: what tells the next run
    whether the image changed."""
    return results.where(F.col("error").isNull()).select(
        "path", "label", "features", *FILE_IDENTITY[1:]
    )


def rejected(results: DataFrame, listed: DataFrame) -> DataFrame:
    """Files that failed to decode, plus listed files the scan never returned (empty ones)."""
    failed = results.where(F.col("error").isNotNull()).select("path", "label", "error")
    unread = listed.join(results.select("path"), "path", "left_anti").select(
        "path", "label", F.lit(EMPTY_FILE_ERROR).alias("error")
    )
    return failed.unionByName(unread)


def pack_small_files(spark: SparkSession, files_per_task: int) -> None:
    """Let each scan task take up to about `files_per_task` small files.

    Spark packs files into a task up to spark.sql.files.maxPartitionBytes, counting each as
    its size plus openCostInBytes; setting the latter to maxPartitionBytes / files_per_task
    groups small images without a shuffle: exactly `files_per_task` of a few KB each (up to
    maxPartitionBytes / files_per_task², 8 KiB at the defaults), fewer of larger files, whose
    size counts too. Small inputs still spread over every core (Spark caps a task's bytes
    at the input's total / the default parallelism).
    """
    # Spark's own parse of the setting, which may be written as "128m" or "134217728b".
    max_partition_bytes = spark._jsparkSession.sessionState().conf().filesMaxPartitionBytes()
    open_cost = max(1, max_partition_bytes // files_per_task)
    spark.conf.set("spark.sql.files.openCostInBytes", str(open_cost))


def set_partitions(images: DataFrame, partitions: int | None) -> DataFrame:
    """Shrink without a shuffle (coalesce); grow only when asked for more than the listing gives."""
    if not partitions:
        return images
    current = images.rdd.getNumPartitions()
    return images.coalesce(partitions) if partitions <= current else images.repartition(partitions)


def ship_weights(spark: SparkSession, weights: str) -> str:
    """A reference the workers can resolve: `imagenet`, `random`, or a weights file
    (local path or any URI Spark reads, s3:// included) distributed with addFile."""
    if weights in BUILTIN_WEIGHTS:
        return weights
    name = PurePosixPath(weights).name
    if not name.endswith(WEIGHTS_SUFFIX) and not name.endswith(".h5"):
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
) -> tuple[str, dict | None]:
    """(What the workers load, what the model cache did): the weights reference itself for
    TensorFlow; for OpenVINO, the model found in `model_cache`, else exported here once or by
    `exported` (an unusable weights spec fails here, before any task) and stored there.
    `model_key`: model_key_of(weights_ref), when the caller has it already."""
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
            xml = cache.fetch(spark, model_cache, key, new_export_folder())
            cached = {"uri": model_cache, "key": key, "hit": xml is not None}
        if not cached or not cached["hit"]:
            xml = exported.result() if exported is not None else export_ir(weights)
    if cached and not cached["hit"]:
        cached["stored"] = cache.store(spark, model_cache, cached["key"], xml)
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
    if precision == "bf16" and runtime != "openvino":
        raise JobInputError(
            f"precision bf16 runs only on the openvino runtime, not on {runtime}: "
            "choose runtime openvino, or precision f32"
        )


def precisions_that_ran(results: DataFrame) -> dict[str, int]:
    """{precision: images featurized in it}: workers on CPUs without bf16 ran f32."""
    rows = results.where(F.col("precision").isNotNull()).groupBy("precision").count().collect()
    return {row["precision"]: row["count"] for row in rows}


def summarize_precision(counts: dict[str, int]) -> str | None:
    """The one precision that ran, "mixed" when workers differed, None when no image ran."""
    if len(counts) > 1:
        return "mixed"
    return next(iter(counts), None)


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


def run_featurize(
    spark: SparkSession,
    input_uri: str,
    output_uri: str,
    weights: str = "imagenet",
    batch_size: int = DEFAULT_BATCH_SIZE,
    partitions: int | None = None,
    files_per_task: int = DEFAULT_FILES_PER_TASK,
    runtime: str = DEFAULT_RUNTIME,
    precision: str = "f32",
    model_cache: str | None = None,
    base: str | None = None,
    full_run_reason: str | None = None,
) -> dict:
    """Write <output>/features, <output>/rejects and <output>/featurize_summary.json.
    `model_cache`: a folder or URI where exported OpenVINO models are kept between runs.
    `base`: an earlier run's output folder whose vectors of unchanged images are reused;
    `full_run_reason`: why there is none (the summary keeps it)."""
    started = time.time()
    check_model_choice(runtime, precision)
    pack_small_files(spark, files_per_task)
    files = image_files(spark, input_uri)
    paths = listed_paths(files)
    exported = _EXPORTS_AHEAD.pop(weights, None) if runtime == "openvino" else None
    weights_ref = ship_weights(spark, weights)
    model_key = model_key_of(weights_ref)
    featurizer = featurizer_key(model_key, runtime, precision)
    increment = plan_increment(spark, files, paths, base, featurizer, full_run_reason)
    if increment.reason:
        print(f"featurize: full run: {increment.reason}", flush=True)
    # Files the scan may skip (empty ones) are among those to featurize, never among the reused.
    listed = listing(files, increment.todo)
    computed, cached = None, None
    if increment.todo:  # an unchanged input needs no model at all
        model_ref, cached = ship_model(
            spark, weights_ref, runtime, exported, model_cache, model_key
        )
        # Arrow batches are what the UDF sees at once: keep them at the model's batch size.
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(batch_size))
        images = files if increment.base is None else read_listed(spark, increment.todo)
        images = set_partitions(as_images(images), partitions)
        # Both datasets come from one pass of the model. Reused vectors are not kept: they
        # are read once, by the features' write (the rejects need only their paths).
        computed = with_features(images, model_ref, batch_size, precision)
        computed = computed.persist(StorageLevel.MEMORY_AND_DISK)
    reused = None if increment.reused is None else with_reused(increment)
    results = reduce(DataFrame.unionByName, [p for p in (computed, reused) if p is not None])
    try:
        features_uri = storage.join_uri(output_uri, "features")
        rejects_uri = storage.join_uri(output_uri, "rejects")
        write_features(spark, accepted(results), features_uri, increment)
        rejected(results, listed).write.mode("overwrite").parquet(rejects_uri)
        # Counts read back from what was written: the numbers the datasets really hold.
        written = {
            name: spark.read.parquet(uri).count()
            for name, uri in (("features", features_uri), ("rejects", rejects_uri))
        }
        ran = {} if computed is None else precisions_that_ran(computed)
    finally:
        if computed is not None:
            computed.unpersist()
    summary = {
        "input": input_uri,
        "weights": weights,
        "runtime": runtime,
        "precision": summarize_precision(ran),
        "precision_requested": precision,
        "images_per_precision": ran,
        "model_cache": cached,
        # What made the vectors: a later run reuses them only if its own key is the same.
        "featurizer": featurizer,
        "incremental": increment.summary(),
        "reuse": increment.reuse() if increment.base else None,
        "batch_size": batch_size,
        "files_per_task": files_per_task,
        "listed": len(paths),
        **written,
        "seconds": round(time.time() - started, 2),
    }
    storage.write_json(spark, storage.join_uri(output_uri, "featurize_summary.json"), summary)
    return summary


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="featurize.py", description="Image files -> MobileNetV2 feature vectors (parquet)."
    )
    parser.add_argument("--input", required=True, help="folder or s3:// prefix of images")
    parser.add_argument("--output", required=True, help="run folder: features/, rejects/")
    parser.add_argument(
        "--weights",
        default="imagenet",
        help="imagenet (Keras download), random (fixed seed) or a .weights.h5 path/URI",
    )
    parser.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument(
        "--partitions",
        type=positive_int,
        default=None,
        help="Spark partitions (no shuffle to shrink)",
    )
    parser.add_argument(
        "--files-per-task",
        type=positive_int,
        default=DEFAULT_FILES_PER_TASK,
        help="small image files per scan task (larger files count by their size)",
    )
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default=DEFAULT_RUNTIME,
        help="what runs the model in the workers: openvino, or tensorflow (the reference)",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="f32",
        help="bf16 (openvino only) where the CPU has it, else f32; the summary says which ran",
    )
    parser.add_argument(
        "--model-cache",
        default=None,
        help="folder or URI (s3:// on EMR) where the exported OpenVINO model is kept between "
        "runs, keyed by the weights and package versions (default: no cache)",
    )
    parser.add_argument(
        "--base",
        default=None,
        help="an earlier run's output folder: its vectors of images unchanged since (same "
        "path, size and modification time, same model) are reused, the rest featurized",
    )
    parser.add_argument(
        "--full-run-reason",
        default=None,
        help="without --base: why every image is featurized (kept in the summary)",
    )
    return parser.parse_args(argv)
