"""What featurize trusts only when the Airflow connection sealed it (dags/emr_pipeline/seals.py):
a model cache entry whose files match its seal, and a base run whose sealed objects are as
they were. Through the DAG on the emulator: tests/dag/on_emulator/test_dag_on_emulator.py."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import boto3
import numpy as np
import pytest
from moto import mock_aws

from imagefeatures import image_reads
from imagefeatures.contract import model_seal_name, sealed_run_objects
from imagefeatures.featurize import FeaturizeConfig, run_featurize
from imagefeatures.seals import base_seal_problem
from tests.image_cases import write_good_images


def featurize(spark, images: Path, out: Path, cache: Path, seals: Path) -> dict:
    config = FeaturizeConfig(
        input=str(images), output=str(out), weights="random", batch_size=4,
        model_cache=str(cache), model_seals=str(seals),
    )  # fmt: skip
    return run_featurize(spark, config)


def test_a_model_cache_entry_is_used_only_as_its_seal_says(spark, tmp_path, capfd):
    images, cache, seals = tmp_path / "images", tmp_path / "cache", tmp_path / "seals"
    write_good_images(images, ["Lime"], 2)
    seals.mkdir()
    first = featurize(spark, images, tmp_path / "first", cache, seals)
    stored = first["model_cache"]
    assert (stored["hit"], stored["stored"]) == (False, True)
    # No run sealed it yet (a cluster may have written it): exported again.
    unsealed = featurize(spark, images, tmp_path / "unsealed", cache, seals)["model_cache"]
    assert unsealed["hit"] is False
    assert "no run that passed sealed it" in capfd.readouterr().err
    # Sealed as the connection does, with the digests featurize reported.
    key = unsealed["key"]
    seal = {"key": key, "files": unsealed["digests"]}
    (seals / model_seal_name(key)).write_text(json.dumps(seal))
    assert featurize(spark, images, tmp_path / "sealed", cache, seals)["model_cache"]["hit"]
    # Poisoned as a cluster could: weights scaled, the entry's own manifest rewritten to match.
    entry = cache / key
    weights = np.fromfile(entry / "model.bin", dtype=np.float32)
    weights[: weights.size // 2] *= 1.5
    weights.tofile(entry / "model.bin")
    manifest = json.loads((entry / "manifest.json").read_text())
    content = (entry / "model.bin").read_bytes()
    manifest["model.bin"] = {"bytes": len(content), "sha256": hashlib.sha256(content).hexdigest()}
    (entry / "manifest.json").write_text(json.dumps(manifest))
    for crc in entry.glob(".*.crc"):  # Hadoop's local checksums of the old bytes
        crc.unlink()
    poisoned = featurize(spark, images, tmp_path / "poisoned", cache, seals)
    assert poisoned["model_cache"]["hit"] is False
    assert "manifest.json does not match its seal" in capfd.readouterr().err
    ours, reference = (
        {r.path: r.features for r in spark.read.parquet(str(tmp_path / n / "features")).collect()}
        for n in ("poisoned", "first")
    )
    assert ours == reference  # the same model: exported again, not the poisoned one


@pytest.fixture
def s3(monkeypatch):
    monkeypatch.setattr(image_reads, "_clients", {})  # the job's clients, made inside moto
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="out")
        yield client


def test_featurize_checks_the_bases_seal_again_before_it_reuses_anything(spark, s3, tmp_path):
    """Preflight checked the seal minutes before; a cluster may rewrite the base since."""
    for key in ("runs/r/features/part-0.parquet", "runs/r/report.json", "runs/r/pca/x"):
        s3.put_object(Bucket="out", Key=key, Body=b"x")
    seal_file = tmp_path / "seal.json"
    objects = sealed_run_objects(s3, "out", "runs/r/")
    assert sorted(objects) == ["features/part-0.parquet", "report.json"]  # pca/ is not sealed
    seal_file.write_text(json.dumps({"run_uri": "s3://out/runs/r/", "objects": objects}))
    check = lambda: base_seal_problem(spark, "s3://out/runs/r", str(seal_file), "us-east-1")  # noqa: E731
    assert check() is None
    s3.put_object(Bucket="out", Key="runs/r/pca/x", Body=b"another pca")  # not vouched for
    assert check() is None
    s3.put_object(Bucket="out", Key="runs/r/features/part-1.parquet", Body=b"forged")
    assert check() == (
        "1 of its sealed objects changed after it was sealed, e.g. features/part-1.parquet"
    )
    assert base_seal_problem(spark, "s3://out/runs/r", str(tmp_path / "none"), None) == (
        f"it has no seal at {tmp_path / 'none'}"
    )
