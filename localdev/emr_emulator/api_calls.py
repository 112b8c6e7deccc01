"""Which AWS API calls the emulator's moto server answered, and faults injected into them.

Both hook moto in this process (its server runs in a thread here), installed once:

* Recording: every request that moto authenticates is recorded as an `ApiCall`: the IAM
  service prefix (from the SigV4 credential scope), the operation (PutObject, RunJobFlow...),
  the resource (s3 bucket/key ARN, or the EMR cluster named in the request) and the access
  key that signed it. Tests give the Airflow connection its own fake key, so the calls the
  DAG makes can be told from the emulator's own and the test's set-up calls; the IAM tests
  check that the policies in iam/ allow every one of them.
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

from moto.core.authorization import ActionAuthenticatorMixin
from moto.core.responses import BaseResponse

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/[^/]+/[^/]+/([^/]+)/aws4_request")
_lock = threading.Lock()
_installed = False


@dataclass(frozen=True)
class ApiCall:
    service: str  # the IAM prefix: s3, elasticmapreduce, iam, sts...
    operation: str  # the API operation: PutObject, RunJobFlow...
    resource: str  # an ARN, or "*" when the request names none
    access_key: str


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

    def clear(self) -> None:
        with _lock:
            self.calls.clear()
            self.faults.clear()
            self.injected.clear()

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
    try:
        body = json.loads(response.body or "{}")
    except (TypeError, ValueError):
        return "*"
    single = body.get("ClusterId") or body.get("JobFlowId")
    ids = [single] if single else body.get("JobFlowIds") or []
    if not ids:
        return "*"
    region, account = response.region, response.current_account
    return ",".join(
        f"arn:aws:elasticmapreduce:{region}:{account}:cluster/{cluster}" for cluster in ids
    )


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
        try:
            access_key, service = _credential(self.headers)
            operation = self._get_action() or self.data.get("Action", "?")
            if service == "elasticmapreduce":
                resource = _emr_resource(self)
            with _lock:
                CALLS.calls.append(ApiCall(service, operation, resource, access_key))
        except Exception:  # recording must never break the emulator
            pass
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
