"""What the on-emulator suites share besides fixtures: the default locations (the ones the
IAM policies in iam/ name), clients on the set-up keys, cluster listings, run confs, the
other teams' clusters that share the account with every run, and what the buckets hold."""

from __future__ import annotations

import json
from typing import Any

from emr_pipeline.plan import RUN_MARKER
from emr_pipeline.uris import split_s3_uri
from localdev.airflow_stack.processes import wait_until
from localdev.dag_run import run_output_uri
from tests.dag.dag_shapes import keys_under, put, run_conf
from tests.emulator.helpers import wait_for_cluster
from tests.fakes import aws_client
from tests.fault_keys import ENDED_CLUSTER_STATES, SETUP_CREDENTIALS

INPUT = "s3://example-fruit-images/fruits-360/Training/"
OUTPUT = "s3://example-fruit-features/runs/"
ARTIFACTS = "s3://example-fruit-features/emr-artifacts/fruit_features_emr/"
DAG_ID = "fruit_features_emr"
# Where the DAG's runs keep exported models (emr_pipeline.artifacts).
MODEL_CACHE = ARTIFACTS + "model-cache/"


def client(endpoint: str, service: str):
    """A client on the set-up key (the world fixture gives it to the emulator)."""
    key, secret = SETUP_CREDENTIALS.access_key, SETUP_CREDENTIALS.secret_key
    return aws_client(service, endpoint, key=key, secret=secret)


# Other teams' clusters in the same account, active during every run: one untagged, one of
# another DAG, and one whose name looks like ours but which lacks our tag (the connection's
# policy lets the DAG describe none of them).
FOREIGN_CLUSTERS = (
    ("analytics-nightly", []),
    ("other_dag-scheduled", [{"Key": "dag_id", "Value": "other_dag"}]),
    (f"{DAG_ID}-lookalike-of-another-team", [{"Key": "team", "Value": "other"}]),
)


def _described(endpoint: str) -> list[dict]:
    emr = client(endpoint, "emr")
    return [
        emr.describe_cluster(ClusterId=c["Id"])["Cluster"] for c in emr.list_clusters()["Clusters"]
    ]


def _is_ours(cluster: dict) -> bool:
    return {"Key": "dag_id", "Value": DAG_ID} in cluster.get("Tags", [])


def all_clusters(endpoint: str) -> list[dict]:
    """The clusters tagged with this DAG's dag_id (the other teams' ones left out)."""
    return [cluster for cluster in _described(endpoint) if _is_ours(cluster)]


def foreign_clusters(endpoint: str) -> list[dict]:
    return [cluster for cluster in _described(endpoint) if not _is_ours(cluster)]


def start_foreign_clusters(endpoint: str) -> list[str]:
    """Start FOREIGN_CLUSTERS (kept alive without steps) on the set-up keys and wait until each
    is WAITING, as other teams' long-lived clusters are when a run starts; their ids. (Without
    the wait, a run refused before any AWS call can end while they are still STARTING.)"""
    emr = client(endpoint, "emr")
    instances = {
        "MasterInstanceType": "m5.xlarge",
        "InstanceCount": 1,
        "KeepJobFlowAliveWhenNoSteps": True,
    }
    ids = [
        emr.run_job_flow(
            Name=name,
            ReleaseLabel="emr-7.1.0",
            Instances=instances,
            Tags=tags,
            JobFlowRole="EMR_EC2_DefaultRole",
            ServiceRole="EMR_DefaultRole",
        )["JobFlowId"]
        for name, tags in FOREIGN_CLUSTERS
    ]
    for cluster_id in ids:
        wait_for_cluster(emr, cluster_id, {"WAITING"}, timeout=120)
    return ids


def wait_until_ended(endpoint: str, timeout: float = 60) -> list[dict]:
    """Every cluster, once all have ended (or as they are after `timeout` s)."""

    def all_ended() -> tuple[list[dict]] | None:
        clusters = all_clusters(endpoint)
        ended = all(c["Status"]["State"] in ENDED_CLUSTER_STATES for c in clusters)
        return (clusters,) if ended else None  # a tuple: true even when there is no cluster

    try:
        return wait_until(all_ended, timeout, 0.2, "every cluster to end")[0]
    except TimeoutError:
        return all_clusters(endpoint)


def conf(**overrides):
    return run_conf({"input_uri": INPUT, "output_uri": OUTPUT}, **overrides)


EARLIER_RUN = "scheduled__2025-06-23T00:00:00+00:00"


def snapshot(s3: Any) -> dict[tuple[str, str], str]:
    """Every object in every bucket, with its ETag."""
    found = {}
    for bucket in (b["Name"] for b in s3.list_buckets()["Buckets"]):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                found[(bucket, obj["Key"])] = obj["ETag"]
    return found


def write_earlier_passed_run(s3: Any) -> str:
    """A finished run under the output root, as this DAG leaves one."""
    out = run_output_uri(OUTPUT, EARLIER_RUN)
    put(s3, out + RUN_MARKER, json.dumps({"dag_id": DAG_ID, "run_id": EARLIER_RUN}))
    put(s3, out + "features/part-00000.snappy.parquet", b"PAR1 earlier features PAR1")
    put(s3, out + "report.json", json.dumps({"status": "passed", "images": 4}))
    return out


def empty_model_cache(s3: Any) -> None:
    """Delete the DAG's model cache, which the world carries from earlier tests: the next run
    exports the model (a phase of its own) and stores it."""
    bucket, _ = split_s3_uri(MODEL_CACHE)
    for key in keys_under(s3, MODEL_CACHE):
        s3.delete_object(Bucket=bucket, Key=key)
