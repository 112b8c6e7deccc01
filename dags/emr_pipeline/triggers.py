"""The provider's EMR step trigger, with a deferred wait's kill cancelling its step.

A deferred sensor has no worker process, so `ExplainedEmrStepSensor.on_kill` never runs for it.
Airflow 3.3's triggerer calls `BaseTrigger.on_kill` instead when a person marks the deferred
task failed or succeeded, or clears it; a triggerer restart or a trigger timeout does not call
it, so a step is not cancelled by a rolling deploy.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.providers.amazon.aws.triggers.emr import EmrStepSensorTrigger
from asgiref.sync import sync_to_async


def cancel_step(emr: Any, cluster_id: str, step_id: str, log: logging.Logger) -> None:
    """Cancel a PENDING or RUNNING step (SIGINT to a running one), logging what EMR said.
    Never raises: a kill must not fail because the cluster already ended."""
    try:
        answer = emr.cancel_steps(
            ClusterId=cluster_id, StepIds=[step_id], StepCancellationOption="SEND_INTERRUPT"
        )
        log.warning("Cancelled EMR step %s: %s", step_id, answer)
    except Exception as exc:
        log.warning("Could not cancel EMR step %s: %s", step_id, exc)


class StepCancellingEmrStepTrigger(EmrStepSensorTrigger):
    """EmrStepSensorTrigger whose on_kill cancels the step it waits for (CancelSteps)."""

    def __init__(self, job_flow_id: str, step_id: str, **kwargs: object) -> None:
        super().__init__(job_flow_id=job_flow_id, step_id=step_id, **kwargs)
        self.job_flow_id = job_flow_id
        self.step_id = step_id

    async def on_kill(self) -> None:
        # Building the hook's client reads the connection: blocking, so off the event loop.
        await sync_to_async(
            lambda: cancel_step(self.hook().conn, self.job_flow_id, self.step_id, self.log)
        )()
