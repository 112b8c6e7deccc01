"""The few changes moto 5.2's EMR models need so that an outside runner can drive them.

Out of the box moto starts the first step at once (RUNNING, forever), puts later ones in PENDING,
reports a new cluster as WAITING/RUNNING before anything ran, and has no place for a step's
FailureDetails or a state change reason's Code. The patches, installed once per process:

- `Cluster.run_bootstrap_actions`: leave a new cluster STARTING (moto would jump to WAITING, or
  terminate at once when it has no steps); the runner checks the bootstrap scripts, then moves it.
- `Cluster.add_steps`: every new step is PENDING and the cluster state is left alone; adding steps
  to a terminated cluster fails as on EMR.
- `Step.start`: a no-op, so a PENDING step shows no StartDateTime; the runner sets it.
- `Cluster.terminate`: records Code USER_REQUEST when nobody gave another reason, and leaves the
  cluster TERMINATING: the runner stops its running step, then ends it TERMINATED.
- `Step.status` / `Cluster.status`: add `FailureDetails` and `StateChangeReason.Code` from
  attributes the runner sets (both are in the botocore shapes, so moto's serializer emits them).
- RunJobFlow and ModifyCluster refuse what EMR refuses (job_flow_checks), and RunJobFlow keeps
  the AutoTerminationPolicy's idle timeout and the Configurations as sent on the cluster, for
  the runner.
- CancelSteps (moto has none): a PENDING step is CANCELLED at once, a RUNNING one is marked
  for the runner, which stops its process.
- Instance groups (and so their instances, which moto gives their group's timeline) are
  PROVISIONING until the bootstrap finished (`mark_ready`: RUNNING, with a ReadyDateTime) and
  end with the cluster (`finish_termination`: TERMINATED, with an EndDateTime); moto never ends
  them. The terminated cluster's NormalizedInstanceHours are counted as EMR counts them (moto
  leaves them at 0).

The behaviour changes apply only while an emulator is active (`activate()`), so plain `mock_aws`
tests in the same process keep moto's own behaviour; the status additions only show attributes
that the runner sets.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from typing import Any

from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.emr.exceptions import ValidationException
from moto.emr.models import Cluster, Step
from moto.emr.responses import ElasticMapReduceResponse

from localdev.emr_emulator import job_flow_checks

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


def job_flow_recorded(cluster: Cluster) -> bool:
    """Whether RunJobFlow has finished with this cluster. moto lists a cluster in its backend
    from the start of its constructor, so a poller can see it half-built: no state, and none
    of what the patched RunJobFlow keeps on it (the Configurations as sent, the idle timeout)."""
    return hasattr(cluster, "emulator_configurations")


def set_cluster_reason(cluster: Cluster, code: str, message: str) -> None:
    cluster.emulator_reason_code = code
    cluster.last_state_change_reason = message


# How long an ending cluster shows TERMINATING (EMR: minutes), so that pollers see it.
TERMINATING_SECONDS = 0.3


def end_cluster(cluster: Cluster, state: str, code: str, message: str) -> None:
    """Move `cluster` through TERMINATING to a terminal state with a reason, as EMR does."""
    set_cluster_reason(cluster, code, message)
    cluster.state = "TERMINATING"
    time.sleep(TERMINATING_SECONDS)
    finish_termination(cluster, state)


def finish_termination(cluster: Cluster, state: str = "TERMINATED") -> None:
    """TERMINATING -> `state`, with the end time (the runner calls it once steps stopped);
    every instance group ends with it, and the cluster's normalized instance hours are set."""
    now = utcnow()
    for group in cluster.instance_groups:
        if group.end_date_time is None:
            group.end_date_time = now
        group.state = "TERMINATED"
    cluster.normalized_instance_hours = normalized_instance_hours(cluster)
    cluster.end_datetime = now
    cluster.state = state


def mark_ready(cluster: Cluster) -> None:
    """The bootstrap is done: the cluster and its instance groups are ready (RUNNING)."""
    now = utcnow()
    for group in cluster.instance_groups:
        group.ready_date_time = now
        group.state = "RUNNING"
    cluster.ready_datetime = now


# EMR's normalization factor per instance size (Amazon EMR Management Guide, "normalized
# instance hours"): small is 1 and each size up doubles it; an Nxlarge is N xlarges.
_SIZE_FACTORS = {"nano": 0.25, "micro": 0.5, "small": 1, "medium": 2, "large": 4, "xlarge": 8}
_MULTIPLE_XLARGE = re.compile(r"([0-9]+)xlarge")


def normalization_factor(instance_type: str) -> float:
    """8 for m5.xlarge, 16 for m5.2xlarge; 0 for a size the emulator has no factor for
    (metal), which then adds nothing."""
    size = instance_type.rpartition(".")[2]
    if size in _SIZE_FACTORS:
        return _SIZE_FACTORS[size]
    multiple = _MULTIPLE_XLARGE.fullmatch(size)
    return 8 * int(multiple.group(1)) if multiple else 0


def normalized_instance_hours(cluster: Cluster) -> int:
    """As EMR counts them: per instance, its size's factor times its hours rounded up to the
    next whole hour (an instance that ran a minute counts an hour)."""
    total = 0.0
    for instance in cluster.ec2_instances:
        group = instance.instance_group
        end = group.end_date_time or utcnow()
        hours = max(1, math.ceil((end - group.creation_date_time).total_seconds() / 3600))
        total += normalization_factor(instance.instance_type) * hours
    return math.ceil(total)


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
        if not is_active():
            return original_terminate(self)
        if self.state in TERMINAL_CLUSTER_STATES:
            return  # EMR ignores terminating a cluster twice; keep the first reason
        if getattr(self, "emulator_reason_code", None) is None:
            set_cluster_reason(self, "USER_REQUEST", "Terminated by user request")
        self.state = "TERMINATING"  # the runner stops its step, then finishes the termination

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

    original_run_job_flow = ElasticMapReduceResponse.run_job_flow
    original_modify_cluster = ElasticMapReduceResponse.modify_cluster

    def run_job_flow(self: ElasticMapReduceResponse) -> ActionResult:
        if not is_active():
            return original_run_job_flow(self)
        request = json.loads(self.body or "{}")
        reasons = job_flow_checks.refusals(request, self.region)
        if reasons:
            raise ValidationException(" ".join(reasons))
        result = original_run_job_flow(self)
        cluster = self.backend.clusters[result.result["JobFlowId"]]
        policy = request.get("AutoTerminationPolicy") or {}
        cluster.emulator_idle_timeout = policy.get("IdleTimeout")
        for group in cluster.instance_groups:  # ready once the bootstrap ran (mark_ready)
            group.state = "PROVISIONING"
            group.ready_date_time = None
        # As sent: moto keeps Configurations in dicts that snake_case their keys when read
        # whole (spark.executor.memoryOverheadFactor would become ..._overhead_factor). Set
        # last: it tells the runner that RunJobFlow is done (job_flow_recorded).
        cluster.emulator_configurations = request.get("Configurations") or []
        return result

    def modify_cluster(self: ElasticMapReduceResponse) -> ActionResult:
        if is_active():
            level = self._get_param("StepConcurrencyLevel")
            reasons = job_flow_checks.step_concurrency_refusals(level)
            if reasons:
                raise ValidationException(" ".join(reasons))
        return original_modify_cluster(self)

    def cancel_steps(self: ElasticMapReduceResponse) -> ActionResult:
        cluster = self.backend.describe_cluster(self._get_param("ClusterId"))
        wanted = self._get_param("StepIds", [])
        infos = []
        for step in cluster.steps:
            if step.id not in wanted:
                continue
            if step.state == "PENDING":
                step.state = "CANCELLED"
                step.end_date_time = utcnow()
            elif step.state == "RUNNING":
                step.emulator_cancel_requested = True  # the runner stops its process
            else:
                infos.append(
                    {"StepId": step.id, "Status": "FAILED", "Reason": f"Step is {step.state}"}
                )
                continue
            infos.append({"StepId": step.id, "Status": "SUBMITTED", "Reason": ""})
        return ActionResult({"CancelStepsInfoList": infos})

    ElasticMapReduceResponse.run_job_flow = run_job_flow
    ElasticMapReduceResponse.modify_cluster = modify_cluster
    ElasticMapReduceResponse.cancel_steps = cancel_steps
    Cluster.run_bootstrap_actions = run_bootstrap_actions
    Cluster.add_steps = add_steps
    Cluster.terminate = terminate
    Step.start = step_start
    Step.status = property(step_status)
    Cluster.status = property(cluster_status)
    _installed = True
