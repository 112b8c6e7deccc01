"""Reusing an earlier run's features: which listed images keep their vector, which are featurized.

An image keeps its vector when the base run (an earlier run's output folder) featurized the same
path with the same size and modification time, and made it with the same featurizer: the same
weights, runtime, requested precision and the packages that turn a file into a vector
(`featurizer_key`). Everything else is featurized: new images, changed ones, and the base's
rejects (a fixed file may decode now). Images the base had but the input no longer holds are
dropped. Anything wrong with the base makes a full run, with the reason in the summary.

Reused vectors are not rewritten where that can be helped: a base part file whose rows are all
reused is copied into the new run as it is (`Increment.copied`), and only the reused rows of
the other part files go through Spark again (`Increment.reused`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from importlib import metadata

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from imagefeatures import storage
from imagefeatures.contract import FEATURES, FEATURIZE_SUMMARY, REJECTS
from imagefeatures.errors import first_line

# The columns that tell an unchanged file, as Spark's binaryFile source reports them; the
# features dataset keeps them beside each vector.
FILE_IDENTITY = ("path", "length", "modificationTime")
# Bump when preprocessing changes the vector made from the same file and model.
FEATURE_FORMAT = 1
# Besides the model's (model_cache.cache_key): what decodes and resizes the image.
_DECODE_PACKAGES = ("pillow",)
# Hadoop's glob characters, escaped so that a listed path is read as itself.
_GLOB_CHARACTERS = re.compile(r"([\\*?\[\]{}])")
# The base part file a row was read from (Spark's hidden file metadata, a plain file name).
_PART_FILE = "_part_file"


def featurizer_key(model_key: str, runtime: str, precision: str) -> str:
    """What made a run's vectors: `model_key` (the weights and model packages' digest), the
    runtime, the requested precision, and the decoding packages' versions."""
    parts = {
        "model": model_key,
        "runtime": runtime,
        "precision": precision,
        "format": FEATURE_FORMAT,
        "packages": {name: metadata.version(name) for name in _DECODE_PACKAGES},
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


@dataclass
class Increment:
    """What this run featurizes and what it reuses; `base` is None for a full run."""

    base: str | None
    reason: str | None = None  # why a full run, when one was not asked for
    todo: list[str] = field(default_factory=list)  # listed paths to featurize
    # Reused rows to write again (path, length, modificationTime, features): those of the
    # base part files that also hold a changed, removed or rejected image.
    reused: DataFrame | None = None
    # Base part files (names under <base>/features) whose every row is reused: copied as they are.
    copied: list[str] = field(default_factory=list)
    copied_rows: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def reuse(self) -> dict[str, int]:
        """How the reused vectors reach the new run: part files copied, rows written again."""
        rewritten = self.counts.get("reused", 0) - self.copied_rows
        return {"files_copied": len(self.copied), "rows_rewritten": rewritten}

    def summary(self) -> dict:
        if self.base is None:
            return {"base_run": None, "reason": self.reason}
        return {"base_run": self.base, **self.counts}


def full_run(paths: list[str], reason: str | None) -> Increment:
    return Increment(base=None, reason=reason, todo=list(paths))


def plan_increment(
    spark: SparkSession,
    files: DataFrame,
    listed_paths: list[str],
    base_uri: str | None,
    key: str,
    full_run_reason: str | None = None,
) -> Increment:
    """Compare the input (`files`: binaryFile's rows; `listed_paths`: its file index) with
    the base run under `base_uri`; a full run when there is none (`full_run_reason` says why)
    or it cannot be used."""
    if not base_uri:
        return full_run(listed_paths, full_run_reason)
    try:
        base_features, base_rejects = _read_base(spark, base_uri, key)
    except BaseUnusableError as exc:
        return full_run(listed_paths, f"base run {base_uri} not used: {exc}")
    except Exception as exc:  # unreadable: a full run costs time, never the run
        return full_run(listed_paths, f"base run {base_uri} unreadable: {first_line(exc)}")
    # The scan reads no content (not selected): one file status per image, kept (a few MB)
    # for the two queries that join it.
    current = files.select(*FILE_IDENTITY).persist()
    base_rows = base_features.select(
        *FILE_IDENTITY, "features", F.col("_metadata.file_name").alias(_PART_FILE)
    )
    reused = current.join(base_rows, list(FILE_IDENTITY))
    kept = dict(reused.select("path", _PART_FILE).collect())
    featurized = dict(base_rows.select("path", _PART_FILE).collect())
    rejected = {row.path for row in base_rejects.select("path").collect()}
    copied = whole_part_files(featurized, kept)
    rewritten = reused.where(~F.col(_PART_FILE).isin(sorted(copied))).drop(_PART_FILE)
    todo = [path for path in listed_paths if path not in kept]
    changed = sum(path in featurized for path in todo)
    retried = sum(path in rejected for path in todo)
    counts = {
        "new": len(todo) - changed - retried,
        "changed": changed,
        "retried": retried,
        "reused": len(kept),
        "removed": len((featurized.keys() | rejected) - set(listed_paths)),
    }
    return Increment(
        base=base_uri, todo=todo, reused=rewritten, copied=sorted(copied),
        copied_rows=sum(part in copied for part in kept.values()), counts=counts,
    )  # fmt: skip


def whole_part_files(featurized: dict[str, str], kept: dict[str, str]) -> set[str]:
    """The part files whose every row is kept, from {path: part file} of the base's rows and
    of the kept ones."""
    rows, kept_rows = Counter(featurized.values()), Counter(kept.values())
    return {part for part, count in kept_rows.items() if count == rows[part]}


class BaseUnusableError(ValueError):
    """The base run exists but its vectors are not this run's to reuse."""


def _read_base(spark: SparkSession, base_uri: str, key: str) -> tuple[DataFrame, DataFrame]:
    summary = storage.read_json_if_exists(spark, storage.join_uri(base_uri, FEATURIZE_SUMMARY))
    if summary is None:
        raise BaseUnusableError(f"it has no {FEATURIZE_SUMMARY}")
    if summary.get("featurizer") != key:
        raise BaseUnusableError(
            "its features were made by other weights, runtime, precision or package versions"
        )
    features = spark.read.parquet(storage.join_uri(base_uri, FEATURES))
    missing = [name for name in FILE_IDENTITY if name not in features.columns]
    if missing:
        raise BaseUnusableError(f"its features have no {', '.join(missing)} column")
    rows = features.count()
    if rows != summary.get("features"):
        wrote = summary.get("features")
        raise BaseUnusableError(f"its features hold {rows} rows, its summary says {wrote}")
    rejects = spark.read.parquet(storage.join_uri(base_uri, REJECTS))
    return features, rejects


def read_listed(spark: SparkSession, paths: list[str]) -> DataFrame:
    """binaryFile rows of exactly these listed paths (the `path` column's form), without
    listing the whole input again: each path is read as itself, glob characters included."""
    escaped = [_GLOB_CHARACTERS.sub(r"\\\1", path) for path in paths]
    return spark.read.format("binaryFile").load(escaped)
