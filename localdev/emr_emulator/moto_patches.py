"""The few changes moto 5.2's EMR models need so that an outside runner can drive them.

Out of the box moto starts the first step at once (RUNNING, forever), puts later ones in PENDING,
reports a new cluster as WAITING/RUNNING before anything ran, and has no place for a step's
FailureDetails or a state change reason's Code. The patches, installed once per process:

- `Cluster.run_bootstrap_actions`: leave a new cluster STARTING (moto would jump to WAITING, or
  terminate at once when it has no steps); the runner checks the bootstrap scripts, then moves it.
- `Cluster.add_steps`: every new step is PENDING and the cluster state is left alone; adding steps
  to a terminated cluster fails as on EMR.
- `Step.start`: a no-op, so a PENDING step shows no StartDateTime; the runner sets it.
- `Cluster.terminate`: records Code USER_REQUEST when nobody gave another reason.
- `Step.status` / `Cluster.status`: add `FailureDetails` and `StateChangeReason.Code` from
  attributes the runner sets (both are in the botocore shapes, so moto's serializer emits them).

The behaviour changes apply only while an emulator is active (`activate()`), so plain `mock_aws`
tests in the same process keep moto's own behaviour; the status additions only show attributes
that the runner sets.
"""

from __future__ import annotations

import threading
from typing import Any

from moto.core.utils import utcnow
from moto.emr.exceptions import ValidationException
from moto.emr.models import Cluster, Step

TERMINAL_CLUSTER_STATES = frozenset({"TERMINATING", "TERMINATED", "TERMINATED_WITH_ERRORS"})

_lock = threading.Lock()
_installed = False
_active = 0


def activate() -> None:
    """Install the patches (once) and count one more active emulator."""
    global _active
    with _lock:
        _install()
        _active += 1


def deactivate() -> None:
    global _active
    with _lock:
        _active = max(0, _active - 1)


def is_active() -> bool:
    return _active > 0


def set_cluster_reason(cluster: Cluster, code: str, message: str) -> None:
    cluster.emulator_reason_code = code
    cluster.last_state_change_reason = message


def end_cluster(cluster: Cluster, state: str, code: str, message: str) -> None:
    """Move `cluster` to a terminal state with a reason, as EMR reports it."""
    set_cluster_reason(cluster, code, message)
    cluster.end_datetime = utcnow()
    cluster.state = state


def _install() -> None:
    global _installed
    if _installed:
        return
    original_bootstrap = Cluster.run_bootstrap_actions
    original_add_steps = Cluster.add_steps
    original_terminate = Cluster.terminate
    original_step_start = Step.start
    original_step_status = Step.status.fget
    original_cluster_status = Cluster.status.fget

    def run_bootstrap_actions(self: Cluster) -> None:
        if not is_active():
            return original_bootstrap(self)
        self.state = "STARTING"

    def add_steps(self: Cluster, steps: list[dict[str, Any]]) -> list[Step]:
        if not is_active():
            return original_add_steps(self, steps)
        if getattr(self, "state", None) in TERMINAL_CLUSTER_STATES:
            raise ValidationException(
                "A job flow that is shutting down, terminated, or finished may not be modified."
            )
        added = [Step(state="PENDING", **step) for step in steps]
        self.steps.extend(added)
        return added

    def terminate(self: Cluster) -> None:
        if is_active():
            if self.state in TERMINAL_CLUSTER_STATES:
                return  # EMR ignores terminating a cluster twice; keep the first reason
            if getattr(self, "emulator_reason_code", None) is None:
                set_cluster_reason(self, "USER_REQUEST", "Terminated by user request")
        original_terminate(self)

    def step_start(self: Step) -> None:
        if not is_active():
            original_step_start(self)

    def step_status(self: Step) -> dict[str, Any]:
        status = original_step_status(self)
        details = getattr(self, "emulator_failure_details", None)
        if details:
            status["FailureDetails"] = details
        return status

    def cluster_status(self: Cluster) -> dict[str, Any]:
        status = original_cluster_status(self)
        code = getattr(self, "emulator_reason_code", None)
        if code:
            status["StateChangeReason"]["Code"] = code
        return status

    Cluster.run_bootstrap_actions = run_bootstrap_actions
    Cluster.add_steps = add_steps
    Cluster.terminate = terminate
    Step.start = step_start
    Step.status = property(step_status)
    Cluster.status = property(cluster_status)
    _installed = True
