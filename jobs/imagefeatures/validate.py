"""Validate job: read the run's outputs back, check them, write report.json and pca.png."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from imagefeatures import storage
from imagefeatures.checks import OutputFacts, failure_message, run_checks
from imagefeatures.contract import (
    FEATURE_SIZE,
    FEATURES,
    FEATURIZE_SUMMARY,
    PCA,
    PCA_SUMMARY,
    PLOT,
    REJECTS,
    REPORT,
    STEP_NAMES,
    progress_file,
)
from imagefeatures.errors import CheckFailedError, JobInputError
from imagefeatures.plot import pca_scatter_png
from imagefeatures.progress import JobProgress, ProgressOptions, add_progress_arguments
from imagefeatures.run_input import read_manifest, read_manifest_summary

MAX_LISTED_REJECTS = 1000
MAX_PLOTTED_POINTS = 50_000
_SAMPLE_PATHS = 20


def _has_null_or_nan(array: Column) -> Column:
    return array.isNull() | F.exists(array, lambda x: x.isNull() | F.isnan(x))


def _bad_rows(df: DataFrame, array_column: str) -> int:
    condition = (
        F.col("path").isNull() | F.col("label").isNull() | _has_null_or_nan(F.col(array_column))
    )
    return df.where(condition).count()


def _distinct_ints(column: Column, df: DataFrame) -> list[int]:
    return sorted(row[0] for row in df.select(column).distinct().collect() if row[0] is not None)


def _distinct_labels(df: DataFrame) -> list[str]:
    return sorted(row[0] for row in df.select("label").distinct().collect() if row[0] is not None)


def _paths_not_in(left: DataFrame, right: DataFrame) -> list[str]:
    return [row[0] for row in left.join(right, "path", "left_anti").limit(_SAMPLE_PATHS).collect()]


def gather_facts(
    listed: DataFrame,
    features: DataFrame,
    rejects: DataFrame,
    pca: DataFrame,
    pca_summary: dict,
) -> OutputFacts:
    """Everything the checks need, computed with Spark from the four datasets."""
    listed_paths = listed.select("path")
    output_paths = features.select("path").unionByName(rejects.select("path"))
    output_rows = output_paths.count()
    return OutputFacts(
        listed=listed_paths.count(),
        features=features.count(),
        rejects=rejects.count(),
        pca=pca.count(),
        missing_paths=_paths_not_in(listed_paths, output_paths),
        unexpected_paths=_paths_not_in(output_paths, listed_paths),
        duplicate_paths=output_rows - output_paths.distinct().count(),
        feature_lengths=_distinct_ints(F.size("features"), features),
        pca_lengths=_distinct_ints(F.size("pca"), pca),
        expected_k=pca_summary.get("k"),
        bad_features=_bad_rows(features, "features"),
        bad_pca=_bad_rows(pca, "pca"),
        feature_labels=_distinct_labels(features),
        pca_labels=_distinct_labels(pca),
        explained_variance=[float(v) for v in pca_summary.get("explained_variance", [])],
    )


def counts_per_label(features: DataFrame, rejects: DataFrame) -> dict[str, dict[str, int]]:
    per_label: dict[str, dict[str, int]] = {}
    for name, df in (("features", features), ("rejects", rejects)):
        for row in df.groupBy("label").count().collect():
            per_label.setdefault(row["label"], {"features": 0, "rejects": 0})[name] = row["count"]
    return dict(sorted(per_label.items()))


def plot_points(pca: DataFrame) -> tuple[np.ndarray, list[str]]:
    rows = pca.count()
    if rows > MAX_PLOTTED_POINTS:
        pca = pca.sample(fraction=MAX_PLOTTED_POINTS / rows, seed=7)
    collected = pca.select("label", "pca").collect()
    components = np.array([row["pca"] for row in collected], dtype=float).reshape(
        len(collected), -1
    )
    return components, [row["label"] for row in collected]


def _read_dataset(spark: SparkSession, uri: str) -> DataFrame:
    try:
        return spark.read.parquet(uri)
    except Exception as exc:
        raise JobInputError(f"dataset {uri} cannot be read: {str(exc).splitlines()[0]}") from exc


@dataclass(frozen=True, kw_only=True)
class ValidateConfig(ProgressOptions):
    """Everything a validate run takes: its command line (parse_args), or a test's choice."""

    output: str  # the run folder to check


def run_validate(
    spark: SparkSession, config: ValidateConfig, progress: JobProgress | None = None
) -> dict:
    """Check the run under `config.output` against its manifest, key by key.

    Always writes report.json (and pca.png when there is something to plot); raises
    CheckFailedError naming every failed check and its numbers. `progress`: where the job says
    which phase it is in (none by default).
    """
    started = time.time()
    progress = progress or JobProgress(spark, None, "validate")
    progress.phase("reading the manifest")
    output_uri = config.output
    out = lambda *parts: storage.join_uri(output_uri, *parts)  # noqa: E731
    inputs = read_manifest_summary(spark, output_uri)
    listed = read_manifest(spark, output_uri).select("path", "label")
    features = _read_dataset(spark, out(FEATURES))
    rejects = _read_dataset(spark, out(REJECTS))
    pca = _read_dataset(spark, out(PCA))
    featurize_summary = storage.read_json_if_exists(spark, out(FEATURIZE_SUMMARY)) or {}
    pca_summary = storage.read_json_if_exists(spark, out(PCA_SUMMARY)) or {}

    progress.phase("checking the outputs")
    facts = gather_facts(listed, features, rejects, pca, pca_summary)
    results = run_checks(facts, FEATURE_SIZE)
    passed = all(r.passed for r in results)

    rejected_rows = rejects.orderBy("path").limit(MAX_LISTED_REJECTS).collect()
    report = {
        "status": "passed" if passed else "failed",
        "input": inputs.input_uri,
        "output": output_uri,
        "images": facts.listed,
        # Where the run's input list came from: a listing, an S3 Inventory report (its date),
        # or a local folder.
        "manifest": {
            "source": inputs.source,
            "created_at": inputs.created_at,
            "inventory": inputs.inventory,
            "images": inputs.images,
            "list_requests": inputs.list_requests,
        },
        "features": facts.features,
        "rejects": facts.rejects,
        "labels": counts_per_label(features, rejects),
        "rejected_files": [row.asDict() for row in rejected_rows],
        "pca": {
            key: pca_summary.get(key)
            for key in ("k", "explained_variance", "cumulative_variance", "variance_target")
            if key in pca_summary
        },
        "checks": [r.as_dict() for r in results],
        # What ran the model, as featurize recorded it (precision: what the vectors were made
        # in, reused ones included, not what was asked).
        # Requests the run made to S3 for its images (the cost block prices them).
        "s3_gets": featurize_summary.get("s3_gets"),
        "model": {
            key: featurize_summary.get(key)
            for key in (
                "weights",
                "runtime",
                "precision",
                "precision_requested",
                "vectors_per_precision",
                "model_cache",
            )  # fmt: skip
            if key in featurize_summary
        },
        # Which earlier run's vectors this run reused, and how many images were new, changed,
        # retried (rejects of that run), reused and removed.
        "incremental": featurize_summary.get("incremental"),
        # The steps' last progress (when the DAG asked for it): state, counts, rate, duration.
        "progress": {
            step: found
            for step in STEP_NAMES[:-1]
            if (found := storage.read_json_if_exists(spark, out(progress_file(step))))
        },
    }
    progress.phase("writing the report")
    if facts.pca > 0 and facts.pca_lengths:
        components, labels = plot_points(pca)
        title = f"MobileNetV2 features, PCA ({facts.pca} images, {len(set(labels))} labels)"
        storage.write_bytes(spark, out(PLOT), pca_scatter_png(components, labels, title))
    report["timings_seconds"] = {
        "featurize": featurize_summary.get("seconds"),
        "pca": pca_summary.get("seconds"),
        "validate": round(time.time() - started, 2),
    }
    storage.write_json(spark, out(REPORT), report)
    if not passed:
        raise CheckFailedError(failure_message(results))
    return report


def parse_args(argv: list[str]) -> ValidateConfig:
    parser = argparse.ArgumentParser(
        prog="validate.py", description="Check a run's outputs; write report.json and pca.png."
    )
    parser.add_argument(
        "--output", required=True, help="the run folder to check (against its manifest.parquet)"
    )
    add_progress_arguments(parser)
    return ValidateConfig(**vars(parser.parse_args(argv)))
