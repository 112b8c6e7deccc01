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
import threading
from dataclasses import dataclass
from typing import Any

from moto.core.authorization import ActionAuthenticatorMixin
from moto.core.exceptions import AccessDeniedError, JsonRESTError
from moto.core.responses import BaseResponse
from moto.s3.exceptions import S3AccessDeniedError

from localdev.emr_emulator import iam_policy
from localdev.emr_emulator.authz_requests import (
    AuthzRequest,
    authz_requests,
    credential,
    emr_resource,
)

_lock = threading.Lock()
_installed = False


@dataclass(frozen=True)
class ApiCall:
    service: str  # the IAM prefix: s3, elasticmapreduce, iam, sts...
    operation: str  # the API operation: PutObject, RunJobFlow...
    resource: str  # an ARN, or "*" when the request names none
    access_key: str


@dataclass(frozen=True)
class Denial:
    access_key: str
    action: str
    resource: str
    reason: str


ALWAYS_ALLOWED = frozenset({"sts:GetCallerIdentity"})


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
            access_key, service = credential(self.headers)
            operation = self._get_action() or self.data.get("Action", "?")
            recorded = emr_resource(self) if service == "elasticmapreduce" else resource
            with _lock:
                CALLS.calls.append(ApiCall(service, operation, recorded, access_key))
        except Exception:  # recording must never break the emulator
            pass
        if access_key in CALLS.policies:
            _enforce(self, service, operation, resource, access_key)
        return original_authorize(self, iam_request_cls, resource)

    def call_action(self: Any) -> Any:
        result = original_call_action(self)
        access_key, _ = credential(self.headers)
        fault = CALLS._take_fault(self._get_action(), access_key) if CALLS.faults else None
        if fault is None:
            return result
        body = json.dumps({"__type": "InjectedFault", "message": fault.message})
        return 400, {"Content-Type": "application/x-amz-json-1.1"}, body

    ActionAuthenticatorMixin._authenticate_and_authorize_action = authorize
    BaseResponse.call_action = call_action
