"""Where EMR is strict, the emulator is too: what RunJobFlow refuses, Configurations applied to
the steps, node paths mapped (and a missing interpreter failing the step), idle clusters ending
by their AutoTerminationPolicy, and CancelSteps for pending and running steps."""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import ClientError

from localdev.local_spark import REPO_ROOT
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

SPARK_ENV_PYTHON = {
    "Classification": "spark-env",
    "Configurations": [
        {"Classification": "export", "Properties": {"PYSPARK_PYTHON": "/usr/bin/python3.11"}}
    ],
    "Properties": {},
}


@pytest.mark.parametrize(
    ("request_fields", "message"),
    [
        ({"ReleaseLabel": "emr-7.99.0"}, "release label 'emr-7.99.0' is not valid"),
        (
            {"Instances": {"MasterInstanceType": "m5.small", "InstanceCount": 1}},
            "instance type 'm5.small' is not supported in emr-7.13.0",
        ),
        (
            {"Configurations": [{"Classification": "spark-defualts", "Properties": {}}]},
            "classification 'spark-defualts' is not valid",
        ),
        (
            {
                "Configurations": [
                    {
                        "Classification": "spark-defaults",
                        "Configurations": [{"Classification": "export", "Properties": {"A": "1"}}],
                    }
                ]
            },  # fmt: skip
            "'export' is not valid inside 'spark-defaults'",
        ),
        (
            {
                "SecurityConfiguration": "at-rest",
                "Configurations": [
                    {
                        "Classification": "emrfs-site",
                        "Properties": {"fs.s3.enableServerSideEncryption": "true"},
                    }
                ],
            },  # fmt: skip
            "cannot be used together with a security configuration",
        ),
        ({"AutoTerminationPolicy": {"IdleTimeout": 30}}, "IdleTimeout must be between 60"),
        ({"StepConcurrencyLevel": 2}, "StepConcurrencyLevel 2"),
    ],
)
def test_run_job_flow_refuses_what_emr_refuses(emr, bucket, request_fields, message):
    before = {c["Id"] for c in emr.list_clusters()["Clusters"]}
    with pytest.raises(ClientError, match="ValidationException") as refused:
        create_cluster(emr, bucket, **request_fields)
    assert message in str(refused.value)
    assert {c["Id"] for c in emr.list_clusters()["Clusters"]} == before


def test_step_concurrency_cannot_be_raised_later(emr, bucket):
    cluster_id = create_cluster(emr, bucket)
    with pytest.raises(ClientError, match="StepConcurrencyLevel 4"):
        emr.modify_cluster(ClusterId=cluster_id, StepConcurrencyLevel=4)
    emr.terminate_job_flows(JobFlowIds=[cluster_id])


JOB = b"""
import os, sys
from pyspark.sql import SparkSession
spark = SparkSession.builder.getOrCreate()
conf = spark.sparkContext.getConf()
print("partitions=" + conf.get("spark.sql.shuffle.partitions"))
print("batch=" + conf.get("spark.sql.execution.arrow.maxRecordsPerBatch"))
print("overhead=" + conf.get("spark.executor.memoryOverheadFactor"))
print("python=" + conf.get("spark.pyspark.python"))
print("keras_home=" + os.environ["KERAS_HOME"])
print("input=" + sys.argv[1])
print("listed=" + ",".join(sorted(r.path for r in spark.read.format("binaryFile").load(sys.argv[1]).collect())))
"""  # noqa: E501


def test_spark_defaults_and_spark_env_reach_the_job_and_paths_stay_s3(emr, s3, bucket):
    s3.put_object(Bucket=bucket, Key="code/job.py", Body=JOB)
    s3.put_object(Bucket=bucket, Key="in/a.bin", Body=b"a")
    configurations = [
        {**SPARK_ENV_PYTHON, "Configurations": [{"Classification": "export", "Properties": {
            "PYSPARK_PYTHON": "/usr/bin/python3.11", "KERAS_HOME": "/var/cache/keras"}}]},
        {"Classification": "spark-defaults", "Properties": {
            "spark.sql.shuffle.partitions": "7",
            "spark.sql.execution.arrow.maxRecordsPerBatch": "16",
            "spark.executor.memoryOverheadFactor": "0.3",
            "spark.pyspark.python": "/usr/bin/python3.11"}},
    ]  # fmt: skip
    step = command_step(
        "show", "spark-submit", "--conf", "spark.sql.execution.arrow.maxRecordsPerBatch=64",
        f"s3://{bucket}/code/job.py", f"s3://{bucket}/in/",
    )  # fmt: skip
    cluster_id = create_cluster(emr, bucket, steps=[step], Configurations=configurations)
    (done,) = wait_for_steps(emr, cluster_id, timeout=120)
    stdout = read_log(s3, f"s3://{bucket}/logs/{cluster_id}/steps/{done['Id']}/stdout.gz")
    assert done["Status"]["State"] == "COMPLETED", stdout
    lines = dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)
    assert lines["partitions"] == "7"  # from spark-defaults
    assert lines["batch"] == "64"  # the step's own --conf wins over spark-defaults
    assert lines["overhead"] == "0.3"  # a camelCase key arrives as written
    assert lines["python"] != "/usr/bin/python3.11" and lines["python"].endswith("python")
    assert lines["keras_home"].endswith("/node/var/cache/keras")  # a node folder, mapped
    assert lines["input"] == f"s3://{bucket}/in/"  # the job sees the s3:// URI ...
    assert lines["listed"] == f"s3://{bucket}/in/a.bin"  # ... and so do its listings
    emr.terminate_job_flows(JobFlowIds=[cluster_id])


def test_an_interpreter_the_node_does_not_have_fails_the_step(emr, bucket):
    export = {"Classification": "export", "Properties": {"PYSPARK_PYTHON": "/usr/bin/python3.9"}}
    configurations = [{**SPARK_ENV_PYTHON, "Configurations": [export]}]
    step = command_step("job", "spark-submit", f"s3://{bucket}/job.py")
    cluster_id = create_cluster(emr, bucket, steps=[step], Configurations=configurations)
    (done,) = wait_for_steps(emr, cluster_id)
    assert done["Status"]["State"] == "FAILED"
    message = done["Status"]["FailureDetails"]["Message"]
    assert "PYSPARK_PYTHON=/usr/bin/python3.9: no such interpreter on the node" in message
    emr.terminate_job_flows(JobFlowIds=[cluster_id])


def test_an_idle_cluster_ends_by_its_auto_termination_policy(emulator, emr, bucket, monkeypatch):
    monkeypatch.setattr(emulator.runner, "idle_timeout_factor", 1 / 60)  # a minute is a second
    cluster_id = create_cluster(emr, bucket, AutoTerminationPolicy={"IdleTimeout": 60})
    busy = create_cluster(emr, bucket)  # no policy: stays
    status = wait_for_cluster(emr, cluster_id, {"TERMINATED"}, timeout=20)
    assert status["StateChangeReason"]["Code"] == "ALL_STEPS_COMPLETED"
    assert "auto-termination policy" in status["StateChangeReason"]["Message"]
    assert cluster_status(emr, busy)["State"] == "WAITING"
    emr.terminate_job_flows(JobFlowIds=[busy])


def test_cancel_steps_cancels_pending_and_stops_running_ones(emulator, emr, s3, bucket):
    s3.put_object(Bucket=bucket, Key="code/sleep.py", Body=b"import time\ntime.sleep(300)\n")
    sleeping = command_step("sleep", "spark-submit", f"s3://{bucket}/code/sleep.py")
    queued = command_step("queued", "spark-submit", f"s3://{bucket}/code/sleep.py")
    cluster_id = create_cluster(emr, bucket, steps=[sleeping, queued])
    first, second = (s["Id"] for s in steps_in_order(emr, cluster_id))
    wait_for(
        lambda: steps_in_order(emr, cluster_id)[0]["Status"]["State"] == "RUNNING",
        timeout=30,
        what="the first step to run",
    )
    started = time.monotonic()
    answer = emr.cancel_steps(ClusterId=cluster_id, StepIds=[second, first])
    assert {i["StepId"]: i["Status"] for i in answer["CancelStepsInfoList"]} == {
        first: "SUBMITTED",
        second: "SUBMITTED",
    }
    steps = wait_for_steps(emr, cluster_id, timeout=30)
    assert [s["Status"]["State"] for s in steps] == ["CANCELLED", "CANCELLED"]
    assert time.monotonic() - started < 20  # the spark-submit was stopped, not waited for
    again = emr.cancel_steps(ClusterId=cluster_id, StepIds=[first])["CancelStepsInfoList"]
    assert again == [{"StepId": first, "Status": "FAILED", "Reason": "Step is CANCELLED"}]
    emr.terminate_job_flows(JobFlowIds=[cluster_id])


# --- Bootstrap actions run -----------------------------------------------------------------

BOOTSTRAP = REPO_ROOT / "bootstrap"


def _ship_bootstrap(s3, bucket: str, requirements: bytes | None = None) -> tuple[str, list[str]]:
    script = BOOTSTRAP / "install-python-deps.sh"
    s3.put_object(Bucket=bucket, Key="b/install-python-deps.sh", Body=script.read_bytes())
    body = requirements or (BOOTSTRAP / "requirements-emr.txt").read_bytes()
    s3.put_object(Bucket=bucket, Key="b/requirements.txt", Body=body)
    s3.put_object(
        Bucket=bucket, Key="b/constraints.txt", Body=(REPO_ROOT / "constraints.txt").read_bytes()
    )
    args = [
        f"s3://{bucket}/b/requirements.txt",
        "--constraints",
        f"s3://{bucket}/b/constraints.txt",
    ]
    return f"s3://{bucket}/b/install-python-deps.sh", args


def _bootstrap_actions(path: str, args: list[str]) -> list[dict]:
    return [{"Name": "deps", "ScriptBootstrapAction": {"Path": path, "Args": args}}]


def _bootstrap_log(s3, bucket: str, cluster_id: str) -> str:
    prefix = f"logs/{cluster_id}/node/"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]]
    (stderr,) = [k for k in keys if k.endswith("bootstrap-actions/1/stderr.gz")]
    return read_log(s3, f"s3://{bucket}/{stderr}")


def test_the_projects_bootstrap_runs_before_the_cluster_accepts_steps(emr, s3, bucket):
    path, args = _ship_bootstrap(s3, bucket)
    seen = []
    cluster_id = create_cluster(emr, bucket, BootstrapActions=_bootstrap_actions(path, args))
    wait_for(
        lambda: seen.append(cluster_status(emr, cluster_id)["State"]) or seen[-1] == "WAITING",
        timeout=60,
        what="the bootstrap to finish",
    )
    assert "BOOTSTRAPPING" in seen and seen.index("BOOTSTRAPPING") < seen.index("WAITING")
    log = _bootstrap_log(s3, bucket, cluster_id)
    assert "requirements installed" in log and log.rstrip().endswith("install-python-deps: done")
    emr.terminate_job_flows(JobFlowIds=[cluster_id])


def test_a_failing_bootstrap_fails_the_cluster_with_its_log(emr, s3, bucket):
    path, args = _ship_bootstrap(s3, bucket, requirements=b"tensorflow-cpu==0.0.1\n")
    steps = [command_step("never", "spark-submit", f"s3://{bucket}/job.py")]
    cluster_id = create_cluster(
        emr, bucket, steps=steps, BootstrapActions=_bootstrap_actions(path, args)
    )
    status = wait_for_cluster(emr, cluster_id, {"TERMINATED_WITH_ERRORS"}, timeout=60)
    assert status["StateChangeReason"]["Code"] == "BOOTSTRAP_FAILURE"
    assert (
        "bootstrap action 1 returned a non-zero return code"
        in (status["StateChangeReason"]["Message"])
    )
    assert [s["Status"]["State"] for s in steps_in_order(emr, cluster_id)] == ["CANCELLED"]
    assert "pip install failed" in _bootstrap_log(s3, bucket, cluster_id)


def test_only_the_projects_bootstrap_scripts_run(emr, s3, bucket, tmp_path):
    marker = tmp_path / "ran"
    s3.put_object(Bucket=bucket, Key="b/other.sh", Body=f"touch {marker}\n".encode())
    actions = _bootstrap_actions(f"s3://{bucket}/b/other.sh", [])
    cluster_id = create_cluster(emr, bucket, BootstrapActions=actions)
    status = wait_for_cluster(emr, cluster_id, {"TERMINATED_WITH_ERRORS"})
    assert (
        "is not one of this project's bootstrap scripts" in status["StateChangeReason"]["Message"]
    )
    assert not marker.exists()


def test_a_terminated_cluster_is_terminating_before_it_is_terminated(emr, bucket):
    cluster_id = create_cluster(emr, bucket)
    wait_for_cluster(emr, cluster_id, {"WAITING"})
    emr.terminate_job_flows(JobFlowIds=[cluster_id])
    assert cluster_status(emr, cluster_id)["State"] == "TERMINATING"
    status = wait_for_cluster(emr, cluster_id, {"TERMINATED"})
    assert status["StateChangeReason"]["Code"] == "USER_REQUEST"
    assert "EndDateTime" in status["Timeline"]


def test_a_terminated_clusters_instances_have_launch_and_end_times_and_normalized_hours(
    emr, bucket
):
    groups = [
        {"Name": "Primary", "InstanceRole": "MASTER", "InstanceType": "m5.xlarge",
         "InstanceCount": 1},
        {"Name": "Core", "InstanceRole": "CORE", "InstanceType": "m5.2xlarge",
         "InstanceCount": 2, "Market": "SPOT"},
    ]  # fmt: skip
    cluster_id = create_cluster(
        emr, bucket, Instances={"InstanceGroups": groups, "KeepJobFlowAliveWhenNoSteps": True}
    )
    starting = emr.list_instances(ClusterId=cluster_id)["Instances"]
    if cluster_status(emr, cluster_id)["State"] == "STARTING":  # not yet bootstrapped
        assert {i["Status"]["State"] for i in starting} == {"PROVISIONING"}
        assert all("ReadyDateTime" not in i["Status"]["Timeline"] for i in starting)
    wait_for_cluster(emr, cluster_id, {"WAITING"})
    emr.terminate_job_flows(JobFlowIds=[cluster_id])
    cluster = wait_for_cluster(emr, cluster_id, {"TERMINATED"})

    instances = emr.list_instances(ClusterId=cluster_id)["Instances"]
    assert sorted(i["InstanceType"] for i in instances) == ["m5.2xlarge"] * 2 + ["m5.xlarge"]
    for instance in instances:
        timeline = instance["Status"]["Timeline"]
        assert instance["Status"]["State"] == "TERMINATED"
        assert timeline["CreationDateTime"] <= timeline["ReadyDateTime"]
        assert timeline["ReadyDateTime"] <= timeline["EndDateTime"]
        assert timeline["EndDateTime"] <= cluster["Timeline"]["EndDateTime"]
    groups = emr.list_instance_groups(ClusterId=cluster_id)["InstanceGroups"]
    assert {g["Status"]["State"] for g in groups} == {"TERMINATED"}
    assert {g["Market"] for g in groups} == {"ON_DEMAND", "SPOT"}
    # EMR's count: each instance's hours rounded up to a whole hour (here 1), times its size's
    # factor: xlarge 8, 2xlarge 16.
    described = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]
    assert described["NormalizedInstanceHours"] == 8 + 2 * 16


@pytest.mark.parametrize(
    ("instance_type", "factor"),
    [("m5.large", 4), ("m5.xlarge", 8), ("m5.2xlarge", 16), ("c7g.16xlarge", 128),
     ("t3.micro", 0.5), ("m5.metal", 0)],
)  # fmt: skip
def test_normalization_factors_follow_emrs_table(instance_type, factor):
    from localdev.emr_emulator.moto_patches import normalization_factor

    assert normalization_factor(instance_type) == factor
