"""The OpenVINO runtime (the default): the TensorFlow reference's features from a model the
driver exported once, and bf16 where the CPU has it."""

from __future__ import annotations

import json

import numpy as np

from imagefeatures.featurize import FeaturizeConfig, run_featurize
from tests.spark.conftest import FEATURE_ROUND_OFF

# The bf16 contract: each image's vector points where its f32 vector does.
BF16_MIN_COSINE = 0.999


def by_path(spark, folder) -> dict[str, np.ndarray]:
    rows = spark.read.parquet(str(folder)).select("path", "features").collect()
    return {row.path: np.asarray(row.features, dtype=np.float32) for row in rows}


def test_the_default_run_is_openvino_in_f32(pipeline_run):
    summary = pipeline_run.featurize
    assert (summary["runtime"], summary["precision"]) == ("openvino", "f32")
    assert summary["images_per_precision"] == {"f32": summary["features"]}
    assert pipeline_run.report["model"]["runtime"] == "openvino"


def test_openvino_features_equal_tensorflows(spark, pipeline_run, random_weights_file, tmp_path):
    # The weights file holds the `random` model's weights: the TensorFlow run's features must
    # match the default (OpenVINO) run's image by image, within round-off.
    config = FeaturizeConfig(
        input=str(pipeline_run.images),
        output=str(tmp_path),
        weights=str(random_weights_file),
        batch_size=8,
        runtime="tensorflow",
    )
    summary = run_featurize(spark, config)
    assert (summary["runtime"], summary["precision"]) == ("tensorflow", "f32")
    reference = by_path(spark, tmp_path / "features")
    ours = by_path(spark, pipeline_run.output / "features")
    assert sorted(ours) == sorted(reference) and len(ours) == summary["features"]
    worst = max(float(np.abs(ours[path] - reference[path]).max()) for path in reference)
    assert worst <= FEATURE_ROUND_OFF, worst
    assert max(float(np.abs(v).max()) for v in reference.values()) > 1  # not all zeros
    rejects = spark.read.parquet(str(tmp_path / "rejects")).select("path", "error")
    ours_rejects = spark.read.parquet(str(pipeline_run.output / "rejects"))
    assert sorted(rejects.collect()) == sorted(ours_rejects.select("path", "error").collect())


def test_bf16_runs_where_the_cpu_has_it_and_keeps_each_vectors_direction(
    spark, pipeline_run, tmp_path
):
    config = FeaturizeConfig(
        input=str(pipeline_run.images),
        output=str(tmp_path),
        weights="random",
        batch_size=8,
        precision="bf16",
    )
    summary = run_featurize(spark, config)
    f32 = by_path(spark, pipeline_run.output / "features")
    bf16 = by_path(spark, tmp_path / "features")
    assert sorted(bf16) == sorted(f32)
    # What ran, as recorded, decides what to expect: this machine's CPU may lack bf16.
    assert summary["precision_requested"] == "bf16"
    assert summary["images_per_precision"] == {summary["precision"]: len(bf16)}
    worst = max(float(np.abs(bf16[path] - f32[path]).max()) for path in f32)
    if summary["precision"] == "f32":
        assert worst <= FEATURE_ROUND_OFF, worst
        return
    assert summary["precision"] == "bf16"
    assert worst > FEATURE_ROUND_OFF  # bf16 really ran: its round-off is far larger
    cosines = [
        float(np.dot(bf16[p], f32[p]) / (np.linalg.norm(bf16[p]) * np.linalg.norm(f32[p])))
        for p in f32
    ]
    assert min(cosines) >= BF16_MIN_COSINE, min(cosines)


def test_a_model_cache_serves_later_runs_and_a_damaged_entry_is_exported_again(
    spark, pipeline_run, random_weights_file, tmp_path, capfd
):
    from imagefeatures import model_cache

    cache = tmp_path / "cache"
    images = str(pipeline_run.images / "Kiwi")

    def run(name: str, weights) -> tuple[dict, dict[str, np.ndarray]]:
        config = FeaturizeConfig(
            input=images,
            output=str(tmp_path / name),
            weights=str(weights),
            batch_size=4,
            model_cache=str(cache),
        )
        summary = run_featurize(spark, config)
        return summary["model_cache"], by_path(spark, tmp_path / name / "features")

    first, exported = run("first", random_weights_file)
    key = model_cache.cache_key(model_cache.weights_identity(str(random_weights_file)))
    # With the digests of the files it stored: what the Airflow connection seals.
    assert first == {
        "uri": str(cache), "key": key, "hit": False, "stored": True, "digests": first["digests"],
    }  # fmt: skip
    entry = cache / key
    assert first["digests"] == json.loads((entry / model_cache.MANIFEST).read_text())
    assert (entry / model_cache.MANIFEST).is_file()

    # A copy of the same weights under another name is the same model: served from the cache,
    # with the exported model's features bit for bit.
    renamed = tmp_path / "copy.weights.h5"
    renamed.write_bytes(random_weights_file.read_bytes())
    second, cached = run("second", renamed)
    assert second == {"uri": str(cache), "key": key, "hit": True}
    assert sorted(cached) == sorted(exported) and len(cached) == 8
    assert all(np.array_equal(cached[path], exported[path]) for path in exported)
    # The same weights as the `random` run: its features, within round-off.
    default = by_path(spark, pipeline_run.output / "features")
    assert max(float(np.abs(cached[p] - default[p]).max()) for p in cached) <= FEATURE_ROUND_OFF

    # A damaged entry (here a truncated .bin) is never used: exported again and rewritten.
    (weights_bin,) = entry.glob("*.bin")
    weights_bin.write_bytes(weights_bin.read_bytes()[:1000])
    capfd.readouterr()
    third, again = run("third", random_weights_file)
    assert {**third, "digests": None} == {
        "uri": str(cache), "key": key, "hit": False, "stored": True, "digests": None,
    }  # fmt: skip
    assert f"model cache entry {cache}/{key} unusable, exporting again" in capfd.readouterr().err
    assert all(np.array_equal(again[path], exported[path]) for path in exported)
    assert run("fourth", random_weights_file)[0]["hit"] is True

    # Other weights are another model: another entry.
    assert model_cache.cache_key(model_cache.weights_identity("random")) != key
    # A cache that cannot be written costs the next run an export, never this run.
    blocker = tmp_path / "a-file"
    blocker.write_text("a file where the cache folder would be\n")
    capfd.readouterr()
    config = FeaturizeConfig(
        input=images,
        output=str(tmp_path / "unwritable"),
        weights="random",
        batch_size=4,
        model_cache=str(blocker / "c"),
    )
    unwritable = run_featurize(spark, config)
    assert unwritable["model_cache"] == {**unwritable["model_cache"], "hit": False, "stored": False}
    assert f"model cache entry {blocker}/c/" in capfd.readouterr().err
    assert unwritable["features"] == 8
