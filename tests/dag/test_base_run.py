"""Which earlier run an incremental run reuses, against moto S3: only the latest run of this DAG,
input and model that the Airflow connection sealed (it passed), unchanged since. The same choice
through the real DAG on the emulator: on_emulator/test_dag_on_emulator.py."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from emr_pipeline.options import RunOptions
from emr_pipeline.plan import RUN_MARKER, RunPlan, run_seal_uri
from emr_pipeline.seals import base_for_run, choose_base_run, seal_run
from tests.dag.dag_shapes import put

ROOT = "s3://out-bucket/runs/"
SEALS = "s3://out-bucket/emr-artifacts/dag/seals"
THIS_RUN = ROOT + "manual__9/"
WANTED = {
    "input_uri": "s3://in-bucket/fruits",
    "weights": "imagenet",
    "runtime": "openvino",
    "precision": "f32",
}


@pytest.fixture
def bucket(s3):
    s3.create_bucket(Bucket="out-bucket")
    return s3


def earlier_run(
    s3,
    name: str,
    claimed: str,
    status: str | None = "passed",
    dag_id: str = "dag",
    made_in: dict | None = None,
    sealed: bool = True,
    **changes,
) -> str:
    """A run folder: its marker, features, report; sealed (by its last task) if it passed."""
    folder = f"{ROOT}{name}/"
    marker = {"dag_id": dag_id, "run_id": name, "claimed_at": claimed}
    put(s3, folder + RUN_MARKER, json.dumps(marker))
    put(s3, folder + "features/part-0.parquet", b"PAR1")
    if status is not None:
        model = {"vectors_per_precision": {"f32": 3} if made_in is None else made_in}
        put(s3, folder + "report.json", json.dumps({"status": status, "model": model}))
    if status == "passed" and sealed:
        identity = {"dag_id": dag_id, "deployment": "prod", "run_id": name}
        features_of = {**WANTED, **changes}
        seal_run(s3, run_uri=folder, seals_uri=SEALS, identity=identity, features_of=features_of)
    return folder


def choose(s3):
    return choose_base_run(s3, ROOT, THIS_RUN, "dag", WANTED, SEALS)


def test_no_earlier_run_means_a_full_run(bucket):
    choice = choose(bucket)
    assert choice.uri is None and "no earlier run" in choice.reason
    assert choice.describe().startswith("full run: ")


def test_the_latest_passed_run_of_this_dag_input_and_model_is_the_base(bucket):
    oldest = earlier_run(bucket, "a", "2026-01-01T00:00:00+00:00")
    base = earlier_run(bucket, "b", "2026-01-08T00:00:00+00:00")
    # Newer, and each unusable for its own reason:
    earlier_run(bucket, "c", "2026-01-09T00:00:00+00:00", status="failed")
    earlier_run(bucket, "d", "2026-01-10T00:00:00+00:00", status=None)  # partial: no report
    earlier_run(bucket, "e", "2026-01-11T00:00:00+00:00", dag_id="other_dag")
    earlier_run(bucket, "f", "2026-01-12T00:00:00+00:00", input_uri="s3://in-bucket/veg")
    earlier_run(bucket, "g", "2026-01-13T00:00:00+00:00", weights="random", runtime="tensorflow")
    # Passed, but Airflow failed it after (read_report, the teardown, by hand): no seal.
    earlier_run(bucket, "h", "2026-01-14T00:00:00+00:00", sealed=False)
    # Asked for f32 (as this run does), but what ran is what counts: none of its vectors is.
    earlier_run(bucket, "k", "2026-01-15T00:00:00+00:00", made_in={"bf16": 3})
    earlier_run(bucket, "l", "2026-01-16T00:00:00+00:00", made_in=False)  # before the counts
    # Sealed, then a cluster (any on the instance role may write runs/) rewrote its vectors.
    rewritten = earlier_run(bucket, "m", "2026-01-17T00:00:00+00:00")
    put(bucket, rewritten + "features/part-0.parquet", b"PAR1 other vectors")
    # Forged by a cluster: a marker, features and a passed report, never sealed.
    earlier_run(bucket, "n", "2026-01-18T00:00:00+00:00", sealed=False)
    earlier_run(bucket, "manual__9", "2026-02-01T00:00:00+00:00")  # this run's own prefix

    choice = choose(bucket)

    assert choice.uri == base != oldest
    reasons = "\n".join(choice.skipped)
    for expected in (
        "runs/c/: it has no seal (its last task, seal_run, never ran",
        "runs/d/: it has no seal",
        "runs/e/: another DAG's run ('other_dag')",
        "runs/f/: its input_uri differ",
        "runs/g/: its runtime, weights differ",
        "runs/h/: it has no seal",
        "runs/k/: none of its vectors were made in f32 ({'bf16': 3})",
        "runs/l/: its seal does not say which precision made its vectors",
        "runs/m/: 1 of its sealed objects changed after it was sealed, e.g. "
        "features/part-0.parquet",
        "runs/n/: it has no seal",
    ):
        assert expected in reasons, expected
    assert "manual__9" not in reasons
    assert choice.describe().startswith(f"incremental: base run {base}: the latest earlier")
    assert choice.seal_uri == run_seal_uri(SEALS, base)  # featurize checks it again


def test_a_run_without_a_readable_marker_is_never_the_base(bucket):
    put(bucket, ROOT + "i/" + RUN_MARKER, "not json")
    put(bucket, ROOT + "i/report.json", json.dumps({"status": "passed"}))
    put(bucket, ROOT + "j/report.json", json.dumps({"status": "passed"}))  # no marker at all
    choice = choose(bucket)
    assert choice.uri is None
    assert choice.skipped == [f"{ROOT}i/: its marker {RUN_MARKER} is unreadable"]


def test_full_refresh_and_incremental_off_look_for_no_base(bucket):
    earlier_run(bucket, "a", "2026-01-01T00:00:00+00:00")
    options = RunOptions(input_uri=WANTED["input_uri"], output_uri=ROOT)
    plan = RunPlan(
        run_key="k", output_uri=THIS_RUN, report_uri=THIS_RUN + "report.json",
        artifacts_uri="s3://out-bucket/arts/", log_uri="s3://out-bucket/logs/",
        job_flow_overrides={}, steps={}, features_of=WANTED, seals_uri=SEALS,
    )  # fmt: skip
    assert base_for_run(bucket, options, plan, "dag").uri == ROOT + "a/"
    refresh = base_for_run(bucket, replace(options, full_refresh=True), plan, "dag")
    assert refresh.uri is None and refresh.reason.startswith("full_refresh=true")
    off = base_for_run(bucket, replace(options, incremental=False), plan, "dag")
    assert off.uri is None and off.reason.startswith("incremental=false")


def test_a_base_is_chosen_by_the_precision_its_vectors_were_made_in(bucket):
    """A run that asked for bf16 on CPUs without it made f32 vectors: an f32 run reuses them,
    a bf16 run does not."""
    fell_back = earlier_run(bucket, "a", "2026-01-01T00:00:00+00:00", precision="bf16")
    assert choose(bucket).uri == fell_back
    bf16 = choose_base_run(bucket, ROOT, THIS_RUN, "dag", {**WANTED, "precision": "bf16"}, SEALS)
    assert bf16.uri is None
    assert bf16.skipped == [f"{fell_back}: none of its vectors were made in bf16 ({{'f32': 3}})"]
