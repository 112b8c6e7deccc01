"""Two runs of the DAG at once on the local EMR emulator: separate clusters, separate outputs.

The DAG says max_active_runs=1, which the scheduler enforces within one metadata database.
`dag.test()` runs one DAG run per process, so each run here is a child process
(localdev/dag_run_cli.py) with its own AIRFLOW_HOME and SQLite database: two runs a scheduler
with max_active_runs raised would start. Both talk to one emulator, started in this process.
The runs read different inputs (2 and 3 images), so a run that picked up the other's cluster,
steps or output would show it in its counts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from localdev.dag_run import (
    cluster_states,
    emr_client,
    emulator_connection,
    run_output_uri,
    s3_client,
    upload_tree,
)
from localdev.dag_run_cli import RESULT_MARKER
from tests.dag.dag_shapes import PIPELINE, keys_under, read_json, run_conf
from tests.dag.paths import REPO
from tests.image_cases import write_good_images

OUTPUT = "s3://fruit-out/runs/"
INPUTS = {"a": ("s3://fruit-in/a/", 2), "b": ("s3://fruit-in/b/", 3)}  # name: (prefix, images)
ENDED = {"TERMINATED", "TERMINATED_WITH_ERRORS"}
RUN_TIMEOUT = 540  # seconds, for both runs together (about 4 minutes on 2 busy cores)


@pytest.fixture(scope="module")
def single_core_emulator(tmp_path_factory):
    """An emulator whose steps use one core each: two clusters' steps share this machine."""
    from localdev.emr_emulator import EmrEmulator

    work_dir = tmp_path_factory.mktemp("emulator")
    with EmrEmulator(port=0, work_dir=work_dir, master="local[1]", startup_seconds=0.3) as emu:
        yield emu


def start_run(conf: dict, home: Path, key_file: Path, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "AIRFLOW_CONN_AWS_DEFAULT": emulator_connection(key_file),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    }
    command = [
        sys.executable,
        "-m",
        "localdev.dag_run_cli",
        "--conf",
        json.dumps(conf),
        "--airflow-home",
        str(home),
    ]
    with log.open("w") as out:
        return subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killed as one below
        )


def kill(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def result_of(log: Path) -> dict:
    text = log.read_text(errors="replace")
    lines = [line for line in text.splitlines() if line.startswith(RESULT_MARKER)]
    assert lines, f"no result in {log}:\n{text[-4000:]}"
    return json.loads(lines[-1].removeprefix(RESULT_MARKER))


# One run on each runtime: the DAG's runtime param reaches the job on the emulator.
RUNTIMES = {"a": "openvino", "b": "tensorflow"}


def test_two_runs_at_once_have_their_own_clusters_and_outputs(single_core_emulator, tmp_path):
    key_file = single_core_emulator.key_file
    single_core_emulator.reset()
    s3 = s3_client(key_file)
    emr = emr_client(key_file)
    s3.create_bucket(Bucket="fruit-out")
    for name, (prefix, count) in INPUTS.items():
        images = tmp_path / "images" / name
        write_good_images(images, [f"Fruit {name}"], count, seed=len(name) + count)
        assert upload_tree(s3, images, prefix) == count

    processes: dict[str, subprocess.Popen] = {}
    logs = {name: tmp_path / f"run-{name}.log" for name in INPUTS}
    most_active = 0  # the most clusters seen active (not ended) at one moment
    try:
        for name, (prefix, _) in INPUTS.items():
            # One core per cluster here: the cluster's spark.task.cpus (task_cpus) must fit in
            # it, as on a node, or Spark cannot schedule a task.
            conf = run_conf(
                {"input_uri": prefix, "output_uri": OUTPUT}, task_cpus=1, runtime=RUNTIMES[name]
            )
            home = tmp_path / f"airflow-{name}"
            processes[name] = start_run(conf, home, key_file, logs[name])
        deadline = time.monotonic() + RUN_TIMEOUT
        while any(p.poll() is None for p in processes.values()):
            assert time.monotonic() < deadline, "the two runs did not finish in time"
            clusters = emr.list_clusters()["Clusters"]
            active = [c for c in clusters if c["Status"]["State"] not in ENDED]
            most_active = max(most_active, len(active))
            time.sleep(0.5)
    finally:
        for process in processes.values():
            kill(process)

    results = {name: result_of(log) for name, log in logs.items()}
    for name, result in results.items():
        assert result["state"] == "success", (name, result["task_states"])
        for task_id in [*PIPELINE, "terminate_cluster"]:
            assert result["task_states"][task_id] == "success", (name, task_id)
    run_ids = {name: result["run_id"] for name, result in results.items()}
    assert run_ids["a"] != run_ids["b"]

    # Two clusters, one per run, each tagged with its run's id; both overlapped and both ended.
    cluster_states(key_file)  # once neither is still TERMINATING
    clusters = [
        emr.describe_cluster(ClusterId=c["Id"])["Cluster"] for c in emr.list_clusters()["Clusters"]
    ]
    assert len(clusters) == 2, [c["Id"] for c in clusters]
    by_run = {}
    for cluster in clusters:
        tags = {t["Key"]: t["Value"] for t in cluster["Tags"]}
        assert cluster["Status"]["State"] == "TERMINATED", (cluster["Id"], cluster["Status"])
        by_run[tags["run_id"]] = cluster
    assert set(by_run) == set(run_ids.values())
    assert most_active == 2, "the two runs' clusters were never active at the same time"
    for name, run_id in run_ids.items():
        steps = emr.list_steps(ClusterId=by_run[run_id]["Id"])["Steps"]
        assert sorted(s["Name"] for s in steps) == ["featurize", "pca", "validate"], name
        assert {s["Status"]["State"] for s in steps} == {"COMPLETED"}, name

    # Each run's output under its own <output>/<run id>/, with its own input's counts.
    outputs = {name: run_output_uri(OUTPUT, run_id) for name, run_id in run_ids.items()}
    assert outputs["a"] != outputs["b"]
    assert not outputs["a"].startswith(outputs["b"]) and not outputs["b"].startswith(outputs["a"])
    for name, (_, count) in INPUTS.items():
        report = read_json(s3, outputs[name] + "report.json")
        assert report["status"] == "passed", (name, report)
        assert all(check["passed"] for check in report["checks"]), name
        assert (report["images"], report["features"], report["rejects"]) == (count, count, 0)
        assert list(report["labels"]) == [f"Fruit {name}"], name
        assert report["model"]["runtime"] == RUNTIMES[name], name
        assert report["model"]["precision"] == "f32", name
        assert results[name]["summary"]["images"] == count, name
        keys = keys_under(s3, outputs[name])
        for dataset in ("features", "pca", "pca_model"):
            assert any(f"/{dataset}/" in key for key in keys), (name, dataset)
        assert results[name]["summary"]["features"] == count, name
    # Under the output root, nothing but the two runs' prefixes; artifacts, one set per run.
    run_prefixes = tuple(uri.removeprefix("s3://fruit-out/") for uri in outputs.values())
    assert [k for k in keys_under(s3, OUTPUT) if not k.startswith(run_prefixes)] == []
    for name in run_ids:
        key = outputs[name].removeprefix(OUTPUT).strip("/")
        artifacts = f"s3://fruit-out/emr-artifacts/fruit_features_emr/{key}/"
        assert any(k.endswith(".py") for k in keys_under(s3, artifacts)), name
