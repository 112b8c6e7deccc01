"""The emulator's IAM evaluation (localdev.emr_emulator.iam_policy), against AWS's documented
rules, and the shipped policies' answers to the calls the DAG and the cluster make."""

from __future__ import annotations

import pytest

from localdev.emr_emulator.iam_policy import (
    ALLOW,
    EXPLICIT_DENY,
    IMPLICIT_DENY,
    UnsupportedPolicyError,
    evaluate,
    matches,
)
from tests import iam_policies

CLUSTER = "arn:aws:elasticmapreduce:us-east-1:123456789012:cluster/j-1"
OURS = {"aws:ResourceTag/dag_id": ["fruit_features_emr"]}


def policy(*statements):
    return {"Version": "2012-10-17", "Statement": list(statements)}


def test_wildcards_cross_slashes_and_question_marks_match_one_character():
    assert matches("arn:aws:s3:::b/runs/*", "arn:aws:s3:::b/runs/a/b/c")
    assert matches("runs/*-????", "runs/x-abcd")
    assert not matches("runs/*-????", "runs/x-abc")
    assert not matches("runs/[ab]", "runs/a")  # no character classes in IAM
    assert matches("s3:getobject", "s3:GetObject", ignore_case=True)
    assert not matches("arn:aws:s3:::B/*", "arn:aws:s3:::b/k")


def test_an_explicit_deny_wins_and_nothing_allowed_is_an_implicit_deny():
    both = policy(
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
        {"Sid": "NoDeletes", "Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"},
    )
    assert evaluate(both, "s3:GetObject", "arn:aws:s3:::b/k").outcome == ALLOW
    decision = evaluate(both, "s3:DeleteObject", "arn:aws:s3:::b/k")
    assert (decision.outcome, decision.statement) == (EXPLICIT_DENY, "NoDeletes")
    assert evaluate(policy(), "s3:GetObject", "x").outcome == IMPLICIT_DENY


def test_not_action_and_not_resource():
    statement = {"Effect": "Allow", "NotAction": "s3:DeleteObject", "NotResource": "arn:x/*"}
    assert evaluate(policy(statement), "s3:GetObject", "arn:y/k").allowed
    assert not evaluate(policy(statement), "s3:DeleteObject", "arn:y/k").allowed
    assert not evaluate(policy(statement), "s3:GetObject", "arn:x/k").allowed


def tagged(operator, key, values):
    return policy(
        {
            "Effect": "Allow",
            "Action": "elasticmapreduce:DescribeCluster",
            "Resource": "*",
            "Condition": {operator: {key: values}},
        }
    )


@pytest.mark.parametrize(
    ("operator", "values", "context", "allowed"),
    [
        ("StringEquals", "a", {"k": ["a"]}, True),
        ("StringEquals", "a", {"k": ["A"]}, False),
        ("StringEquals", "a", {}, False),  # a missing key fails a positive operator
        ("StringEqualsIfExists", "a", {}, True),
        ("StringNotEquals", "a", {}, True),  # ... and holds for a negated one
        ("StringNotEquals", ["a", "b"], {"k": ["b"]}, False),
        ("StringEqualsIgnoreCase", "a", {"K": ["A"]}, True),  # key names ignore case
        ("StringLike", "runs/*", {"k": ["runs/x"]}, True),
        ("StringLike", "runs/*", {"k": ["other"]}, False),
        ("StringNotLike", "runs/*", {"k": ["other"]}, True),
        ("Null", "false", {"k": ["x"]}, True),
        ("Null", "false", {}, False),
        ("Null", "true", {}, True),
        ("Bool", "true", {"k": ["True"]}, True),
        ("ForAllValues:StringEquals", ["a", "b"], {"k": ["a", "b"]}, True),
        ("ForAllValues:StringEquals", ["a"], {"k": ["a", "c"]}, False),
        ("ForAllValues:StringEquals", ["a"], {}, True),
        ("ForAnyValue:StringEquals", ["a"], {"k": ["c", "a"]}, True),
        ("ForAnyValue:StringEquals", ["a"], {}, False),
    ],
)
def test_condition_operators_follow_aws(operator, values, context, allowed):
    assert (
        evaluate(
            tagged(operator, "k", values), "elasticmapreduce:DescribeCluster", CLUSTER, context
        ).allowed
        is allowed
    )


def test_an_operator_it_cannot_evaluate_is_an_error_not_a_guess():
    with pytest.raises(UnsupportedPolicyError, match="NumericLessThan"):
        evaluate(tagged("NumericLessThan", "k", "3"), "elasticmapreduce:DescribeCluster", CLUSTER)


# --- The shipped connection policy -----------------------------------------------------------

CONNECTION = iam_policies.load(iam_policies.CONNECTION_POLICY)
INSTANCE = iam_policies.load(iam_policies.INSTANCE_POLICY)
FEATURES = "arn:aws:s3:::example-fruit-features"
RUN = f"{FEATURES}/runs/manual__2026-01-01T00-00-00-0123456789abcdef"


@pytest.mark.parametrize(
    ("action", "resource", "context", "allowed"),
    [
        ("elasticmapreduce:DescribeCluster", CLUSTER, OURS, True),
        ("elasticmapreduce:DescribeCluster", CLUSTER, {}, False),  # another team's cluster
        ("elasticmapreduce:TerminateJobFlows", CLUSTER, {"aws:ResourceTag/dag_id": ["x"]}, False),
        (
            "elasticmapreduce:RunJobFlow",
            "*",
            {
                "aws:RequestTag/dag_id": ["fruit_features_emr"],
                "aws:RequestTag/deployment": ["prod"],
                "aws:RequestTag/run_id": ["r"],
            },
            True,
        ),
        (  # without the deployment's tag: it could not be told from another deployment's
            "elasticmapreduce:RunJobFlow",
            "*",
            {"aws:RequestTag/dag_id": ["fruit_features_emr"], "aws:RequestTag/run_id": ["r"]},
            False,
        ),
        (
            "elasticmapreduce:RunJobFlow",
            "*",
            {"aws:RequestTag/dag_id": ["fruit_features_emr"]},
            False,
        ),
        ("elasticmapreduce:CancelSteps", CLUSTER, OURS, True),
        ("elasticmapreduce:CancelSteps", CLUSTER, {}, False),
        ("elasticmapreduce:AddTags", CLUSTER, OURS, False),
        ("elasticmapreduce:AddJobFlowSteps", CLUSTER, OURS, False),
        (
            "s3:ListBucket",
            "arn:aws:s3:::example-fruit-images",
            {"s3:prefix": ["fruits-360/Training/"]},
            True,
        ),
        ("s3:ListBucket", "arn:aws:s3:::example-fruit-images", {}, False),
        ("s3:ListBucket", "arn:aws:s3:::example-fruit-images", {"s3:prefix": ["secret/"]}, False),
        ("s3:GetObject", "arn:aws:s3:::example-fruit-images/fruits-360/Training/a.jpg", {}, False),
        ("s3:DeleteObject", f"{RUN}/features/part-0.parquet", {}, True),
        ("s3:DeleteObject", f"{FEATURES}/runs/report.json", {}, False),
        ("s3:DeleteObject", f"{FEATURES}/emr-artifacts/fruit_features_emr/x", {}, False),
        # What IAM cannot tell from a run's folder (its `*` matches `/`): this key is deletable
        # as iam/README says; the code deletes only under the prefix of this run's marker.
        (
            "s3:DeleteObject",
            f"{FEATURES}/runs/keep/backups-2026-01-01T00:00/catalogue.csv",
            {},
            True,
        ),
        ("s3:PutObject", f"{FEATURES}/models/w.weights.h5", {}, False),
        # record_cost: the run's usage from its own cluster, written beside its report.
        ("elasticmapreduce:ListInstances", CLUSTER, OURS, True),
        ("elasticmapreduce:ListInstanceGroups", CLUSTER, OURS, True),
        ("elasticmapreduce:ListInstances", CLUSTER, {}, False),
        ("s3:PutObject", f"{RUN}/cost.json", {}, True),
        # Each cluster's cost, kept when a rerun clears the run's prefix.
        ("s3:PutObject", f"{RUN}/costs/j-1A2B3C.json", {}, True),
        ("s3:GetObject", f"{RUN}/costs/j-1A2B3C.json", {}, True),
        ("s3:PutObject", f"{RUN}/report.json", {}, True),
        ("s3:PutObject", f"{RUN}/features/part-0.parquet", {}, False),
        (
            "iam:PassRole",
            "arn:aws:iam::123456789012:role/EMR_DefaultRole",
            {"iam:PassedToService": ["elasticmapreduce.amazonaws.com"]},
            True,
        ),
        (
            "iam:PassRole",
            "arn:aws:iam::123456789012:role/EMR_DefaultRole",
            {"iam:PassedToService": ["lambda.amazonaws.com"]},
            False,
        ),
    ],
)
def test_the_connection_policy_allows_what_the_dag_does_and_no_more(
    action, resource, context, allowed
):
    assert evaluate(CONNECTION, action, resource, context).allowed is allowed


@pytest.mark.parametrize(
    ("action", "resource", "allowed"),
    [
        # The nodes read the seals, and the model cache they may write; never a seal.
        ("s3:GetObject", f"{FEATURES}/emr-artifacts/fruit_features_emr/seals/runs/x.json", True),
        ("s3:PutObject", f"{FEATURES}/emr-artifacts/fruit_features_emr/seals/runs/x.json", False),
        (
            "s3:PutObject",
            f"{FEATURES}/emr-artifacts/fruit_features_emr/seals/model-cache/k.json",
            False,
        ),
        (
            "s3:DeleteObject",
            f"{FEATURES}/emr-artifacts/fruit_features_emr/seals/runs/x.json",
            False,
        ),
        (
            "s3:PutObject",
            f"{FEATURES}/emr-artifacts/fruit_features_emr/model-cache/k/model.bin",
            True,
        ),
    ],
)
def test_the_instance_role_reads_seals_and_never_writes_one(action, resource, allowed):
    assert evaluate(INSTANCE, action, resource, {}).allowed is allowed


def test_the_connection_writes_the_seals():
    seal = f"{FEATURES}/emr-artifacts/fruit_features_emr/seals/runs/x.json"
    assert evaluate(CONNECTION, "s3:PutObject", seal, {}).allowed
    assert evaluate(CONNECTION, "s3:GetObject", seal, {}).allowed
