"""Small files next to the datasets (JSON summaries, the plot), read and written through
Spark's Hadoop file system, so one code path serves local paths, file:// and s3:// (EMRFS)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession


def join_uri(base: str, *parts: str) -> str:
    """`base` and `parts` joined with single slashes (URIs are not OS paths)."""
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def _file_system(spark: SparkSession, uri: str):
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), path


def exists(spark: SparkSession, uri: str) -> bool:
    fs, path = _file_system(spark, uri)
    return bool(fs.exists(path))


def write_bytes(spark: SparkSession, uri: str, data: bytes) -> None:
    fs, path = _file_system(spark, uri)
    stream = fs.create(path, True)
    try:
        stream.write(bytearray(data))
    finally:
        stream.close()


def read_bytes(spark: SparkSession, uri: str) -> bytes:
    fs, path = _file_system(spark, uri)
    stream = fs.open(path)
    try:
        return bytes(spark.sparkContext._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
    finally:
        stream.close()


def copy_to_local(spark: SparkSession, uri: str, local: str | Path) -> None:
    """Copy the file at `uri` to the local path `local` (its folder must exist)."""
    fs, path = _file_system(spark, uri)
    target = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(Path(local).resolve().as_uri())
    fs.copyToLocalFile(False, path, target, True)  # raw local: no .crc file beside it


def copy_from_local(spark: SparkSession, local: str | Path, uri: str) -> None:
    """Copy the local file `local` to `uri`, replacing what is there."""
    fs, path = _file_system(spark, uri)
    source = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(Path(local).resolve().as_uri())
    fs.copyFromLocalFile(False, True, source, path)


def delete_tree(spark: SparkSession, uri: str) -> None:
    """Remove the folder (or file) at `uri` and everything under it; nothing there is fine."""
    fs, path = _file_system(spark, uri)
    fs.delete(path, True)


def copy_files(
    spark: SparkSession, source_folder: str, target_folder: str, names: list[str], threads: int = 8
) -> None:
    """Copy the files `names` from `source_folder` into `target_folder`, replacing what is
    there. Through Hadoop's FileUtil, so any two file systems Spark reads (on EMR the bytes
    pass through the driver: a few threads keep S3 busy)."""
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    source_fs, _ = _file_system(spark, source_folder)
    target_fs, _ = _file_system(spark, target_folder)

    def copy(name: str) -> None:
        source = jvm.org.apache.hadoop.fs.Path(join_uri(source_folder, name))
        target = jvm.org.apache.hadoop.fs.Path(join_uri(target_folder, name))
        if not jvm.org.apache.hadoop.fs.FileUtil.copy(
            source_fs, source, target_fs, target, False, True, conf
        ):
            raise OSError(f"copying {source} to {target} failed")

    with ThreadPoolExecutor(max(1, min(threads, len(names)))) as pool:
        list(pool.map(copy, names))  # list(): the first failure is raised here


def write_json(spark: SparkSession, uri: str, payload: dict[str, Any]) -> None:
    text = json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    write_bytes(spark, uri, text.encode("utf-8"))


def read_json(spark: SparkSession, uri: str) -> dict[str, Any]:
    return json.loads(read_bytes(spark, uri).decode("utf-8"))


def read_json_if_exists(spark: SparkSession, uri: str) -> dict[str, Any] | None:
    return read_json(spark, uri) if exists(spark, uri) else None
