"""The provider's EMR step trigger, watching the step while it runs, and with a deferred
wait's kill cancelling its step.

Watching: with `watch` (the step's name, progress file and stuck settings), the trigger looks
at the step every waiter_delay seconds as the sensor's pokes do: it logs the step's progress and
new log lines (the triggerer's log of the task) and ends the wait when the step ends, or, with
fail_when_stuck, when its progress has not moved for stuck_after_seconds.

Cancelling: a deferred sensor has no worker process, so `ExplainedEmrStepSensor.on_kill` never
runs for it. Airflow 3.3's triggerer calls `BaseTrigger.on_kill` instead when a person marks the
deferred task failed or succeeded, or clears it; a triggerer restart or a trigger timeout does
not call it, so a step is not cancelled by a rolling deploy.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.amazon.aws.triggers.emr import EmrStepSensorTrigger
from airflow.triggers.base import TriggerEvent
from asgiref.sync import sync_to_async

from emr_pipeline.watch import StepWatch, failure_details

# EmrStepSensor's: the step states that end a wait, and those that fail it.
STEP_DONE_STATES = ("COMPLETED",)

STEP_FAILED_STATES = ("CANCELLED", "FAILED", "INTERRUPTED")  # CANCEL_PENDING: not yet


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

    def __init__(
        self, job_flow_id: str, step_id: str, watch: dict | None = None, **kwargs: object
    ) -> None:
        super().__init__(job_flow_id=job_flow_id, step_id=step_id, **kwargs)
        self.job_flow_id = job_flow_id
        self.step_id = step_id
        # {"step", "progress_uri", "stuck_after_seconds", "fail_when_stuck"}; kept serialized.
        self.watch = watch
        if watch is not None:
            self.serialized_fields["watch"] = watch

    async def run(self) -> AsyncIterator[TriggerEvent]:
        if self.watch is None:
            async for event in super().run():
                yield event
            return
        watch = StepWatch(
            self.watch["step"], self.watch["progress_uri"], self.watch["stuck_after_seconds"]
        )
        # One client each for the whole wait (a new one per look costs a new session's models).
        emr, s3 = await sync_to_async(self._clients)()
        for _ in range(self.attempts):
            event = await sync_to_async(self._look)(watch, emr, s3)
            if event is not None:
                yield TriggerEvent(event)
                return
            await asyncio.sleep(self.waiter_delay)
        yield TriggerEvent(
            {"status": "failure", "message": f"step {self.step_id} still running after "
             f"{self.attempts} looks {self.waiter_delay} s apart"}
        )  # fmt: skip

    def _clients(self) -> tuple[Any, Any]:
        s3_hook = S3Hook(
            aws_conn_id=self.aws_conn_id, region_name=self.region_name, verify=self.verify
        )
        return self.hook().conn, s3_hook.get_conn()

    def _look(self, watch: StepWatch, emr: Any, s3: Any) -> dict[str, Any] | None:
        """One look at the step (blocking calls: run off the event loop). The event that ends
        the wait, or None to look again."""
        try:
            step = emr.describe_step(ClusterId=self.job_flow_id, StepId=self.step_id)["Step"]
        except emr.exceptions.ClientError as exc:  # throttled, a network blip: look again
            self.log.warning("Could not describe step %s: %s", self.step_id, exc)
            return None
        state = step["Status"]["State"]
        watch.say_state(self.step_id, state, self.log)
        stuck = watch.look(emr, s3, self.job_flow_id, self.step_id, state, self.log)
        if state in STEP_DONE_STATES:
            return {"status": "success", self.return_key: self.return_value}
        if state in STEP_FAILED_STATES:
            return {"status": "failure", "message": failure_details(step)}
        if stuck and self.watch["fail_when_stuck"]:
            return {"status": "failure", "stuck": stuck}
        return None

    async def on_kill(self) -> None:
        # Building the hook's client reads the connection: blocking, so off the event loop.
        await sync_to_async(
            lambda: cancel_step(self.hook().conn, self.job_flow_id, self.step_id, self.log)
        )()
