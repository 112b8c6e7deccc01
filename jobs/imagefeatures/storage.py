"""Small files next to the datasets (JSON summaries, the plot), read and written through
Spark's Hadoop file system, so one code path serves local paths, file:// and s3:// (EMRFS)."""

from __future__ import annotations

import json
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


def write_json(spark: SparkSession, uri: str, payload: dict[str, Any]) -> None:
    text = json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    write_bytes(spark, uri, text.encode("utf-8"))


def read_json(spark: SparkSession, uri: str) -> dict[str, Any]:
    return json.loads(read_bytes(spark, uri).decode("utf-8"))


def read_json_if_exists(spark: SparkSession, uri: str) -> dict[str, Any] | None:
    return read_json(spark, uri) if exists(spark, uri) else None
