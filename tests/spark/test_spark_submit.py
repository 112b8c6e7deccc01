"""The three jobs as a user runs them: `spark-submit jobs/<job>.py ...` from the repo root."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from localdev.local_spark import spark_submit
from tests.image_cases import (
    bad_input_cases,
    encoded,
    picture,
    scan_bomb_jpeg,
    write,
    write_good_images,
)


def test_spark_submit_runs_the_three_jobs(tmp_path):
    images, out = tmp_path / "images", tmp_path / "out"
    write_good_images(images, ["Lime", "Plum 3"], 3)
    relative, content, _ = bad_input_cases()["truncated_jpeg"]
    write(images / relative, content)
    cache = tmp_path / "model-cache"
    commands = [
        (
            "featurize",
            ["--input", str(images), "--output", str(out), "--weights", "random"]
            + ["--model-cache", str(cache)],
        ),
        ("pca", ["--input", str(out / "features"), "--output", str(out), "--k", "3"]),
        ("validate", ["--output", str(out)]),  # the manifest featurize wrote
    ]
    for job, args in commands:
        result = spark_submit(job, args, capture_output=True)
        assert result.returncode == 0, f"{job} failed:\n{result.stderr[-3000:]}"
        assert f"{job}: done" in result.stdout
    report = json.loads((out / "report.json").read_text())
    assert (report["status"], report["features"], report["rejects"]) == ("passed", 6, 1)
    assert report["pca"]["k"] == 3
    assert report["model"] == {
        "weights": "random",
        "runtime": "openvino",
        "precision": "f32",
        "precision_requested": "f32",
        "vectors_per_precision": {"f32": 6},
        # Exported by the forked process, then kept for the next run.
        "model_cache": {**report["model"]["model_cache"], "hit": False, "stored": True},
    }
    key = report["model"]["model_cache"]["key"]
    assert sorted(p.name for p in (cache / key).iterdir() if not p.name.endswith(".crc")) == [
        "manifest.json",
        "model.bin",
        "model.xml",
    ]


def test_spark_submit_empty_input_fails_clearly(tmp_path):
    (tmp_path / "in" / "Fig").mkdir(parents=True)
    result = spark_submit(
        "featurize",
        ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")],
        capture_output=True,
    )
    assert result.returncode == 2
    # spark-submit merges the Python driver's stderr into its stdout (PythonRunner).
    output = result.stdout + result.stderr
    assert f"input {tmp_path / 'in'} holds no .jpg, .jpeg or .png image" in output
    assert not (tmp_path / "out").exists()


def test_spark_submit_refuses_bf16_on_tensorflow(tmp_path):
    write_good_images(tmp_path / "in", ["Fig"], 2)
    result = spark_submit(
        "featurize",
        ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]
        + ["--weights", "random", "--runtime", "tensorflow", "--precision", "bf16"],
        capture_output=True,
    )
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert "precision bf16 runs only on the openvino runtime, not on tensorflow" in output
    assert not (tmp_path / "out").exists()


def test_spark_submit_fails_clearly_on_a_corrupt_weights_file(tmp_path):
    # spark-submit's driver exports the OpenVINO model in a forked process (no thread runs
    # before its SparkSession): the child's failure must still be the job's one clear line.
    write_good_images(tmp_path / "in", ["Fig"], 2)
    weights = tmp_path / "corrupt.weights.h5"
    weights.write_bytes(b"not an HDF5 file")
    result = spark_submit(
        "featurize",
        ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]
        + ["--weights", str(weights)],
        capture_output=True,
    )
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert f"weights 'sparkfiles:{weights.name}' cannot be loaded" in output
    assert not (tmp_path / "out").exists()


def test_a_jpeg_of_too_many_scans_is_a_reject_not_hours_of_decoding(tmp_path):
    """0.03 MB, 2048x2048, 500 scans: libjpeg decodes the image once per scan (2,000 scans of
    8192x8192 took 77 CPU-seconds). Refused before its decode; ordinary progressive JPEGs
    (10 scans, 18 for CMYK) and one with an EXIF thumbnail are featurized."""
    images, out = tmp_path / "images", tmp_path / "out"
    photo = picture(3, (320, 240))
    write(images / "Fig" / "scans.jpg", scan_bomb_jpeg((2048, 2048), 500))
    write(images / "Fig" / "progressive.jpg", encoded(photo, "JPEG", progressive=True))
    cmyk = encoded(photo.convert("CMYK"), "JPEG", progressive=True, subsampling=0)
    write(images / "Fig" / "cmyk.jpg", cmyk)
    exif = photo.getexif()
    exif[0x0112] = 6
    write(images / "Fig" / "exif.jpg", encoded(photo, "JPEG", exif=exif))
    args = ["--input", str(images), "--output", str(out), "--weights", "random"]
    result = spark_submit("featurize", args, capture_output=True)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "featurize_summary.json").read_text())
    assert (summary["features"], summary["rejects"]) == (3, 1)
    rejects = pq.read_table(out / "rejects").to_pylist()
    assert [(row["path"].rsplit("/", 1)[-1], row["error"]) for row in rejects] == [
        (
            "scans.jpg",
            "image too costly to decode: a JPEG of more than 100 scans (each scan decodes the "
            "whole image again)",
        )
    ]
