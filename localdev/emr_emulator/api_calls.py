"""Which AWS API calls the emulator's moto server answered, and faults injected into them.

Both hook moto in this process (its server runs in a thread here), installed once:

* Recording: every request that moto authenticates is recorded as an `ApiCall`: the IAM
  service prefix (from the SigV4 credential scope), the operation (PutObject, RunJobFlow...),
  the resource (s3 bucket/key ARN, or the EMR cluster named in the request) and the access
  key that signed it. Tests give the Airflow connection its own fake key, so the calls the
  DAG makes can be told from the emulator's own and the test's set-up calls; the IAM tests
  check that the policies in iam/ allow every one of them.
* Policies: `enforce(access_key, policy)` makes every later call signed with that key pass
  the IAM policy first, conditions included (`iam_policy`), with the condition keys AWS would
  set: the request's and the cluster's tags, S3's `s3:prefix`, the roles RunJobFlow passes
  (iam:PassRole, with `iam:PassedToService`) and the source of a copy (s3:GetObject). A denied
  call answers AccessDenied as the service does and is recorded in `denials`, so a test fails
  when the code calls what the shipped policies do not allow.
* Faults: `fail_after(operation, ...)` makes the next matching call do its work and then
  answer with an error, as when the network drops the response or the task dies right after
  the call: the caller cannot know that the cluster was created or the step added.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from moto.core.authorization import ActionAuthenticatorMixin
from moto.core.exceptions import AccessDeniedError, JsonRESTError
from moto.core.responses import BaseResponse
from moto.emr.models import emr_backends
from moto.s3.exceptions import S3AccessDeniedError

from localdev.emr_emulator import iam_policy

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/[^/]+/[^/]+/([^/]+)/aws4_request")
_lock = threading.Lock()
_installed = False


@dataclass(frozen=True)
class ApiCall:
    service: str  # the IAM prefix: s3, elasticmapreduce, iam, sts...
    operation: str  # the API operation: PutObject, RunJobFlow...
    resource: str  # an ARN, or "*" when the request names none
    access_key: str


@dataclass(frozen=True)
class AuthzRequest:
    """One authorization AWS makes for a call: an action on a resource, with condition keys."""

    action: str
    resource: str
    context: dict[str, list[str]]


@dataclass(frozen=True)
class Denial:
    access_key: str
    action: str
    resource: str
    reason: str


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
ALWAYS_ALLOWED = frozenset({"sts:GetCallerIdentity"})


def iam_action(service: str, operation: str) -> str:
    if service == "s3":
        return S3_ACTIONS.get(operation, f"s3:{operation}")
    return f"{service}:{operation}"


@dataclass
class _Fault:
    operation: str
    times: int
    message: str
    access_key: str | None


class ApiCallLog:
    """Recorded calls and armed faults; one per process (moto's backends are too)."""

    def __init__(self) -> None:
        self.calls: list[ApiCall] = []
        self.faults: list[_Fault] = []
        self.injected: list[str] = []
        self.policies: dict[str, dict[str, Any]] = {}
        self.denials: list[Denial] = []

    def clear(self) -> None:
        """Forget the calls, faults, policies and denials (moto's state is reset apart)."""
        with _lock:
            self.calls.clear()
            self.faults.clear()
            self.injected.clear()
            self.policies.clear()
            self.denials.clear()

    def enforce(self, access_key: str, policy: dict[str, Any]) -> None:
        """From now on, calls signed with `access_key` must be allowed by `policy`."""
        with _lock:
            self.policies[access_key] = policy

    def stop_enforcing(self, access_key: str) -> None:
        with _lock:
            self.policies.pop(access_key, None)

    def denials_of(self, access_key: str) -> list[Denial]:
        with _lock:
            return [denial for denial in self.denials if denial.access_key == access_key]

    def by_key(self, access_key: str) -> list[ApiCall]:
        with _lock:
            return [call for call in self.calls if call.access_key == access_key]

    def fail_after(
        self,
        operation: str,
        times: int = 1,
        message: str = "injected fault: the response was lost after the call succeeded",
        access_key: str | None = None,
    ) -> None:
        """The next `times` calls of `operation` (by `access_key`, when given) succeed on the
        server but answer HTTP 400 with error code InjectedFault (botocore does not retry it)."""
        with _lock:
            self.faults.append(_Fault(operation, times, message, access_key))

    def _take_fault(self, operation: str, access_key: str) -> _Fault | None:
        with _lock:
            for fault in self.faults:
                matches = fault.operation == operation and fault.access_key in (None, access_key)
                if matches and fault.times > 0:
                    fault.times -= 1
                    self.injected.append(operation)
                    return fault
        return None


CALLS = ApiCallLog()


def _credential(headers: Any) -> tuple[str, str]:
    match = _CREDENTIAL.search(headers.get("Authorization", "") or "")
    return (match.group(1), match.group(2)) if match else ("", "")


def _emr_resource(response: Any) -> str:
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
    resource = _emr_resource(response)
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


def _denial(policy: dict[str, Any], request: AuthzRequest) -> str | None:
    """Why `policy` refuses `request`, or None when it allows it."""
    if request.action in ALWAYS_ALLOWED:
        return None
    try:
        decision = iam_policy.evaluate(policy, request.action, request.resource, request.context)
    except iam_policy.UnsupportedPolicyError as exc:
        return str(exc)
    if decision.allowed:
        return None
    if decision.outcome == iam_policy.EXPLICIT_DENY:
        return f"explicitly denied by {decision.statement}"
    return "no identity-based policy allows it"


def _access_denied(service: str, user_arn: str, denial: Denial) -> Exception:
    """The error the service answers: S3's 403 AccessDenied, EMR's AccessDeniedException."""
    if service == "s3":
        return S3AccessDeniedError()
    message = (
        f"User: {user_arn} is not authorized to perform: {denial.action} on resource: "
        f"{denial.resource} because {denial.reason}"
    )
    if service == "elasticmapreduce":
        return JsonRESTError("AccessDeniedException", message)
    return AccessDeniedError(user_arn=user_arn, action=f"{denial.action} ({denial.reason})")


def _enforce(response: Any, service: str, operation: str, resource: str, access_key: str) -> None:
    with _lock:
        policy = CALLS.policies.get(access_key)
    if policy is None:
        return
    for request in authz_requests(response, service, operation, resource):
        reason = _denial(policy, request)
        if reason is not None:
            denial = Denial(access_key, request.action, request.resource, reason)
            with _lock:
                CALLS.denials.append(denial)
            user_arn = f"arn:aws:iam::{response.current_account}:user/{access_key}"
            raise _access_denied(service, user_arn, denial)


def install() -> None:
    """Patch moto once per process: record each call, apply armed faults."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    original_authorize = ActionAuthenticatorMixin._authenticate_and_authorize_action
    original_call_action = BaseResponse.call_action

    def authorize(self: Any, iam_request_cls: type, resource: str = "*") -> None:
        access_key, service, operation = "", "", "?"
        try:
            access_key, service = _credential(self.headers)
            operation = self._get_action() or self.data.get("Action", "?")
            recorded = _emr_resource(self) if service == "elasticmapreduce" else resource
            with _lock:
                CALLS.calls.append(ApiCall(service, operation, recorded, access_key))
        except Exception:  # recording must never break the emulator
            pass
        if access_key in CALLS.policies:
            _enforce(self, service, operation, resource, access_key)
        return original_authorize(self, iam_request_cls, resource)

    def call_action(self: Any) -> Any:
        result = original_call_action(self)
        access_key, _ = _credential(self.headers)
        fault = CALLS._take_fault(self._get_action(), access_key) if CALLS.faults else None
        if fault is None:
            return result
        body = json.dumps({"__type": "InjectedFault", "message": fault.message})
        return 400, {"Content-Type": "application/x-amz-json-1.1"}, body

    ActionAuthenticatorMixin._authenticate_and_authorize_action = authorize
    BaseResponse.call_action = call_action
