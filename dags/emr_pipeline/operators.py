"""The provider's EMR create operator, made safe to retry: find what an earlier try made first.

A task whose first try started a cluster and then died before it could record the id would,
when retried, start a second cluster. This subclass looks for this run's cluster by its tags
before creating anything. (The run's steps go in with the cluster, so no add-step call can
add a step twice: apache/airflow#28704.)
"""

from __future__ import annotations

import ast
from typing import Any

from airflow.providers.amazon.aws.operators.emr import EmrCreateJobFlowOperator

from emr_pipeline.idempotency import find_run_clusters, run_tags


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
