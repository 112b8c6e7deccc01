"""Cluster and step states with trivial command-runner steps (no Spark): fast."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.emulator.helpers import (
    cluster_status,
    command_step,
    create_cluster,
    read_log,
    steps_in_order,
    wait_for,
    wait_for_cluster,
    wait_for_steps,
)

# Trivial bash/sleep steps: they need the emulator's test-only switch.
pytestmark = pytest.mark.usefixtures("any_command")


def states(steps: list[dict[str, Any]]) -> list[str]:
    return [s["Status"]["State"] for s in steps]


def test_new_cluster_starts_then_waits_and_steps_are_pending(emr, bucket):
    cluster_id = create_cluster(emr, bucket, steps=[command_step("later", "true")])
    assert cluster_status(emr, cluster_id)["State"] == "STARTING"
    assert states(steps_in_order(emr, cluster_id)) == ["PENDING"]
    # The waiter the Amazon provider's EmrCreateJobFlowOperator uses: RUNNING or WAITING.
    emr.get_waiter("cluster_running").wait(
        ClusterId=cluster_id, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )
    steps = wait_for_steps(emr, cluster_id)
    assert states(steps) == ["COMPLETED"]
    assert wait_for_cluster(emr, cluster_id, {"WAITING"})["State"] == "WAITING"
    emr.terminate_job_flows(JobFlowIds=[cluster_id])
    emr.get_waiter("cluster_terminated").wait(
        ClusterId=cluster_id, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )
    reason = cluster_status(emr, cluster_id)["StateChangeReason"]
    assert reason["Code"] == "USER_REQUEST"


def test_steps_run_one_at_a_time_in_submission_order(emr, bucket, tmp_path: Path):
    trace = tmp_path / "trace.txt"

    def traced(n: int) -> dict[str, Any]:
        script = f"echo start {n} >> {trace}; sleep 0.3; echo end {n} >> {trace}"
        return command_step(f"step {n}", "bash", "-c", script)

    cluster_id = create_cluster(emr, bucket, steps=[traced(1), traced(2)])
    # Steps added later (as the DAG's EmrAddStepsOperator does) queue behind the first ones.
    emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=[traced(3)])
    # The waiter EmrStepSensor-style code uses for one step.
    step_ids = [s["Id"] for s in steps_in_order(emr, cluster_id)]
    emr.get_waiter("step_complete").wait(
        ClusterId=cluster_id, StepId=step_ids[-1], WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )
    steps = wait_for_steps(emr, cluster_id)
    assert states(steps) == ["COMPLETED"] * 3
    assert trace.read_text().split("\n")[:-1] == [
        "start 1", "end 1", "start 2", "end 2", "start 3", "end 3",
    ]  # fmt: skip
    timelines = [s["Status"]["Timeline"] for s in steps]
    for earlier, later in zip(timelines, timelines[1:], strict=False):
        assert earlier["EndDateTime"] <= later["StartDateTime"]


def test_failed_step_has_failure_details_and_logs(emr, s3, bucket):
    failing = command_step(
        "fails", "bash", "-c", "echo some output; echo 'ValueError: no images' >&2; exit 3"
    )
    cluster_id = create_cluster(emr, bucket, steps=[failing])
    (step,) = wait_for_steps(emr, cluster_id)
    status = emr.describe_step(ClusterId=cluster_id, StepId=step["Id"])["Step"]["Status"]
    assert status["State"] == "FAILED"
    details = status["FailureDetails"]
    log_dir = f"s3://{bucket}/logs/{cluster_id}/steps/{step['Id']}"
    assert details == {
        "Reason": "Command exited with return code 3",
        "Message": "ValueError: no images",
        "LogFile": f"{log_dir}/stderr.gz",
    }
    assert "ValueError: no images" in read_log(s3, f"{log_dir}/stderr.gz")
    assert read_log(s3, f"{log_dir}/stdout.gz") == "some output\n"


def test_continue_runs_the_next_step(emr, bucket):
    steps = [
        command_step("fails", "bash", "-c", "exit 3", on_failure="CONTINUE"),
        command_step("runs", "echo", "fine"),
    ]
    cluster_id = create_cluster(emr, bucket, steps=steps)
    assert states(wait_for_steps(emr, cluster_id)) == ["FAILED", "COMPLETED"]
    assert wait_for_cluster(emr, cluster_id, {"WAITING"})["State"] == "WAITING"


def test_cancel_and_wait_cancels_later_steps(emr, bucket):
    steps = [
        command_step("first", "true"),
        command_step("fails", "bash", "-c", "exit 3", on_failure="CANCEL_AND_WAIT"),
        command_step("skipped", "true"),
        command_step("skipped too", "true"),
    ]
    cluster_id = create_cluster(emr, bucket, steps=steps)
    assert states(wait_for_steps(emr, cluster_id)) == [
        "COMPLETED", "FAILED", "CANCELLED", "CANCELLED",
    ]  # fmt: skip
    assert wait_for_cluster(emr, cluster_id, {"WAITING"})["State"] == "WAITING"
    # The cluster is still usable: a new step runs.
    emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=[command_step("new", "true")])
    assert states(wait_for_steps(emr, cluster_id))[-1] == "COMPLETED"


@pytest.mark.parametrize("action", ["TERMINATE_CLUSTER", "TERMINATE_JOB_FLOW"])
def test_terminate_cluster_on_failure(emr, bucket, action):
    steps = [
        command_step("fails", "bash", "-c", "exit 1", on_failure=action),
        command_step("skipped", "true"),
    ]
    cluster_id = create_cluster(emr, bucket, steps=steps)
    status = wait_for_cluster(emr, cluster_id, {"TERMINATED", "TERMINATED_WITH_ERRORS"})
    assert status["State"] == "TERMINATED_WITH_ERRORS"
    assert status["StateChangeReason"]["Code"] == "STEP_FAILURE"
    assert states(steps_in_order(emr, cluster_id)) == ["FAILED", "CANCELLED"]
    with pytest.raises(ClientError, match="may not be modified"):
        emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=[command_step("late", "true")])


def test_missing_bootstrap_script_terminates_with_errors(emr, bucket):
    path = f"s3://{bucket}/bootstrap/install-python-deps.sh"
    cluster_id = create_cluster(emr, bucket, steps=[command_step("x", "true")], bootstrap_path=path)
    status = wait_for_cluster(emr, cluster_id, {"TERMINATED", "TERMINATED_WITH_ERRORS", "WAITING"})
    assert status["State"] == "TERMINATED_WITH_ERRORS"
    assert status["StateChangeReason"]["Code"] == "BOOTSTRAP_FAILURE"
    assert path in status["StateChangeReason"]["Message"]
    assert states(steps_in_order(emr, cluster_id)) == ["CANCELLED"]


def test_present_bootstrap_script_lets_the_cluster_run(emr, s3, bucket):
    s3.put_object(Bucket=bucket, Key="bootstrap/deps.sh", Body=b"#!/bin/bash\n")
    path = f"s3://{bucket}/bootstrap/deps.sh"
    cluster_id = create_cluster(emr, bucket, steps=[command_step("x", "true")], bootstrap_path=path)
    assert states(wait_for_steps(emr, cluster_id)) == ["COMPLETED"]
    bootstrap = emr.list_bootstrap_actions(ClusterId=cluster_id)["BootstrapActions"]
    assert bootstrap[0]["ScriptPath"] == path


def test_cluster_without_keep_alive_terminates_after_its_steps(emr, bucket):
    cluster_id = create_cluster(emr, bucket, steps=[command_step("x", "true")], keep_alive=False)
    status = wait_for_cluster(emr, cluster_id, {"TERMINATED", "TERMINATED_WITH_ERRORS"})
    assert status["State"] == "TERMINATED"
    assert status["StateChangeReason"]["Code"] == "ALL_STEPS_COMPLETED"
    assert states(steps_in_order(emr, cluster_id)) == ["COMPLETED"]


def test_terminating_the_cluster_cancels_the_running_step(emr, bucket):
    steps = [command_step("long", "sleep", "60"), command_step("never", "true")]
    cluster_id = create_cluster(emr, bucket, steps=steps)
    wait_for(lambda: states(steps_in_order(emr, cluster_id))[0] == "RUNNING", what="step running")
    started = time.monotonic()
    emr.terminate_job_flows(JobFlowIds=[cluster_id])
    assert states(wait_for_steps(emr, cluster_id, timeout=20)) == ["CANCELLED", "CANCELLED"]
    assert time.monotonic() - started < 15


def test_unsupported_jar_fails_the_step(emr, bucket):
    step = {
        "Name": "custom jar",
        "ActionOnFailure": "CONTINUE",
        "HadoopJarStep": {"Jar": f"s3://{bucket}/my.jar", "Args": []},
    }
    cluster_id = create_cluster(emr, bucket, steps=[step])
    (done,) = wait_for_steps(emr, cluster_id)
    assert done["Status"]["State"] == "FAILED"
    assert "command-runner.jar" in done["Status"]["FailureDetails"]["Message"]


def test_step_reads_and_writes_s3_through_staging(emr, s3, bucket):
    s3.put_object(Bucket=bucket, Key="in/a.txt", Body=b"a")
    s3.put_object(Bucket=bucket, Key="in/sub/b.txt", Body=b"b")
    s3.put_object(Bucket=bucket, Key="out/stale.txt", Body=b"old")
    s3.put_object(Bucket=bucket, Key="out/keep.txt", Body=b"same")
    s3.put_object(Bucket=bucket, Key="out/change.txt", Body=b"before")
    s3.put_object(Bucket=bucket, Key="outside/x.txt", Body=b"untouched")
    s3.put_object(Bucket=bucket, Key="script.sh", Body=b'cp -r "$1"/. "$2"/copied\n')
    script = (
        'bash "$0" "$1" "$2" && rm "$2"/stale.txt && echo after > "$2"/change.txt'
        ' && echo new > "$2"/.hidden.crc'
    )
    step = command_step(
        "copy", "bash", "-c", script, f"s3://{bucket}/script.sh", f"s3://{bucket}/in",
        f"s3://{bucket}/out/",
    )  # fmt: skip
    cluster_id = create_cluster(emr, bucket, steps=[step])
    assert states(wait_for_steps(emr, cluster_id)) == ["COMPLETED"]
    keys = {
        o["Key"]
        for o in s3.list_objects_v2(Bucket=bucket)["Contents"]
        if not o["Key"].startswith("logs/")
    }
    assert keys == {
        "in/a.txt", "in/sub/b.txt", "script.sh", "outside/x.txt",
        "out/keep.txt", "out/change.txt", "out/copied/a.txt", "out/copied/sub/b.txt",
    }  # fmt: skip
    assert s3.get_object(Bucket=bucket, Key="out/change.txt")["Body"].read() == b"after\n"
    assert s3.get_object(Bucket=bucket, Key="out/copied/sub/b.txt")["Body"].read() == b"b"


def test_each_object_is_downloaded_once_per_step(s3, bucket, tmp_path, monkeypatch):
    from localdev.emr_emulator.staging import S3Stager

    s3.put_object(Bucket=bucket, Key="in/a.txt", Body=b"a")
    s3.put_object(Bucket=bucket, Key="in/sub/b.txt", Body=b"b")
    downloads = []
    get_object = s3.get_object

    def counted(**kwargs):
        downloads.append(kwargs["Key"])
        return get_object(**kwargs)

    monkeypatch.setattr(s3, "get_object", counted)
    args = [f"s3://{bucket}/in/sub/b.txt", f"s3://{bucket}/in/", f"--x=s3://{bucket}/in/a.txt"]
    staged = S3Stager(s3).stage(args, tmp_path)
    assert sorted(downloads) == ["in/a.txt", "in/sub/b.txt"]
    assert staged.args == args  # the step's own arguments keep their s3:// URIs
    assert staged.local_args[2] == f"--x={tmp_path}/{bucket}/in/a.txt"
