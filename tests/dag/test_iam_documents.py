"""The shipped IAM policies (iam/*-policy.json): valid documents, nothing broader than the
resources they name, cluster actions conditioned on the DAG's tag."""

from __future__ import annotations

import re

import pytest

from tests import iam_policies

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
        # Allows, and one Deny: the nodes never write a seal (iam/README.md, "Seals").
        assert statement["Effect"] == "Allow" or statement["Sid"] == "NeverWriteSeals"
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
    assert create["Condition"]["Null"] == {
        "aws:RequestTag/deployment": "false", "aws:RequestTag/run_id": "false",
    }  # fmt: skip
    pass_role = [s for s in by_sid.values() if "iam:PassRole" in iam_policies.as_list(s["Action"])]
    (statement,) = pass_role
    assert sorted(statement["Resource"]) == [
        "arn:aws:iam::123456789012:role/EMR_DefaultRole",
        "arn:aws:iam::123456789012:role/fruit-features-emr-nodes",  # the nodes' own role
    ]
    actions = {a for s in by_sid.values() for a in iam_policies.as_list(s["Action"])}
    # No way to re-tag someone else's cluster into this DAG's reach, nor to delete buckets.
    assert not actions & {"elasticmapreduce:AddTags", "elasticmapreduce:RemoveTags"}
    assert not any(a.startswith(("s3:DeleteBucket", "s3:PutBucket")) for a in actions)
