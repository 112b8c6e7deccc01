"""The DAG's Airflow pieces besides its waits: the trigger form (Params, made from the RunOptions
table) and the provider's EMR create and terminate operators, scoped to the run's own cluster.

A task whose first try started a cluster and then died before it could record the id would,
when retried, start a second cluster: the create operator looks for the run's cluster by its
tags first. The terminate operator ends a cluster only after it has seen the run's tags on it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from airflow.providers.amazon.aws.operators.emr import (
    EmrCreateJobFlowOperator,
    EmrTerminateJobFlowOperator,
)
from airflow.sdk import Param
from airflow.sdk.exceptions import AirflowFailException

from emr_pipeline.cluster import RUN_TAG_KEYS, run_tags
from emr_pipeline.options import RunOptions
from emr_pipeline.parameter import declared, form_default, param_schema
from emr_pipeline.run_clusters import ForeignClusterError, check_run_cluster, find_run_clusters
from emr_pipeline.settings import ParseTimeSettings


def build_params(settings: ParseTimeSettings) -> dict[str, Param]:
    """{name: Param} of every run parameter, with the deployment's defaults."""
    return {
        field.name: Param(
            settings.param_defaults.get(field.name, form_default(field)),
            **param_schema(field, annotation),
        )
        for field, annotation in declared(RunOptions)
    }


@contextmanager
def failing_without_retry(*verdicts: type[Exception]) -> Iterator[None]:
    """Any of `verdicts` raised in the block fails the task without retrying: a verdict on the
    run's inputs or outputs, which a retry would only repeat."""
    try:
        yield
    except verdicts as exc:
        raise AirflowFailException(str(exc)) from exc


# The task whose plan (XCom) holds the cluster request, and so the run's tags.
PLAN_TASK_ID = "preflight"


def run_tags_of(context: Any) -> dict[str, str]:
    """The tags every cluster of the running DAG run carries (emr_pipeline.cluster): those of
    the run's plan, which name its deployment too."""
    overrides = context["ti"].xcom_pull(task_ids=PLAN_TASK_ID, key="job_flow_overrides")
    tags = run_tags(_literal(overrides or {}).get("Tags", []))
    if set(tags) != set(RUN_TAG_KEYS):  # never check a cluster against fewer tags
        raise AirflowFailException(
            f"the run's plan (task {PLAN_TASK_ID}) does not name the run's tags {RUN_TAG_KEYS}"
        )
    return tags


def check_cluster_is_the_runs(emr: Any, cluster_id: str, context: Any) -> None:
    """Fail the task, without retrying, when `cluster_id` is not tagged as this run's."""
    try:
        check_run_cluster(emr, cluster_id, run_tags_of(context))
    except ForeignClusterError as exc:
        raise AirflowFailException(str(exc)) from exc


def _literal(value: Any) -> Any:
    return ast.literal_eval(value) if isinstance(value, str) else value


class RunScopedEmrCreateJobFlowOperator(EmrCreateJobFlowOperator):
    """Creates the run's cluster unless one tagged with this dag_id and run_id is active."""

    def execute(self, context: Any) -> str | None:
        overrides = _literal(self.job_flow_overrides)
        tags = run_tags(overrides.get("Tags", []))
        if set(tags) == set(RUN_TAG_KEYS):  # all of them: never match another run's cluster
            existing = find_run_clusters(self.hook.conn, tags)
            if existing:
                cluster_id = existing[-1]
                self._job_flow_id = cluster_id
                self.log.warning(
                    "Cluster %s tagged %s is already active (an earlier try of this task "
                    "created it): using it instead of starting another",
                    cluster_id,
                    tags,
                )
                return cluster_id
        return super().execute(context)


class RunScopedEmrTerminateJobFlowOperator(EmrTerminateJobFlowOperator):
    """Terminates the run's cluster, and refuses to touch one not tagged with the run."""

    def execute(self, context: Any) -> None:
        check_cluster_is_the_runs(self.hook.conn, self.job_flow_id, context)
        super().execute(context)
