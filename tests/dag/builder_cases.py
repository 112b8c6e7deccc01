"""What the builder tests (test_builder_*.py) share: a run id, the run options of a DAG run's
parameters and the plan the pure builders make of them."""

from __future__ import annotations

from emr_pipeline.options import RunOptions
from emr_pipeline.plan import make_plan
from emr_pipeline.settings import DeploymentSettings

RUN_ID = "manual__2026-01-02T03:04:05.678901+00:00"


def options(**overrides) -> RunOptions:
    values = {
        "input_uri": "s3://in-bucket/fruits/",
        "output_uri": "s3://out-bucket/runs",
        **overrides,
    }
    return RunOptions.from_params(values)


def plan(opts: RunOptions | None = None, deployment: DeploymentSettings | None = None, **kw):
    return make_plan(
        opts or options(),
        deployment or DeploymentSettings(),
        dag_id="fruit_features_emr",
        run_id=kw.pop("run_id", RUN_ID),
        owner="data-team",
        **kw,
    )
