"""The model over Spark: a pandas UDF that decodes each image and runs the model in batches,
and what the results say about the precision that ran."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
from pyspark import TaskContext
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from imagefeatures.contract import DEFAULT_BATCH_SIZE
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


def make_featurize_udf(
    model_ref: str,
    batch_size: int,
    precision: str = "f32",
    counters: ImageCounters | None = None,
):
    """A pandas UDF content -> struct(features, error, precision). The model is fetched from
    the per-process cache, so each Python worker builds it once and reuses it for every task.
    `counters` count the images and rejects (the driver sees them as each task ends)."""
    images = None if counters is None else counters.images
    rejects = None if counters is None else counters.rejects
    hang_after = int(os.environ.get(TEST_HANG_AFTER_IMAGES, "0") or 0)

    @F.pandas_udf(RESULT_TYPE)
    def featurize_udf(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        task = TaskContext.get()
        threads = task.cpus() if task else None
        feature_fn, ran = worker_feature_fn(model_ref, threads, precision)
        seen = 0
        for contents in batches:
            result = featurize_contents(feature_fn, contents, batch_size, ran)
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
) -> DataFrame:
    """(path, label, content, ...) -> (path, label, ..., features, error, precision): the
    columns but content kept; one of features and error is null."""
    # The UDF captures the context's worker environment when it is built; a value set with
    # --conf spark.executorEnv.NAME stays as given.
    environment = images.sparkSession.sparkContext.environment
    for name, value in worker_tensorflow_env().items():
        environment.setdefault(name, value)
    udf = make_featurize_udf(model_ref, batch_size, precision, counters)
    result = udf("content").alias("result")
    kept = [name for name in images.columns if name != "content"]
    return images.select(*kept, result).select(*kept, "result.*")


def precisions_that_ran(results: DataFrame) -> dict[str, int]:
    """{precision: images featurized in it}: workers on CPUs without bf16 ran f32."""
    rows = results.where(F.col("precision").isNotNull()).groupBy("precision").count().collect()
    return {row["precision"]: row["count"] for row in rows}


def summarize_precision(counts: dict[str, int]) -> str | None:
    """The one precision that ran, "mixed" when workers differed, None when no image ran."""
    if len(counts) > 1:
        return "mixed"
    return next(iter(counts), None)
