"""Fast checks behind the fault suite: parameter rejection, the retry-safety helpers on moto,
server-side encryption settings, the IAM policies' shape, and no credentials in the repo."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from emr_pipeline import idempotency
from emr_pipeline.cluster import emrfs_encryption
from emr_pipeline.options import InvalidRunOptionsError, RunOptions
from emr_pipeline.plan import s3_encryption
from emr_pipeline.settings import DeploymentSettings
from tests import iam_policies
from tests.dag.dag_shapes import start_tagged_cluster

REPO = Path(__file__).resolve().parents[2]
GOOD = {"input_uri": "s3://example-fruit-images/in/", "output_uri": "s3://example-out/runs/"}


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("pca_k", 0),
        ("pca_k", 1281),
        ("input_uri", "example-fruit-images/in/"),
        ("output_uri", "s3://Bad_Bucket/runs/"),
        ("weights", "/local/model.weights.h5"),
        ("master_instance_type", "m5xlarge"),
        ("core_instance_type", "m5.2xlarge; rm -rf /"),
        ("release_label", "emr-latest"),
        ("core_instance_count", -2),
        ("batch_size", 0),
        ("partitions", -1),
        ("task_cpus", 0),
        ("sensor_timeout_seconds", -5),
        ("poke_interval_seconds", 0),
        ("runtime", "onnx"),
        ("precision", "int8"),
    ],
)
def test_bad_parameters_are_rejected_with_a_message_naming_them(param, value):
    with pytest.raises(InvalidRunOptionsError, match=re.escape(param)):
        RunOptions.from_params({**GOOD, param: value})


@pytest.mark.parametrize(
    "instance_type", ["m5.xlarge", "m7g.2xlarge", "u-6tb1.metal", "c5.4xlarge"]
)
def test_real_instance_types_pass(instance_type):
    RunOptions.from_params({**GOOD, "core_instance_type": instance_type})


def _cluster(emr, run_id: str, dag_id: str = "fruit_features_emr") -> str:
    return start_tagged_cluster(emr, run_id, dag_id)


def test_a_run_finds_only_its_own_active_cluster(emr):
    mine = _cluster(emr, "run-1")
    _cluster(emr, "run-2")
    _cluster(emr, "run-1", dag_id="another_dag")
    tags = {"dag_id": "fruit_features_emr", "run_id": "run-1"}
    assert idempotency.find_run_clusters(emr, tags) == [mine]
    emr.terminate_job_flows(JobFlowIds=[mine])
    assert idempotency.find_run_clusters(emr, tags) == []
    with pytest.raises(ValueError):
        idempotency.find_run_clusters(emr, {})


def test_a_cluster_is_checked_for_every_run_tag_before_anything_acts_on_it(emr):
    tags = {"dag_id": "fruit_features_emr", "run_id": "run-1"}
    idempotency.check_run_cluster(emr, _cluster(emr, "run-1"), tags)
    other_run = _cluster(emr, "run-2")
    with pytest.raises(idempotency.ForeignClusterError, match=f"{other_run} is not this run's"):
        idempotency.check_run_cluster(emr, other_run, tags)
    with pytest.raises(ValueError):
        idempotency.check_run_cluster(emr, other_run, {})


def test_clusters_not_named_like_the_dags_are_not_described(emr, monkeypatch):
    mine = _cluster(emr, "run-1")
    foreign = emr.run_job_flow(
        Name="analytics-nightly",
        ReleaseLabel="emr-7.13.0",
        Instances={
            "KeepJobFlowAliveWhenNoSteps": True,
            "InstanceCount": 1,
            "MasterInstanceType": "m5.xlarge",
        },  # fmt: skip
        JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole="EMR_DefaultRole",
    )["JobFlowId"]
    described = []
    describe = emr.describe_cluster
    monkeypatch.setattr(
        emr, "describe_cluster", lambda **kw: described.append(kw["ClusterId"]) or describe(**kw)
    )
    tags = {"dag_id": "fruit_features_emr", "run_id": "run-1"}
    assert idempotency.find_run_clusters(emr, tags) == [mine]
    assert foreign not in described and mine in described


def test_steps_are_found_by_name(emr):
    cluster = _cluster(emr, "run-1")
    step = {"Name": "featurize", "ActionOnFailure": "CONTINUE",
            "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["true"]}}  # fmt: skip
    (step_id,) = emr.add_job_flow_steps(JobFlowId=cluster, Steps=[step])["StepIds"]
    assert idempotency.find_steps(emr, cluster, ["featurize", "pca"]) == {"featurize": step_id}


def test_earlier_attempts_are_terminated_before_the_run_starts_again(emr):
    earlier = _cluster(emr, "run-1")
    other = _cluster(emr, "run-2")
    tags = {"dag_id": "fruit_features_emr", "run_id": "run-1"}
    assert idempotency.end_earlier_attempts(emr, tags, poll_seconds=0.01) == [earlier]
    state = emr.describe_cluster(ClusterId=earlier)["Cluster"]["Status"]["State"]
    assert state == "TERMINATED"
    assert emr.describe_cluster(ClusterId=other)["Cluster"]["Status"]["State"] != "TERMINATED"
    assert idempotency.end_earlier_attempts(emr, tags) == []


def test_server_side_encryption_settings():
    assert s3_encryption(DeploymentSettings()) == {"ServerSideEncryption": "AES256"}
    kms = DeploymentSettings(s3_sse="aws:kms", s3_sse_kms_key_id="alias/fruit")
    assert s3_encryption(kms) == {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/fruit"}
    with pytest.raises(InvalidRunOptionsError, match="s3_sse"):
        s3_encryption(DeploymentSettings(s3_sse="none"))
    ((emrfs,),) = [emrfs_encryption(DeploymentSettings())]
    assert emrfs == {
        "Classification": "emrfs-site",
        "Properties": {"fs.s3.enableServerSideEncryption": "true"},
    }
    assert emrfs_encryption(kms)[0]["Properties"]["fs.s3.serverSideEncryption.kms.keyId"] == (
        "alias/fruit"
    )
    # A security configuration decides the jobs' encryption: EMR refuses both at once.
    assert emrfs_encryption(DeploymentSettings(security_configuration="sc")) == []


# --- IAM policies -------------------------------------------------------------------------

POLICIES = sorted(iam_policies.IAM_DIR.glob("*-policy.json"))
# Actions that support no resource-level permission: Resource "*" is what AWS requires.
STAR_RESOURCE_ALLOWED = {"elasticmapreduce:RunJobFlow", "elasticmapreduce:ListClusters"}


def test_there_are_policies_for_the_connection_and_the_instance_role():
    names = {p.name for p in POLICIES}
    assert {"airflow-connection-policy.json", "emr-instance-role-policy.json"} <= names


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.name)
def test_policy_is_a_valid_iam_document(path):
    policy = iam_policies.load(path)
    assert set(policy) == {"Version", "Statement"}
    assert policy["Version"] == "2012-10-17"
    sids = [s.get("Sid") for s in iam_policies.statements(policy)]
    assert len(set(sids)) == len(sids)
    for statement in iam_policies.statements(policy):
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition"}
        assert statement["Effect"] == "Allow"
        for action in iam_policies.as_list(statement["Action"]):
            assert re.fullmatch(r"[a-z0-9-]+:[A-Za-z]+", action), action  # no wildcards
        for resource in iam_policies.as_list(statement["Resource"]):
            assert resource == "*" or resource.startswith("arn:aws:"), resource


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.name)
def test_nothing_is_broader_than_the_named_resources(path):
    policy = iam_policies.load(path)
    for statement in iam_policies.statements(policy):
        actions = set(iam_policies.as_list(statement["Action"]))
        resources = iam_policies.as_list(statement["Resource"])
        if "*" in resources:
            assert actions <= STAR_RESOURCE_ALLOWED, statement["Sid"]
        for resource in resources:
            if resource.startswith("arn:aws:s3:::"):
                bucket = resource.removeprefix("arn:aws:s3:::").split("/")[0]
                assert bucket in ("example-fruit-images", "example-fruit-features"), resource
                assert "*" not in bucket
            if resource.startswith("arn:aws:elasticmapreduce:"):
                tag = statement["Condition"]["StringEquals"]["aws:ResourceTag/dag_id"]
                assert tag == "fruit_features_emr", statement["Sid"]


def test_cluster_actions_need_the_dags_tag_and_passrole_names_two_roles():
    policy = iam_policies.load(iam_policies.CONNECTION_POLICY)
    by_sid = {s["Sid"]: s for s in iam_policies.statements(policy)}
    create = by_sid["StartOnlyClustersTaggedForThisDag"]
    assert create["Condition"]["StringEquals"] == {"aws:RequestTag/dag_id": "fruit_features_emr"}
    pass_role = [s for s in by_sid.values() if "iam:PassRole" in iam_policies.as_list(s["Action"])]
    (statement,) = pass_role
    assert sorted(statement["Resource"]) == [
        "arn:aws:iam::123456789012:role/EMR_DefaultRole",
        "arn:aws:iam::123456789012:role/EMR_EC2_DefaultRole",
    ]
    actions = {a for s in by_sid.values() for a in iam_policies.as_list(s["Action"])}
    # No way to re-tag someone else's cluster into this DAG's reach, nor to delete buckets.
    assert not actions & {"elasticmapreduce:AddTags", "elasticmapreduce:RemoveTags"}
    assert not any(a.startswith(("s3:DeleteBucket", "s3:PutBucket")) for a in actions)


# --- No credentials in the repository -------------------------------------------------------

CREDENTIAL_PATTERNS = [
    re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),  # AWS access key ids
    re.compile(r"(?i)aws_secret_access_key\s*[=:]\s*['\"]?[A-Za-z0-9/+]{40}\b"),
    re.compile(r"-----BEGIN (RSA |EC |OPENSSH |DSA )?PRIVATE KEY-----"),
    re.compile(r"\bxox[abpr]-[0-9A-Za-z-]{10,}"),  # Slack tokens
    re.compile(r"\bgh[pousr]_[0-9A-Za-z]{36}\b"),  # GitHub tokens
]


def test_no_credentials_in_the_repository():
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    hits = []
    for name in listed:
        path = REPO / name
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        text = path.read_text(errors="ignore")
        for pattern in CREDENTIAL_PATTERNS:
            hits += [f"{name}: {m.group(0)[:12]}..." for m in pattern.finditer(text)]
    assert hits == []
