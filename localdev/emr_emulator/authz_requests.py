"""What AWS authorizes for one request the emulator's moto server answers: the IAM actions on
their resources, with the condition keys AWS would set (the request's and the cluster's tags,
S3's `s3:prefix`, the roles RunJobFlow passes, a copy's source). api_calls records and
enforces them."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from moto.emr.models import emr_backends

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/[^/]+/[^/]+/([^/]+)/aws4_request")

# API operation (as moto names it) -> the IAM action that authorizes it, where they differ.
S3_ACTIONS = {
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "HeadObject": "s3:GetObject",
    "ListObjects": "s3:ListBucket",
    "ListObjectsV2": "s3:ListBucket",
    "HeadBucket": "s3:ListBucket",
    "CopyObject": "s3:PutObject",  # plus s3:GetObject on the source: _copy_source
    "UploadPartCopy": "s3:PutObject",
}
# Actions AWS authorizes without any policy.


@dataclass(frozen=True)
class AuthzRequest:
    """One authorization AWS makes for a call: an action on a resource, with condition keys."""

    action: str
    resource: str
    context: dict[str, list[str]]


def iam_action(service: str, operation: str) -> str:
    if service == "s3":
        return S3_ACTIONS.get(operation, f"s3:{operation}")
    return f"{service}:{operation}"


def credential(headers: Any) -> tuple[str, str]:
    match = _CREDENTIAL.search(headers.get("Authorization", "") or "")
    return (match.group(1), match.group(2)) if match else ("", "")


def emr_resource(response: Any) -> str:
    body = _json_body(response)
    single = body.get("ClusterId") or body.get("JobFlowId")
    ids = [single] if single else body.get("JobFlowIds") or []
    if not ids:
        return "*"
    region, account = response.region, response.current_account
    return ",".join(
        f"arn:aws:elasticmapreduce:{region}:{account}:cluster/{cluster}" for cluster in ids
    )


def _json_body(response: Any) -> dict[str, Any]:
    try:
        body = json.loads(response.body or "{}")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def _tag_context(prefix: str, tags: dict[str, str]) -> dict[str, list[str]]:
    context = {f"{prefix}/{key}": [value] for key, value in tags.items()}
    if prefix == "aws:RequestTag":
        context["aws:TagKeys"] = list(tags)
    return context


def _cluster_tags(response: Any, cluster_arn: str) -> dict[str, str] | None:
    cluster_id = cluster_arn.rsplit("/", 1)[-1]
    backend = emr_backends[response.current_account][response.region]
    cluster = backend.clusters.get(cluster_id)
    return None if cluster is None else {t["Key"]: t["Value"] for t in cluster.tags}


def _pass_role_requests(response: Any, body: dict[str, Any]) -> list[AuthzRequest]:
    """RunJobFlow passes its service role to EMR and the instance profile's role to EC2 (the
    emulator takes an instance profile's role to have the profile's name, as EMR's defaults
    do)."""
    account = response.current_account
    passed = (
        ("ServiceRole", "elasticmapreduce.amazonaws.com"),
        ("JobFlowRole", "ec2.amazonaws.com"),
        ("AutoScalingRole", "application-autoscaling.amazonaws.com"),
    )
    return [
        AuthzRequest(
            "iam:PassRole",
            f"arn:aws:iam::{account}:role/{body[field].rsplit('/', 1)[-1]}",
            {"iam:PassedToService": [service]},
        )
        for field, service in passed
        if body.get(field)
    ]


def _emr_requests(response: Any, operation: str) -> list[AuthzRequest]:
    action = f"elasticmapreduce:{operation}"
    body = _json_body(response)
    if operation == "RunJobFlow":
        tags = {t["Key"]: t.get("Value", "") for t in body.get("Tags", [])}
        return [
            AuthzRequest(action, "*", _tag_context("aws:RequestTag", tags)),
            *_pass_role_requests(response, body),
        ]
    resource = emr_resource(response)
    if resource == "*":
        return [AuthzRequest(action, "*", {})]
    requests = []
    for arn in resource.split(","):
        tags = _cluster_tags(response, arn)
        context = _tag_context("aws:ResourceTag", tags) if tags is not None else {}
        requests.append(AuthzRequest(action, arn, context))
    return requests


def _copy_source(response: Any) -> str | None:
    source = response.headers.get("x-amz-copy-source")
    if not source:
        return None
    source = unquote(source.split("?", 1)[0]).lstrip("/")
    return f"arn:aws:s3:::{source}"


def _s3_requests(response: Any, operation: str, resource: str) -> list[AuthzRequest]:
    action = iam_action("s3", operation)
    context: dict[str, list[str]] = {}
    query = getattr(response, "querystring", None) or {}
    if action == "s3:ListBucket":
        for key in ("prefix", "delimiter", "max-keys"):
            if key in query:
                context[f"s3:{key}"] = [str(query[key][0])]
    for header in (
        "x-amz-server-side-encryption",
        "x-amz-server-side-encryption-aws-kms-key-id",
    ):
        if response.headers.get(header):
            context[f"s3:{header}"] = [response.headers[header]]
    requests = [AuthzRequest(action, resource, context)]
    source = _copy_source(response)  # moto names a copy PutObject (or UploadPart)
    if source:
        requests.append(AuthzRequest("s3:GetObject", source, {}))
    return requests


def authz_requests(
    response: Any, service: str, operation: str, resource: str
) -> list[AuthzRequest]:
    """The authorizations AWS makes for one call moto is answering."""
    if service == "elasticmapreduce":
        return _emr_requests(response, operation)
    if service == "s3":
        return _s3_requests(response, operation, resource)
    return [AuthzRequest(iam_action(service, operation), resource, {})]
