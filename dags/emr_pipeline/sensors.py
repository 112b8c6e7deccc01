"""The provider's sensors, timed by the run's params, with a running EMR step watched (progress,
new log lines, stuck: emr_pipeline.watch), a failed one explained in the log, and links to the
step's logs, progress and Spark application in the UI.

BaseSensorOperator's poke_interval/timeout are constructor arguments, not template fields;
reading them from context["params"] at execute time lets each run (and the tests) choose.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.amazon.aws.links.base_aws import BASE_AWS_CONSOLE_LINK, BaseAwsLink
from airflow.providers.amazon.aws.sensors.emr import EmrStepSensor
from airflow.providers.amazon.aws.sensors.s3 import S3KeySensor
from airflow.providers.amazon.aws.triggers.emr import EmrStepSensorTrigger
from airflow.sdk.bases.operator import TRIGGER_FAIL_REPR
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout

from emr_pipeline.operators import check_cluster_is_the_runs
from emr_pipeline.plan import progress_uri
from emr_pipeline.run_clusters import find_steps
from emr_pipeline.triggers import StepCancellingEmrStepTrigger, cancel_step
from emr_pipeline.uris import split_s3_uri
from emr_pipeline.watch import StepWatch, explain_step_failure, step_log_uri

SPARK_HISTORY_PORT = 18080


class EmrStepLogsLink(BaseAwsLink):
    """The step's folder under the cluster's LogUri: controller, stdout.gz, stderr.gz."""

    name = "EMR Step Logs"
    key = "emr_step_logs"
    format_str = BASE_AWS_CONSOLE_LINK + "/s3/buckets/{bucket}?region={region_name}&prefix={prefix}"


class StepProgressLink(BaseAwsLink):
    """The step's progress JSON (emr_pipeline.watch), rewritten while the step runs."""

    name = "Step Progress"
    key = "emr_step_progress"
    format_str = BASE_AWS_CONSOLE_LINK + "/s3/object/{bucket}?region={region_name}&prefix={prefix}"


class SparkHistoryLink(BaseAwsLink):
    """The step's Spark application in the running cluster's history server (the server's list
    of applications until the job has published its application id)."""

    name = "Spark History (on cluster)"
    key = "spark_history"
    format_str = "http://{primary_dns}:" + str(SPARK_HISTORY_PORT) + "/{page}"


STEP_LINKS = (EmrStepLogsLink(), StepProgressLink(), SparkHistoryLink())


def _s3_location(uri: str) -> dict[str, str]:
    bucket, key = split_s3_uri(uri)
    return {"bucket": bucket, "prefix": quote(key, safe="/")}


def step_link_fields(
    cluster: dict[str, Any], step_id: str, progress_uri: str, application_id: str | None
) -> dict[type[BaseAwsLink], dict[str, str]]:
    """Each link's fields for one step, from DescribeCluster's Cluster; a link whose target is
    not known yet (no LogUri, no primary node's name yet) is left out."""
    fields: dict[type[BaseAwsLink], dict[str, str]] = {StepProgressLink: _s3_location(progress_uri)}
    if cluster.get("LogUri"):
        stdout = step_log_uri(cluster["LogUri"], cluster["Id"], step_id, "stdout")
        fields[EmrStepLogsLink] = _s3_location(stdout.rsplit("/", 1)[0] + "/")
    if cluster.get("MasterPublicDnsName"):
        page = f"history/{application_id}/jobs/" if application_id else ""
        fields[SparkHistoryLink] = {"primary_dns": cluster["MasterPublicDnsName"], "page": page}
    return fields


def persist_step_links(
    context: Any, operator: Any, fields: dict[type[BaseAwsLink], dict[str, str]]
) -> dict[str, str]:
    """Store the links' fields for the task runner to turn into URLs (as the provider's links
    are stored); return each link's URL by its name, for the log."""
    region, partition = operator.hook.conn_region_name, operator.hook.conn_partition
    urls = {}
    for link, values in fields.items():
        link.persist(
            context=context,
            operator=operator,
            region_name=region,
            aws_partition=partition,
            **values,
        )
        domain = BaseAwsLink.get_aws_domain(partition)
        urls[link.name] = link().format_link(region_name=region, aws_domain=domain, **values)
    return urls


def _apply_run_timing(sensor: Any, context: Any) -> None:
    params = context["params"]
    sensor.poke_interval = float(params.get("poke_interval_seconds", sensor.poke_interval))
    sensor.timeout = float(params.get("sensor_timeout_seconds", sensor.timeout))
    sensor.deferrable = bool(params.get("deferrable", sensor.deferrable))


def _trigger_not_importable(next_kwargs: dict | None) -> bool:
    """Whether a trigger failure is the triggerer failing to import this DAG's trigger."""
    traceback = "\n".join((next_kwargs or {}).get("traceback") or [])
    module = StepCancellingEmrStepTrigger.__module__
    return "ModuleNotFoundError" in traceback and module.split(".")[0] in traceback


class RunTimedS3KeySensor(S3KeySensor):
    def execute(self, context: Any) -> None:
        _apply_run_timing(self, context)
        super().execute(context)


class ExplainedEmrStepSensor(EmrStepSensor):
    """EmrStepSensor that finds its step by name on the run's cluster, and, when the step
    fails, logs why and fails without retrying.

    The steps are submitted with the cluster (RunJobFlow), so no task knows their ids: the
    sensor looks its step up by name (step names are unique per run's cluster), once it has
    seen the run's tags on the cluster.
    A FAILED step stays FAILED, so retrying the sensor only delays the run's failure:
    AirflowFailException skips the retries that still cover transient API errors.
    """

    template_fields = (*EmrStepSensor.template_fields, "run_output_uri")
    operator_extra_links = (*EmrStepSensor.operator_extra_links, *STEP_LINKS)

    def __init__(
        self,
        *,
        step_name: str,
        run_output_uri: str = "",
        log_wait_seconds: float = 180,
        **kwargs: Any,
    ) -> None:
        super().__init__(step_id="", **kwargs)
        self.step_name = step_name
        self.run_output_uri = run_output_uri  # where the step's progress file is
        self.log_wait_seconds = log_wait_seconds
        self.watch: StepWatch | None = None
        self.fail_when_stuck = False
        self._s3: Any = None
        self._linked: dict | None = None  # the step links' fields last stored

    def _find_step(self, context: Any) -> None:
        if self.step_id:
            return
        check_cluster_is_the_runs(self.hook.conn, self.job_flow_id, context)
        found = find_steps(self.hook.conn, self.job_flow_id, [self.step_name])
        if self.step_name not in found:
            raise AirflowFailException(
                f"cluster {self.job_flow_id} has no step named {self.step_name!r}"
            )
        self.step_id = found[self.step_name]

    def _prepare(self, context: Any) -> None:
        """The run's timing and the step's id; again in a resumed task, which is a new object."""
        _apply_run_timing(self, context)
        # Deferred mode counts attempts instead of seconds, each int(poke_interval) long.
        self.max_attempts = max(1, math.ceil(self.timeout / max(int(self.poke_interval), 1)))
        self._find_step(context)
        params = context["params"]
        self.fail_when_stuck = bool(params.get("fail_when_stuck", False))
        if self.watch is None and self.run_output_uri:
            self.watch = StepWatch(
                self.step_name,
                progress_uri(self.run_output_uri, self.step_name),
                float(params.get("stuck_after_seconds", 900)),
            )

    def execute(self, context: Any) -> None:
        self._prepare(context)
        try:
            if not self.deferrable:
                super().execute(context)
            elif not self.poke(context):
                self._defer_to_trigger()
        except AirflowSensorTimeout as exc:
            raise AirflowSensorTimeout(self.timeout_message()) from exc

    def _defer_to_trigger(self, trigger_class: type = StepCancellingEmrStepTrigger) -> None:
        """As EmrStepSensor defers, with a trigger that watches the step as the pokes do and
        whose on_kill cancels it."""
        watching = {}
        if trigger_class is StepCancellingEmrStepTrigger and self.watch is not None:
            watching["watch"] = {
                "step": self.step_name,
                "progress_uri": self.watch.progress_uri,
                "stuck_after_seconds": self.watch.stuck_after_seconds,
                "fail_when_stuck": self.fail_when_stuck,
            }
        self.defer(
            timeout=timedelta(seconds=self.max_attempts * self.poke_interval),
            trigger=trigger_class(
                job_flow_id=self.job_flow_id,
                step_id=self.step_id,
                waiter_delay=int(self.poke_interval),
                waiter_max_attempts=self.max_attempts,
                aws_conn_id=self.aws_conn_id,
                region_name=self.region_name,
                verify=self.verify,
                botocore_config=self.botocore_config,
                **watching,
            ),
            method_name="execute_complete",
        )

    def timeout_message(self, state: str | None = None) -> str:
        """Which step, on which cluster, how long it was waited for, and what it is doing."""
        if state is None:
            try:
                state = self.state_from_response(self.get_emr_response(context={}))
            except Exception as exc:  # the message must not hide the timeout itself
                state = f"unknown ({exc})"
        return (
            f"EMR step {self.step_name} ({self.step_id}) on cluster {self.job_flow_id} did not "
            f"finish within {self.timeout:.0f} s (sensor_timeout_seconds); it is {state}. The "
            f"cluster is terminated by the teardown; raise sensor_timeout_seconds if the step "
            f"needs longer."
        )

    def on_kill(self) -> None:
        """The wait was killed or marked failed: cancel its step, which the provider leaves
        running (apache/airflow#27979); the teardown still ends the cluster."""
        if self.job_flow_id and self.step_id:
            cancel_step(self.hook.conn, self.job_flow_id, self.step_id, self.log)

    def poke(self, context: Any) -> bool:
        response = self.get_emr_response(context=context)
        state = self.state_from_response(response)
        if self.watch is None:
            self.log.info("Step %s is %s", self.step_id, state)
        else:
            self.watch.say_state(self.step_id, state, self.log)
        if self.watch is not None and state != "PENDING":
            emr, s3 = self.hook.conn, self._s3_client()
            stuck = self.watch.look(emr, s3, self.job_flow_id, self.step_id, state, self.log)
            if stuck and self.fail_when_stuck:
                raise AirflowFailException(stuck)
        self._persist_links(context)
        if state in self.failed_states:
            self._fail()
        return state in self.target_states

    def resume_execution(self, next_method: str, next_kwargs: dict | None, context: Any) -> Any:
        """A triggerer that cannot import emr_pipeline.triggers (dags/ not on its PYTHONPATH)
        fails the trigger at once: wait with the provider's trigger instead, and say so."""
        if next_method == TRIGGER_FAIL_REPR and _trigger_not_importable(next_kwargs):
            self.log.warning(
                "The triggerer cannot import %s: add this DAG's folder to the triggerer's "
                "PYTHONPATH (docs/DEPLOY.md). Waiting with the provider's EmrStepSensorTrigger "
                "instead, which cannot cancel the step when this wait is marked failed.",
                StepCancellingEmrStepTrigger.__module__,
            )
            self._prepare(context)
            self._defer_to_trigger(EmrStepSensorTrigger)
        return super().resume_execution(next_method, next_kwargs, context)

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> None:
        self._prepare(context)
        self._persist_links(context, read_application_id=True)  # a new object: no look yet
        if event and event.get("stuck"):  # the trigger saw no progress, and fail_when_stuck
            raise AirflowFailException(event["stuck"])
        if event and event.get("status") != "success":
            state = self.state_from_response(self.get_emr_response(context=context))
            if state not in self.failed_states:  # the trigger ran out of attempts
                raise AirflowSensorTimeout(self.timeout_message(state))
            self._fail()
        super().execute_complete(context, event)

    def _persist_links(self, context: Any, read_application_id: bool = False) -> None:
        """Store the step's links (step_link_fields) when they changed: at the first look,
        and when the step's Spark application id appears; say them in the log. A failure is
        logged: links never fail the wait."""
        if self.watch is None:
            return
        try:
            if read_application_id:
                self.watch.read_progress(self._s3_client())
            cluster = self.watch.describe_cluster(self.hook.conn, self.job_flow_id)
            fields = step_link_fields(
                cluster, self.step_id, self.watch.progress_uri, self.watch.application_id
            )
            if fields == self._linked:
                return
            urls = persist_step_links(context, self, fields)
            self._linked = fields
            said = "; ".join(f"{name}: {url}" for name, url in urls.items())
            self.log.info("%s's links: %s", self.step_name, said)
        except Exception as exc:  # links are for people; the wait goes on without them
            self.log.warning("%s: could not record the step's links: %s", self.step_name, exc)

    def _s3_client(self) -> Any:
        """One S3 client for the whole wait: building one per poke costs a new session's
        service models each time (a third of a second of CPU)."""
        if self._s3 is None:
            self._s3 = S3Hook(
                aws_conn_id=self.aws_conn_id, region_name=self.region_name, verify=self.verify
            ).get_conn()
        return self._s3

    def _fail(self) -> None:
        s3 = self._s3_client()
        try:
            explanation = explain_step_failure(
                self.hook.conn, s3, self.job_flow_id, self.step_id, self.log_wait_seconds
            )
        except Exception as exc:  # the explanation must never hide the failure itself
            explanation = f"step {self.step_id} failed; its logs could not be read: {exc}"
        self.log.error("EMR step failed:\n%s", explanation)
        raise AirflowFailException(
            f"EMR step {self.step_name} ({self.step_id}) failed:\n{explanation}"
        )
