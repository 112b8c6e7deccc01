"""The step waits' links: which are known when, and the URLs they make (the links' use in the
Airflow UI is checked on the emulator: tests/dag/on_emulator/test_watching_on_emulator.py)."""

from __future__ import annotations

from emr_pipeline.sensors import (
    EmrStepLogsLink,
    SparkHistoryLink,
    StepProgressLink,
    step_link_fields,
)

PROGRESS = "s3://out/runs/manual 1/_progress/featurize.json"


def url(link, values):
    return link().format_link(region_name="eu-west-1", aws_domain="aws.amazon.com", **values)


def test_a_starting_cluster_without_logs_has_only_the_progress_link():
    fields = step_link_fields({"Id": "j-1"}, "s-1", PROGRESS, None)

    assert set(fields) == {StepProgressLink}
    assert url(StepProgressLink, fields[StepProgressLink]) == (
        "https://console.aws.amazon.com/s3/object/out?region=eu-west-1"
        "&prefix=runs/manual%201/_progress/featurize.json"
    )


def test_a_running_cluster_links_the_step_logs_and_its_history_server():
    cluster = {"Id": "j-1", "LogUri": "s3n://logs/emr/", "MasterPublicDnsName": "ec2-1.example"}

    fields = step_link_fields(cluster, "s-2", PROGRESS, None)

    assert url(EmrStepLogsLink, fields[EmrStepLogsLink]) == (
        "https://console.aws.amazon.com/s3/buckets/logs?region=eu-west-1&prefix=emr/j-1/steps/s-2/"
    )
    # Before the job published its application id: the server's list of applications.
    assert url(SparkHistoryLink, fields[SparkHistoryLink]) == "http://ec2-1.example:18080/"
    fields = step_link_fields(cluster, "s-2", PROGRESS, "application_17_0001")
    assert url(SparkHistoryLink, fields[SparkHistoryLink]) == (
        "http://ec2-1.example:18080/history/application_17_0001/jobs/"
    )
