"""Featurize job: image files -> MobileNetV2 vectors (features) and undecodable files (rejects).

Every listed file ends in exactly one of the two datasets, so features + rejects = input. With
`--base` (an earlier run's output), unchanged images keep that run's vectors (incremental).
"""

from __future__ import annotations

import argparse
import time
from functools import reduce

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from imagefeatures import storage
from imagefeatures.cli_types import positive_int
from imagefeatures.contract import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_PRECISION,
    DEFAULT_RUNTIME,
    FEATURES,
    FEATURIZE_SUMMARY,
    PRECISIONS,
    REJECTS,
    RUNTIMES,
)
from imagefeatures.images import EMPTY_FILE_ERROR
from imagefeatures.incremental import (
    FILE_IDENTITY,
    Increment,
    featurizer_key,
    plan_increment,
    read_listed,
)
from imagefeatures.inference import precisions_that_ran, summarize_precision, with_features
from imagefeatures.listing import as_images, image_files, listed_paths, listing, with_label
from imagefeatures.model_shipping import (
    check_model_choice,
    model_key_of,
    ship_model,
    ship_weights,
    take_export_ahead,
)
from imagefeatures.progress import ImageCounters, JobProgress, add_progress_arguments

# Images per scan task. Spark counts each file as at least openCostInBytes (4 MB by
# default), so small photos made tasks of ~32 files, each paying the per-task set-up of the
# JVM and the Python worker; 128 cuts that 4x at the cost of a longer tail (BENCHMARKS.md).
DEFAULT_FILES_PER_TASK = 128


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
    base_features = storage.join_uri(increment.base, FEATURES)
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


def run_featurize(
    spark: SparkSession,
    input_uri: str,
    output_uri: str,
    weights: str = "imagenet",
    batch_size: int = DEFAULT_BATCH_SIZE,
    partitions: int | None = None,
    files_per_task: int = DEFAULT_FILES_PER_TASK,
    runtime: str = DEFAULT_RUNTIME,
    precision: str = DEFAULT_PRECISION,
    model_cache: str | None = None,
    base: str | None = None,
    full_run_reason: str | None = None,
    progress: JobProgress | None = None,
) -> dict:
    """Write <output>/features, <output>/rejects and <output>/featurize_summary.json.
    `model_cache`: a folder or URI where exported OpenVINO models are kept between runs.
    `base`: an earlier run's output folder whose vectors of unchanged images are reused;
    `full_run_reason`: why there is none (the summary keeps it). `progress`: where the job
    says what it is doing (the images through the model while it runs)."""
    started = time.time()
    progress = progress or JobProgress(spark, None, "featurize")
    progress.phase("listing")
    check_model_choice(runtime, precision)
    pack_small_files(spark, files_per_task)
    files = image_files(spark, input_uri)
    paths = listed_paths(files)
    exported = take_export_ahead(weights, runtime)
    weights_ref = ship_weights(spark, weights)
    model_key = model_key_of(weights_ref)
    featurizer = featurizer_key(model_key, runtime, precision)
    progress.phase("comparing with the base run" if base else "planning")
    increment = plan_increment(spark, files, paths, base, featurizer, full_run_reason)
    if increment.reason:
        print(f"featurize: full run: {increment.reason}", flush=True)
    # Files the scan may skip (empty ones) are among those to featurize, never among the reused.
    listed = listing(files, increment.todo)
    computed, cached, counters = None, None, ImageCounters.live(spark)
    if increment.todo:  # an unchanged input needs no model at all
        progress.phase("preparing the model")
        model_ref, cached = ship_model(
            spark, weights_ref, runtime, exported, model_cache, model_key
        )
        # Arrow batches are what the UDF sees at once: keep them at the model's batch size.
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(batch_size))
        images = files if increment.base is None else read_listed(spark, increment.todo)
        images = set_partitions(as_images(images), partitions)
        # Both datasets come from one pass of the model. Reused vectors are not kept: they
        # are read once, by the features' write (the rejects need only their paths).
        computed = with_features(images, model_ref, batch_size, precision, counters)
        computed = computed.persist(StorageLevel.MEMORY_AND_DISK)
    reused = None if increment.reused is None else with_reused(increment)
    results = reduce(DataFrame.unionByName, [p for p in (computed, reused) if p is not None])
    try:
        features_uri = storage.join_uri(output_uri, FEATURES)
        rejects_uri = storage.join_uri(output_uri, REJECTS)
        # The model runs in this write: its images are counted as each task ends.
        progress.phase("featurizing", total=len(increment.todo), counters=counters)
        write_features(spark, accepted(results), features_uri, increment)
        progress.phase("writing rejects and counts")
        rejected(results, listed).write.mode("overwrite").parquet(rejects_uri)
        # Counts read back from what was written: the numbers the datasets really hold.
        written = {
            name: spark.read.parquet(uri).count()
            for name, uri in ((FEATURES, features_uri), (REJECTS, rejects_uri))
        }
        ran = {} if computed is None else precisions_that_ran(computed)
        # Every image to featurize has its outcome: features, or a reject (the empty files the
        # model never saw among them).
        done = ImageCounters.settled(len(increment.todo), written[REJECTS])
        progress.phase("featurized", total=len(increment.todo), counters=done)
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
    storage.write_json(spark, storage.join_uri(output_uri, FEATURIZE_SUMMARY), summary)
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
        default=DEFAULT_PRECISION,
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
    add_progress_arguments(parser)
    return parser.parse_args(argv)
