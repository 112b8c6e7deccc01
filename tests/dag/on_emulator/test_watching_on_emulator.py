"""Watching a running step, through the real DAG on the emulator (real Spark steps): the step
sensors log the job's progress and the step's new log lines while it runs, in poke and in
deferrable mode, and a step made to hang is reported as stuck and, with fail_when_stuck, fails
the run, whose teardown terminates the cluster.

The world (fixtures in conftest.py) enforces the IAM policies in iam/: reading the progress
files and the running step's logs must be allowed to the Airflow connection, writing them to
the cluster's instance role.
"""

from __future__ import annotations

import re

import pytest

from imagefeatures.inference import TEST_HANG_AFTER_IMAGES
from localdev.dag_run import run_output_uri
from tests.dag.dag_shapes import read_json, states
from tests.dag.on_emulator.world import OUTPUT, client, conf, empty_model_cache, wait_until_ended
from tests.fault_keys import ENDED_CLUSTER_STATES

# The sensor's progress lines (not the step's own log lines, shown as "stdout | ...").
PROGRESS_LINE = re.compile(r"\] (featurize: (?!no progress)[^\[]*?)\s*\[")


def extra_links(dag_run, task_id: str) -> dict[str, str]:
    """The task's extra links by name, as the API server reads them: the serialized task's,
    from the XComs its run wrote."""
    from airflow.models.serialized_dag import SerializedDagModel

    task = SerializedDagModel.get_dag(dag_run.dag_id).get_task(task_id)
    ti = dag_run.get_task_instance(task_id)
    return {name: task.get_extra_links(ti, name) for name in task.extra_links}


def lines_between(log: str, first: str, last: str) -> list[str]:
    """The log's lines after the first line holding `first`, before the first holding `last`."""
    lines = log.splitlines()
    start = next(i for i, line in enumerate(lines) if first in line)
    end = next(i for i, line in enumerate(lines) if i > start and last in line)
    return lines[start + 1 : end]


def check_watched_while_running(log: str, until: str) -> None:
    """What the featurize sensor (or its trigger) logged while the step was RUNNING: at least
    two progress values, and the job's first line from the step's stdout.gz."""
    running = lines_between(log, "is RUNNING", until)
    progress = {m.group(1) for line in running if (m := PROGRESS_LINE.search(line))}
    assert len(progress) >= 2, running  # the progress moved while the step ran
    assert any("stdout | featurize: full run:" in line for line in running), running


# Poke mode is watched in the hung step's runs below (one DAG run fewer in make test).
@pytest.mark.parametrize("wait_mode", [True], ids=["deferrable"], indirect=True)
def test_a_running_step_logs_its_progress_and_new_log_lines(dag, world, wait_mode, capfd):
    empty_model_cache(client(world.endpoint_url, "s3"))  # a first run: the export is a phase
    dag_run = dag.test(run_conf=conf(deferrable=wait_mode))

    assert str(dag_run.state) == "success", states(dag_run)
    log = "".join(capfd.readouterr())
    check_watched_while_running(log, until="is COMPLETED")
    # And once it ended, its last progress.
    assert re.search(
        r"featurize: 4 / 4 images \(100%\), [\d,]+ img/s, 0 rejects, finished after", log
    )
    # The steps' last progress is kept in the report.
    out = run_output_uri(OUTPUT, dag_run.run_id)
    report = read_json(client(world.endpoint_url, "s3"), out + "report.json")
    featurized = report["progress"]["featurize"]
    assert featurized["state"] == "finished" and featurized["unit"] == "images"
    assert featurized["done"] == featurized["total"] == report["features"] == 4
    assert featurized["rejects"] == 0
    assert report["progress"]["pca"]["state"] == "finished"
    assert report["progress"]["pca"]["phase"] == "projected"  # pca says its phases too
    assert "pca: projected, finished after" in log
    # The links the Airflow UI shows on the wait, read as its API server reads them.
    links = extra_links(dag_run, "featurize.wait_for_step")
    step_logs = re.fullmatch(
        r"https://console\.aws\.amazon\.com/s3/buckets/[\w.-]+\?region=[\w-]+&prefix=\S*"
        r"/(j-\w+)/steps/(s-\w+)/",
        links["EMR Step Logs"],
    )
    assert step_logs, links
    assert links["EMR Cluster"].endswith(f"#/clusterDetails/{step_logs.group(1)}")
    progress_key = out.split("/", 3)[3] + "_progress/featurize.json"
    assert links["Step Progress"].endswith(f"&prefix={progress_key}")
    application = report["progress"]["featurize"]["spark_application_id"]
    assert application and links["Spark History (on cluster)"].startswith("http://")
    assert links["Spark History (on cluster)"].endswith(f":18080/history/{application}/jobs/")
    # And said in the task's log.
    assert re.search(r"featurize's links: .*EMR Step Logs: https://console\.aws\.amazon", log)


def test_a_hung_step_is_reported_stuck_and_fail_when_stuck_ends_the_run_and_its_cluster(
    dag, world, wait_mode, monkeypatch, capfd
):
    # The job's test hook: a Python worker stops answering after its first image.
    monkeypatch.setenv(TEST_HANG_AFTER_IMAGES, "1")
    # The model's export, a phase of its own before the hang: with a cached model the phases
    # before it can pass between two looks.
    empty_model_cache(client(world.endpoint_url, "s3"))

    # 30 s: longer than a step's start (the JVM, the session, the listing) takes on a loaded
    # 2-core machine, so the first stuck report is where the step hung, not before it began.
    dag_run = dag.test(
        run_conf=conf(deferrable=wait_mode, stuck_after_seconds=30, fail_when_stuck=True)
    )

    ran = states(dag_run)
    assert str(dag_run.state) == "failed", ran
    assert ran["featurize.wait_for_step"] == "failed"
    assert ran["pca.wait_for_step"] == "upstream_failed"
    assert ran["terminate_cluster"] == "success"
    (cluster,) = wait_until_ended(world.endpoint_url)
    assert cluster["Status"]["State"] in ENDED_CLUSTER_STATES
    log = "".join(capfd.readouterr())
    check_watched_while_running(log, until="STUCK?")
    # Stuck where it hung: 0 of the 4 images done.
    stuck = re.search(
        r"STUCK\? featurize's progress has not moved for (\d+) s while the step is RUNNING "
        r"\(featurize: 0 / 4 images \(0%\), 0 rejects",
        log,
    )
    assert stuck, [line for line in log.splitlines() if "STUCK" in line]
    assert int(stuck.group(1)) >= 30
