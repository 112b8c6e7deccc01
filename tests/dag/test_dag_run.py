"""dag.test() end to end on moto: the simulator finishes (or fails) each EMR step.

Every task runs for real (no mark_success): preflight lists moto S3, the artifacts are
uploaded, the cluster is created with its steps, they are watched, and the teardown terminates
the cluster. Only the Spark work itself is played by EmrStepSimulator.
"""

from __future__ import annotations

import importlib.util
import sys

import pytest

from emr_pipeline.uris import run_key
from tests.dag.dag_shapes import PIPELINE, states
from tests.dag.emr_simulator import EmrStepSimulator, server_client

INPUT = "s3://fruit-in/fruits/"
OUTPUT = "s3://fruit-out/runs/"
IMAGES = ("Apple/r_0_100.jpg", "Apple/r_1_100.jpg", "Kiwi/r_0_100.JPG")


@pytest.fixture
def dag(airflow_db):
    from localdev.dag_run import load_dag

    return load_dag()


@pytest.fixture
def world(aws_endpoint):
    s3 = server_client(aws_endpoint, "s3")
    for bucket in ("fruit-in", "fruit-out"):
        s3.create_bucket(Bucket=bucket)
    for key in IMAGES:
        s3.put_object(Bucket="fruit-in", Key=f"fruits/{key}", Body=b"\xff\xd8 not decoded here")
    return s3


def conf(**overrides):
    return {
        "input_uri": INPUT,
        "output_uri": OUTPUT,
        "weights": "random",
        "poke_interval_seconds": 1,
        "sensor_timeout_seconds": 60,
        **overrides,
    }


def clusters(endpoint):
    emr = server_client(endpoint, "emr")
    return [
        emr.describe_cluster(ClusterId=c["Id"])["Cluster"] for c in emr.list_clusters()["Clusters"]
    ]


def test_successful_run_terminates_the_cluster(dag, world, aws_endpoint):
    with EmrStepSimulator(aws_endpoint) as simulator:
        dag_run = dag.test(run_conf=conf())
    ran = states(dag_run)
    assert str(dag_run.state) == "success", ran
    assert {ran[t] for t in [*PIPELINE, "terminate_cluster"]} == {"success"}
    assert simulator.finished == [
        ("featurize", "COMPLETED"),
        ("pca", "COMPLETED"),
        ("validate", "COMPLETED"),
    ]
    (cluster,) = clusters(aws_endpoint)
    assert cluster["Status"]["State"] == "TERMINATED"
    tags = {t["Key"]: t["Value"] for t in cluster["Tags"]}
    assert (tags["run_id"], tags["deployment"]) == (dag_run.run_id, "local")
    # The run's artifacts and report live under prefixes scoped by its deployment and run_id.
    keys = {o["Key"] for o in world.list_objects_v2(Bucket="fruit-out")["Contents"]}
    run = next(k.split("/")[1] for k in keys if k.startswith("runs/"))
    assert run == run_key(dag_run.run_id, "local") and run.startswith("local__")
    assert f"runs/{run}/report.json" in keys
    assert f"emr-artifacts/fruit_features_emr/{run}/jobs/imagefeatures.zip" in keys


def test_failed_step_fails_the_run_and_still_terminates(dag, world, aws_endpoint, capfd):
    with EmrStepSimulator(aws_endpoint, {"featurize": "FAILED"}) as simulator:
        dag_run = dag.test(run_conf=conf())
    ran = states(dag_run)
    assert str(dag_run.state) == "failed", ran
    assert ran["featurize.wait_for_step"] == "failed"
    for downstream in PIPELINE[PIPELINE.index("pca.wait_for_step") :]:
        assert ran[downstream] == "upstream_failed", downstream
    assert ran["terminate_cluster"] == "success"
    assert simulator.finished == [("featurize", "FAILED")]
    (cluster,) = clusters(aws_endpoint)
    assert cluster["Status"]["State"] == "TERMINATED"
    # dag.test() runs tasks in this process: their logs are on its stdout/stderr.
    captured = capfd.readouterr()
    task_log = captured.out + captured.err
    assert "Step failed with exitCode 2." in task_log  # FailureDetails
    assert EmrStepSimulator.STDERR.strip() in task_log  # the tail of stderr.gz


def test_empty_input_fails_before_any_cluster_exists(dag, world, aws_endpoint):
    dag_run = dag.test(run_conf=conf(input_uri="s3://fruit-in/nothing-here/"))
    ran = states(dag_run)
    assert str(dag_run.state) == "failed", ran
    assert ran["preflight"] == "failed"
    assert ran["create_cluster"] == "upstream_failed"
    assert ran["terminate_cluster"] in ("skipped", "upstream_failed")
    assert clusters(aws_endpoint) == []


def test_deferrable_sensors_wait_in_the_trigger(dag, world, aws_endpoint, caplog):
    # Steps stay RUNNING long enough for the first poke to miss them: the sensor defers.
    # deferrable is not in the conf: it is the default. (1.5 s was too short on a loaded
    # 2-core machine: every step had ended by its sensor's first poke, and none deferred.)
    with EmrStepSimulator(aws_endpoint, run_seconds=6):
        dag_run = dag.test(run_conf=conf(poke_interval_seconds=1))
    assert str(dag_run.state) == "success", states(dag_run)
    assert "running trigger in line" in caplog.text
    (cluster,) = clusters(aws_endpoint)
    assert cluster["Status"]["State"] == "TERMINATED"


def test_deferrable_without_aiobotocore_is_refused_before_any_cluster(
    dag, world, aws_endpoint, capfd, monkeypatch
):
    # An Airflow installed without the provider's aiobotocore extra: find_spec answers None.
    monkeypatch.setitem(sys.modules, "aiobotocore", None)
    assert importlib.util.find_spec("aiobotocore") is None
    dag_run = dag.test(run_conf=conf())
    ran = states(dag_run)
    assert str(dag_run.state) == "failed", ran
    assert ran["preflight"] == "failed"
    assert clusters(aws_endpoint) == []
    captured = capfd.readouterr()
    assert "deferrable=true needs aiobotocore" in captured.out + captured.err
