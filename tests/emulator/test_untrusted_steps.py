"""Only spark-submit steps run on the emulator: a step is a command run on this machine, and
anyone who reaches the emulator can submit one. Other commands need the test-only switch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.emulator.helpers import command_step, create_cluster, read_log, wait_for_steps

SCRIPT_RUNNER = "s3://us-east-1.elasticmapreduce/libs/script-runner/script-runner.jar"


def _script_step(bucket: str) -> dict[str, Any]:
    return {
        "Name": "script",
        "ActionOnFailure": "CONTINUE",
        "HadoopJarStep": {"Jar": SCRIPT_RUNNER, "Args": [f"s3://{bucket}/touch.sh"]},
    }


def _run(emr: Any, bucket: str, step: dict[str, Any]) -> dict[str, Any]:
    (done,) = wait_for_steps(emr, create_cluster(emr, bucket, steps=[step]))
    return done


def test_a_shell_command_fails_the_step_and_does_not_run(emr, bucket, tmp_path: Path):
    target = tmp_path / "x"
    done = _run(emr, bucket, command_step("shell", "bash", "-c", f"touch {target}"))
    assert done["Status"]["State"] == "FAILED"
    details = done["Status"]["FailureDetails"]
    assert details["Reason"] == "UnsupportedStepError"
    refused = f"runs command-runner.jar spark-submit steps only, not bash -c 'touch {target}'"
    assert details["Message"].startswith(f"the emulator {refused}")
    assert "--allow-any-command" in details["Message"]
    assert not target.exists()


def test_a_script_runner_step_fails_and_its_script_does_not_run(emr, s3, bucket, tmp_path: Path):
    target = tmp_path / "x"
    s3.put_object(Bucket=bucket, Key="touch.sh", Body=f"touch {target}\n".encode())
    done = _run(emr, bucket, _script_step(bucket))
    assert done["Status"]["State"] == "FAILED"
    message = done["Status"]["FailureDetails"]["Message"]
    assert message.startswith("the emulator runs spark-submit steps only, not script-runner.jar")
    assert not target.exists()
    # The step's stderr (in the cluster's LogUri) says why too, as a failed step's log would.
    assert "spark-submit steps only" in read_log(s3, done["Status"]["FailureDetails"]["LogFile"])


def test_with_the_test_switch_both_run(any_command, emr, s3, bucket, tmp_path: Path):
    first, second = tmp_path / "by-command-runner", tmp_path / "by-script-runner"
    s3.put_object(Bucket=bucket, Key="touch.sh", Body=f"touch {second}\n".encode())
    shell = command_step("shell", "bash", "-c", f"touch {first}")
    steps = wait_for_steps(emr, create_cluster(emr, bucket, steps=[shell, _script_step(bucket)]))
    assert [s["Status"]["State"] for s in steps] == ["COMPLETED", "COMPLETED"]
    assert first.exists() and second.exists()
