"""Reusing an earlier run's features: which images of the manifest keep their vector.

An image keeps its vector when the base run (an earlier run's output folder) featurized the same
path with the same size and ETag, so the same bytes, with the same featurizer (the same weights,
runtime, the code and packages that turn a file into a vector: `featurizer_parts`), and the
vector was made in the precision this run asks for (each vector records the precision that
ran: a bf16 run on a CPU without bf16 made f32 vectors). Everything else is featurized: new
images, changed ones, vectors of another precision, and the base's rejects (a fixed file may
decode now). Images the base had but the manifest no longer holds are dropped. Anything wrong
with the base makes a full run, with the reason in the summary.

Everything is a DataFrame: the driver holds counts and the names of the base's part files, never
a row per image. Reused vectors are not rewritten where that can be helped: a base part file
whose rows are all reused is copied into the new run as it is (`Increment.copied`), and only the
reused rows of the other part files go through Spark again (`Increment.reused`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import metadata

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from imagefeatures import storage
from imagefeatures.code_identity import VECTOR_CODE, code_digests
from imagefeatures.contract import FEATURES, FEATURIZE_SUMMARY, REJECTS
from imagefeatures.errors import first_line

# What tells an unchanged image: its path and the manifest's size and ETag (same ETag and
# size, same bytes). The features dataset keeps them beside each vector.
FILE_IDENTITY = ("path", "size", "etag")
# And the precision the model ran in for that vector.
PRECISION = "precision"
# Besides the model's (model_cache.cache_key): what decodes and resizes the image.
_DECODE_PACKAGES = ("pillow",)
# The base part file a row was read from (Spark's hidden file metadata, a plain file name).
_PART_FILE = "_part_file"
# What becomes of each image of the manifest, and of each the base had.
NEW, CHANGED, RETRIED, REUSED, REMOVED = "new", "changed", "retried", "reused", "removed"
OTHER_PRECISION = "other_precision"  # unchanged, but its vector ran in another precision
FATES = (NEW, CHANGED, OTHER_PRECISION, RETRIED, REUSED, REMOVED)
_TO_FEATURIZE = (NEW, CHANGED, OTHER_PRECISION, RETRIED)


def featurizer_parts(model_key: str, runtime: str) -> dict:
    """What makes a run's vectors, the precision aside: `model_key` (the weights, the model's
    code and packages), the runtime, the code that reads, decodes and runs the model on an
    image, and the decoding packages' versions."""
    return {
        "model": model_key,
        "runtime": runtime,
        "code": code_digests(VECTOR_CODE),
        "packages": {name: metadata.version(name) for name in _DECODE_PACKAGES},
    }


def featurizer_key(parts: dict) -> str:
    """The digest of featurizer_parts: a later run reuses vectors only if its own is equal."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def featurizer_difference(theirs: dict | None, ours: dict) -> str:
    """What differs between the featurizer that made a base's vectors and this run's."""
    if not isinstance(theirs, dict):
        return "an older run, whose summary does not say what made its vectors"
    differs = []
    if theirs.get("model") != ours["model"]:
        differs.append("the model (weights, model code or model packages)")
    if theirs.get("runtime") != ours["runtime"]:
        differs.append(f"the runtime ({theirs.get('runtime')})")
    code = theirs.get("code") or {}
    if code != ours["code"]:
        moved = sorted(name for name in ours["code"] if code.get(name) != ours["code"][name])
        differs.append(f"the code of {', '.join(moved) or 'other modules'}")
    if theirs.get("packages") != ours["packages"]:
        differs.append(f"the packages ({theirs.get('packages')})")
    return ", ".join(differs) or "its featurizer"


@dataclass
class Increment:
    """What this run featurizes and what it reuses; `base` is None for a full run."""

    base: str | None
    todo: DataFrame  # manifest rows (path, label, size, etag) to featurize
    todo_count: int
    reason: str | None = None  # why a full run, when one was not asked for
    # Reused rows to write again (path, label, features, size, etag, precision): those of the
    # base part files that also hold another image's row; None when there are none.
    reused: DataFrame | None = None
    # Base part files (names under <base>/features) whose every row is reused: copied as they are.
    copied: list[str] = field(default_factory=list)
    copied_rows: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    _cached: list[DataFrame] = field(default_factory=list)

    def reuse(self) -> dict[str, int]:
        """How the reused vectors reach the new run: part files copied, rows written again."""
        rewritten = self.counts.get(REUSED, 0) - self.copied_rows
        return {"files_copied": len(self.copied), "rows_rewritten": rewritten}

    def summary(self) -> dict:
        if self.base is None:
            return {"base_run": None, "reason": self.reason}
        return {"base_run": self.base, **self.counts}

    def release(self) -> None:
        """Drop what planning kept cached once the outputs are written."""
        for df in self._cached:
            df.unpersist()


def full_run(manifest: DataFrame, images: int, reason: str | None) -> Increment:
    return Increment(base=None, todo=manifest, todo_count=images, reason=reason)


def plan_increment(
    spark: SparkSession,
    manifest: DataFrame,
    images: int,
    base_uri: str | None,
    featurizer: dict,
    precision: str,
    full_run_reason: str | None = None,
) -> Increment:
    """Compare the manifest's `images` rows with the base run under `base_uri`, whose vectors
    made by `featurizer` (featurizer_parts) in `precision` are kept; a full run when there is
    none (`full_run_reason` says why) or it cannot be used."""
    if not base_uri:
        return full_run(manifest, images, full_run_reason)
    try:
        base_features, base_rejects = _read_base(spark, base_uri, featurizer)
    except BaseUnusableError as exc:
        return full_run(manifest, images, f"base run {base_uri} not used: {exc}")
    except Exception as exc:  # unreadable: a full run costs time, never the run
        return full_run(manifest, images, f"base run {base_uri} unreadable: {first_line(exc)}")
    fates = image_fates(manifest, base_features, base_rejects, precision)
    fates = fates.persist(StorageLevel.MEMORY_AND_DISK)
    counts = {fate: 0 for fate in FATES}
    for row in fates.groupBy("fate").count().collect():
        counts[row["fate"]] = row["count"]
    # Per base part file: its rows, and how many of them are reused (a few thousand files at
    # most: what the driver holds).
    per_file = (
        fates.where(F.col(_PART_FILE).isNotNull())
        .groupBy(_PART_FILE)
        .agg(
            F.count("*").alias("rows"), F.sum((F.col("fate") == REUSED).cast("long")).alias("kept")
        )
        .collect()
    )
    copied = sorted(row[_PART_FILE] for row in per_file if row["kept"] == row["rows"])
    # Only the part files that hold both reused and other rows are read again, and only
    # their reused rows written: the vectors of copied files are never read.
    touched = sorted(row[_PART_FILE] for row in per_file if 0 < row["kept"] < row["rows"])
    rewritten = None
    if touched:
        folder = storage.join_uri(base_uri, FEATURES)
        touched_rows = spark.read.parquet(*(storage.join_uri(folder, name) for name in touched))
        reused_paths = fates.where(F.col("fate") == REUSED).select("path")
        rewritten = touched_rows.join(reused_paths, "path", "left_semi").select(
            "path", "label", "features", *FILE_IDENTITY[1:], PRECISION
        )
    todo = fates.where(F.col("fate").isin(*_TO_FEATURIZE)).select("path", "label", "size", "etag")
    return Increment(
        base=base_uri, todo=todo, todo_count=sum(counts[f] for f in _TO_FEATURIZE),
        reused=rewritten, copied=copied,
        copied_rows=sum(row["rows"] for row in per_file if row["kept"] == row["rows"]),
        counts=counts, _cached=[fates],
    )  # fmt: skip


def image_fates(
    manifest: DataFrame, base_features: DataFrame, base_rejects: DataFrame, precision: str
) -> DataFrame:
    """One row per image of the manifest or the base: (path, label, size, etag, fate, the base
    part file that holds its vector). Reads no vector."""
    base = base_features.select(
        "path",
        F.col("size").alias("_base_size"),
        F.col("etag").alias("_base_etag"),
        F.col(PRECISION).alias("_base_precision"),
        F.col("_metadata.file_name").alias(_PART_FILE),
    )
    rejected = base_rejects.select("path", F.lit(True).alias("_rejected")).dropDuplicates(["path"])
    current = manifest.withColumn("_listed", F.lit(True))
    joined = current.join(base, "path", "full_outer").join(rejected, "path", "left_outer")
    same = (F.col("size") == F.col("_base_size")) & (F.col("etag") == F.col("_base_etag"))
    fate = (
        F.when(F.col("_listed").isNull(), REMOVED)
        .when(
            F.col(_PART_FILE).isNotNull() & same & (F.col("_base_precision") == precision), REUSED
        )
        .when(F.col(_PART_FILE).isNotNull() & same, OTHER_PRECISION)
        .when(F.col(_PART_FILE).isNotNull(), CHANGED)
        .when(F.col("_rejected").isNotNull(), RETRIED)
        .otherwise(NEW)
    )
    return joined.select("path", "label", "size", "etag", fate.alias("fate"), _PART_FILE)


class BaseUnusableError(ValueError):
    """The base run exists but its vectors are not this run's to reuse."""


def _read_base(spark: SparkSession, base_uri: str, featurizer: dict) -> tuple[DataFrame, DataFrame]:
    summary = storage.read_json_if_exists(spark, storage.join_uri(base_uri, FEATURIZE_SUMMARY))
    if summary is None:
        raise BaseUnusableError(f"it has no {FEATURIZE_SUMMARY}")
    if summary.get("featurizer") != featurizer_key(featurizer):
        differs = featurizer_difference(summary.get("featurizer_parts"), featurizer)
        raise BaseUnusableError(f"its vectors were made by another featurizer: {differs}")
    features = spark.read.parquet(storage.join_uri(base_uri, FEATURES))
    missing = [name for name in (*FILE_IDENTITY, PRECISION) if name not in features.columns]
    if missing:
        raise BaseUnusableError(f"its features have no {', '.join(missing)} column")
    rows = features.count()
    if rows != summary.get("features"):
        wrote = summary.get("features")
        raise BaseUnusableError(f"its features hold {rows} rows, its summary says {wrote}")
    rejects = spark.read.parquet(storage.join_uri(base_uri, REJECTS))
    return features, rejects
