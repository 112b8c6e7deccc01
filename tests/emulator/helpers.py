"""Helpers for the emulator tests: clusters as the DAG creates them, waiting, reading logs."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from typing import Any

from emr_pipeline.uris import split_s3_uri
from localdev.airflow_stack.processes import wait_until


def command_step(name: str, *args: str, on_failure: str = "CONTINUE") -> dict[str, Any]:
    """A command-runner.jar step, as the DAG builds them."""
    return {
        "Name": name,
        "ActionOnFailure": on_failure,
        "HadoopJarStep": {"Jar": "command-runner.jar", "Args": list(args)},
    }


def create_cluster(
    emr: Any,
    bucket: str,
    steps: list[dict[str, Any]] | None = None,
    keep_alive: bool = True,
    bootstrap_path: str | None = None,
    **request: Any,
) -> str:
    """A cluster as the DAG creates them; `request` adds or replaces RunJobFlow fields."""
    config: dict[str, Any] = {
        "Name": "emulator-test",
        "LogUri": f"s3://{bucket}/logs/",
        "ReleaseLabel": "emr-7.13.0",
        "Applications": [{"Name": "Spark"}],
        "Instances": {
            "InstanceGroups": [
                {
                    "Name": "Primary",
                    "InstanceRole": "MASTER",
                    "InstanceType": "m5.xlarge",
                    "InstanceCount": 1,
                },
            ],
            "KeepJobFlowAliveWhenNoSteps": keep_alive,
        },
        "Steps": steps or [],
        "JobFlowRole": "EMR_EC2_DefaultRole",
        "ServiceRole": "EMR_DefaultRole",
    }
    if bootstrap_path:
        config["BootstrapActions"] = [
            {"Name": "deps", "ScriptBootstrapAction": {"Path": bootstrap_path, "Args": []}}
        ]
    return emr.run_job_flow(**{**config, **request})["JobFlowId"]


def wait_for(check: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    """`check()`'s first true value, polled every 0.1 s; TimeoutError naming `what`."""
    return wait_until(check, timeout, 0.1, what)


def cluster_status(emr: Any, cluster_id: str) -> dict[str, Any]:
    return emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]


def wait_for_cluster(emr: Any, cluster_id: str, states: set[str], timeout: float = 30) -> dict:
    return wait_for(
        lambda: (s := cluster_status(emr, cluster_id))["State"] in states and s,
        timeout,
        f"cluster {cluster_id} in {states}",
    )


def steps_in_order(emr: Any, cluster_id: str) -> list[dict[str, Any]]:
    """The cluster's steps in submission order (ListSteps gives newest first, as EMR does)."""
    return list(reversed(emr.list_steps(ClusterId=cluster_id)["Steps"]))


FINAL_STEP_STATES = {"COMPLETED", "FAILED", "CANCELLED", "INTERRUPTED"}


def wait_for_steps(emr: Any, cluster_id: str, timeout: float = 30) -> list[dict[str, Any]]:
    """All steps once every one has reached a final state."""
    return wait_for(
        lambda: (
            (steps := steps_in_order(emr, cluster_id))
            and all(s["Status"]["State"] in FINAL_STEP_STATES for s in steps)
            and steps
        ),
        timeout,
        f"steps of {cluster_id} to finish",
    )


def read_log(s3: Any, uri: str) -> str:
    bucket, key = split_s3_uri(uri)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return gzip.decompress(body).decode()
