"""A step, a bootstrap action or a wait that fails: the real DAG on the emulator (real Spark
steps) fails the run with the reason in its log, and its teardown terminates the cluster.

Faults come from the emulator (localdev/emr_emulator): a step that fails with a given stderr
(`runner.step_faults`), its logs late and its FailureDetails terse as EMR's often are, or a
bootstrap script that cannot install its pins. The world (conftest.py) checks after each test
that no cluster is left running and that every call was allowed by the policies in iam/.
"""

from __future__ import annotations

import pytest

from tests.dag.dag_shapes import states
from tests.dag.on_emulator.world import all_clusters, conf, wait_until_ended
from tests.fault_keys import ENDED_CLUSTER_STATES


@pytest.mark.parametrize(
    ("failing", "as_emr_often_is", "wait_mode"),
    [
        ("featurize", True, True),
        ("featurize", True, False),
        ("pca", False, True),
        ("validate", False, True),
    ],
    ids=["featurize-deferrable", "featurize-poke", "pca-deferrable", "validate-deferrable"],
    indirect=["wait_mode"],
)
def test_a_failing_step_fails_the_run_and_terminates_the_cluster(
    dag, world, failing, as_emr_often_is, wait_mode, monkeypatch, capfd
):
    """The step's own error line reaches the task log. `as_emr_often_is`: the failed step's
    FailureDetails say only "Unknown Error." and its logs reach S3 seconds after it failed;
    the sensor waits for them."""
    message = f"{failing}: error: injected failure of the {failing} step"
    world.runner.step_faults[failing] = message
    if as_emr_often_is:
        monkeypatch.setattr(world.runner, "log_delay_seconds", 4.0)
        monkeypatch.setattr(world.runner, "terse_failure_details", True)

    dag_run = dag.test(run_conf=conf(deferrable=wait_mode))

    ran = states(dag_run)
    assert str(dag_run.state) == "failed", ran
    assert ran[f"{failing}.wait_for_step"] == "failed"
    later = ["featurize", "pca", "validate"]
    for name in later[later.index(failing) + 1 :]:
        assert ran[f"{name}.wait_for_step"] == "upstream_failed", ran
    assert ran["read_report"] == "upstream_failed"
    assert ran["terminate_cluster"] == "success"
    (cluster,) = all_clusters(world.endpoint_url)
    assert cluster["Status"]["State"] in ENDED_CLUSTER_STATES
    log = "".join(capfd.readouterr())
    assert message in log  # the step's stderr, in the task log (fetched once it arrived)
    assert ("reason: Unknown Error." in log) == as_emr_often_is


def test_a_sensor_timeout_names_the_step_and_terminates(dag, world, wait_mode, capfd):
    dag_run = dag.test(run_conf=conf(sensor_timeout_seconds=2, deferrable=wait_mode))

    ran = states(dag_run)
    assert str(dag_run.state) == "failed", ran
    assert ran["featurize.wait_for_step"] == "failed"
    assert ran["terminate_cluster"] == "success"
    (cluster,) = wait_until_ended(world.endpoint_url)
    assert cluster["Status"]["State"] in ENDED_CLUSTER_STATES
    captured = capfd.readouterr()
    log = captured.out + captured.err
    assert "EMR step featurize (s-" in log
    assert "did not finish within 2 s (sensor_timeout_seconds)" in log


def test_a_failing_bootstrap_fails_the_run_with_its_log(
    dag, world, wait_mode, monkeypatch, tmp_path, capfd
):
    """The project's bootstrap script, shipped with a pin the nodes cannot install: the cluster
    ends with BOOTSTRAP_FAILURE, and the run is red with the bootstrap log's tail."""
    import dataclasses
    import shutil

    import fruit_features_emr

    bootstrap = tmp_path / "bootstrap"
    shutil.copytree(fruit_features_emr.SETTINGS.bootstrap_dir, bootstrap)
    (bootstrap / "requirements-emr.txt").write_text("tensorflow-cpu==0.0.1\n")
    settings = dataclasses.replace(fruit_features_emr.SETTINGS, bootstrap_dir=str(bootstrap))
    monkeypatch.setattr(fruit_features_emr, "SETTINGS", settings)

    dag_run = dag.test(run_conf=conf(deferrable=wait_mode))

    ran = states(dag_run)
    assert str(dag_run.state) == "failed", ran
    assert ran["featurize.wait_for_step"] == "failed"
    assert ran["terminate_cluster"] == "success"
    (cluster,) = all_clusters(world.endpoint_url)
    reason = cluster["Status"]["StateChangeReason"]
    assert (cluster["Status"]["State"], reason["Code"]) == (
        "TERMINATED_WITH_ERRORS",
        "BOOTSTRAP_FAILURE",
    )
    log = "".join(capfd.readouterr())
    assert "bootstrap-actions/1/stderr.gz" in log
    assert "ERROR: pip install failed" in log  # the bootstrap log's own line, in the task log
