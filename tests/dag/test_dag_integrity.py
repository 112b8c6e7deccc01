"""Every file in dags/ imports; the DAG has the expected shape, trigger rules and params."""

from __future__ import annotations

import pytest

from emr_pipeline.settings import DAG_ID
from tests.dag.dag_shapes import ALL_TASKS, PIPELINE


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    from tests.dag.paths import DAGS_DIR

    return DagBag(dag_folder=str(DAGS_DIR))


@pytest.fixture(scope="module")
def dag(dagbag):
    return dagbag.dags[DAG_ID]


def test_every_dag_file_imports_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert dagbag.dag_ids == [DAG_ID]
    # The helper package is not parsed as DAG files (dags/.airflowignore).
    assert [stat.file for stat in dagbag.dagbag_stats] == ["fruit_features_emr.py"]


def test_task_ids(dag):
    assert set(dag.task_ids) == ALL_TASKS


def test_pipeline_runs_in_order_without_cycles(dag):
    order = [t.task_id for t in dag.topological_sort()]
    positions = [order.index(task_id) for task_id in PIPELINE]
    assert positions == sorted(positions)
    for upstream, downstream in zip(PIPELINE, PIPELINE[1:], strict=False):
        assert upstream in dag.get_task(downstream).upstream_task_ids


def test_terminate_is_the_teardown_of_create(dag):
    from airflow.sdk import TriggerRule

    create, terminate = dag.get_task("create_cluster"), dag.get_task("terminate_cluster")
    assert create.is_setup and terminate.is_teardown
    assert terminate.trigger_rule == TriggerRule.ALL_DONE_SETUP_SUCCESS
    assert terminate.on_failure_fail_dagrun
    # It waits for the last task that uses the cluster; the cost record waits for it, and
    # the seal: a run whose cluster may still run is never sealed.
    assert {"create_cluster", "validate.wait_for_step"} <= terminate.upstream_task_ids
    assert terminate.downstream_task_ids == {"record_cost", "seal_run"}
    assert create.terminate_job_flow_on_failure
    others = {
        t.task_id: t.trigger_rule
        for t in dag.tasks
        if t.task_id not in ("terminate_cluster", "record_cost")
    }
    assert set(others.values()) == {TriggerRule.ALL_SUCCESS}


def test_the_cost_is_recorded_after_the_teardown_and_before_the_report_is_read(dag):
    from airflow.sdk import TriggerRule

    record = dag.get_task("record_cost")
    # Whatever happened once the cluster exists (a failed step's cluster cost money too),
    # after the teardown: a teardown too, whose own state never decides the run's.
    assert record.is_teardown and not record.on_failure_fail_dagrun
    assert record.trigger_rule == TriggerRule.ALL_DONE_SETUP_SUCCESS
    assert record.upstream_task_ids == {"preflight", "create_cluster", "terminate_cluster"}
    # read_report reads the report with the cost in it, and still needs the report sensor.
    assert dag.get_task("read_report").upstream_task_ids >= {"record_cost", "wait_for_report"}


def test_the_runs_state_is_decided_by_its_seal_after_the_report_and_the_teardown(dag):
    """Airflow's rule (DagRun._tis_for_dagrun_state): the leaves, where a teardown counts
    only with on_failure_fail_dagrun and a task followed by an ignorable teardown is a leaf.
    seal_run, last, runs only when read_report and terminate_cluster both succeeded: either
    failing leaves it upstream_failed, and the run failed (and unsealed)."""
    from airflow.models.dagrun import DagRun

    counted = DagRun._tis_for_dagrun_state(None, dag=dag, tis=_fake_tis(dag))
    assert "seal_run" in {ti.task_id for ti in counted}
    assert dag.get_task("seal_run").upstream_task_ids >= {"read_report", "terminate_cluster"}


def _fake_tis(dag):
    from collections import namedtuple

    task_instance = namedtuple("task_instance", "task_id state")
    return [task_instance(task_id, None) for task_id in dag.task_ids]


def test_every_task_is_retried_and_repeating_is_safe(dag):
    from emr_pipeline.operators import RunScopedEmrCreateJobFlowOperator

    for task in dag.tasks:
        assert task.retries >= 1 and task.retry_exponential_backoff, task.task_id
    # Retrying it is safe only because it looks for the cluster an earlier try made.
    assert isinstance(dag.get_task("create_cluster"), RunScopedEmrCreateJobFlowOperator)
    # The steps go in with the cluster: no task adds a step (a retried add-step call could
    # add it twice, and the cluster would sit idle between steps).
    assert not [t.task_id for t in dag.tasks if "add_step" in t.task_id]


def test_schedule_and_concurrency(dag):
    assert dag.max_active_runs == 1
    assert dag.catchup is False
    assert dag.schedule == "@weekly"


def test_default_params_validate(dag):
    params = dag.params.validate()
    assert params["release_label"] == "emr-7.13.0"
    assert params["deferrable"] is True  # waits free their worker slot by default
    assert params["overwrite"] is False
    assert (params["runtime"], params["precision"]) == ("openvino", "f32")


@pytest.mark.parametrize(
    "conf",
    [
        {"core_instance_count": -1},
        {"input_uri": "/local/path"},
        {"pca_variance": 1.5},
        {"idle_timeout_seconds": 10},
        {"poke_interval_seconds": 0},
        {"runtime": "onnx"},
        {"precision": "fp16"},
    ],
)
def test_params_reject_bad_values(dag, conf):
    from airflow.sdk.definitions.param import ParamsDict
    from airflow.sdk.exceptions import ParamValidationError

    params = ParamsDict(dict(dag.params.items()))
    ((key, value),) = conf.items()
    with pytest.raises(ParamValidationError, match=f"Invalid input for param {key}"):
        params[key] = value


def test_outputs_are_declared_as_an_asset(dag):
    outlets = dag.get_task("read_report").outlets
    assert [o.name for o in outlets] == [f"{DAG_ID}_features"]


def test_every_param_is_explained_in_the_trigger_form(dag):
    """The form shows each param under its section, with a title and a description."""
    for name, param in dag.params.items():
        schema = dag.params.get_param(name).schema
        assert schema.get("section"), f"{name}: no section"
        assert schema.get("title"), f"{name}: no title"
        assert (param.description or "").strip(), f"{name}: no description"


def test_runtime_and_precision_are_choices_in_the_form(dag):
    """The form shows them as drop-downs of featurize's choices (RunOptions' own tuples)."""
    from emr_pipeline.options import PRECISIONS, RUNTIMES

    for name, choices in (("runtime", RUNTIMES), ("precision", PRECISIONS)):
        schema = dag.params.get_param(name).schema
        assert schema["type"] == "string" and schema["enum"] == list(choices), name
        assert schema["section"] == "Model and PCA", name
    assert "tensorflow" in dag.params.get_param("runtime").description
    assert "falls back to f32" in dag.params.get_param("precision").description
