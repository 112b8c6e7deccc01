"""Fruit image features on a transient EMR cluster.

- **preflight**: checks the params, the settings and S3 before any cost; fixes the run's plan
  and its input (a manifest every step reads); picks the earlier run whose vectors it reuses.
- **upload_artifacts**, **create_cluster**: the run's code, then its cluster, which starts with
  the featurize, pca and validate steps queued.
- **featurize**, **pca**, **validate**: one wait per step, which logs its progress and explains
  a failure; **wait_for_report**, **read_report**: report.json read back; the run fails unless
  it passed.
- Teardown, whatever happened once the cluster exists: **terminate_cluster**, then
  **record_cost** (what the run's clusters used and cost).
- **seal_run**: a passed run whose cluster ended is sealed; only a sealed run is reused.

The run's state is the pipeline's: the teardown never turns a failed run green.
Deployment and triggering: docs/DEPLOY.md.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
from airflow.providers.amazon.aws.hooks.emr import EmrHook
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.sdk import DAG, Asset, TaskGroup, Variable, chain, get_current_context, task

from emr_pipeline import artifacts, cost, preflight, report, seals
from emr_pipeline.operators import (
    RunScopedEmrCreateJobFlowOperator,
    RunScopedEmrTerminateJobFlowOperator,
    build_params,
    failing_without_retry,
    run_tags_of,
)
from emr_pipeline.plan import STEP_NAMES
from emr_pipeline.sensors import ExplainedEmrStepSensor, RunTimedS3KeySensor
from emr_pipeline.settings import DAG_ID, DeploymentSettings, ParseTimeSettings
from emr_pipeline.uris import join_uri

SETTINGS = ParseTimeSettings.from_env()
CONN_ID = SETTINGS.aws_conn_id
CONSTRAINTS = SETTINGS.constraints_path
# Other DAGs can schedule on this: each successful run emits an event whose extra names
# the run's output prefix and report.
FEATURES_ASSET = Asset(name=f"{DAG_ID}_features", uri=SETTINGS.param_defaults["output_uri"])


def _s3_client() -> Any:
    return S3Hook(aws_conn_id=CONN_ID).get_conn()


def _emr_client() -> Any:
    return EmrHook(aws_conn_id=CONN_ID).conn


def _variable(name: str) -> str | None:
    return Variable.get(name, default=None)


with DAG(
    dag_id=DAG_ID,
    description="MobileNetV2 features + PCA of fruit images on a transient EMR cluster",
    doc_md=__doc__,
    schedule=SETTINGS.schedule,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params=build_params(SETTINGS),
    default_args={
        "owner": SETTINGS.owner,
        # Every task is safe to repeat: create_cluster finds what an earlier try made before
        # making it (emr_pipeline.operators).
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
    },
    tags=["emr", "spark", "images"],
) as dag:

    @task(multiple_outputs=True)
    def preflight_checks() -> dict[str, Any]:
        """Check the params, the settings and S3, fix the run's plan and manifest, and claim
        the run's output prefix, before any cost (emr_pipeline.preflight)."""
        context = get_current_context()
        with failing_without_retry(*preflight.REFUSALS):
            return preflight.run_preflight(
                _s3_client(), _emr_client(), context["params"], dag_id=DAG_ID,
                run_id=context["run_id"], owner=SETTINGS.owner,
                with_constraints=CONSTRAINTS is not None, variable=_variable, store=Variable.set,
                say=print,
            )  # fmt: skip

    @task
    def upload_artifacts(
        prefix: str,
        encryption: dict[str, str],
        weights_uri: str | None,
        weights_copy_uri: str | None,
    ) -> dict[str, str]:
        """Job entrypoints, the jobs package zip, bootstrap/ and the weights file (a server-side
        copy) to this run's prefix."""
        return artifacts.ship_artifacts(
            _s3_client(), prefix, Path(SETTINGS.jobs_dir), Path(SETTINGS.bootstrap_dir),
            CONSTRAINTS, encryption, weights=(weights_uri, weights_copy_uri),
        )  # fmt: skip

    def wait_for_step(name: str) -> TaskGroup:
        """Wait on one of the run's steps, found by its name on the cluster."""
        with TaskGroup(group_id=name) as group:
            ExplainedEmrStepSensor(
                task_id="wait_for_step",
                step_name=name,
                aws_conn_id=CONN_ID,
                job_flow_id=cluster_id,
                run_output_uri=plan["output_uri"],  # its progress file: logged at every look
            )
        return group

    @task(outlets=[FEATURES_ASSET])
    def read_report(report_uri: str, images: int) -> dict[str, Any]:
        """Read report.json back, log a summary, fail unless it passed; return the summary."""
        with failing_without_retry(report.ReportError):
            summary = report.read_report(_s3_client(), report_uri, images)
        event = get_current_context()["outlet_events"][FEATURES_ASSET]
        event.extra = {"report_uri": report_uri, **summary}
        return summary

    @task
    def record_cost(
        cluster: str, output_uri: str, report_uri: str, encryption: dict[str, str]
    ) -> dict[str, Any]:
        """What the run's clusters used and an estimate of their cost, after the teardown and
        whatever happened: in this log, in <run>/cost.json, and in report.json when a report
        exists (read_report then carries it to the Asset event). Never fails the run: a cost
        that cannot be computed is a warning and a block with the error."""
        try:
            context = get_current_context()
            return report.record_run_cost(
                _emr_client(), _s3_client(), cluster, tags=run_tags_of(context),
                cost_uri=join_uri(output_uri, cost.COST_NAME), report_uri=report_uri,
                encryption=encryption,
                price_table_uri=DeploymentSettings.resolve(_variable).price_table_uri,
                poll_seconds=min(float(context["params"]["poke_interval_seconds"]), 10.0),
            )  # fmt: skip
        except Exception as exc:  # the run's outcome is the pipeline's, not its bookkeeping's
            logging.getLogger(__name__).warning(
                "the cost of cluster %s could not be recorded: %r", cluster, exc
            )
            return cost.error_block(cluster, repr(exc))

    @task
    def seal_run(
        output_uri: str,
        seals_uri: str,
        deployment_id: str,
        features_of: dict[str, str],
        encryption: dict[str, str],
    ) -> None:
        """The run passed and its cluster ended: the Airflow connection seals its outputs and
        the model its featurize exported (emr_pipeline.seals)."""
        identity = {"dag_id": DAG_ID, "deployment": deployment_id}
        sealed = seals.seal_run(
            _s3_client(), run_uri=output_uri, seals_uri=seals_uri,
            identity={**identity, "run_id": get_current_context()["run_id"]},
            features_of=features_of, encryption=encryption,
        )  # fmt: skip
        print(f"sealed {output_uri}: {len(sealed['objects'])} objects")

    # Setup: the run's plan, its artifacts, its cluster. The cluster starts with the run's
    # steps queued (emr_pipeline.plan); a retried create finds the cluster a first try made.
    plan = preflight_checks.override(task_id="preflight")()
    uploaded = upload_artifacts(
        plan["artifacts_uri"], plan["s3_encryption"], plan["weights_uri"], plan["weights_copy_uri"]
    )
    create_cluster = RunScopedEmrCreateJobFlowOperator(
        task_id="create_cluster",
        aws_conn_id=CONN_ID,
        emr_conn_id=None,
        job_flow_overrides=plan["job_flow_overrides"],
        terminate_job_flow_on_failure=True,
    )
    cluster_id = create_cluster.output
    chain(plan, uploaded, create_cluster)

    # Body: each step's wait, then the report read back.
    featurize, pca, validate = (wait_for_step(name) for name in STEP_NAMES)
    wait_for_report = RunTimedS3KeySensor(
        task_id="wait_for_report", aws_conn_id=CONN_ID, bucket_key=plan["report_uri"]
    )
    report_read = read_report(plan["report_uri"], plan["images"])
    chain(create_cluster, featurize, pca, validate, wait_for_report, report_read)

    # Teardown: once the cluster exists, whatever happened. Only a failed termination fails
    # the run (someone must look at a cluster that may still run). record_cost is a second
    # teardown, so that Airflow still counts terminate_cluster's state; read_report waits for
    # it, so the report it reads and the Asset event carry the cost.
    terminate_cluster = RunScopedEmrTerminateJobFlowOperator(
        task_id="terminate_cluster", aws_conn_id=CONN_ID, job_flow_id=cluster_id
    ).as_teardown(setups=create_cluster, on_failure_fail_dagrun=True)
    cost_recorded = record_cost(
        cluster_id, plan["output_uri"], plan["report_uri"], plan["s3_encryption"]
    ).as_teardown(setups=create_cluster)
    chain(validate, terminate_cluster, cost_recorded, report_read)

    # Seal: only a run whose report passed and whose cluster ended is a later run's base.
    sealed = seal_run(
        plan["output_uri"], plan["seals_uri"], plan["deployment_id"], plan["features_of"],
        plan["s3_encryption"],
    )  # fmt: skip
    chain([report_read, terminate_cluster], sealed)
