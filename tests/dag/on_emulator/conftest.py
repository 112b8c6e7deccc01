"""The fault suite's world: the real DAG on a reset emulator with the default buckets, the
Airflow connection on its own fake keys, and after each test, no cluster left running and
every AWS call allowed by the IAM policies in iam/.

Shared by test_faults_on_emulator.py and test_guards_on_emulator.py.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from localdev.dag_run import upload_tree
from tests import iam_policies
from tests.dag.on_emulator.world import DAG_ID, INPUT, client, wait_until_ended
from tests.fault_keys import (
    DAG_ACCESS_KEY,
    DAG_SECRET_KEY,
    EMULATOR_ACCESS_KEY,
    ENDED_CLUSTER_STATES,
    REGION,
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


@pytest.fixture
def world(emulator, images, aws_credentials, monkeypatch, leaked_clusters):
    """A reset emulator with the input images, the Airflow connection on its own fake keys;
    afterwards: no cluster left running, and every recorded call allowed by the policies."""
    import urllib.request

    endpoint = emulator.endpoint_url
    reset = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    urllib.request.urlopen(reset)
    emulator.api_calls.clear()
    emulator.runner.step_faults.clear()
    connection = {
        "conn_type": "aws",
        "login": DAG_ACCESS_KEY,
        "password": DAG_SECRET_KEY,
        "extra": {"region_name": REGION, "endpoint_url": endpoint},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(connection))
    s3 = client(endpoint, "s3")
    s3.create_bucket(Bucket="example-fruit-features")
    assert upload_tree(s3, images, INPUT) == 4
    yield emulator

    clusters = wait_until_ended(endpoint)
    leaked = [c["Id"] for c in clusters if c["Status"]["State"] not in ENDED_CLUSTER_STATES]
    leaked_clusters.extend(leaked)
    assert leaked == [], f"clusters left running: {leaked}"
    for cluster in clusters:  # the policy's tag condition holds for every cluster
        tags = {t["Key"]: t["Value"] for t in cluster["Tags"]}
        assert tags.get("dag_id") == DAG_ID, cluster["Id"]
    connection_policy = iam_policies.load(iam_policies.CONNECTION_POLICY)
    instance_policy = iam_policies.load(iam_policies.INSTANCE_POLICY)
    dag_calls = emulator.api_calls.by_key(DAG_ACCESS_KEY)
    node_calls = emulator.api_calls.by_key(EMULATOR_ACCESS_KEY)
    assert iam_policies.denied_calls(connection_policy, dag_calls) == []
    assert iam_policies.denied_calls(instance_policy, node_calls) == []
