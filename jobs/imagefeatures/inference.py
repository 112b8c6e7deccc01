"""The model over Spark: a pandas UDF that reads each image by its manifest row, decodes it and
runs the model in batches, and what the results say about the precision that ran."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pandas as pd
from pyspark import TaskContext
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from imagefeatures.contract import DEFAULT_BATCH_SIZE
from imagefeatures.image_reads import READ_THREADS, ImageRead, read_image
from imagefeatures.images import ImageDecodeError, preprocess_image
from imagefeatures.model import model_batches, worker_tensorflow_env
from imagefeatures.model_shipping import worker_feature_fn
from imagefeatures.progress import ImageCounters

# precision: what the model ran in for that image (null for a reject).
RESULT_TYPE = "struct<features:array<float>,error:string,precision:string>"
# A test hook: a Python worker that has featurized this many images stops answering, as a hung
# executor would (the DAG's stuck-step detection is tested with it). Unset: no effect.
TEST_HANG_AFTER_IMAGES = "IMAGEFEATURES_TEST_HANG_AFTER_IMAGES"


def hang_like_a_stuck_executor() -> None:
    """Sleep until killed (by the step's cancellation or the cluster's end)."""
    while True:
        time.sleep(60)


def featurize_contents(
    feature_fn, contents: pd.Series, batch_size: int, precision: str = "f32"
) -> pd.DataFrame:
    """Features (or the decode error) for each image in `contents`, in order, and the
    precision the model ran in for it."""
    return featurize_reads(
        feature_fn, [ImageRead(content) for content in contents], batch_size, precision
    )


def featurize_reads(
    feature_fn, reads: list[ImageRead], batch_size: int, precision: str = "f32"
) -> pd.DataFrame:
    """Features, or the read or decode error, for each read image, in order, and the precision
    the model ran in for it."""
    inputs, errors = [], []
    for read in reads:
        if read.error is not None:
            inputs.append(None)
            errors.append(read.error)
            continue
        try:
            inputs.append(preprocess_image(read.content))
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


def reads_ahead(
    batches: Iterator[tuple[pd.Series, pd.Series, pd.Series]],
    region: str | None,
    pool: ThreadPoolExecutor,
) -> Iterator[list[ImageRead]]:
    """Each batch of (path, size, etag) rows as its images, read in `pool`; the next batch's
    reads are in flight while the model runs on this one."""
    pending: list[Future] | None = None
    for paths, sizes, etags in batches:
        submitted = [
            pool.submit(read_image, path, int(size), etag, region)
            for path, size, etag in zip(paths, sizes, etags, strict=True)
        ]
        if pending is not None:
            yield [future.result() for future in pending]
        pending = submitted
    if pending is not None:
        yield [future.result() for future in pending]


def make_featurize_udf(
    model_ref: str,
    batch_size: int,
    precision: str = "f32",
    counters: ImageCounters | None = None,
    region: str | None = None,
):
    """A pandas UDF (path, size, etag) -> struct(features, error, precision). The model is
    fetched from the per-process cache, so each Python worker builds it once and reuses it for
    every task. `counters` count the images and rejects (the driver sees them as each task
    ends); `region`: the input bucket's, for the S3 reads."""
    images = None if counters is None else counters.images
    rejects = None if counters is None else counters.rejects
    hang_after = int(os.environ.get(TEST_HANG_AFTER_IMAGES, "0") or 0)

    @F.pandas_udf(RESULT_TYPE)
    def featurize_udf(
        batches: Iterator[tuple[pd.Series, pd.Series, pd.Series]],
    ) -> Iterator[pd.DataFrame]:
        task = TaskContext.get()
        threads = task.cpus() if task else None
        feature_fn, ran = worker_feature_fn(model_ref, threads, precision)
        seen = 0
        with ThreadPoolExecutor(READ_THREADS, thread_name_prefix="image-read") as pool:
            for reads in reads_ahead(batches, region, pool):
                result = featurize_reads(feature_fn, reads, batch_size, ran)
                if images is not None:
                    images.add(len(result))
                    rejects.add(int(result["error"].notna().sum()))
                seen += len(result)
                if hang_after and seen >= hang_after:
                    hang_like_a_stuck_executor()
                yield result

    return featurize_udf


def with_features(
    images: DataFrame,
    model_ref: str,
    batch_size: int = DEFAULT_BATCH_SIZE,
    precision: str = "f32",
    counters: ImageCounters | None = None,
    region: str | None = None,
) -> DataFrame:
    """(path, label, size, etag) -> (path, label, size, etag, features, error, precision):
    each image read by its path and checked against its size and ETag; one of features and
    error is null."""
    # The UDF captures the context's worker environment when it is built; a value set with
    # --conf spark.executorEnv.NAME stays as given.
    environment = images.sparkSession.sparkContext.environment
    for name, value in worker_tensorflow_env().items():
        environment.setdefault(name, value)
    udf = make_featurize_udf(model_ref, batch_size, precision, counters, region)
    result = udf("path", "size", "etag").alias("result")
    return images.select(*images.columns, result).select(*images.columns, "result.*")


def count_precisions(results: DataFrame) -> dict[str, int]:
    """{precision: vectors made in it}: workers on CPUs without bf16 ran f32."""
    rows = results.where(F.col("precision").isNotNull()).groupBy("precision").count().collect()
    return {row["precision"]: row["count"] for row in rows}


def summarize_precision(counts: dict[str, int]) -> str | None:
    """The one precision of `counts`, "mixed" when they differ, None when there are none."""
    if len(counts) > 1:
        return "mixed"
    return next(iter(counts), None)
