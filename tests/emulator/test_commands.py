"""Pure parts of the emulator: the local command line and failure details."""

from __future__ import annotations

import pytest

from localdev.emr_emulator.commands import SPARK_SUBMIT, UnsupportedStepError, build_command
from localdev.emr_emulator.staging import parse_s3_uri
from localdev.emr_emulator.step_execution import failure_details


def test_spark_submit_gets_a_local_master_and_keeps_the_application_args():
    command = build_command(
        "command-runner.jar",
        [
            "spark-submit",
            "--master",
            "yarn",
            "--deploy-mode",
            "cluster",
            "--py-files",
            "/s/a.zip",
            "--conf=spark.x=1",
            "--verbose",
            "/s/job.py",
            "--master",
            "keep-me",
        ],  # fmt: skip
        master="local[2]",
    )
    assert command[:5] == [SPARK_SUBMIT, "--master", "local[2]", "--deploy-mode", "client"]
    assert "yarn" not in command and "cluster" not in command
    index = command.index("--py-files")
    assert command[index:] == [
        "--py-files", "/s/a.zip", "--conf=spark.x=1", "--verbose", "/s/job.py",
        "--master", "keep-me",
    ]  # fmt: skip
    assert "--driver-java-options" in command


def test_own_driver_java_options_are_kept():
    command = build_command(
        "command-runner.jar", ["spark-submit", "--driver-java-options", "-Dx=1", "/s/job.py"]
    )
    assert command.count("--driver-java-options") == 1
    assert command[command.index("--driver-java-options") + 1] == "-Dx=1"


def test_other_commands_run_as_given_only_with_the_test_switch():
    shell = ["bash", "-c", "exit 3"]
    assert build_command("command-runner.jar", shell, allow_any_command=True) == shell
    assert build_command("s3://r.elasticmapreduce/libs/script-runner/script-runner.jar", [
        "/s/script.sh", "a",
    ], allow_any_command=True) == ["bash", "/s/script.sh", "a"]  # fmt: skip


@pytest.mark.parametrize(
    "jar,args",
    [
        ("command-runner.jar", ["bash", "-c", "touch /tmp/x"]),
        ("command-runner.jar", ["/usr/bin/python3", "-c", "print(1)"]),
        ("command-runner.jar", ["spark-submit-evil", "x.py"]),
        ("s3://r.elasticmapreduce/libs/script-runner/script-runner.jar", ["s3://b/s.sh"]),
        ("script-runner.jar", []),
    ],
)
def test_only_spark_submit_runs_by_default(jar, args):
    with pytest.raises(UnsupportedStepError, match="spark-submit steps only") as refused:
        build_command(jar, args)
    assert "--allow-any-command" in str(refused.value)


def test_spark_submit_by_any_path_runs_the_local_one():
    command = build_command("command-runner.jar", ["/tmp/evil/spark-submit", "/s/job.py"])
    assert command[0] == SPARK_SUBMIT and "/tmp/evil/spark-submit" not in command


@pytest.mark.parametrize("jar,args", [("s3://b/custom.jar", ["x"]), ("command-runner.jar", [])])
def test_unsupported_steps(jar, args):
    with pytest.raises(UnsupportedStepError):
        build_command(jar, args)


def test_failure_details_prefer_the_jobs_error_line():
    stdout = "Traceback...\nValueError: inner\nfeaturize: error: no images under /x\n"
    details = failure_details(stdout, "WARN something\n", 2, "s3://b/logs/j-1/steps/s-1")
    assert details == {
        "Reason": "Command exited with return code 2",
        "Message": "featurize: error: no images under /x",
        "LogFile": "s3://b/logs/j-1/steps/s-1/stdout.gz",
    }


def test_failure_details_without_an_error_line():
    details = failure_details("", "", 137, "s3://b/logs/j-1/steps/s-1")
    assert details["Reason"] == "Unknown Error."
    assert details["Message"] == "Command exited with return code 137"


def test_parse_s3_uri():
    assert parse_s3_uri("s3://b/k/x") == ("b", "k/x")
    assert parse_s3_uri("s3n://b") == ("b", "")
    assert parse_s3_uri("/local/path") is None


def test_staged_spark_submit_keeps_s3_uris_for_the_job_and_mounts_them(tmp_path):
    """spark-submit fetches its own resources as local copies; the job's arguments stay s3://
    and resolve through ViewFS mounts of each staged bucket's top-level folders."""
    from localdev.emr_emulator.staging import StagedStep

    args = [
        "spark-submit", "--py-files=s3://art/run/jobs.zip", "--files", "s3://art/run/w.h5,x",
        "s3://art/run/featurize.py", "--input", "s3://in/fruits/", "--output", "s3://out/runs/r/",
    ]  # fmt: skip
    staged = StagedStep(args=args, stage_dir=tmp_path)
    for uri in ("s3://art/run/", "s3://in/fruits/", "s3://out/runs/r/"):
        bucket, key = parse_s3_uri(uri)
        staged.roots[staged.local_path(bucket, key)] = (bucket, key.rstrip("/"))

    command = build_command("command-runner.jar", args, staged=staged)

    assert f"--py-files={tmp_path}/art/run/jobs.zip" in command
    assert command[command.index("--files") + 1] == f"{tmp_path}/art/run/w.h5,x"
    assert command[-5:] == [
        f"{tmp_path}/art/run/featurize.py", "--input", "s3://in/fruits/",
        "--output", "s3://out/runs/r/",
    ]  # fmt: skip
    confs = dict(c.split("=", 1) for c in command[1:] if c.startswith("spark.hadoop."))
    viewfs = "org.apache.hadoop.fs.viewfs.ViewFileSystemOverloadScheme"
    assert confs["spark.hadoop.fs.s3.impl"] == confs["spark.hadoop.fs.s3a.impl"] == viewfs
    assert confs["spark.hadoop.fs.viewfs.mounttable.in.link./fruits"] == (
        (tmp_path / "in" / "fruits").as_uri()
    )
    assert (tmp_path / "out" / "runs").is_dir()  # a link's target exists before the job runs
    links = sorted(k for k in confs if ".link./" in k)
    assert [k.split("mounttable.")[1] for k in links] == ["art.link./run", "in.link./fruits",
                                                          "out.link./runs"]  # fmt: skip


def test_a_bucket_root_uri_mounts_each_top_level_entry(tmp_path):
    from localdev.emr_emulator.staging import StagedStep

    staged = StagedStep(args=[], stage_dir=tmp_path)
    staged.roots[staged.local_path("root", "")] = ("root", "")
    assert [k for k in staged.hadoop_confs() if ".link./" in k] == []  # nothing staged yet
    (tmp_path / "root" / "Apple").mkdir(parents=True)
    (tmp_path / "root" / "top.jpg").write_bytes(b"x")
    links = {
        k.split("mounttable.")[1]: v for k, v in staged.hadoop_confs().items() if ".link./" in k
    }
    assert links == {
        "root.link./Apple": (tmp_path / "root" / "Apple").as_uri(),
        "root.link./top.jpg": (tmp_path / "root" / "top.jpg").as_uri(),
    }


def test_staged_files_keep_their_objects_last_modified(tmp_path, monkeypatch):
    """binaryFile's modificationTime of a staged image is its S3 LastModified, as through EMRFS:
    an incremental run tells an unchanged image by it, so a fresh download must not look new."""
    import boto3
    from moto import mock_aws

    from localdev.emr_emulator.staging import S3Stager

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="in-bucket")
        s3.put_object(Bucket="in-bucket", Key="fruits/Apple/a.jpg", Body=b"a")
        s3.put_object(Bucket="in-bucket", Key="weights.h5", Body=b"w")
        modified = {
            o["Key"]: o["LastModified"].timestamp()
            for o in s3.list_objects_v2(Bucket="in-bucket")["Contents"]
        }
        uris = ["s3://in-bucket/fruits/", "s3://in-bucket/weights.h5"]
        staged = S3Stager(s3).stage(uris, tmp_path)
    for key, when in modified.items():
        local = staged.local_path("in-bucket", key)
        assert local.stat().st_mtime == when, key
