"""What the on-emulator suites share besides fixtures: the default locations (the ones the
IAM policies in iam/ name), clients on the set-up keys, cluster listings, run confs."""

from __future__ import annotations

import time

import boto3

from tests.dag.dag_shapes import run_conf
from tests.fault_keys import ENDED_CLUSTER_STATES, REGION, SETUP_ACCESS_KEY

INPUT = "s3://example-fruit-images/fruits-360/Training/"
OUTPUT = "s3://example-fruit-features/runs/"
ARTIFACTS = "s3://example-fruit-features/emr-artifacts/fruit_features_emr/"
DAG_ID = "fruit_features_emr"


def client(endpoint: str, service: str, key: str = SETUP_ACCESS_KEY, secret: str = "setup"):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
    )


def all_clusters(endpoint: str) -> list[dict]:
    emr = client(endpoint, "emr")
    return [
        emr.describe_cluster(ClusterId=c["Id"])["Cluster"] for c in emr.list_clusters()["Clusters"]
    ]


def wait_until_ended(endpoint: str, timeout: float = 20) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        clusters = all_clusters(endpoint)
        active = [c for c in clusters if c["Status"]["State"] not in ENDED_CLUSTER_STATES]
        if not active or time.monotonic() > deadline:
            return clusters
        time.sleep(0.2)


def conf(**overrides):
    return run_conf({"input_uri": INPUT, "output_uri": OUTPUT}, **overrides)
