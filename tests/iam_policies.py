"""The IAM policies in iam/, loaded and evaluated just enough for the tests.

`allows(policy, action, resource)`: an Allow statement whose Action and Resource patterns
(IAM wildcards * and ?) match. Conditions are not evaluated here: the tests check them
separately (tag conditions on cluster actions, PassRole's service), and the e2e tests check
that every cluster the DAG touched carries the tag the condition asks for.
"""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

IAM_DIR = Path(__file__).resolve().parents[1] / "iam"
CONNECTION_POLICY = IAM_DIR / "airflow-connection-policy.json"
INSTANCE_POLICY = IAM_DIR / "emr-instance-role-policy.json"

# API operation (as the emulator records it) -> the IAM action that authorizes it.
S3_ACTIONS = {
    "PutObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "ListObjects": "s3:ListBucket",
    "ListObjectsV2": "s3:ListBucket",
    "ListBucket": "s3:ListBucket",  # moto records list calls by their IAM name
    "HeadBucket": "s3:ListBucket",
    "DeleteObject": "s3:DeleteObject",
    # A copy needs s3:GetObject on the source too: the DAG's HeadObject on it is recorded.
    "CopyObject": "s3:PutObject",
    "UploadPartCopy": "s3:PutObject",
}


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return as_list(policy["Statement"])


def iam_action(service: str, operation: str) -> str:
    if service == "s3":
        return S3_ACTIONS.get(operation, f"s3:{operation}")
    return f"{service}:{operation}"


def allows(policy: dict[str, Any], action: str, resource: str) -> bool:
    for statement in statements(policy):
        if statement.get("Effect") != "Allow":
            continue
        actions = [a.lower() for a in as_list(statement.get("Action", []))]
        if not any(fnmatchcase(action.lower(), pattern) for pattern in actions):
            continue
        if any(fnmatchcase(resource, pattern) for pattern in as_list(statement["Resource"])):
            return True
    return False


def denied_calls(policy: dict[str, Any], calls) -> list[tuple[str, str]]:
    """(action, resource) of every recorded call the policy does not allow."""
    denied = []
    for call in calls:
        action = iam_action(call.service, call.operation)
        for resource in call.resource.split(","):
            if not allows(policy, action, resource):
                denied.append((action, resource))
    return sorted(set(denied))
