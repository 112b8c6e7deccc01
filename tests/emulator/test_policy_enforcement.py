"""The emulator enforces IAM policies on the calls signed with a key, conditions included, and
answers a denied call as the service does: S3 with 403 AccessDenied, EMR with
AccessDeniedException. A call the shipped policies do not allow therefore fails a test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from localdev.emr_emulator import EmrEmulator
from localdev.emr_emulator.credentials import Credentials
from tests.fakes import ACCOUNT, aws_client

KEY = "FAKEPOLICYTESTKEY001"
POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "StartTagged",
            "Effect": "Allow",
            "Action": "elasticmapreduce:RunJobFlow",
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:RequestTag/team": "fruit"}},
        },
        {
            "Sid": "OwnClusters",
            "Effect": "Allow",
            "Action": ["elasticmapreduce:DescribeCluster", "elasticmapreduce:TerminateJobFlows"],
            "Resource": f"arn:aws:elasticmapreduce:*:{ACCOUNT}:cluster/*",
            "Condition": {"StringEquals": {"aws:ResourceTag/team": "fruit"}},
        },
        {
            "Sid": "PassTheServiceRole",
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": [
                f"arn:aws:iam::{ACCOUNT}:role/EMR_DefaultRole",
                f"arn:aws:iam::{ACCOUNT}:role/EMR_EC2_DefaultRole",
            ],
            "Condition": {
                "StringEquals": {
                    "iam:PassedToService": ["elasticmapreduce.amazonaws.com", "ec2.amazonaws.com"]
                }
            },
        },
        {
            "Sid": "ListOnePrefix",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": "arn:aws:s3:::*",
            "Condition": {"StringLike": {"s3:prefix": "mine/*"}},
        },
        {
            "Sid": "ReadWriteOnePrefix",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject"],
            "Resource": "arn:aws:s3:::*/mine/*",
        },
    ],
}


@pytest.fixture
def enforced(emulator: EmrEmulator) -> Iterator[None]:
    emulator.add_principal(Credentials(KEY, "secret"))
    emulator.api_calls.enforce(KEY, POLICY)
    try:
        yield
    finally:
        emulator.api_calls.stop_enforcing(KEY)


def _client(emulator: EmrEmulator, service: str) -> Any:
    return aws_client(service, emulator.endpoint_url, key=KEY, secret="secret")


def _run_job_flow(emr: Any, tags: dict[str, str], service_role: str = "EMR_DefaultRole") -> str:
    return emr.run_job_flow(
        Name="policy-test",
        ReleaseLabel="emr-7.13.0",
        Instances={"MasterInstanceType": "m5.xlarge", "InstanceCount": 1},
        Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
        JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole=service_role,
    )["JobFlowId"]


def _code(exc_info: pytest.ExceptionInfo[ClientError]) -> str:
    return exc_info.value.response["Error"]["Code"]


def test_emr_calls_need_the_request_and_resource_tags(emulator, enforced, emr):
    mine = _client(emulator, "emr")
    with pytest.raises(ClientError) as refused:
        _run_job_flow(mine, {"team": "other"})
    assert _code(refused) == "AccessDeniedException"
    assert "elasticmapreduce:RunJobFlow" in str(refused.value)
    with pytest.raises(ClientError, match="iam:PassRole"):
        _run_job_flow(mine, {"team": "fruit"}, service_role="AdminRole")
    ours = _run_job_flow(mine, {"team": "fruit"})
    theirs = _run_job_flow(emr, {"team": "other"})  # another key: not enforced
    assert mine.describe_cluster(ClusterId=ours)["Cluster"]["Id"] == ours
    with pytest.raises(ClientError) as refused:
        mine.describe_cluster(ClusterId=theirs)
    assert _code(refused) == "AccessDeniedException"
    with pytest.raises(ClientError, match="TerminateJobFlows"):
        mine.terminate_job_flows(JobFlowIds=[ours, theirs])  # one of them is not ours
    assert emr.describe_cluster(ClusterId=theirs)["Cluster"]["Status"]["State"] != "TERMINATED"
    denied = {(d.action, d.resource.rsplit("/", 1)[-1]) for d in emulator.api_calls.denials_of(KEY)}
    assert ("elasticmapreduce:DescribeCluster", theirs) in denied
    emr.terminate_job_flows(JobFlowIds=[ours, theirs])


def test_s3_calls_need_the_resource_and_the_prefix(emulator, enforced, s3, bucket):
    mine = _client(emulator, "s3")
    mine.put_object(Bucket=bucket, Key="mine/a.txt", Body=b"a")
    s3.put_object(Bucket=bucket, Key="theirs/b.txt", Body=b"b")
    assert mine.list_objects_v2(Bucket=bucket, Prefix="mine/")["KeyCount"] == 1
    for call in (
        lambda: mine.list_objects_v2(Bucket=bucket),  # no prefix: the whole bucket
        lambda: mine.list_objects_v2(Bucket=bucket, Prefix="theirs/"),
        lambda: mine.head_bucket(Bucket=bucket),
        lambda: mine.get_object(Bucket=bucket, Key="theirs/b.txt"),
        lambda: mine.delete_object(Bucket=bucket, Key="mine/a.txt"),
        # A copy needs s3:GetObject on its source too.
        lambda: mine.copy_object(
            Bucket=bucket, Key="mine/c.txt", CopySource={"Bucket": bucket, "Key": "theirs/b.txt"}
        ),
    ):
        with pytest.raises(ClientError) as refused:
            call()
        assert _code(refused) in ("AccessDenied", "403")
    assert s3.get_object(Bucket=bucket, Key="mine/a.txt")["Body"].read() == b"a"  # not deleted
    assert s3.list_objects_v2(Bucket=bucket, Prefix="mine/c.txt")["KeyCount"] == 0
