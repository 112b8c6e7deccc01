"""What an incremental run may reuse, through the real job (spark-submit): only vectors made by
the same code, and in the precision the run asks for; the model cache's key moves with the code
that builds the model, not with its comments."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from localdev.local_spark import JOBS_DIR, spark_submit
from tests.image_cases import jpeg_bytes, picture, write, write_good_images

LABELS = ["Lime", "Plum 3"]


def featurize(images: Path, out: Path, cache: Path, *args: str, jobs_dir: Path = JOBS_DIR):
    command = ["--input", str(images), "--output", str(out), "--weights", "random"]
    command += ["--model-cache", str(cache), "--batch-size", "4", *args]
    result = spark_submit("featurize", command, jobs_dir=jobs_dir, capture_output=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "featurize_summary.json").read_text())


def edited_jobs(root: Path, module: str, old: str, new: str) -> Path:
    """A copy of jobs/ with one edit in imagefeatures/`module`."""
    copy = root / "jobs"
    shutil.copytree(JOBS_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    path = copy / "imagefeatures" / module
    source = path.read_text()
    assert source.count(old) == 1, old
    path.write_text(source.replace(old, new))
    return copy


def vectors(spark, out: Path) -> dict[str, np.ndarray]:
    rows = spark.read.parquet(str(out / "features")).select("path", "features").collect()
    return {row.path: np.asarray(row.features, dtype=np.float32) for row in rows}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """An f32 run of six images (the base), then one image added."""
    root = tmp_path_factory.mktemp("reuse-keys")
    images, cache = root / "images", root / "model-cache"
    write_good_images(images, LABELS, 3)
    first = featurize(images, root / "first", cache)
    assert first["vectors_per_precision"] == {"f32": 6}
    write(images / "Lime" / "late.jpg", jpeg_bytes(picture(77)))
    return root, images, cache, first


def test_a_bf16_run_does_not_reuse_vectors_made_in_f32(spark, base):
    root, images, cache, _ = base
    out = root / "bf16"
    summary = featurize(images, out, cache, "--precision", "bf16", "--base", f"file:{root}/first")
    assert summary["incremental"] == {
        "base_run": f"file:{root}/first",
        "new": 1, "changed": 0, "other_precision": 6, "retried": 0, "reused": 0, "removed": 0,
    }  # fmt: skip
    # Every vector is counted in the precision it ran in (f32 where the CPU has no bf16), and
    # so is each row of the dataset.
    ran = summary["images_per_precision"]
    assert sum(ran.values()) == 7 and summary["vectors_per_precision"] == ran
    rows = spark.read.parquet(str(out / "features")).groupBy("precision").count().collect()
    assert {row["precision"]: row["count"] for row in rows} == ran
    assert summary["precision"] == (next(iter(ran)) if len(ran) == 1 else "mixed")


def test_vectors_made_by_other_decoding_code_are_not_reused(spark, base, tmp_path):
    root, images, cache, first = base
    # Another rounding of the pixels: every vector moves. A comment and a docstring edited in
    # the model's code move nothing.
    jobs = edited_jobs(tmp_path / "a", "images.py", "pixels /= 127.5", "pixels /= 127.0")
    runtime = jobs / "imagefeatures" / "openvino_runtime.py"
    runtime.write_text(
        runtime.read_text().replace('"""The feature model', '"""Edited. The feature model', 1)
        + "# a comment\n"
    )
    summary = featurize(
        images, tmp_path / "out", cache, "--base", f"file:{root}/first", jobs_dir=jobs
    )
    reason = summary["incremental"]["reason"]
    assert summary["incremental"]["base_run"] is None
    assert "its vectors were made by another featurizer: the code of images.py" in reason
    assert summary["model_cache"]["hit"] is True  # the model's code did not move
    assert summary["images_per_precision"] == {"f32": 7}
    # Reusing the base's vectors would have been wrong: each one differs.
    ours, theirs = vectors(spark, tmp_path / "out"), vectors(spark, root / "first")
    assert all(ours[path].tobytes() != vector.tobytes() for path, vector in theirs.items())


def test_a_model_exported_by_other_code_is_exported_again(base, tmp_path):
    root, images, cache, first = base
    jobs = edited_jobs(
        tmp_path / "b", "openvino_runtime.py", 'MODEL_NAME = "feature_model"',
        'MODEL_NAME = "feature_model_v2"',
    )  # fmt: skip
    summary = featurize(
        images, tmp_path / "out", cache, "--base", f"file:{root}/first", jobs_dir=jobs
    )
    assert (summary["model_cache"]["hit"], summary["model_cache"]["stored"]) == (False, True)
    assert summary["model_cache"]["key"] != first["model_cache"]["key"]
    assert "the model (weights, model code or model packages)" in summary["incremental"]["reason"]
