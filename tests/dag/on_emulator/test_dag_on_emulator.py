"""The real DAG on the local EMR emulator: every task runs, and so does every Spark step.

Nothing is simulated here: preflight lists the emulator's S3, the cluster is created, each
step runs spark-submit with local Spark on the staged inputs, validate reads the parquet
back, and the teardown terminates the cluster.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import h5py
import numpy as np
import pytest

from emr_pipeline.plan import RUN_MARKER, run_seal_uri
from localdev.dag_run import (
    cluster_states,
    emr_client,
    emulator_connection,
    run_dag,
    run_output_uri,
    s3_client,
    upload_tree,
)
from tests.dag.cost_checks import check_cost_block, check_s3_requests
from tests.dag.dag_shapes import keys_under, read_json, run_conf
from tests.image_cases import bad_input_cases, jpeg_bytes, picture, write, write_good_images
from tests.spark.conftest import FEATURE_ROUND_OFF

INPUT = "s3://fruit-in/fruits/"
OUTPUT = "s3://fruit-out/runs/"


@pytest.fixture
def emulated_aws(emulator, airflow_db, aws_credentials, monkeypatch):
    """A reset emulator that the DAG's connection reaches with its key; the key file."""
    emulator.reset()
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", emulator_connection(emulator.key_file))
    s3 = s3_client(emulator.key_file)
    s3.create_bucket(Bucket="fruit-out")
    return emulator.key_file


def parquet_column(s3, bucket: str, key: str, column: str) -> list:
    import io

    import pyarrow.parquet as pq

    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return pq.read_table(io.BytesIO(body), columns=[column]).column(column).to_pylist()


def uncompressed_png(seed: int) -> bytes:
    """A PNG whose size depends only on its dimensions: a rewrite that keeps the size."""
    import io

    buffer = io.BytesIO()
    picture(seed).save(buffer, format="PNG", compress_level=0)
    return buffer.getvalue()


def input_requests(emulator, operation: str) -> int:
    """`operation` requests on the input bucket the emulator has answered so far."""
    return sum(
        1
        for call in emulator.api_calls.calls
        if call.operation == operation and call.resource.startswith("arn:aws:s3:::fruit-in")
    )


def conf(**overrides):
    return run_conf({"input_uri": INPUT, "output_uri": OUTPUT}, **overrides)


def features_by_path(s3, out: str) -> dict[str, list[float]]:
    keys = [k for k in keys_under(s3, out) if "/features/" in k and k.endswith(".parquet")]
    return {
        path: vector
        for key in keys
        for path, vector in zip(
            parquet_column(s3, "fruit-out", key, "path"),
            parquet_column(s3, "fruit-out", key, "features"),
            strict=True,
        )
    }


def test_a_full_run_then_incremental_runs_that_reuse_only_what_passed(
    emulated_aws, emulator, tmp_path
):
    """One scenario, four DAG runs on one emulator:
    1. a first, full run (a bad image among good ones, a camera's `_DSC` name that Hadoop's
       listing would hide) that exports and caches the model and records its cost, while the
       catalogue moves under it: once featurize runs, an image lands and one is rewritten. The
       run's manifest fixed its input: the added image waits for the next run, the rewritten
       one is a reject with its reason, and the counts agree;
    2. a run that fails after its featurize step wrote complete features (pca fails), whose
       cost is recorded all the same;
    3. after images were added, changed (one with the same size), removed and fixed, an
       incremental run: its base is run 1 (sealed by its last task), never the newer failed
       run 2, nor a newer "passed" run a cluster forged (no seal); it featurizes only what
       changed and what landed during run 1, from the cached model, reads only those images,
       and keeps run 1's vectors of the rest bit for bit;
    4. the cached model poisoned as a cluster could (a layer's weights scaled, its manifest
       rewritten to match), then full_refresh=true: the entry does not match its seal, so the
       model is exported again, and every image gets the same features as run 3's."""
    images = tmp_path / "images"
    write_good_images(images, ["Apple Red 1", "Kiwi"], 4)
    relative, content, _ = bad_input_cases()["truncated_jpeg"]
    write(images / "Kiwi" / "broken.jpg", content)
    write(images / "Camera" / "_DSC0001.JPG", jpeg_bytes(picture(703)))
    write(images / "Apple Red 1" / "same-size.png", uncompressed_png(704))
    s3 = s3_client(emulated_aws)
    assert upload_tree(s3, images, INPUT) == 11

    def catalogue_moves() -> None:  # once featurize is RUNNING: after the manifest, before reads
        s3.put_object(Bucket="fruit-in", Key="fruits/Kiwi/late.jpg", Body=jpeg_bytes(picture(705)))
        s3.put_object(
            Bucket="fruit-in", Key="fruits/Apple Red 1/r_2_100.jpg", Body=jpeg_bytes(picture(706))
        )

    emulator.runner.on_step_start["featurize"] = catalogue_moves
    try:
        result = run_dag(conf())
    finally:
        emulator.runner.on_step_start.clear()

    assert result.state == "success", result.task_states
    assert result.task_states["terminate_cluster"] == "success"
    assert result.summary["images"] == 11 and result.summary["rejects"] == 2
    out = run_output_uri(OUTPUT, result.run_id)
    report = read_json(s3, out + "report.json")
    assert report["status"] == "passed" and all(c["passed"] for c in report["checks"])
    assert (report["images"], report["features"], report["rejects"]) == (11, 9, 2)
    # The manifest, written once by preflight, is the run's input: what landed later is not in it.
    assert report["manifest"] == {
        **report["manifest"], "source": "listing", "images": 11, "list_requests": 1,
    }  # fmt: skip
    assert f"{INPUT}Camera/_DSC0001.JPG" in features_by_path(s3, out)
    assert f"{INPUT}Kiwi/late.jpg" not in features_by_path(s3, out)
    moved = {r["path"]: r["error"] for r in report["rejected_files"]}
    assert moved[f"{INPUT}Apple Red 1/r_2_100.jpg"].startswith(
        "changed since the run's manifest was made (its ETag is no longer"
    ), moved
    # Nothing on the cluster listed the input: the workers read each image by its key, once.
    assert input_requests(emulator, "ListBucket") == 1  # preflight's listing (one page)
    assert input_requests(emulator, "GetObject") == report["s3_gets"] == 11
    assert report["incremental"] == {
        "base_run": None, "reason": "no earlier run of this input and model passed",
    }  # fmt: skip
    assert result.summary["base_run"] is None
    # The defaults: OpenVINO in f32 (TensorFlow's features), as the summary says too.
    assert (report["model"]["runtime"], report["model"]["precision"]) == ("openvino", "f32")
    assert (result.summary["runtime"], result.summary["precision"]) == ("openvino", "f32")
    assert moved[f"{INPUT}Kiwi/broken.jpg"].startswith("OSError")
    keys = keys_under(s3, out)
    # As on EMR: every path the jobs wrote is an s3:// URI, never the emulator's local copy.
    paths = [
        path
        for key in keys
        if key.endswith(".parquet") and ("/features/" in key or "/rejects/" in key)
        for path in parquet_column(s3, "fruit-out", key, "path")
    ]
    assert len(paths) == 11 and all(p.startswith(INPUT) for p in paths), paths
    for key in keys:
        if key.endswith(".json"):
            body = s3.get_object(Bucket="fruit-out", Key=key)["Body"].read().decode()
            assert "file:" not in body and str(emulator.work_dir) not in body, key
    for dataset in ("features", "rejects", "pca", "pca_model"):
        assert any(f"/{dataset}/" in k for k in keys), dataset
    assert any(k.endswith("pca.png") for k in keys)
    assert list(cluster_states(emulated_aws).values()) == ["TERMINATED"]
    # The model this run exported is kept for the next runs, beside the runs' artifacts.
    cache = report["model"]["model_cache"]
    assert cache == {**cache, "hit": False, "stored": True}
    entry = f"s3://fruit-out/emr-artifacts/fruit_features_emr/model-cache/{cache['key']}/"
    assert sorted(keys_under(s3, entry)) == sorted(
        entry.removeprefix("s3://fruit-out/") + name
        for name in ("manifest.json", "model.xml", "model.bin")
    )
    first = features_by_path(s3, out)
    assert len(first) == 9
    # Sealed by the connection, last: the run's objects and the model entry it exported.
    seals = "s3://fruit-out/emr-artifacts/fruit_features_emr/seals/"
    run_seal = read_json(s3, run_seal_uri(seals, out))
    assert run_seal["run_uri"] == out and run_seal["vectors_per_precision"] == {"f32": 9}
    assert "report.json" in run_seal["objects"] and result.task_states["seal_run"] == "success"
    model_seal = read_json(s3, f"{seals}model-cache/{cache['key']}.json")
    assert model_seal["files"] == read_json(s3, entry + "manifest.json") == cache["digests"]
    # What the cluster used and cost, after the teardown: in report.json, cost.json and the
    # summary (the Asset event's extra), consistent with EMR's own instance timelines.
    assert result.task_states["record_cost"] == "success"
    block = report["cost"]
    assert read_json(s3, out + "cost.json") == block
    check_cost_block(block, emr_client(emulated_aws), block["cluster_id"])
    # The run's S3 requests, from its own records: one LIST page, a GET per image read.
    check_s3_requests(block, s3, out)
    listing, images = block["s3_requests"]["parts"][:2]
    assert (listing["list"], images["get"]) == (1, 11) and block["s3_requests"]["usd"] > 0
    # The DAG's defaults: one m5.xlarge primary and two m5.2xlarge core nodes, on-demand,
    # each under an hour: EMR counts 8 + 2 x 16 normalized hours.
    groups = sorted((g["role"], g["instance_type"], g["instance_count"]) for g in block["groups"])
    assert groups == [("CORE", "m5.2xlarge", 2), ("MASTER", "m5.xlarge", 1)]
    assert block["normalized_instance_hours"] == 40
    assert block["estimate_usd"] > 0 and block["estimate_is_upper_bound"] is False
    assert result.summary["cost_estimate_usd"] == round(block["estimate_usd"], 4)
    assert result.summary["normalized_instance_hours"] == 40

    # 2. Newer than run 1, with complete features, but failed: never a base.
    emulator.runner.step_faults["pca"] = "pca: error: injected failure"
    try:
        failed = run_dag(conf())
    finally:
        emulator.runner.step_faults.clear()
    assert failed.state == "failed" and failed.task_states["pca.wait_for_step"] == "failed"
    failed_out = run_output_uri(OUTPUT, failed.run_id)
    assert any("/features/" in k for k in keys_under(s3, failed_out))
    # A failed run costs money too: its cost is recorded all the same (no report to add it to).
    assert failed.task_states["record_cost"] == "success"
    failed_cost = read_json(s3, failed_out + "cost.json")
    check_cost_block(failed_cost, emr_client(emulated_aws), failed_cost["cluster_id"])

    # 3. One image added, one rewritten, one rewritten with the same size, one removed, the
    # broken one fixed.
    s3.put_object(Bucket="fruit-in", Key="fruits/Kiwi/new.jpg", Body=jpeg_bytes(picture(700)))
    s3.put_object(
        Bucket="fruit-in", Key="fruits/Apple Red 1/r_0_100.jpg", Body=jpeg_bytes(picture(701))
    )
    same_size = s3.put_object(
        Bucket="fruit-in", Key="fruits/Apple Red 1/same-size.png", Body=uncompressed_png(707)
    )
    assert (
        s3.head_object(Bucket="fruit-in", Key="fruits/Apple Red 1/same-size.png")["ContentLength"]
        == len(uncompressed_png(704))
        and same_size["ETag"]
    )
    s3.delete_object(Bucket="fruit-in", Key="fruits/Apple Red 1/r_1_100.jpg")
    s3.put_object(Bucket="fruit-in", Key="fruits/Kiwi/broken.jpg", Body=jpeg_bytes(picture(702)))
    # A newer "passed" run a cluster forged (the instance role may write runs/): run 1's
    # objects, its own marker and report, no seal.
    forged = run_output_uri(OUTPUT, "manual__forged")
    for key in keys_under(s3, out):
        name = key.removeprefix(out.removeprefix("s3://fruit-out/"))
        s3.copy_object(
            Bucket="fruit-out", Key=forged.removeprefix("s3://fruit-out/") + name,
            CopySource={"Bucket": "fruit-out", "Key": key},
        )  # fmt: skip
    forged_marker = {**read_json(s3, out + RUN_MARKER), "claimed_at": "2099-01-01T00:00:00+00:00"}
    s3.put_object(
        Bucket="fruit-out", Key=forged.removeprefix("s3://fruit-out/") + RUN_MARKER,
        Body=json.dumps(forged_marker),
    )  # fmt: skip
    gets_before = input_requests(emulator, "GetObject")

    again = run_dag(conf())

    assert again.state == "success", again.task_states
    again_out = run_output_uri(OUTPUT, again.run_id)
    rerun = read_json(s3, again_out + "report.json")
    # New: new.jpg and late.jpg (landed during run 1); changed: r_0 and the same-size PNG;
    # retried: run 1's rejects (broken.jpg, and r_2 that changed under it).
    assert rerun["incremental"] == {
        "base_run": out, "new": 2, "changed": 2, "other_precision": 0, "retried": 2, "reused": 6,
        "removed": 1,
    }  # fmt: skip
    assert again.summary["base_run"] == out
    assert (rerun["images"], rerun["features"], rerun["rejects"]) == (12, 12, 0)
    # Every vector counted in the precision it was made in, the six reused ones included.
    assert rerun["model"]["vectors_per_precision"] == {"f32": 12}
    # Only the six images it featurized were read from S3.
    assert input_requests(emulator, "GetObject") - gets_before == rerun["s3_gets"] == 6
    # It exported nothing: the model came from run 1's cache entry.
    assert rerun["model"]["model_cache"] == {"uri": cache["uri"], "key": cache["key"], "hit": True}
    ours = features_by_path(s3, again_out)
    touched = {
        f"{INPUT}{name}"
        for name in (
            "Kiwi/new.jpg", "Kiwi/late.jpg", "Apple Red 1/r_0_100.jpg",
            "Apple Red 1/same-size.png", "Apple Red 1/r_2_100.jpg", "Kiwi/broken.jpg",
        )
    }  # fmt: skip
    reused = set(ours) - touched
    assert len(reused) == 6 and reused <= set(first)
    assert {p: ours[p] for p in reused} == {p: first[p] for p in reused}  # bit for bit
    same = f"{INPUT}Apple Red 1/same-size.png"
    assert ours[same] != first[same]  # same size, other bytes: a new vector

    # 4. The cached model poisoned as any cluster on the instance role could: one layer's
    # weights scaled by 1.5, the entry's manifest rewritten to match. Its seal does not.
    entry_key = entry.removeprefix("s3://fruit-out/")
    weights = np.frombuffer(
        s3.get_object(Bucket="fruit-out", Key=entry_key + "model.bin")["Body"].read(), np.float32
    ).copy()
    weights[: weights.size // 2] *= 1.5
    poisoned = weights.tobytes()
    s3.put_object(Bucket="fruit-out", Key=entry_key + "model.bin", Body=poisoned)
    manifest = read_json(s3, entry + "manifest.json")
    manifest["model.bin"] = {"bytes": len(poisoned), "sha256": hashlib.sha256(poisoned).hexdigest()}
    s3.put_object(Bucket="fruit-out", Key=entry_key + "manifest.json", Body=json.dumps(manifest))

    # A full refresh featurizes every image again: the same features as run 3's.
    refresh = run_dag(conf(full_refresh=True))

    assert refresh.state == "success", refresh.task_states
    refreshed = read_json(s3, run_output_uri(OUTPUT, refresh.run_id) + "report.json")
    # Not from the poisoned entry: exported again, stored, and sealed anew.
    assert refreshed["model"]["model_cache"]["hit"] is False
    assert refreshed["model"]["model_cache"]["stored"] is True
    refresh_out = run_output_uri(OUTPUT, refresh.run_id)
    assert read_json(s3, refresh_out + "report.json")["incremental"] == {
        "base_run": None, "reason": "full_refresh=true: every image is featurized",
    }  # fmt: skip
    full = features_by_path(s3, refresh_out)
    assert sorted(full) == sorted(ours)
    worst = max(abs(a - b) for p in full for a, b in zip(full[p], ours[p], strict=True))
    assert worst <= FEATURE_ROUND_OFF, worst


def test_failing_featurize_step_fails_the_run_and_terminates(
    emulated_aws, tmp_path, capfd, random_weights_file
):
    write_good_images(tmp_path / "images", ["Lime"], 2)
    s3 = s3_client(emulated_aws)
    upload_tree(s3, tmp_path / "images", INPUT)
    # MobileNetV2's arrays and values (all that preflight checks), one kernel of another shape:
    # Keras refuses it in the featurize step.
    broken = tmp_path / "broken.weights.h5"
    shutil.copy(random_weights_file, broken)
    with h5py.File(broken, "r+") as h5:
        kernels = []
        h5.visititems(
            lambda name, item: (
                kernels.append(name)
                if isinstance(item, h5py.Dataset)
                and item.ndim == 2
                and item.shape[0] != item.shape[1]
                else None
            )
        )
        values = h5[kernels[0]][()]
        del h5[kernels[0]]
        h5[kernels[0]] = values.T
    s3.upload_file(str(broken), "fruit-in", "models/broken.weights.h5")

    result = run_dag(conf(weights="s3://fruit-in/models/broken.weights.h5"))

    assert result.state == "failed", result.task_states
    assert result.task_states["featurize.wait_for_step"] == "failed"
    assert result.task_states["pca.wait_for_step"] == "upstream_failed"
    assert result.task_states["terminate_cluster"] == "success"
    assert set(cluster_states(emulated_aws).values()) <= {"TERMINATED", "TERMINATED_WITH_ERRORS"}
    captured = capfd.readouterr()
    task_log = captured.out + captured.err
    # The step's own log tail, fetched from LogUri, names the bad weights.
    assert "featurize: error: weights" in task_log
    assert "broken.weights.h5" in task_log


def test_empty_input_creates_no_cluster(emulated_aws, capfd):
    s3 = s3_client(emulated_aws)
    s3.create_bucket(Bucket="fruit-in")
    s3.put_object(Bucket="fruit-in", Key="fruits/Apple/readme.txt", Body=b"no images")

    result = run_dag(conf())

    assert result.state == "failed"
    assert result.task_states["preflight"] == "failed"
    assert cluster_states(emulated_aws) == {}
    captured = capfd.readouterr()
    assert "s3://fruit-in/fruits/" in captured.out + captured.err
