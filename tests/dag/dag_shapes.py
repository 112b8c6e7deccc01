"""What several DAG tests share: the pipeline's task ids, run confs, tagged clusters."""

from __future__ import annotations

import json
from typing import Any

from emr_pipeline.uris import split_s3_uri

# Task ids in pipeline order (terminate_cluster is the teardown, outside the chain, and
# record_cost a second teardown after it, before read_report).
PIPELINE = [
    "preflight",
    "upload_artifacts",
    "create_cluster",
    "featurize.wait_for_step",
    "pca.wait_for_step",
    "validate.wait_for_step",
    "wait_for_report",
    "read_report",
    "seal_run",
]
ALL_TASKS = {*PIPELINE, "terminate_cluster", "record_cost"}


def run_conf(defaults: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """A trigger conf for runs on the emulator: offline weights, quick polling.

    `defaults` holds the test's input_uri and output_uri; `overrides` may replace any key.
    """
    return {
        **defaults,
        "weights": "random",
        "poke_interval_seconds": 1,
        "sensor_timeout_seconds": 600,
        **overrides,
    }


def states(dag_run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def start_tagged_cluster(emr: Any, run_id: str, dag_id: str, deployment: str = "local") -> str:
    """A cluster named, tagged and sized as the DAG makes its own (as a crashed attempt
    would leave it), for a run of `deployment` (the tests' own by default)."""
    from emr_pipeline.cluster import DATA_VOLUMES, ROOT_VOLUME, cluster_name
    from emr_pipeline.uris import run_key

    primary = {"InstanceRole": "MASTER", "InstanceType": "m5.xlarge", "InstanceCount": 1}
    return emr.run_job_flow(
        Name=cluster_name(dag_id, run_key(run_id, deployment)),
        ReleaseLabel="emr-7.13.0",
        Instances={
            "KeepJobFlowAliveWhenNoSteps": True,
            "InstanceGroups": [{**primary, "EbsConfiguration": DATA_VOLUMES}],
        },
        **ROOT_VOLUME,
        Tags=[
            {"Key": "dag_id", "Value": dag_id},
            {"Key": "deployment", "Value": deployment},
            {"Key": "run_id", "Value": run_id},
        ],
        JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole="EMR_DefaultRole",
    )["JobFlowId"]


def keys_under(s3: Any, uri: str) -> list[str]:
    """Every object key under the s3:// prefix `uri`."""
    bucket, prefix = split_s3_uri(uri)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def put(s3: Any, uri: str, body: bytes | str = b"x") -> None:
    """Write one object at the s3:// URI `uri`."""
    bucket, key = split_s3_uri(uri)
    s3.put_object(Bucket=bucket, Key=key, Body=body)


def read_json(s3: Any, uri: str) -> dict:
    bucket, key = split_s3_uri(uri)
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
