"""Fruit image features on a transient EMR cluster.

preflight (which also picks the earlier run whose features an incremental run reuses)
-> upload_artifacts -> create_cluster (with the featurize, pca and validate steps)
-> wait for featurize -> pca -> validate -> wait_for_report -> read_report -> seal_run;
terminate_cluster tears the cluster down
whatever happened once it exists, then record_cost records what it used and cost (before
read_report). seal_run, last, vouches for a passed run's outputs: only a sealed run is an
incremental run's base. The run's state is the pipeline's: the teardown never turns a failed
run green. Deployment and triggering: docs/DEPLOY.md.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pendulum
from airflow.providers.amazon.aws.hooks.emr import EmrHook
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.sdk import DAG, Asset, TaskGroup, Variable, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from emr_pipeline import artifacts, cost, idempotency, preflight, report, seals
from emr_pipeline.base_run import base_for_run
from emr_pipeline.operators import (
    RunScopedEmrCreateJobFlowOperator,
    RunScopedEmrTerminateJobFlowOperator,
    run_tags_of,
)
from emr_pipeline.options import InvalidRunOptionsError, RunOptions
from emr_pipeline.params import build_params
from emr_pipeline.plan import make_plan
from emr_pipeline.run_prefix import claim_run_prefix
from emr_pipeline.s3_reads import PreflightError
from emr_pipeline.sensors import ExplainedEmrStepSensor, RunTimedS3KeySensor
from emr_pipeline.settings import (
    DAG_ID,
    DeploymentIdError,
    DeploymentSettings,
    ParseTimeSettings,
    with_deployment_id,
)
from emr_pipeline.steps import STEP_NAMES
from emr_pipeline.uris import join_uri, split_s3_uri
from emr_pipeline.worker_support import check_worker_support

SETTINGS = ParseTimeSettings.from_env()
CONN_ID = SETTINGS.aws_conn_id
CONSTRAINTS = SETTINGS.constraints_path
# Other DAGs can schedule on this: each successful run emits an event whose extra names
# the run's output prefix and report.
FEATURES_ASSET = Asset(name=f"{DAG_ID}_features", uri=SETTINGS.param_defaults["output_uri"])


def _s3_client():
    return S3Hook(aws_conn_id=CONN_ID).get_conn()


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
        """Validate params, fix the run's plan, and check input and output before any cost.

        Every refusal comes before anything is written, deleted or started: the checks read
        (params, then S3), and only a run that passed them all claims its output prefix.
        """
        context = get_current_context()
        run_id = context["run_id"]
        try:
            options = RunOptions.from_params(context["params"])
            check_worker_support(options)
            # The deployment's id names its runs (made at its first run when none is set).
            deployment = with_deployment_id(
                DeploymentSettings.resolve(lambda name: Variable.get(name, default=None)),
                store=Variable.set,
            )
            plan_with = partial(
                make_plan,
                options,
                deployment,
                dag_id=DAG_ID,
                run_id=run_id,
                owner=SETTINGS.owner,
                with_constraints=CONSTRAINTS is not None,
            )
            plan = plan_with()
            s3 = _s3_client()
            # The run's input, fixed once: every step reads this manifest, none lists the input.
            manifest = preflight.check_run(
                s3, plan, options.input_uri, DAG_ID, run_id, options.overwrite, say=print
            )
        except (InvalidRunOptionsError, PreflightError, DeploymentIdError) as exc:
            # A verdict on the run's inputs, not a hiccup: retrying would only repeat it.
            raise AirflowFailException(str(exc)) from exc
        with manifest:  # its local file goes whatever happens below
            try:
                # Incremental: featurize reuses this earlier run's vectors of unchanged images.
                base = base_for_run(s3, options, plan, DAG_ID)
            except (InvalidRunOptionsError, PreflightError) as exc:
                raise AirflowFailException(str(exc)) from exc
            print(base.describe())
            if base.uri:
                plan = plan_with(base_run_uri=base.uri, base_seal_uri=base.seal_uri)
            else:  # featurize keeps the reason in its summary, and so in report.json
                plan = plan_with(full_run_reason=base.reason)
            # The run starts (again): a cluster an earlier attempt of this same run left behind
            # (a killed worker, a cleared run) ends before this attempt starts its own, and the
            # run's own output prefix starts empty but for its marker, so no partial output
            # mixes with this one.
            tags = idempotency.run_tags(plan.job_flow_overrides["Tags"])
            ended = idempotency.end_earlier_attempts(
                EmrHook(aws_conn_id=CONN_ID).conn, tags, poll_seconds=options.poke_interval_seconds
            )
            if ended:
                print(
                    f"terminated clusters left running by an earlier attempt of this run: {ended}"
                )
            try:
                removed = claim_run_prefix(s3, plan, DAG_ID, run_id, plan.s3_encryption)
            except PreflightError as exc:
                raise AirflowFailException(str(exc)) from exc
            if removed:
                print(f"removed {removed} objects of an earlier attempt under {plan.output_uri}")
            written = preflight.publish_manifest(s3, manifest, plan.output_uri, plan.s3_encryption)
            print(f"the run's manifest: {written} ({manifest.images} images)")
        return {**plan.as_xcom(), "images": manifest.images}

    @task
    def upload_artifacts(
        prefix: str,
        encryption: dict[str, str],
        weights_uri: str | None,
        weights_copy_uri: str | None,
    ) -> dict[str, str]:
        """Job entrypoints, the jobs package zip, bootstrap/ and the weights file (a server-side
        copy) to this run's prefix."""
        s3 = _s3_client()
        outcome = artifacts.upload_artifacts(
            s3,
            prefix,
            Path(SETTINGS.jobs_dir),
            Path(SETTINGS.bootstrap_dir),
            CONSTRAINTS,
            encryption,
        )
        for key, what in outcome.items():
            print(f"{what}: s3://{split_s3_uri(prefix)[0]}/{key}")
        if weights_uri and weights_copy_uri:
            what = artifacts.copy_weights(s3, weights_uri, weights_copy_uri, encryption)
            print(f"{what}: {weights_copy_uri} (from {weights_uri})")
            outcome[split_s3_uri(weights_copy_uri)[1]] = what
        return outcome

    plan = preflight_checks.override(task_id="preflight")()
    uploaded = upload_artifacts(
        plan["artifacts_uri"], plan["s3_encryption"], plan["weights_uri"], plan["weights_copy_uri"]
    )

    # The cluster starts with the run's three steps queued (emr_pipeline.plan), so it is never
    # idle between them. Retried safely: a try first looks for this run's active cluster by its
    # tags, so a retry after RunJobFlow succeeded (and the try died) reuses that cluster (and
    # its steps) instead of starting a second one. A failure after the cluster exists
    # terminates it.
    create_cluster = RunScopedEmrCreateJobFlowOperator(
        task_id="create_cluster",
        aws_conn_id=CONN_ID,
        emr_conn_id=None,
        job_flow_overrides=plan["job_flow_overrides"],
        terminate_job_flow_on_failure=True,
    )
    cluster_id = create_cluster.output

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

    featurize, pca, validate = (wait_for_step(name) for name in STEP_NAMES)

    wait_for_report = RunTimedS3KeySensor(
        task_id="wait_for_report", aws_conn_id=CONN_ID, bucket_key=plan["report_uri"]
    )

    @task(outlets=[FEATURES_ASSET])
    def read_report(report_uri: str, images: int) -> dict[str, Any]:
        """Read report.json back, log a summary, fail unless it passed; return the summary."""
        bucket, key = split_s3_uri(report_uri)
        content = S3Hook(aws_conn_id=CONN_ID).read_key(key, bucket_name=bucket)
        body = json.loads(content)
        print(report.format_summary(body))
        try:
            report.check_report(body, expected_images=images)
        except report.ReportError as exc:
            raise AirflowFailException(str(exc)) from exc
        summary = report.summarize(body)
        get_current_context()["outlet_events"][FEATURES_ASSET].extra = {
            "report_uri": report_uri,
            **summary,
        }
        return summary

    # Teardown: runs once the cluster exists, whatever happened downstream, and does not count
    # toward the run's state, except that a failed termination fails the run (someone must
    # look at a cluster that may still be running).
    terminate_cluster = RunScopedEmrTerminateJobFlowOperator(
        task_id="terminate_cluster", aws_conn_id=CONN_ID, job_flow_id=cluster_id
    ).as_teardown(setups=create_cluster, on_failure_fail_dagrun=True)

    @task
    def record_cost(
        cluster: str, output_uri: str, report_uri: str, encryption: dict[str, str]
    ) -> dict[str, Any]:
        """What the run's cluster used and an estimate of its cost, after the teardown and
        whatever happened: in this log, in <run>/cost.json, and in report.json when a report
        exists (read_report then carries it to the Asset event). Never fails the run: a cost
        that cannot be computed is a warning and a block with the error."""
        try:
            deployment = DeploymentSettings.resolve(lambda name: Variable.get(name, default=None))
            context = get_current_context()
            return cost.record_run_cost(
                EmrHook(aws_conn_id=CONN_ID).conn,
                _s3_client(),
                cluster,
                tags=run_tags_of(context),
                cost_uri=join_uri(output_uri, cost.COST_NAME),
                report_uri=report_uri,
                encryption=encryption,
                price_table_uri=deployment.price_table_uri,
                poll_seconds=min(float(context["params"]["poke_interval_seconds"]), 10.0),
            )
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
        """The run passed and its cluster ended: the Airflow connection seals its outputs (a
        later run reuses only a sealed run's vectors) and the model its featurize exported
        (emr_pipeline.seals). The last task: a run that fails anywhere is never sealed."""
        context = get_current_context()
        identity = {"dag_id": DAG_ID, "deployment": deployment_id, "run_id": context["run_id"]}
        sealed = seals.seal_run(
            _s3_client(), run_uri=output_uri, seals_uri=seals_uri, identity=identity,
            features_of=features_of, encryption=encryption,
        )  # fmt: skip
        print(f"sealed {output_uri}: {len(sealed['objects'])} objects")

    plan >> uploaded >> create_cluster >> featurize >> pca >> validate
    report_read = read_report(plan["report_uri"], plan["images"])
    validate >> wait_for_report >> report_read
    # A second teardown of the cluster, after the first: it runs whatever happened once the
    # cluster exists, and its own state never decides the run's. (Downstream of the first, a
    # plain task would hide terminate_cluster from the run's state: Airflow then no longer
    # counts a teardown as a leaf.) read_report waits for it, so the report it reads and the
    # Asset event carry the cost.
    cost_recorded = record_cost(
        cluster_id, plan["output_uri"], plan["report_uri"], plan["s3_encryption"]
    ).as_teardown(setups=create_cluster)
    validate >> terminate_cluster >> cost_recorded >> report_read
    sealed = seal_run(
        plan["output_uri"], plan["seals_uri"], plan["deployment_id"], plan["features_of"],
        plan["s3_encryption"],
    )  # fmt: skip
    # Only after the teardown succeeded too: a cluster that may still run is no base.
    [report_read, terminate_cluster] >> sealed
