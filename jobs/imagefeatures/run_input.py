"""The run's input as every step reads it: the manifest under the run's output prefix.

The DAG's preflight writes `<output>/manifest.parquet` (and manifest.json) before any cluster
exists; a run on a local folder (`--input`) writes its own first. Nothing here lists an S3
prefix: a step reads the manifest's rows, and featurize's workers read each image by its key.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

from imagefeatures import storage
from imagefeatures.contract import IMAGE_KINDS, IMAGE_NAME_PATTERN, MANIFEST, MANIFEST_SUMMARY
from imagefeatures.errors import JobInputError, first_line
from imagefeatures.image_reads import file_etag, local_file_path, split_s3_path
from imagefeatures.manifest import FROM_FOLDER, ManifestSummary, ManifestWriter

# What the steps read of a manifest row; last_modified is for people and inventories.
MANIFEST_COLUMNS = ("path", "label", "size", "etag")


def write_folder_manifest(folder: str, target: Path) -> ManifestSummary:
    """List the images under the local `folder` once and write their manifest (each file's MD5
    as its ETag, as S3 gives for a single-part upload) into the local folder `target`."""
    if split_s3_path(folder) is not None:
        raise JobInputError(
            f"--input {folder}: an S3 input is read through the run's manifest, which the "
            f"DAG's preflight writes to <output>/{MANIFEST}; --input takes a local folder"
        )
    root = Path(local_file_path(folder)).resolve()
    if not root.is_dir():
        raise JobInputError(f"input {folder} is not a folder")
    summary = ManifestSummary(input_uri=root.as_uri(), source=FROM_FOLDER)
    target.mkdir(parents=True, exist_ok=True)
    with ManifestWriter(target / MANIFEST, summary) as writer:
        for directory, folders, files in os.walk(root):
            folders.sort()
            for name in sorted(files):
                if not IMAGE_NAME_PATTERN.search(name):
                    continue
                path = Path(directory) / name
                stat = path.stat()
                modified = datetime.fromtimestamp(stat.st_mtime, UTC)
                key = path.relative_to(root).as_posix()
                writer.add(f"file:{path}", key, stat.st_size, file_etag(str(path)), modified)
    if not summary.images:
        raise JobInputError(f"input {folder} holds no {IMAGE_KINDS} image")
    (target / MANIFEST_SUMMARY).write_text(summary.as_json())
    return summary


@contextmanager
def run_manifest(spark: SparkSession, input_uri: str | None, output_uri: str) -> Iterator[str]:
    """The folder holding the run's manifest: the run's output (written by the DAG's
    preflight) when `input_uri` is None; else a scratch folder with the manifest of the local
    folder `input_uri`, copied into the run's output when the block ends without an error, so
    a job that fails early leaves no output at all."""
    if input_uri is None:
        yield output_uri
        return
    with tempfile.TemporaryDirectory(prefix="manifest-") as scratch:
        write_folder_manifest(input_uri, Path(scratch))
        yield Path(scratch).as_uri()
        for name in (MANIFEST, MANIFEST_SUMMARY):
            storage.copy_from_local(spark, Path(scratch) / name, storage.join_uri(output_uri, name))


def read_manifest_summary(spark: SparkSession, folder_uri: str) -> ManifestSummary:
    """manifest.json of the run (or scratch) folder `folder_uri`."""
    uri = storage.join_uri(folder_uri, MANIFEST_SUMMARY)
    try:
        return ManifestSummary.from_json(storage.read_bytes(spark, uri))
    except Exception as exc:
        raise JobInputError(
            f"the run's manifest summary {uri} cannot be read ({first_line(exc)}): the DAG's "
            "preflight writes it; for a local folder, give --input"
        ) from exc


def read_manifest(spark: SparkSession, folder_uri: str) -> DataFrame:
    """(path, label, size, etag) of every image of the run's manifest in `folder_uri`."""
    uri = storage.join_uri(folder_uri, MANIFEST)
    try:
        return spark.read.parquet(uri).select(*MANIFEST_COLUMNS)
    except Exception as exc:
        raise JobInputError(f"the run's manifest {uri} cannot be read: {first_line(exc)}") from exc
