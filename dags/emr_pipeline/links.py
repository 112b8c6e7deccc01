"""Links on each step's wait, for the Airflow UI, beside the provider's "EMR Cluster" and
"EMR Cluster Logs": the step's own logs under LogUri, its progress file, and its Spark
application in the cluster's Spark history server.

Airflow 3's API server does not run this code: it reads each link's URL from an XCom the task
runner writes when the task defers or ends. A deferrable wait (the default) so shows them from
its deferral on, while the step runs; a poke-mode wait once it ends.

The EMR console has no page of its own for a step (steps are a tab of the cluster's page), and
EMR's persistent Spark History Server opens only through a one-time URL the console mints on
each click: after the cluster ends, the step's Spark application is there (EMR Cluster link,
"Application user interfaces"), for 30 days. While the cluster runs, its own history server
(port 18080 of the primary node, through the SSH tunnel EMR documents) shows it live.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from airflow.providers.amazon.aws.links.base_aws import BASE_AWS_CONSOLE_LINK, BaseAwsLink

from emr_pipeline.step_logs import step_log_uri
from emr_pipeline.uris import split_s3_uri

SPARK_HISTORY_PORT = 18080


class EmrStepLogsLink(BaseAwsLink):
    """The step's folder under the cluster's LogUri: controller, stdout.gz, stderr.gz."""

    name = "EMR Step Logs"
    key = "emr_step_logs"
    format_str = BASE_AWS_CONSOLE_LINK + "/s3/buckets/{bucket}?region={region_name}&prefix={prefix}"


class StepProgressLink(BaseAwsLink):
    """The step's progress JSON (emr_pipeline.step_watch), rewritten while the step runs."""

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
