"""Fault injection around the run's cluster: the real DAG on the emulator (real Spark steps)
with answers lost, a cluster re-tagged, a worker killed, a wait marked failed. (Failing steps
and bootstraps: test_step_failures_on_emulator.py.)

Faults come from the emulator (localdev/emr_emulator): an API call that succeeds on the server
but whose answer is lost (`api_calls.fail_after`). After every test the fixture checks that no
cluster is left running (the session-wide ledger `leaked_clusters` must end empty) and that
every AWS call the DAG made is allowed by iam/airflow-connection-policy.json, every call the
"cluster" made by iam/emr-instance-role-policy.json.

Buckets and prefixes are the DAG's defaults, the ones the policies in iam/ name.
"""

from __future__ import annotations

import asyncio
import json

import pendulum
import pytest
from airflow._shared.module_loading import import_string  # what the triggerer uses
from airflow.sdk.exceptions import TaskDeferred

from emr_pipeline import cost
from emr_pipeline.plan import RUN_MARKER
from emr_pipeline.preflight import marker_body
from emr_pipeline.uris import split_s3_uri
from localdev.airflow_stack.processes import wait_until
from localdev.dag_run import LOCAL_DEPLOYMENT_ID, run_output_uri
from tests.dag.cost_checks import check_cost_block
from tests.dag.dag_shapes import keys_under, read_json, start_tagged_cluster, states
from tests.dag.on_emulator.world import (
    ARTIFACTS,
    DAG_ID,
    FOREIGN_CLUSTERS,
    OUTPUT,
    all_clusters,
    client,
    conf,
    foreign_clusters,
    wait_until_ended,
)
from tests.fault_keys import DAG_ACCESS_KEY, DAG_SECRET_KEY, ENDED_CLUSTER_STATES


def test_retried_create_and_step_lookup_leave_one_cluster_and_one_run_of_each_step(
    dag, world, capfd
):
    """RunJobFlow (with the three steps) succeeds but its answer is lost, and so does the
    featurize sensor's step lookup; the retries find the cluster by its tags and the step by
    its name. Also: SSE on every object the run wrote, no credentials in the task logs, every
    call covered by the IAM policy."""
    endpoint = world.endpoint_url
    world.api_calls.fail_after("RunJobFlow", access_key=DAG_ACCESS_KEY)
    world.api_calls.fail_after("ListSteps", access_key=DAG_ACCESS_KEY)

    dag_run = dag.test(run_conf=conf())

    ran = states(dag_run)
    assert str(dag_run.state) == "success", ran
    assert world.api_calls.injected == ["RunJobFlow", "ListSteps"]
    tries = {ti.task_id: ti.try_number for ti in dag_run.get_task_instances()}
    assert tries["create_cluster"] == 2 and tries["featurize.wait_for_step"] == 2, tries
    (cluster,) = wait_until_ended(endpoint)  # one cluster for two tries of create_cluster
    assert cluster["Status"]["State"] == "TERMINATED"
    emr = client(endpoint, "emr")
    steps = emr.list_steps(ClusterId=cluster["Id"])["Steps"]
    assert sorted(s["Name"] for s in steps) == ["featurize", "pca", "validate"]
    assert {s["Status"]["State"] for s in steps} == {"COMPLETED"}
    run_jobs = [c for c in world.api_calls.by_key(DAG_ACCESS_KEY) if c.operation == "RunJobFlow"]
    assert len(run_jobs) == 1  # the retry found the cluster: it did not call RunJobFlow again

    # Server-side encryption on everything the run wrote: the DAG's uploads (artifacts) and
    # the jobs' outputs (EMRFS, told by the emrfs-site classification).
    s3 = client(endpoint, "s3")
    out = run_output_uri(OUTPUT, dag_run.run_id)
    written = [("example-fruit-features", k) for k in keys_under(s3, out)]
    written += [("example-fruit-features", k) for k in keys_under(s3, ARTIFACTS)]
    assert len(written) > 10
    for bucket, key in written:
        head = s3.head_object(Bucket=bucket, Key=key)
        assert head.get("ServerSideEncryption") == "AES256", key
    report = read_json(s3, out + "report.json")
    assert report["status"] == "passed"
    # What the cluster used, recorded after the teardown under the policy, as EMR reports it.
    check_cost_block(report["cost"], emr, cluster["Id"])

    # No credentials in the task logs (dag.test runs every task in this process).
    captured = capfd.readouterr()
    task_log = captured.out + captured.err
    assert "create_cluster" in task_log and len(task_log) > 1000
    assert DAG_SECRET_KEY not in task_log
    assert DAG_ACCESS_KEY not in task_log

    # The calls the policy must cover were made (the fixture checks they are all allowed).
    operations = {c.operation for c in world.api_calls.by_key(DAG_ACCESS_KEY)}
    for needed in ("RunJobFlow", "ListClusters", "DescribeCluster",
                   "ListSteps", "DescribeStep", "TerminateJobFlows", "PutObject",
                   "ListBucket", "GetObject", "ListInstanceGroups", "ListInstances"):  # fmt: skip
        assert needed in operations, needed

    # Other teams' clusters were active all along. The one named like ours was described,
    # refused by the policy and skipped; the others were not even described.
    foreign = {c["Name"]: c["Id"] for c in foreign_clusters(endpoint)}
    (lookalike,) = [foreign[name] for name in foreign if name.startswith(f"{DAG_ID}-")]
    described = {
        c.resource.rsplit("/", 1)[-1]
        for c in world.api_calls.by_key(DAG_ACCESS_KEY)
        if c.operation == "DescribeCluster"
    }
    denied = {d.resource.rsplit("/", 1)[-1] for d in world.api_calls.denials_of(DAG_ACCESS_KEY)}
    assert lookalike in described and denied == {lookalike}
    assert described.isdisjoint(set(foreign.values()) - {lookalike})
    assert len(foreign) == len(FOREIGN_CLUSTERS)


def test_a_cluster_that_no_longer_carries_the_runs_tags_is_not_touched(
    dag, world, monkeypatch, capfd
):
    """Someone re-tags the run's cluster right after it started (its dag_id tag stays, so the
    policy still lets the DAG describe it): the sensors do not wait on its steps and the
    teardown does not terminate it; the run fails and says why."""
    from emr_pipeline.operators import RunScopedEmrCreateJobFlowOperator

    endpoint = world.endpoint_url
    emr = client(endpoint, "emr")
    create = RunScopedEmrCreateJobFlowOperator.execute

    def create_then_retag(self, context):
        cluster_id = create(self, context)
        emr.add_tags(ResourceId=cluster_id, Tags=[{"Key": "run_id", "Value": "someone-else"}])
        return cluster_id

    monkeypatch.setattr(RunScopedEmrCreateJobFlowOperator, "execute", create_then_retag)
    dag_run = dag.test(run_conf=conf())

    ran = states(dag_run)
    assert str(dag_run.state) == "failed", ran
    assert ran["featurize.wait_for_step"] == "failed"
    assert ran["terminate_cluster"] == "failed"
    (cluster,) = all_clusters(endpoint)
    assert cluster["Status"]["State"] not in ENDED_CLUSTER_STATES  # the DAG left it alone
    operations = [c.operation for c in world.api_calls.by_key(DAG_ACCESS_KEY)]
    assert "TerminateJobFlows" not in operations and "ListSteps" not in operations
    log = "".join(capfd.readouterr())
    assert f"cluster {cluster['Id']} is not this run's" in log
    assert "'run_id': 'someone-else'" in log
    emr.terminate_job_flows(JobFlowIds=[cluster["Id"]])  # what the on-call would do


def test_a_killed_run_cleared_and_rerun_has_one_cluster_at_a_time(dag, world, monkeypatch):
    """The first attempt's worker died after featurize started: its cluster still runs a step
    and its output prefix holds a partial write. Clearing the run and running it again (same
    run_id: dag.test with the same logical date clears and reruns the run) ends that cluster
    before starting a new one and starts from an empty output prefix. Both clusters are
    costed (the killed attempt's never ran record_cost), every attempt's cost file is kept,
    and no object outside the run's folder is deleted, even one the policy's delete grant
    matches."""
    endpoint = world.endpoint_url
    logical_date = pendulum.datetime(2025, 6, 1, tz="UTC")
    run_id = f"manual__{logical_date.isoformat()}"
    out = run_output_uri(OUTPUT, run_id)
    emr, s3 = client(endpoint, "emr"), client(endpoint, "s3")
    # What the killed attempt left: its cluster (this run's tags) busy with a step (a plain
    # `sleep`, which only the emulator's test-only switch runs)...
    monkeypatch.setattr(world.runner, "allow_any_command", True)
    orphan = start_tagged_cluster(emr, run_id, DAG_ID)
    emr.add_job_flow_steps(
        JobFlowId=orphan,
        Steps=[{"Name": "featurize", "ActionOnFailure": "CONTINUE",
                "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["sleep", "120"]}}],
    )  # fmt: skip
    # ...and a partial write under the run's output prefix, after the run's marker.
    bucket, prefix = split_s3_uri(out)
    marker = {
        **marker_body(DAG_ID, run_id, LOCAL_DEPLOYMENT_ID),
        "claimed_at": "2025-06-01T00:00:01+00:00",
    }
    s3.put_object(Bucket=bucket, Key=f"{prefix}{RUN_MARKER}", Body=json.dumps(marker))
    stale = f"{prefix}features/part-00007-first-attempt.snappy.parquet"
    s3.put_object(Bucket=bucket, Key=stale, Body=b"half a parquet file")
    # An earlier attempt's cost record (of a cluster since forgotten by EMR's listing) and a
    # backup that IAM's delete grant matches (runs/*-????????????????/*) but is no run's.
    kept_cost = f"{prefix}costs/j-EARLIER00000.json"
    s3.put_object(Bucket=bucket, Key=kept_cost, Body=b'{"cluster_id": "j-EARLIER00000"}')
    backup = "runs/keep/backups-2026-01-01T00:00/catalogue.csv"
    s3.put_object(Bucket=bucket, Key=backup, Body=b"path,label")

    dag_run = dag.test(run_conf=conf(), logical_date=logical_date, run_after=logical_date)

    assert dag_run.run_id == run_id
    assert str(dag_run.state) == "success", states(dag_run)
    clusters = {c["Id"]: c for c in wait_until_ended(endpoint)}
    assert len(clusters) == 2
    (new,) = [c for c in clusters.values() if c["Id"] != orphan]
    first_end = clusters[orphan]["Status"]["Timeline"]["EndDateTime"]
    assert first_end <= new["Status"]["Timeline"]["CreationDateTime"]  # one at a time
    keys = keys_under(s3, out)
    assert stale not in keys
    report = read_json(s3, out + "report.json")
    assert report["status"] == "passed" and report["images"] == report["features"] == 4
    # Issue 31: what the killed attempt's cluster used is costed too, and no attempt's cost
    # record is lost to the rerun's clearing.
    assert kept_cost in keys and f"{prefix}costs/{new['Id']}.json" in keys
    run_cost = read_json(s3, out + "cost.json")
    check_cost_block(run_cost, emr, new["Id"])
    assert report["cost"] == run_cost
    (earlier,) = run_cost["earlier_clusters"]
    assert earlier["cluster_id"] == orphan and earlier["cost_uri"] == f"{out}costs/{orphan}.json"
    orphan_cost = read_json(s3, earlier["cost_uri"])
    check_cost_block(orphan_cost, emr, orphan)
    assert earlier["estimate_usd"] == orphan_cost["estimate_usd"] > 0
    assert run_cost["run_estimate_usd"] == pytest.approx(
        run_cost["estimate_usd"] + orphan_cost["estimate_usd"]
    )
    assert cost.summary_fields(run_cost)["cost_estimate_usd"] == round(
        run_cost["run_estimate_usd"], 4
    )
    assert s3.get_object(Bucket=bucket, Key=backup)["Body"].read() == b"path,label"


@pytest.mark.parametrize("deferred", [True, False], ids=["deferrable", "poke"])
def test_a_killed_wait_cancels_its_step(dag, world, deferred, monkeypatch):
    """A person marks a waiting sensor failed (or clears it), or its worker is killed: the step
    it waited on is cancelled on EMR (the provider would leave it running), through the
    Airflow connection and within its policy. A poking sensor's on_kill does it in the worker;
    a deferred one's wait is a trigger, rebuilt in the triggerer from its serialized form, whose
    on_kill Airflow 3.3 calls on such a user action."""
    endpoint = world.endpoint_url
    emr = client(endpoint, "emr")
    monkeypatch.setattr(world.runner, "allow_any_command", True)  # a plain `sleep` step
    cluster_id = start_tagged_cluster(emr, "manual__killed", DAG_ID)
    (step_id,) = emr.add_job_flow_steps(
        JobFlowId=cluster_id,
        Steps=[{"Name": "featurize", "ActionOnFailure": "CONTINUE",
                "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["sleep", "300"]}}],
    )["StepIds"]  # fmt: skip
    wait = dag.get_task("featurize.wait_for_step")
    wait.job_flow_id, wait.step_id = cluster_id, step_id
    state = lambda: emr.describe_step(ClusterId=cluster_id, StepId=step_id)["Step"]["Status"]  # noqa: E731
    wait_until(lambda: state()["State"] == "RUNNING", 30, 0.1, "the step to run")

    if deferred:
        with pytest.raises(TaskDeferred) as deferral:
            wait._defer_to_trigger()
        classpath, kwargs = deferral.value.trigger.serialize()
        trigger = import_string(classpath)(**kwargs)  # as the triggerer rebuilds it
        asyncio.run(trigger.on_kill())
    else:
        wait.on_kill()

    wait_until(lambda: state()["State"] != "RUNNING", 30, 0.1, "the step to stop")
    assert state()["State"] == "CANCELLED"
    cancels = [c for c in world.api_calls.by_key(DAG_ACCESS_KEY) if c.operation == "CancelSteps"]
    assert len(cancels) == 1
    emr.terminate_job_flows(JobFlowIds=[cluster_id])


def test_two_deployments_sharing_an_output_root_and_an_account_keep_apart(dag, world, monkeypatch):
    """Staging's run is under way (its cluster busy, a partial write in its folder) when a
    deployment with no deployment_id set runs the same run_id (the same schedule) on the same
    output root. That deployment makes its own id, keeps it in an Airflow Variable, and runs in
    its own folder with its own cluster: staging's cluster is neither ended nor costed as its
    own, and staging's output is untouched. (Before, both had the same run key, marker and
    tags: the second terminated the first's cluster and deleted its partial output.)"""
    from airflow.models import Variable

    endpoint = world.endpoint_url
    logical_date = pendulum.datetime(2025, 5, 1, tz="UTC")
    run_id = f"manual__{logical_date.isoformat()}"
    emr, s3 = client(endpoint, "emr"), client(endpoint, "s3")
    monkeypatch.setattr(world.runner, "allow_any_command", True)  # staging's `sleep` step
    staging = start_tagged_cluster(emr, run_id, DAG_ID, deployment="staging")
    emr.add_job_flow_steps(
        JobFlowId=staging,
        Steps=[{"Name": "featurize", "ActionOnFailure": "CONTINUE",
                "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["sleep", "300"]}}],
    )  # fmt: skip
    staging_out = run_output_uri(OUTPUT, run_id, "staging")
    bucket, staging_prefix = split_s3_uri(staging_out)
    marker = {**marker_body(DAG_ID, run_id, "staging"), "claimed_at": "2025-05-01T00:00:01+00:00"}
    s3.put_object(Bucket=bucket, Key=staging_prefix + RUN_MARKER, Body=json.dumps(marker))
    partial = f"{staging_prefix}features/part-00000-staging.snappy.parquet"
    s3.put_object(Bucket=bucket, Key=partial, Body=b"staging's partial write")
    monkeypatch.delenv("FRUIT_EMR_DEPLOYMENT_ID")
    variable = f"{DAG_ID}_deployment_id"
    try:
        dag_run = dag.test(run_conf=conf(), logical_date=logical_date, run_after=logical_date)
        made = Variable.get(variable)
    finally:
        Variable.delete(variable)  # the other tests' runs are "local"'s
    try:
        assert str(dag_run.state) == "success", states(dag_run)
        assert made.startswith("d") and len(made) == 11
        ours = run_output_uri(OUTPUT, run_id, made)
        assert ours != staging_out and ours.split("/")[-2].startswith(f"{made}__manual__")
        assert read_json(s3, ours + "report.json")["status"] == "passed"
        assert read_json(s3, ours + RUN_MARKER)["deployment"] == made
        # Staging's run goes on: its cluster still works, its folder is as it was.
        described = emr.describe_cluster(ClusterId=staging)["Cluster"]
        assert described["Status"]["State"] not in ENDED_CLUSTER_STATES
        assert sorted(keys_under(s3, staging_out)) == sorted([staging_prefix + RUN_MARKER, partial])
        ended = [c for c in all_clusters(endpoint) if c["Id"] != staging]
        (own,) = [c for c in ended if c["Name"].endswith(ours.split("/")[-2])]
        tags = {
            t["Key"]: t["Value"]
            for t in emr.describe_cluster(ClusterId=own["Id"])["Cluster"]["Tags"]
        }
        assert (tags["deployment"], tags["run_id"]) == (made, run_id)
        assert read_json(s3, ours + "cost.json")["earlier_clusters"] == []
    finally:
        emr.terminate_job_flows(JobFlowIds=[staging])
