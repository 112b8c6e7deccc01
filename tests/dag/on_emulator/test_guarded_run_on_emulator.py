"""A run that passes the guards, through the real DAG on the emulator: what preflight lists is
what featurize reads (names Hadoop would hide or break on included), a weights file is copied
next to the job code, the output prefix is written as Hadoop resolves it, the run's marker is
written first, the steps go in with the cluster, and nothing outside the run's own prefixes
changes. (The refusals: test_guards_on_emulator.py.)
"""

from __future__ import annotations

from emr_pipeline.plan import RUN_MARKER, run_seal_uri
from emr_pipeline.uris import split_s3_uri
from localdev.dag_run import run_output_uri
from tests.dag.dag_shapes import keys_under, put, read_json, states
from tests.dag.on_emulator.world import (
    DAG_ID,
    INPUT,
    OUTPUT,
    client,
    conf,
    empty_model_cache,
    snapshot,
    wait_until_ended,
    write_earlier_passed_run,
)
from tests.fault_keys import DAG_ACCESS_KEY
from tests.image_cases import jpeg_bytes, picture


def test_a_guarded_run_reads_what_preflight_counted_and_touches_only_its_own_prefix(
    dag, world, random_weights_file, capfd
):
    """Names Hadoop's listing would hide (a `_` or `.` start) in the input, an s3:// weights
    file, the output root written as a user might (s3a://, a double slash) and bf16 asked
    for, under the IAM policies: the run passes, featurizes every image of its manifest, says
    which precision ran, and leaves everything else as it was."""
    endpoint = world.endpoint_url
    s3 = client(endpoint, "s3")
    earlier = write_earlier_passed_run(s3)
    # An earlier run whose marker went to Glacier: the base-run search skips it, saying why,
    # instead of failing every incremental run's preflight (issue 31, case 8).
    archived = "runs/archived-run-0000000000000000/" + RUN_MARKER
    s3.put_object(
        Bucket="example-fruit-features",
        Key=archived,
        Body=b'{"dag_id": "fruit_features_emr", "run_id": "archived"}',
        StorageClass="GLACIER",
    )
    # Hadoop hid the first three and broke on the last two (':', '//'); the manifest holds
    # them all, read by key as they are.
    hidden = (
        "Apple/_partial.jpg", "Kiwi/.thumbnail.jpg", "_staging/Lime/a.jpg", "Apple/10:30.jpg",
        "Apple//double-slash.jpg",
    )  # fmt: skip
    for name in hidden:
        put(s3, INPUT + name, jpeg_bytes(picture(len(name))))
    weights = "s3://example-fruit-features/models/mobilenet_v2_random.weights.h5"
    put(s3, weights, random_weights_file.read_bytes())
    empty_model_cache(s3)  # cold: this run exports the model and stores it
    before = snapshot(s3)

    dag_run = dag.test(
        run_conf=conf(
            weights=weights,
            output_uri="s3a://example-fruit-features//runs/",
            runtime="openvino",
            precision="bf16",
        )
    )

    ran = states(dag_run)
    assert str(dag_run.state) == "success", ran
    log = "".join(capfd.readouterr())
    assert "9 images in 4 labels under" in log
    assert (
        "skipped s3://example-fruit-features/runs/archived-run-0000000000000000/: its marker is "
        "archived (InvalidObjectState: restore it to read it)"
    ) in log
    # Keys as they are: every image of the manifest has its vector, hidden names included.
    out = run_output_uri(OUTPUT, dag_run.run_id)
    report = read_json(s3, out + "report.json")
    assert report["images"] == report["features"] == 9
    # A key's label is its parent folder's name: empty after a '//'.
    assert sorted(report["labels"]) == ["", "Apple", "Kiwi", "Lime"]
    features = read_json(s3, out + "featurize_summary.json")
    assert features["s3_gets"] == 9 and features["features"] == 9
    # bf16 where this CPU has it, else f32: the report says what featurize ran, not what was
    # asked for.
    precision = read_json(s3, out + "featurize_summary.json")["precision"]
    assert precision in ("bf16", "f32")
    assert (report["model"]["runtime"], report["model"]["precision"]) == ("openvino", precision)
    # The marker names the full run id; the output is where Hadoop resolves the root to.
    assert read_json(s3, out + RUN_MARKER)["run_id"] == dag_run.run_id
    assert out.startswith("s3://example-fruit-features/runs/")
    # Nothing that was there before changed: the input, the earlier run, the weights.
    after = snapshot(s3)
    assert {k: v for k, v in after.items() if k in before} == before
    assert read_json(s3, earlier + "report.json")["status"] == "passed"
    # What the run added lies under its own output and artifacts prefixes only, plus the one
    # entry of the DAG's model cache for the model it exported, and the two seals the
    # connection wrote once the run passed: the run's and that entry's.
    bucket = "example-fruit-features"
    added = sorted(key for (b, key) in after if (b, key) not in before)
    run_prefixes = (out, run_output_uri(f"s3://{bucket}/emr-artifacts/{DAG_ID}/", dag_run.run_id))
    logs = f"s3://{bucket}/emr-artifacts/emr-logs/"
    cache = report["model"]["model_cache"]
    assert cache == {**cache, "hit": False, "stored": True}
    entry = f"emr-artifacts/{DAG_ID}/model-cache/{cache['key']}/"
    assert [k for k in added if k.startswith(entry)] == [
        entry + name for name in ("manifest.json", "model.bin", "model.xml")
    ]
    seals = f"emr-artifacts/{DAG_ID}/seals/"
    assert sorted(k for k in added if k.startswith(seals)) == sorted(
        [
            split_s3_uri(run_seal_uri(f"s3://{bucket}/{seals}", out))[1],
            f"{seals}model-cache/{cache['key']}.json",
        ]
    )
    strays = [
        k
        for k in added
        if not f"s3://{bucket}/{k}".startswith((*run_prefixes, logs))
        and not k.startswith((entry, seals))
    ]
    assert strays == []
    # The nodes read the run's own copy of the weights, next to its job code.
    (cluster,) = wait_until_ended(endpoint)
    emr = client(endpoint, "emr")
    steps = {s["Name"]: s for s in emr.list_steps(ClusterId=cluster["Id"])["Steps"]}
    featurize_args = steps["featurize"]["Config"]["Args"]
    copy = featurize_args[featurize_args.index("--weights") + 1]
    assert copy == run_prefixes[1] + "weights/mobilenet_v2_random.weights.h5"
    assert report["model"]["weights"] == copy
    assert featurize_args[featurize_args.index("--precision") + 1] == "bf16"
    assert keys_under(s3, copy) == [copy.removeprefix(f"s3://{bucket}/")]
    # The steps went in with the cluster: the DAG never added one.
    operations = {c.operation for c in world.api_calls.by_key(DAG_ACCESS_KEY)}
    assert "AddJobFlowSteps" not in operations
    assert [s["Status"]["State"] for s in steps.values()] == ["COMPLETED"] * 3
    assert cluster["Status"]["State"] == "TERMINATED"
