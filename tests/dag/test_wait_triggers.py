"""How a deferred wait picks its trigger when the triggerer cannot load the DAG's own.

The DAG's trigger lives in dags/ (emr_pipeline.triggers); Airflow 3's triggerer does not put the
dags folder on its path, so a deployment that forgot the PYTHONPATH of docs/DEPLOY.md fails the
trigger at load. The stack test proves the trigger itself in a real triggerer; these tests feed
the sensor the trigger failure Airflow hands a task in that case (next_method "__fail__" with
the formatted traceback), as the task runner does.
"""

from __future__ import annotations

import traceback

import pytest
from airflow.providers.amazon.aws.triggers.emr import EmrStepSensorTrigger
from airflow.sdk.exceptions import TaskDeferralError, TaskDeferred

from emr_pipeline.sensors import ExplainedEmrStepSensor
from emr_pipeline.triggers import StepCancellingEmrStepTrigger

CONTEXT = {"params": {"poke_interval_seconds": 5, "sensor_timeout_seconds": 60}}


def sensor() -> ExplainedEmrStepSensor:
    wait = ExplainedEmrStepSensor(task_id="wait", step_name="featurize", job_flow_id="j-1")
    wait.step_id = "s-1"  # found before it deferred
    return wait


def failure(exc: BaseException) -> dict[str, object]:
    """next_kwargs of a task whose trigger failed, as Trigger.submit_failure writes them."""
    try:
        raise exc
    except BaseException as raised:
        lines = traceback.format_exception(type(raised), raised, raised.__traceback__)
    return {"error": "Trigger failure", "traceback": lines}


def test_a_triggerer_that_cannot_import_the_dags_trigger_gets_the_providers():
    missing = ModuleNotFoundError("No module named 'emr_pipeline'", name="emr_pipeline")
    with pytest.raises(TaskDeferred) as deferred:
        sensor().resume_execution("__fail__", failure(missing), CONTEXT)
    trigger = deferred.value.trigger
    assert type(trigger) is EmrStepSensorTrigger
    classpath, kwargs = trigger.serialize()
    assert classpath.startswith("airflow.providers.amazon.")
    assert (kwargs["job_flow_id"], kwargs["step_id"], kwargs["waiter_delay"]) == ("j-1", "s-1", 5)
    assert kwargs["waiter_max_attempts"] == 12  # the run's 60 s timeout, 5 s apart


def test_any_other_trigger_failure_still_fails_the_wait():
    with pytest.raises(TaskDeferralError):
        sensor().resume_execution("__fail__", failure(RuntimeError("boom")), CONTEXT)


def test_the_default_wait_defers_to_the_trigger_that_cancels_its_step():
    with pytest.raises(TaskDeferred) as deferred:
        sensor()._defer_to_trigger()
    assert type(deferred.value.trigger) is StepCancellingEmrStepTrigger
    classpath, _ = deferred.value.trigger.serialize()
    assert classpath == "emr_pipeline.triggers.StepCancellingEmrStepTrigger"
