"""Featurize job: the run's manifest -> MobileNetV2 vectors (features) and the images that have
none (rejects), with the reason.

Every manifest row ends in exactly one of the two datasets, so features + rejects = manifest.
Workers read each image by its key (image_reads): the driver never lists the input. With
`--base` (an earlier run's output), unchanged images keep that run's vectors (incremental).
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from functools import reduce

from pyspark import StorageLevel
from pyspark.sql import DataFrame, DataFrameWriter, SparkSession
from pyspark.sql import functions as F

from imagefeatures import storage
from imagefeatures.cli_types import positive_int
from imagefeatures.contract import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_PRECISION,
    DEFAULT_RUNTIME,
    FEATURES,
    FEATURIZE_SUMMARY,
    MANIFEST,
    PRECISIONS,
    REJECTS,
    RUNTIMES,
)
from imagefeatures.errors import JobInputError
from imagefeatures.image_reads import split_s3_path
from imagefeatures.incremental import (
    FILE_IDENTITY,
    PRECISION,
    Increment,
    featurizer_key,
    featurizer_parts,
    plan_increment,
)
from imagefeatures.inference import count_precisions, summarize_precision, with_features
from imagefeatures.model_shipping import (
    check_model_choice,
    model_key_of,
    ship_model,
    ship_weights,
    take_export_ahead,
)
from imagefeatures.progress import (
    ImageCounters,
    JobProgress,
    ProgressOptions,
    add_progress_arguments,
)
from imagefeatures.run_input import read_manifest, read_manifest_summary, run_manifest
from imagefeatures.seals import base_seal_problem

# Images per task. Each task pays about 0.3 s of set-up (scheduling, the Python worker's batch
# loop starting and draining) that no other task hides where a node has few task slots (a
# 2-core node has two with the DAG's task_cpus=1, one with 2): 512 small photos keep it under
# 1 ms an image, and still spread a few thousand images over every slot (BENCHMARKS.md,
# issue 33).
DEFAULT_FILES_PER_TASK = 512


def with_reused(increment: Increment) -> DataFrame:
    """The base run's vectors of unchanged images, as results rows (no error), each with the
    precision it was made in."""
    return increment.reused.select(
        "path", "label", *FILE_IDENTITY[1:], "features", F.lit(None).cast("string").alias("error"),
        PRECISION,
    )  # fmt: skip


# Parquet tries a dictionary for every column chunk until it outgrows a page, then writes the
# values plainly after all. The vectors' floats are all distinct: the attempt was about a
# third of the features' write (2,000 rows: 1.17 s, 0.84 s without), for the same bytes.
_NO_VECTOR_DICTIONARY = {"parquet.enable.dictionary#features.list.element": "false"}


def _vectors_writer(features: DataFrame) -> DataFrameWriter:
    return features.write.options(**_NO_VECTOR_DICTIONARY)


def write_features(
    spark: SparkSession, features: DataFrame | None, features_uri: str, increment: Increment
) -> None:
    """Write `features` to `features_uri`, after copying the base's part files whose every row
    is reused (increment.copied): those vectors are not read or written again. None: the
    copies are the whole dataset."""
    if not increment.copied:
        _vectors_writer(features).mode("overwrite").parquet(features_uri)
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
    if features is not None:
        _vectors_writer(features).mode("append").parquet(features_uri)


def accepted(results: DataFrame) -> DataFrame:
    """Features, with the image's size and ETag (what tells the next run whether it changed)
    and the precision the model ran in for it."""
    return results.where(F.col("error").isNull()).select(
        "path", "label", "features", *FILE_IDENTITY[1:], PRECISION
    )


def rejected(results: DataFrame) -> DataFrame:
    """Images without a vector, and why: undecodable, empty, gone or changed since the
    manifest was made."""
    return results.where(F.col("error").isNotNull()).select("path", "label", "error")


# Stands for the rejects among the precisions counted in written_counts (not a precision).
_REJECTS_KEY = "rejects"


def written_counts(
    spark: SparkSession, features_uri: str, rejects_uri: str
) -> tuple[dict[str, int], dict[str, int]]:
    """({precision: vectors}, {FEATURES: vectors, REJECTS: rejects}) read back from what was
    written, the numbers the datasets really hold (reused vectors included), in one query."""
    # The column read is named: inferring a schema costs a Spark job per dataset, and this run
    # has just written both.
    rejects = spark.read.schema("path string").parquet(rejects_uri)
    rejects = rejects.select(F.lit(_REJECTS_KEY).alias("precision"))
    both = spark.read.schema("precision string").parquet(features_uri).unionByName(rejects)
    vectors = count_precisions(both)
    rejected = vectors.pop(_REJECTS_KEY, 0)
    return vectors, {FEATURES: sum(vectors.values()), REJECTS: rejected}


def spread(todo: DataFrame, images: int, partitions: int | None, files_per_task: int) -> DataFrame:
    """The images to featurize in `partitions` tasks, or about `files_per_task` images each
    (at least one task per core): a manifest's row groups are far larger than a task.

    Tasks take ranges of paths, so each part file of the features holds neighbouring images
    (a folder together): the next incremental run finds whole part files unchanged and copies
    them instead of writing their vectors again.
    """
    parallelism = todo.sparkSession.sparkContext.defaultParallelism
    wanted = partitions or max(parallelism, math.ceil(images / files_per_task))
    return todo.repartitionByRange(max(1, min(wanted, max(images, 1))), "path")


@dataclass(frozen=True, kw_only=True)
class FeaturizeConfig(ProgressOptions):
    """Everything a featurize run takes: its command line (parse_args), or a test's choice.

    `input`: a local folder whose manifest is written to <output>/manifest.parquet first;
    None reads the one the DAG's preflight wrote. `model_cache`: a folder or URI where
    exported OpenVINO models are kept between runs. `base`: an earlier run's output folder
    whose vectors of unchanged images are reused; `full_run_reason`: why there is none (the
    summary keeps it). `model_seals`, `base_seal`: the Airflow connection's seals of the cache
    entries and of the base, checked before either is trusted (seals).
    """

    input: str | None
    output: str
    weights: str = "imagenet"
    batch_size: int = DEFAULT_BATCH_SIZE
    partitions: int | None = None
    files_per_task: int = DEFAULT_FILES_PER_TASK
    runtime: str = DEFAULT_RUNTIME
    precision: str = DEFAULT_PRECISION
    model_cache: str | None = None
    base: str | None = None
    base_seal: str | None = None
    model_seals: str | None = None
    full_run_reason: str | None = None


def run_featurize(
    spark: SparkSession, config: FeaturizeConfig, progress: JobProgress | None = None
) -> dict:
    """Write <output>/features, <output>/rejects and <output>/featurize_summary.json for the
    images of <output>/manifest.parquet (FeaturizeConfig says what each setting does).
    `progress`: where the job says what it is doing (the images through the model while it
    runs)."""
    started = time.time()
    progress = progress or JobProgress(spark, None, "featurize")
    progress.phase("reading the manifest")
    # A base whose seal no longer holds is dropped (below), with the reason recorded.
    base, full_run_reason = config.base, config.full_run_reason
    check_model_choice(config.runtime, config.precision)
    exported = take_export_ahead(config.weights, config.runtime)
    weights_ref = ship_weights(spark, config.weights)  # unreadable weights: before any output
    model_key = model_key_of(weights_ref)
    featurizer = featurizer_parts(model_key, config.runtime)
    with run_manifest(spark, config.input, config.output) as manifest_folder:
        inputs = read_manifest_summary(spark, manifest_folder)
        manifest = read_manifest(spark, manifest_folder)
        if base and config.base_seal:  # checked again now: preflight's check was minutes ago
            problem = base_seal_problem(spark, base, config.base_seal, inputs.region)
            if problem:
                base, full_run_reason = None, f"base run {base} not used: {problem}"
        progress.phase("comparing with the base run" if base else "planning")
        increment = plan_increment(
            spark, manifest, inputs.images, base, featurizer, config.precision, full_run_reason
        )
        if increment.reason:
            print(f"featurize: full run: {increment.reason}", flush=True)
        computed, cached, counters = None, None, ImageCounters.live(spark)
        if increment.todo_count:  # an unchanged input needs no model at all
            progress.phase("preparing the model")
            model_ref, cached = ship_model(
                spark,
                weights_ref,
                config.runtime,
                exported,
                config.model_cache,
                model_key,
                config.model_seals,
            )
            # Arrow batches are what the UDF sees at once: keep them at the model's batch size.
            spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(config.batch_size))
            todo = spread(
                increment.todo, increment.todo_count, config.partitions, config.files_per_task
            )
            # Both datasets come from one pass of the model. Reused vectors are not kept: they
            # are read once, by the features' write. Kept on the executors' disks, not in
            # their heap: 5 KB an image held in memory grew the job's peak with the input
            # (4,000 -> 20,000 images: +7% in memory, +2% on disk, no slower; BENCHMARKS.md).
            computed = with_features(
                todo, model_ref, config.batch_size, config.precision, counters, inputs.region
            )
            computed = computed.persist(StorageLevel.DISK_ONLY)
        reused = None if increment.reused is None else with_reused(increment)
        parts = [p for p in (computed, reused) if p is not None]
        if not parts and not increment.copied:
            raise JobInputError(f"the run's manifest under {config.output} holds no image")
        try:
            features_uri = storage.join_uri(config.output, FEATURES)
            rejects_uri = storage.join_uri(config.output, REJECTS)
            # The model runs in this write: its images are counted as each task ends.
            progress.phase("featurizing", total=increment.todo_count, counters=counters)
            if parts:
                results = reduce(DataFrame.unionByName, parts)
                write_features(spark, accepted(results), features_uri, increment)
                rejects = rejected(results)
            else:  # nothing to compute or write again: the copied part files hold every vector
                write_features(spark, None, features_uri, increment)
                rejects = spark.createDataFrame([], "path string, label string, error string")
            progress.phase("writing rejects and counts")
            rejects.write.mode("overwrite").parquet(rejects_uri)
            vectors, written = written_counts(spark, features_uri, rejects_uri)
            if computed is None:
                ran = {}
            elif increment.reused is None and not increment.copied:
                ran = dict(vectors)  # every vector written is one this run made
            else:
                ran = count_precisions(computed)
            # Every image to featurize has its outcome: features, or a reject.
            done = ImageCounters.settled(increment.todo_count, written[REJECTS])
            progress.phase("featurized", total=increment.todo_count, counters=done)
        finally:
            if computed is not None:
                computed.unpersist()
            increment.release()
        summary = {
            "input": inputs.input_uri,
            "manifest": storage.join_uri(config.output, MANIFEST),
            "weights": config.weights,
            "runtime": config.runtime,
            # What the run's vectors are, reused ones included ("mixed" where they differ).
            "precision": summarize_precision(vectors),
            "precision_requested": config.precision,
            "vectors_per_precision": vectors,
            "images_per_precision": ran,  # the images this run put through the model
            "model_cache": cached,
            # What made the vectors: a later run reuses them only if its own key is the same.
            "featurizer": featurizer_key(featurizer),
            "featurizer_parts": featurizer,
            "incremental": increment.summary(),
            "reuse": increment.reuse() if increment.base else None,
            "batch_size": config.batch_size,
            "files_per_task": config.files_per_task,
            "listed": inputs.images,
            # Images read from S3, one GET each (an empty image is rejected unread).
            "s3_gets": _s3_reads(increment) if split_s3_path(inputs.input_uri) else 0,
            **written,
            "seconds": round(time.time() - started, 2),
        }
        storage.write_json(spark, storage.join_uri(config.output, FEATURIZE_SUMMARY), summary)
        return summary


def _s3_reads(increment: Increment) -> int:
    if not increment.todo_count:
        return 0
    return increment.todo.where(F.col("size") > 0).count()


def parse_args(argv: list[str]) -> FeaturizeConfig:
    parser = argparse.ArgumentParser(
        prog="featurize.py", description="Image files -> MobileNetV2 feature vectors (parquet)."
    )
    parser.add_argument(
        "--input",
        default=None,
        help=f"a local folder of images: its manifest is written to <output>/{MANIFEST} first "
        "(without it, the run's manifest is read: the DAG's preflight writes it)",
    )
    parser.add_argument(
        "--output", required=True, help=f"run folder: {MANIFEST}, features/, rejects/"
    )
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
        help="images per task (when --partitions is not given)",
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
        "path, size and ETag, same model) are reused, the rest featurized",
    )
    parser.add_argument(
        "--base-seal",
        default=None,
        help="the base run's seal (a JSON file the Airflow connection wrote): the base is reused "
        "only while the objects it lists have its ETags",
    )
    parser.add_argument(
        "--model-seals",
        default=None,
        help="folder of the model cache entries' seals: an entry is used only if its files "
        "match its seal",
    )
    parser.add_argument(
        "--full-run-reason",
        default=None,
        help="without --base: why every image is featurized (kept in the summary)",
    )
    add_progress_arguments(parser)
    return FeaturizeConfig(**vars(parser.parse_args(argv)))
