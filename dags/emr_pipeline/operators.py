"""The provider's EMR operators, made safe to retry: find what an earlier try made first.

A task whose first try started a cluster (or added a step) and then died before it could
record the id would, when retried, start a second cluster (add the step again: the provider's
apache/airflow#28704). These subclasses look for this run's cluster by its tags, and for the
step by its name on that cluster, before creating anything.
"""

from __future__ import annotations

import ast
from typing import Any

from airflow.providers.amazon.aws.operators.emr import (
    EmrAddStepsOperator,
    EmrCreateJobFlowOperator,
)

from emr_pipeline.idempotency import find_run_clusters, find_steps, run_tags


def _literal(value: Any) -> Any:
    return ast.literal_eval(value) if isinstance(value, str) else value


class RunScopedEmrCreateJobFlowOperator(EmrCreateJobFlowOperator):
    """Creates the run's cluster unless one tagged with this dag_id and run_id is active."""

    def execute(self, context: Any) -> str | None:
        overrides = _literal(self.job_flow_overrides)
        tags = run_tags(overrides.get("Tags", []))
        if len(tags) == 2:  # both dag_id and run_id: never match another run's cluster
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


class IdempotentEmrAddStepsOperator(EmrAddStepsOperator):
    """Adds only the steps whose names are not on the cluster yet; returns every step's id."""

    def execute(self, context: Any) -> list[str]:
        steps = _literal(self.steps)
        names = [step["Name"] for step in steps]
        if len(set(names)) != len(names):
            raise ValueError(f"step names must be unique to make retries safe: {names}")
        existing = find_steps(self.hook.conn, self.job_flow_id, names)
        if not existing:
            return super().execute(context)
        missing = [step for step in steps if step["Name"] not in existing]
        self.log.warning(
            "Steps %s are on cluster %s already (an earlier try added them): not adding them again",
            {name: existing[name] for name in names if name in existing},
            self.job_flow_id,
        )
        added: list[str] = []
        if missing:
            self.steps = missing
            try:
                added = list(super().execute(context))
            finally:
                self.steps = steps
        elif self.do_xcom_push:
            context["ti"].xcom_push(key="job_flow_id", value=self.job_flow_id)
        new_ids = iter(added)
        return [existing[name] if name in existing else next(new_ids) for name in names]
