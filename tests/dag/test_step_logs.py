"""A failed step is explained with its FailureDetails and the tail of its stderr."""

from __future__ import annotations

import gzip

import pytest

from emr_pipeline.report import ReportError, check_report, format_summary, summarize
from emr_pipeline.watch import explain_step_failure, failure_details, step_log_uri, tail


@pytest.fixture
def cluster(s3, emr):
    s3.create_bucket(Bucket="logs-bucket")
    cluster_id = emr.run_job_flow(
        Name="t",
        ReleaseLabel="emr-7.13.0",
        LogUri="s3://logs-bucket/emr/",
        Instances={"MasterInstanceType": "m5.xlarge", "InstanceCount": 1,
                   "KeepJobFlowAliveWhenNoSteps": True},
        JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole="EMR_DefaultRole",
    )["JobFlowId"]  # fmt: skip
    jar_step = {"Jar": "command-runner.jar", "Args": ["spark-submit", "x.py"]}
    step = {"Name": "featurize", "ActionOnFailure": "CONTINUE", "HadoopJarStep": jar_step}
    (step_id,) = emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=[step])["StepIds"]
    return cluster_id, step_id


def test_stderr_location_follows_emr_layout():
    assert step_log_uri("s3n://logs/emr/", "j-1", "s-2") == "s3n://logs/emr/j-1/steps/s-2/stderr.gz"
    assert step_log_uri("s3://l/", "j-1", "s-2", "stdout") == "s3://l/j-1/steps/s-2/stdout.gz"


def test_explanation_has_the_stdout_tail_where_spark_submit_puts_python_errors(s3, emr, cluster):
    cluster_id, step_id = cluster
    key = f"emr/{cluster_id}/steps/{step_id}/stdout.gz"
    body = gzip.compress(b"featurize: error: input s3://in/ holds no .jpg, .jpeg or .png image")
    s3.put_object(Bucket="logs-bucket", Key=key, Body=body)
    text = explain_step_failure(emr, s3, cluster_id, step_id)
    assert f"last lines of s3://logs-bucket/{key}:" in text
    assert "holds no .jpg" in text
    assert "no stderr at s3://logs-bucket/emr/" in text


def test_explanation_has_the_stderr_tail(s3, emr, cluster):
    cluster_id, step_id = cluster
    lines = [f"line {i}" for i in range(200)] + ["featurize: error: weights cannot be loaded"]
    key = f"emr/{cluster_id}/steps/{step_id}/stderr.gz"
    s3.put_object(Bucket="logs-bucket", Key=key, Body=gzip.compress("\n".join(lines).encode()))
    text = explain_step_failure(emr, s3, cluster_id, step_id)
    assert f"step featurize ({step_id})" in text
    assert f"cluster {cluster_id}" in text
    assert "featurize: error: weights cannot be loaded" in text
    assert "line 199" in text and "line 100" not in text  # only the tail


def test_explanation_when_the_log_is_not_there_yet(s3, emr, cluster):
    cluster_id, step_id = cluster
    text = explain_step_failure(emr, s3, cluster_id, step_id, wait_seconds=0)
    assert "no stderr at s3://logs-bucket/emr/" in text


def test_failure_details_line():
    step = {
        "Id": "s-1",
        "Name": "pca",
        "Status": {
            "State": "FAILED",
            "FailureDetails": {"Reason": "Unknown Error.", "LogFile": "s3://l/stderr.gz"},
        },
    }
    line = failure_details(step)
    assert line == "step pca (s-1) is FAILED; reason: Unknown Error.; log: s3://l/stderr.gz"
    assert tail("a\nb\nc\n", 2) == "b\nc"


REPORT = {
    "status": "passed",
    "images": 5,
    "features": 4,
    "rejects": 1,
    "labels": {"Apple": {"features": 2, "rejects": 1}, "Kiwi": {"features": 2, "rejects": 0}},
    "rejected_files": [{"path": "s3://in/Apple/bad.jpg", "label": "Apple", "error": "truncated"}],
    "pca": {"k": 2, "explained_variance": [0.5, 0.25], "cumulative_variance": [0.5, 0.75]},
    "checks": [{"name": "counts", "passed": True, "detail": ""}],
}


def test_report_summary():
    assert summarize(REPORT)["cumulative_variance"] == 0.75
    text = format_summary(REPORT)
    assert "5 images: 4 featurized, 1 rejected, 2 labels" in text
    assert "Apple: 2 features, 1 rejects" in text
    assert "explained variance [0.5000, 0.2500]" in text
    assert "bad.jpg: truncated" in text
    check_report(REPORT, expected_images=5)


def test_report_summary_names_the_model_that_ran():
    model = {"weights": "random", "runtime": "openvino", "precision": "bf16"}
    summary = summarize({**REPORT, "model": model})
    assert (summary["runtime"], summary["precision"]) == ("openvino", "bf16")
    assert "model: openvino, bf16 (weights random)" in format_summary({**REPORT, "model": model})
    # A report from before the runtime choice has no model block: no line, None in the summary.
    assert (summarize(REPORT)["runtime"], summarize(REPORT)["precision"]) == (None, None)
    assert "model:" not in format_summary(REPORT)
    # Whether this run paid the model's export, or found it in the cache.
    cache = {"uri": "s3://b/cache", "key": "k"}
    lines = [
        format_summary({**REPORT, "model": {**model, "model_cache": {**cache, **extra}}})
        for extra in (
            {"hit": True},
            {"hit": False, "stored": True},
            {"hit": False, "stored": False},
        )
    ]
    assert "model: openvino, bf16 (weights random; model from the cache)" in lines[0]
    assert "(weights random; model exported and cached)" in lines[1]
    assert "(weights random; model exported and NOT cached (see the step's log))" in lines[2]
    # Vectors reused from a bf16 base beside new ones that ran f32: how many of each.
    mixed = {**model, "precision": "mixed", "vectors_per_precision": {"f32": 1, "bf16": 9}}
    assert "model: openvino, mixed (9 vectors bf16, 1 vectors f32; weights random)" in (
        format_summary({**REPORT, "model": mixed})
    )


def test_report_checks():
    failed = {**REPORT, "status": "failed",
              "checks": [{"name": "counts", "passed": False, "detail": "5 != 4"}]}  # fmt: skip
    with pytest.raises(ReportError, match="5 != 4"):
        check_report(failed)
    with pytest.raises(ReportError, match="the run's manifest holds 6"):
        check_report(REPORT, expected_images=6)
