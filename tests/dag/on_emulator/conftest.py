"""The fault suite's world: the real DAG on a reset emulator with the default buckets, the
Airflow connection on its own fake keys, the IAM policies in iam/ enforced on the connection's
and the cluster's keys, and other teams' clusters active in the same account. After each test:
none of ours left running, the other teams' clusters untouched, no call denied but the
DescribeCluster of a foreign cluster (which the DAG skips), and no object deleted outside a
prefix marked as one of this DAG's runs.

Shared by the test modules beside it, each with its own emulator (module-scoped). The model
cache the DAG's runs fill is carried from one world to the next (`carried_model_cache`).
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from emr_pipeline.plan import RUN_MARKER
from emr_pipeline.uris import split_s3_uri
from localdev.dag_run import aws_connection, upload_tree
from tests import iam_policies
from tests.dag.dag_shapes import keys_under
from tests.dag.on_emulator.world import (
    DAG_ID,
    INPUT,
    MODEL_CACHE,
    client,
    foreign_clusters,
    start_foreign_clusters,
    wait_until_ended,
)
from tests.fault_keys import (
    DAG_ACCESS_KEY,
    DAG_CREDENTIALS,
    ENDED_CLUSTER_STATES,
    SETUP_CREDENTIALS,
)
from tests.image_cases import write_good_images


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    write_good_images(root, ["Apple", "Kiwi"], 2)
    return root


@pytest.fixture
def dag(airflow_db, monkeypatch):
    from localdev.dag_run import load_dag

    dag = load_dag()
    # Retries as in production, but one second apart instead of minutes.
    for task in dag.tasks:
        monkeypatch.setattr(task, "retry_delay", timedelta(seconds=1))
        monkeypatch.setattr(task, "max_retry_delay", timedelta(seconds=2))
    return dag


@pytest.fixture(params=[True, False], ids=["deferrable", "poke"])
def wait_mode(request, caplog):
    """`deferrable` for the run's conf, in both modes; afterwards, the waits must have run
    in that mode (dag.test() runs a deferred sensor's trigger in line and says so)."""
    deferrable = request.param
    yield deferrable
    deferred = any("running trigger in line" in r.getMessage() for r in caplog.get_records("call"))
    assert deferred == deferrable, f"deferrable={deferrable}, but a trigger ran: {deferred}"


@pytest.fixture(scope="session")
def carried_model_cache() -> dict[str, bytes]:
    """The DAG's model cache as the last world left it, by key: each world's reset empties
    the emulated S3, and a run's OpenVINO export (TensorFlow, Keras, the conversion: 10 s of
    CPU) need not be paid again by every test of the suite, as it is not on EMR."""
    return {}


@pytest.fixture
def world(emulator, images, aws_credentials, monkeypatch, leaked_clusters, carried_model_cache):
    """A reset emulator with the input images, the Airflow connection on its own fake keys, the
    shipped policies enforced, other teams' clusters running (see the module docstring), and
    the model cache the earlier worlds filled (a test that needs it cold empties it)."""
    endpoint = emulator.endpoint_url
    emulator.reset()  # moto's state and the call log
    emulator.add_principal(DAG_CREDENTIALS)
    emulator.add_principal(SETUP_CREDENTIALS)
    node_key = emulator.node_credentials.access_key
    emulator.runner.step_faults.clear()
    # What a step writes reaches S3 within a second (EMRFS: at once), so a sensor poking every
    # second sees a step's phases: the tiny input makes each last a few seconds only.
    monkeypatch.setattr(emulator.runner, "live_publish_seconds", 0.5)
    foreign = start_foreign_clusters(endpoint)
    emulator.api_calls.enforce(DAG_ACCESS_KEY, iam_policies.load(iam_policies.CONNECTION_POLICY))
    emulator.api_calls.enforce(node_key, iam_policies.load(iam_policies.INSTANCE_POLICY))
    connection = aws_connection(endpoint, DAG_CREDENTIALS)
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", connection)
    s3 = client(endpoint, "s3")
    s3.create_bucket(Bucket="example-fruit-features")
    assert upload_tree(s3, images, INPUT) == 4
    cache_bucket, _ = split_s3_uri(MODEL_CACHE)
    for key, body in carried_model_cache.items():  # as the earlier run's EMRFS wrote it
        s3.put_object(Bucket=cache_bucket, Key=key, Body=body, ServerSideEncryption="AES256")
    try:
        yield emulator
    finally:  # the emulator is the module's: its later tests run without the policies
        emulator.api_calls.stop_enforcing(DAG_ACCESS_KEY)
        emulator.api_calls.stop_enforcing(node_key)
    for key in keys_under(s3, MODEL_CACHE):
        if key not in carried_model_cache:  # read only what an entry added (14 MB a model)
            carried_model_cache[key] = s3.get_object(Bucket=cache_bucket, Key=key)["Body"].read()

    others = {c["Id"]: c for c in foreign_clusters(endpoint)}
    assert sorted(others) == sorted(foreign)
    for cluster_id, cluster in others.items():  # untouched: still waiting, no step added
        assert cluster["Status"]["State"] == "WAITING", cluster["Status"]
        assert client(endpoint, "emr").list_steps(ClusterId=cluster_id)["Steps"] == []
    client(endpoint, "emr").terminate_job_flows(JobFlowIds=foreign)
    clusters = wait_until_ended(endpoint)
    leaked = [c["Id"] for c in clusters if c["Status"]["State"] not in ENDED_CLUSTER_STATES]
    leaked_clusters.extend(leaked)
    assert leaked == [], f"clusters left running: {leaked}"
    denied = [
        d
        for d in emulator.api_calls.denials
        if not (
            d.access_key == DAG_ACCESS_KEY
            and d.action == "elasticmapreduce:DescribeCluster"
            and d.resource.rsplit("/", 1)[-1] in foreign
        )
    ]
    assert denied == []
    dag_calls = emulator.api_calls.by_key(DAG_ACCESS_KEY)
    check_deletes_inside_run_prefixes(dag_calls, client(endpoint, "s3"))


def check_deletes_inside_run_prefixes(calls, s3) -> None:
    """Every object the DAG deleted lay under a prefix that holds this DAG's run marker."""
    for call in calls:
        if call.operation != "DeleteObject":
            continue
        bucket, key = call.resource.removeprefix("arn:aws:s3:::").split("/", 1)
        folders = key.split("/")[:-1]
        markers = [f"{'/'.join(folders[:n])}/{RUN_MARKER}" for n in range(1, len(folders) + 1)]
        found = [m for m in markers if s3.list_objects_v2(Bucket=bucket, Prefix=m)["KeyCount"]]
        assert found, f"{call.resource} was deleted outside any run's prefix"
        marker = s3.get_object(Bucket=bucket, Key=found[-1])
        assert json.load(marker["Body"])["dag_id"] == DAG_ID, call.resource
