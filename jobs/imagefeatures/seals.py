"""What the Airflow connection sealed (dags/emr_pipeline/seals.py), checked where it is used.

A base run is reused only while the objects its seal lists have the ETags it recorded, listed
again here just before its vectors are read (preflight checked it minutes earlier). A model
cache entry is used only if its files have the digests its seal recorded.
"""

from __future__ import annotations

from pyspark.sql import SparkSession

from imagefeatures import storage
from imagefeatures.contract import model_seal_name, seal_problem, sealed_run_objects
from imagefeatures.image_reads import s3_client, split_s3_path


def base_seal_problem(
    spark: SparkSession, base_uri: str, seal_uri: str, region: str | None
) -> str | None:
    """Why the base run under `base_uri` no longer matches its seal at `seal_uri`; None when
    it does."""
    seal = storage.read_json_if_exists(spark, seal_uri)
    if seal is None:
        return f"it has no seal at {seal_uri}"
    folder = base_uri.rstrip("/") + "/"
    if seal.get("run_uri") != folder:
        return f"its seal {seal_uri} names another folder ({seal.get('run_uri')})"
    where = split_s3_path(folder)
    if where is None:
        return f"a seal vouches for S3 objects, and {base_uri} is not on S3"
    now = sealed_run_objects(s3_client(region), *where)
    return seal_problem(seal.get("objects") or {}, now)


def model_seal(spark: SparkSession, seals_uri: str, key: str) -> dict | None:
    """The files' digests the seal of model cache entry `key` records; None: no seal."""
    seal = storage.read_json_if_exists(spark, storage.join_uri(seals_uri, model_seal_name(key)))
    return None if seal is None else seal.get("files")
