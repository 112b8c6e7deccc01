"""Nothing a caller sends becomes a local path: through the emulator, with its own key.

Issue 30's probes, as the key's holder (or a careless DAG parameter) could send them: S3 keys
that climb out of the stage folder (`..`, an empty segment that makes an absolute path), named
by a step or listed under a folder it names; a refused step holding such a key (the command is
checked before anything is staged); a bootstrap action given a local path, whose script would
copy a file of this machine and print it to a log the caller may read.
"""

from __future__ import annotations

from pathlib import Path

from tests.emulator.helpers import (
    command_step,
    create_cluster,
    read_log,
    wait_for_cluster,
    wait_for_steps,
)
from tests.emulator.test_emr_fidelity import _bootstrap_actions, _ship_bootstrap


def _climbing_key(folder: str, target: Path) -> str:
    """A key under `folder` whose `..` segments lead from any stage folder to `target`."""
    return f"{folder}/" + "../" * 40 + str(target).lstrip("/")


def _files_under(root: Path) -> set[Path]:
    return {path for path in root.rglob("*") if path.is_file()}


def test_keys_that_leave_the_stage_folder_are_refused_before_anything_is_staged(
    emulator, emr, s3, bucket, tmp_path
):
    named, listed, absolute = (tmp_path / name for name in ("named", "listed", "absolute"))
    s3.put_object(Bucket=bucket, Key=_climbing_key("jobs", named), Body=b"print('named')")
    s3.put_object(Bucket=bucket, Key="pkg/good.py", Body=b"print('good')")
    s3.put_object(Bucket=bucket, Key=_climbing_key("pkg", listed), Body=b"x")
    s3.put_object(Bucket=bucket, Key=f"abs/{absolute}", Body=b"x")  # abs//tmp/...: absolute
    steps = [
        command_step("named", "spark-submit", f"s3://{bucket}/{_climbing_key('jobs', named)}"),
        command_step("listed", "spark-submit", "--py-files", f"s3://{bucket}/pkg/", "job.py"),
        command_step("absolute", "spark-submit", f"s3://{bucket}/abs/", "job.py"),
        # Refused as a command: its key is never looked at, nothing is staged for it.
        command_step("refused", "bash", "-c", "true", f"s3://{bucket}/{_climbing_key('x', named)}"),
    ]
    cluster_id = create_cluster(emr, bucket, steps=steps)
    done = {step["Name"]: step for step in wait_for_steps(emr, cluster_id)}
    assert {name: step["Status"]["State"] for name, step in done.items()} == dict.fromkeys(
        ("named", "listed", "absolute", "refused"), "FAILED"
    )
    for name in ("named", "listed", "absolute"):
        details = done[name]["Status"]["FailureDetails"]
        assert details["Reason"] == "UnsafeKeyError", details
        assert "a key with an empty, '.' or '..' segment cannot be staged" in details["Message"]
        assert "nothing of this step was staged" in details["Message"]
        assert "cannot be staged" in read_log(s3, details["LogFile"])
    assert done["refused"]["Status"]["FailureDetails"]["Reason"] == "UnsupportedStepError"
    assert not named.exists() and not listed.exists() and not absolute.exists()
    # Not even the good file of the listed folder: everything is checked before any download.
    staged = emulator.work_dir / cluster_id / "s3"
    assert not staged.exists() or _files_under(staged) == set()
    emr.terminate_job_flows(JobFlowIds=[cluster_id])


def test_a_bootstrap_action_given_a_local_path_does_not_run(emr, s3, bucket, tmp_path):
    """The project's own script, whose fetch() copies a local path and logs a failed pip's
    output: with the emulator's user's private file as its requirements, it never runs."""
    private = tmp_path / "private.txt"
    private.write_text("only-the-emulators-user-may-read-this==1\n")
    private.chmod(0o600)
    path, args = _ship_bootstrap(s3, bucket)
    for local_args in ([str(private)], [*args[:1], "--constraints", str(private)]):
        actions = _bootstrap_actions(path, local_args)
        cluster_id = create_cluster(emr, bucket, BootstrapActions=actions)
        status = wait_for_cluster(emr, cluster_id, {"TERMINATED_WITH_ERRORS"})
        message = status["StateChangeReason"]["Message"]
        assert "the script and its arguments must be s3:// URIs" in message, message
        assert str(private) in message
        logs = s3.list_objects_v2(Bucket=bucket, Prefix=f"logs/{cluster_id}/node/")
        assert logs.get("KeyCount", 0) == 0  # the script never ran: no log to read
    # A script given by local path is refused the same way.
    actions = _bootstrap_actions(str(Path("bootstrap/install-python-deps.sh").resolve()), args)
    cluster_id = create_cluster(emr, bucket, BootstrapActions=actions)
    status = wait_for_cluster(emr, cluster_id, {"TERMINATED_WITH_ERRORS"})
    assert "must be s3:// URIs" in status["StateChangeReason"]["Message"]
