"""Incremental featurize (--base): unchanged images keep the base run's vectors bit for bit, the
rest are featurized as a full run would, and a base that cannot be trusted makes a full run."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from imagefeatures.featurize import FeaturizeConfig, run_featurize
from tests.image_cases import bad_input_cases, jpeg_bytes, picture, write, write_good_images
from tests.spark.conftest import FEATURE_ROUND_OFF

LABELS = ["Apple Red 1", "Kiwi"]


def vectors(spark, out: Path) -> dict[str, np.ndarray]:
    rows = spark.read.parquet(str(out / "features")).select("path", "features").collect()
    return {row.path: np.asarray(row.features, dtype=np.float32) for row in rows}


def rejects(spark, out: Path) -> set[tuple[str, str]]:
    rows = spark.read.parquet(str(out / "rejects")).select("path", "error").collect()
    return {(row.path, row.error) for row in rows}


def part_files(out: Path) -> set[str]:
    return {path.name for path in (out / "features").glob("part-*.parquet")}


def part_rows(spark, out: Path, name: str) -> int:
    return spark.read.parquet(str(out / "features" / name)).count()


def featurize(spark, images: Path, out: Path, cache: Path, **kwargs) -> dict:
    config = FeaturizeConfig(
        input=str(images), output=str(out), weights="random", batch_size=4,
        model_cache=str(cache), **kwargs,
    )  # fmt: skip
    return run_featurize(spark, config)


def uri(path: Path) -> str:
    return f"file:{path}"


def uncompressed_png(seed: int) -> bytes:
    buffer = io.BytesIO()
    picture(seed).save(buffer, format="PNG", compress_level=0)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def runs(spark, tmp_path_factory):
    """A full run; then the input changes (one image added with glob characters in its name,
    one rewritten with the same size and modification time, one removed, the truncated reject
    fixed, the empty file left) and an incremental run and a full run follow."""
    root = tmp_path_factory.mktemp("incremental")
    images, cache = root / "images", root / "model-cache"
    write_good_images(images, LABELS, 4)
    truncated, content, _ = bad_input_cases()["truncated_jpeg"]
    write(images / "Kiwi" / "broken.jpg", content)
    write(images / "Kiwi" / "empty.jpg", b"")
    # An uncompressed PNG's size depends only on its dimensions: a rewrite keeps the size.
    rewritten = write(images / "Apple Red 1" / "same-size.png", uncompressed_png(600))
    first = featurize(spark, images, root / "first", cache)

    kiwis = sorted((images / "Kiwi").glob("*.jpg"))
    apples = sorted((images / "Apple Red 1").glob("*.jpg"))
    write(images / "Kiwi" / "new [1] {a}.jpg", jpeg_bytes(picture(500)))
    before = rewritten.stat()
    changed = write(rewritten, uncompressed_png(601))
    # Same size and time (a `cp -p`, or a rewrite within the second on S3): only the bytes,
    # and so the ETag, tell.
    os.utime(changed, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert changed.stat().st_size == before.st_size
    apples[1].unlink()
    write(images / "Kiwi" / "broken.jpg", jpeg_bytes(picture(502)))  # fixed
    assert len(kiwis) == 6 and len(apples) == 4
    second = featurize(spark, images, root / "second", cache, base=uri(root / "first"))
    full = featurize(spark, images, root / "full", cache)
    return root, images, cache, first, second, full, uri(changed)


def test_a_first_run_records_what_tells_a_changed_image(spark, runs):
    root, _, _, first, _, _, _ = runs
    assert first["incremental"] == {"base_run": None, "reason": None}
    assert (first["features"], first["rejects"]) == (9, 2)
    columns = spark.read.parquet(str(root / "first" / "features")).columns
    assert columns == ["path", "label", "features", "size", "etag", "precision"]


def test_an_incremental_run_reuses_unchanged_vectors_and_featurizes_the_rest(spark, runs):
    root, _, _, _, second, _, changed = runs
    assert second["incremental"] == {
        "base_run": uri(root / "first"),
        "new": 1, "changed": 1, "other_precision": 0, "retried": 2, "reused": 7, "removed": 1,
    }  # fmt: skip
    assert (second["listed"], second["features"], second["rejects"]) == (11, 10, 1)
    # Only the new, the changed and the fixed image went through the model; every vector,
    # reused ones included, is counted in the precision it was made in.
    assert second["images_per_precision"] == {"f32": 3}
    assert (second["precision"], second["vectors_per_precision"]) == ("f32", {"f32": 10})
    first_vectors, ours, reference = (
        vectors(spark, root / name) for name in ("first", "second", "full")
    )
    assert sorted(ours) == sorted(reference)
    reused = [p for p in ours if p in first_vectors and p != changed]
    assert len(reused) == 7
    assert ours[changed].tobytes() != first_vectors[changed].tobytes()
    for path in reused:  # bit for bit: copied, never computed again
        assert ours[path].tobytes() == first_vectors[path].tobytes(), path
    worst = max(float(np.abs(ours[p] - reference[p]).max()) for p in reference)
    assert worst <= FEATURE_ROUND_OFF, worst
    assert any(p.endswith("Kiwi/new [1] {a}.jpg") for p in ours)
    assert rejects(spark, root / "second") == rejects(spark, root / "full")
    # The base's part files that hold only reused vectors are copied as they are; the reused
    # rows of the others are written again. The fixture's first run wrote two part files, and
    # the changes touched one of them.
    reuse = second["reuse"]
    copied = part_files(root / "second") & part_files(root / "first")
    assert len(copied) == reuse["files_copied"] >= 1 and reuse["rows_rewritten"] >= 1
    for name in copied:
        assert (root / "second" / "features" / name).read_bytes() == (
            root / "first" / "features" / name
        ).read_bytes()
    in_copies = sum(part_rows(spark, root / "second", name) for name in copied)
    assert in_copies + reuse["rows_rewritten"] == 7


def test_an_unchanged_input_needs_no_model(spark, runs, tmp_path):
    root, images, cache, _, _, _, _ = runs
    # What a failed attempt of the step left (a retried EMR step writes where it wrote).
    write(tmp_path / "again" / "features" / "part-00009-left-over.parquet", b"not parquet")
    again = featurize(spark, images, tmp_path / "again", cache, base=uri(root / "second"))
    assert again["incremental"] == {
        "base_run": uri(root / "second"),
        "new": 0, "changed": 0, "other_precision": 0, "retried": 1, "reused": 10, "removed": 0,
    }  # fmt: skip
    assert again["model_cache"] is None or again["images_per_precision"] == {}
    ours, before = vectors(spark, tmp_path / "again"), vectors(spark, root / "second")
    assert {p: v.tobytes() for p, v in ours.items()} == {p: v.tobytes() for p, v in before.items()}
    # Every part file copied, nothing written again, and the left-over gone.
    assert again["reuse"] == {"files_copied": len(part_files(root / "second")), "rows_rewritten": 0}
    assert part_files(tmp_path / "again") >= part_files(root / "second")
    assert not (tmp_path / "again" / "features" / "part-00009-left-over.parquet").exists()


def tampered(root: Path, tmp_path: Path, change) -> Path:
    copy = tmp_path / "base"
    shutil.copytree(root / "second", copy)
    change(copy)
    return copy


def _other_featurizer(base: Path) -> None:
    summary = base / "featurize_summary.json"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "featurizer": "x"}))
    (base / ".featurize_summary.json.crc").unlink()  # Hadoop's local checksum of the old bytes


def _lost_features(base: Path) -> None:
    shutil.rmtree(base / "features")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_other_featurizer, "not used: its vectors were made by another featurizer"),
        (_lost_features, "unreadable: [PATH_NOT_FOUND]"),
    ],
    ids=["another model", "features gone"],
)
def test_a_base_that_cannot_be_trusted_makes_a_full_run(
    spark, runs, tmp_path, capfd, change, reason
):
    root, images, cache, _, _, _, _ = runs
    base = tampered(root, tmp_path, change)
    summary = featurize(spark, images, tmp_path / "out", cache, base=uri(base))
    assert summary["incremental"]["base_run"] is None
    assert reason in summary["incremental"]["reason"]
    assert (summary["features"], summary["rejects"]) == (10, 1)
    assert summary["images_per_precision"] == {"f32": 10}
    assert f"featurize: full run: base run {uri(base)}" in capfd.readouterr().out


def test_a_base_whose_every_part_file_is_reused_needs_no_read_of_its_vectors(spark, tmp_path):
    """No image to featurize and nothing to rewrite: the copies are the whole dataset; no
    model, no read of the base's vectors, and an empty rejects dataset with its schema."""
    images, cache = tmp_path / "images", tmp_path / "cache"
    write_good_images(images, LABELS, 2)
    featurize(spark, images, tmp_path / "first", cache)
    again = featurize(spark, images, tmp_path / "again", cache, base=uri(tmp_path / "first"))
    assert again["incremental"] == {
        "base_run": uri(tmp_path / "first"),
        "new": 0, "changed": 0, "other_precision": 0, "retried": 0, "reused": 4, "removed": 0,
    }  # fmt: skip
    assert again["reuse"] == {
        "files_copied": len(part_files(tmp_path / "first")),
        "rows_rewritten": 0,
    }
    assert again["images_per_precision"] == {} and again["model_cache"] is None
    assert (again["features"], again["rejects"]) == (4, 0)
    assert spark.read.parquet(str(tmp_path / "again" / "rejects")).columns == [
        "path", "label", "error",
    ]  # fmt: skip
    assert vectors(spark, tmp_path / "again").keys() == vectors(spark, tmp_path / "first").keys()
