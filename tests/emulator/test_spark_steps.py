"""Real spark-submit steps on the emulator: featurize and PCA on a few images in moto S3."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from emr_pipeline.listing import build_manifest
from emr_pipeline.preflight import publish_manifest
from imagefeatures.packaging import build_package_zip
from localdev.local_spark import JOBS_DIR
from localdev.sample_data import generate_images
from tests.emulator.helpers import command_step, create_cluster, read_log, wait_for_steps

BUCKET = "emulator-spark"
IMAGES = 6


@dataclass
class SparkRun:
    cluster_id: str
    steps: list[dict[str, Any]]
    keys: set[str]
    flight_recorded: bool


def spark_step(
    name: str, job: str, *args: str, on_failure: str = "CONTINUE", submit: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The step as the DAG submits it: code, entrypoint and data all in S3; `submit`: more
    spark-submit options."""
    return command_step(
        name,
        "spark-submit",
        "--deploy-mode",
        "client",
        *submit,
        "--py-files",
        f"s3://{BUCKET}/code/imagefeatures.zip",
        f"s3://{BUCKET}/code/jobs/{job}.py",
        *args,
        on_failure=on_failure,
    )


def flight_recording(folder) -> str:
    return f"-XX:StartFlightRecording=filename={folder / 'pca.jfr'}"


@pytest.fixture(scope="module")
def spark_run(emr, s3, tmp_path_factory) -> SparkRun:
    local = tmp_path_factory.mktemp("spark-steps")
    s3.create_bucket(Bucket=BUCKET)
    images = local / "images"
    for path in generate_images(images, IMAGES, seed=1):
        s3.upload_file(str(path), BUCKET, f"in/{path.relative_to(images).as_posix()}")
    archive = build_package_zip(local / "imagefeatures.zip")
    s3.upload_file(str(archive), BUCKET, "code/imagefeatures.zip")
    for job in ("featurize", "pca"):
        s3.upload_file(str(JOBS_DIR / f"{job}.py"), BUCKET, f"code/jobs/{job}.py")
    out = f"s3://{BUCKET}/runs/1"
    # The run's input as the DAG's preflight fixes it: a manifest under the run's prefix, which
    # featurize reads (its workers then read each image from the emulator's S3 by key).
    with build_manifest(s3, f"s3://{BUCKET}/in/") as manifest:
        publish_manifest(s3, manifest, out, None)
    steps = [
        # Continues after failing, so one cluster shows a failure and a success.
        spark_step(
            "featurize empty",
            "featurize",
            *("--output", f"s3://{BUCKET}/runs/0"),  # no manifest there
            *("--weights", "random"),
        ),
        spark_step(
            "featurize",
            "featurize",
            *("--output", out, "--weights", "random"),
            on_failure="CANCEL_AND_WAIT",
        ),
        spark_step(
            "pca",
            "pca",
            *("--input", f"{out}/features", "--output", out, "--k", "2"),
            on_failure="CANCEL_AND_WAIT",
            # A user profiling the driver: the step's Java options replace the emulator's whole,
            # the class archive with them (a JVM mapping it crashes under Flight Recorder).
            submit=("--conf", f"spark.driver.extraJavaOptions={flight_recording(local)}"),
        ),
    ]
    cluster_id = create_cluster(emr, BUCKET, steps=steps)
    done = wait_for_steps(emr, cluster_id, timeout=240)
    emr.terminate_job_flows(JobFlowIds=[cluster_id])
    flight_recorded = (local / "pca.jfr").is_file()
    keys = {
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
        for o in page.get("Contents", [])
    }
    return SparkRun(cluster_id, done, keys, flight_recorded)


def test_featurize_and_pca_outputs_reach_s3(spark_run: SparkRun, s3):
    assert [s["Status"]["State"] for s in spark_run.steps] == ["FAILED", "COMPLETED", "COMPLETED"]
    features = [k for k in spark_run.keys if k.startswith("runs/1/features/")]
    assert any(k.endswith(".parquet") for k in features)
    assert "runs/1/features/_SUCCESS" in spark_run.keys
    assert any(k.startswith("runs/1/pca/") and k.endswith(".parquet") for k in spark_run.keys)
    assert any(k.startswith("runs/1/pca_model/") for k in spark_run.keys)
    assert not any(k.endswith(".crc") for k in spark_run.keys)
    summary = json.loads(s3.get_object(Bucket=BUCKET, Key="runs/1/pca_summary.json")["Body"].read())
    assert summary["k"] == 2
    assert spark_run.flight_recorded  # the pca step ran under Flight Recorder, and did not crash
    # The failed step wrote nothing (JobInputError: bad input, nothing written).
    assert not any(k.startswith("runs/0/") for k in spark_run.keys)


def test_failed_spark_step_reports_why(spark_run: SparkRun, emr, s3):
    failed = spark_run.steps[0]
    step = emr.describe_step(ClusterId=spark_run.cluster_id, StepId=failed["Id"])["Step"]
    details = step["Status"]["FailureDetails"]
    assert details["Reason"] == "Command exited with return code 2"
    assert details["Message"].startswith("featurize: error:")
    assert details["LogFile"].startswith(f"s3://{BUCKET}/logs/{spark_run.cluster_id}/steps/")
    assert details["Message"] in read_log(s3, details["LogFile"])
    log_dir = details["LogFile"].rsplit("/", 1)[0]
    both = read_log(s3, f"{log_dir}/stdout.gz") + read_log(s3, f"{log_dir}/stderr.gz")
    assert "featurize: error:" in both


def test_step_logs_of_successful_steps_are_in_s3(spark_run: SparkRun, s3):
    for step in spark_run.steps[1:]:
        prefix = f"logs/{spark_run.cluster_id}/steps/{step['Id']}/"
        assert {f"{prefix}stdout.gz", f"{prefix}stderr.gz"} <= spark_run.keys
        stdout = read_log(s3, f"s3://{BUCKET}/{prefix}stdout.gz")
        assert "done:" in stdout
