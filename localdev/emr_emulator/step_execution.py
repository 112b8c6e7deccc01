"""One EMR step, as the emulator runs it: stage its s3:// inputs, run its command, sync its
outputs back, upload its logs under LogUri, and set its state with EMR's FailureDetails."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from moto.core.utils import utcnow
from moto.emr.models import Cluster, Step

from localdev.emr_emulator import moto_patches
from localdev.emr_emulator.commands import build_command, check_command
from localdev.emr_emulator.log_upload import join_s3, put_gzipped_logs
from localdev.emr_emulator.node_config import (
    classification_properties,
    node_process_env,
    spark_defaults,
    spark_env,
)
from localdev.emr_emulator.process_groups import wait_or_kill
from localdev.emr_emulator.staging import (
    StagedStep,
)

if TYPE_CHECKING:  # the runner imports this module: no import cycle at run time
    from localdev.emr_emulator.runner import ClusterWorker

TERMINAL = moto_patches.TERMINAL_CLUSTER_STATES

# Lines that say why a step failed, best first: the jobs' "<job>: error: ..." (and argparse's),
# then the last line of a Python traceback or a Java exception.
_ERROR_PATTERNS = (
    re.compile(r": error: "),
    re.compile(r"^([\w$]+\.)*\w*(Error|Exception)\b(:|$)"),
)


def failure_details(stdout: str, stderr: str, returncode: int, log_dir: str) -> dict[str, str]:
    """EMR-style FailureDetails for a step that exited with `returncode`.

    Message is the most telling error line of the step's output, LogFile the log it is in
    (spark-submit puts the Python driver's stderr on its stdout, so it is often stdout.gz).
    """
    logs = (("stderr.gz", stderr), ("stdout.gz", stdout))
    for pattern in _ERROR_PATTERNS:
        for log_name, text in logs:
            hits = [line.strip() for line in text.splitlines() if pattern.search(line.strip())]
            if hits:
                return {
                    "Reason": f"Command exited with return code {returncode}",
                    "Message": hits[-1][:1000],
                    "LogFile": join_s3(log_dir, log_name),
                }
    return {
        "Reason": "Unknown Error.",
        "Message": f"Command exited with return code {returncode}",
        "LogFile": join_s3(log_dir, "stderr.gz"),
    }


class StepExecution:
    """One step: stage inputs, run the command, sync outputs, upload logs, set the state."""

    def __init__(self, worker: ClusterWorker, step: Step) -> None:
        self.worker = worker
        self.step = step
        cluster = worker.cluster
        self.folder = worker.runner.work_dir / cluster.id / step.id
        self.stdout_path = self.folder / "stdout"
        self.stderr_path = self.folder / "stderr"
        log_uri = (cluster.log_uri or "").strip()
        self.log_dir = (
            join_s3(log_uri, cluster.id, "steps", step.id) if log_uri else str(self.folder)
        )

    def run(self) -> None:
        step, worker = self.step, self.worker
        self.folder.mkdir(parents=True, exist_ok=True)
        step.start_date_time = utcnow()
        step.state = "RUNNING"
        started = time.monotonic()
        worker.say(f"{step.id} {step.name!r}: RUNNING")
        returncode, cancelled, error = None, False, None
        staged: StagedStep | None = None
        # Where the step's time went: staging and syncing back are the emulator's own work
        # (EMRFS reads and writes S3 directly), spark-submit is what EMR would run.
        seconds = step.emulator_seconds = {}
        clock = time.monotonic()
        with self.stdout_path.open("w") as out, self.stderr_path.open("w") as err:
            try:
                # One staging folder per cluster, emptied before each step: each step starts
                # from exactly what S3 holds.
                stage_dir = self.folder.parent / "s3"
                shutil.rmtree(stage_dir, ignore_errors=True)
                configurations = cluster_configurations(worker.cluster)
                node_root = self.folder.parent / "node"
                defaults = spark_defaults(configurations, node_root)
                env = spark_env(configurations, node_root)
                runner = worker.runner
                # Refused steps stage nothing: the command is checked first.
                check_command(step.jar, list(step.args), runner.allow_any_command)
                staged = worker.stager.stage(list(step.args), stage_dir)
                seconds["staging"] = time.monotonic() - clock
                clock = time.monotonic()
                command = build_command(
                    step.jar,
                    staged.args,
                    runner.master,
                    runner.allow_any_command,
                    staged,
                    defaults,
                )
                world_moves = runner.on_step_start.get(step.name)
                if world_moves is not None:
                    world_moves()
                fault = runner.step_faults.get(step.name)
                if fault is not None:
                    command = _failing_command(fault)
                returncode, cancelled = self._execute(command, out, err, env, staged)
                seconds["spark_submit"] = time.monotonic() - clock
                if cancelled:  # which of the two, for whoever reads the step's log
                    why = (
                        "a CancelSteps request"
                        if getattr(step, "emulator_cancel_requested", False)
                        else f"the cluster being {worker.cluster.state}"
                    )
                    err.write(f"emr-emulator: step stopped by {why}\n")
            except Exception as exc:  # staging, unsupported step, command not found
                error = exc
                err.write(f"emr-emulator: {type(exc).__name__}: {exc}\n")
            try:
                clock = time.monotonic()
                if staged is not None:
                    self._sync_back(staged, err)
                    seconds["sync_back"] = time.monotonic() - clock
            except Exception as exc:  # a step whose outputs did not reach S3 has failed
                error = error or exc
                err.write(f"emr-emulator: writing outputs to S3 failed: {exc}\n")
        if worker.runner.log_delay_seconds > 0:  # as EMR: logs reach S3 after the step ends
            late = threading.Timer(worker.runner.log_delay_seconds, self._upload_logs)
            late.daemon = True
            late.start()
        else:
            self._upload_logs()
        if staged is not None and not worker.runner.keep_staged:
            shutil.rmtree(staged.stage_dir, ignore_errors=True)
        if cancelled:
            state = "CANCELLED"
        elif returncode == 0 and error is None:
            state = "COMPLETED"
        else:
            state = "FAILED"
            step.emulator_failure_details = (
                {"Reason": "Unknown Error.", "LogFile": join_s3(self.log_dir, "stderr.gz")}
                if worker.runner.terse_failure_details  # what EMR often says, and no more
                else self._failure_details(returncode, error)
            )
        step.end_date_time = utcnow()
        step.state = state
        parts = ", ".join(f"{name} {value:.1f}s" for name, value in seconds.items())
        worker.say(
            f"{step.id} {step.name!r}: {state} after {time.monotonic() - started:.1f}s ({parts})"
        )

    def _execute(
        self, command: list[str], out: Any, err: Any, node_env: dict[str, str], staged: StagedStep
    ) -> tuple[int, bool]:
        runner, cluster = self.worker.runner, self.worker.cluster
        env = node_process_env(
            runner.endpoint_url, runner.node_credentials, node_env
        )  # spark-env's exports
        env["PYTHONUNBUFFERED"] = "1"
        process = subprocess.Popen(
            command,
            cwd=self.folder,
            env=env,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, so a cancel kills Spark's JVM too
        )
        return wait_or_kill(
            process,
            lambda: (
                getattr(self.step, "emulator_cancel_requested", False)  # CancelSteps
                or runner.stopping.is_set()
                or cluster.state in TERMINAL
            ),
            runner.poll_seconds,
            while_running=self._live_publisher(staged, out, err),
        )

    def _live_publisher(self, staged: StagedStep, out: Any, err: Any) -> Callable[[], None]:
        """What runs at each poll while the step runs: every live_publish_seconds, the files it
        wrote reach S3 (its progress file among them) and so do its logs, as far as written."""
        runner = self.worker.runner
        last = {"at": time.monotonic(), "logs": (-1, -1), "failed": False}

        def publish() -> None:
            if time.monotonic() - last["at"] < runner.live_publish_seconds:
                return
            last["at"] = time.monotonic()
            try:
                self.worker.stager.publish_written(staged)
                if runner.log_delay_seconds <= 0:
                    out.flush()
                    err.flush()
                    sizes = (self.stdout_path.stat().st_size, self.stderr_path.stat().st_size)
                    if sizes != last["logs"]:
                        self._upload_logs()
                        last["logs"] = sizes
            except Exception as exc:  # the step goes on; its outputs are synced at its end
                if not last["failed"]:
                    err.write(f"emr-emulator: publishing while the step runs failed: {exc}\n")
                    last["failed"] = True

        return publish

    def _sync_back(self, staged: StagedStep, err: Any) -> None:
        report = self.worker.stager.sync_back(staged)
        if report.uploaded or report.deleted:
            err.write(
                f"emr-emulator: wrote {len(report.uploaded)} and deleted "
                f"{len(report.deleted)} objects in S3\n"
            )

    def _upload_logs(self) -> None:
        def lost(name: str, exc: Exception) -> None:  # e.g. no log bucket: EMR loses them too
            self.worker.say(f"{self.step.id}: could not write {name} to {self.log_dir}: {exc}")

        logs = {"stdout.gz": self.stdout_path, "stderr.gz": self.stderr_path}
        put_gzipped_logs(self.worker.s3, self.log_dir, logs, on_error=lost)

    def _failure_details(self, returncode: int | None, error: Exception | None) -> dict[str, str]:
        if error is not None:
            return {
                "Reason": type(error).__name__,
                "Message": str(error)[:1000],
                "LogFile": join_s3(self.log_dir, "stderr.gz"),
            }
        stdout = self.stdout_path.read_text(errors="replace")
        stderr = self.stderr_path.read_text(errors="replace")
        return failure_details(stdout, stderr, returncode or 1, self.log_dir)


def cluster_configurations(cluster: Cluster) -> list[dict[str, Any]]:
    """The cluster's Configurations exactly as RunJobFlow received them (moto_patches)."""
    return getattr(cluster, "emulator_configurations", None) or []


def emrfs_encryption(cluster: Cluster) -> dict[str, str]:
    """upload_file ExtraArgs from the cluster's emrfs-site classification, as EMRFS applies
    them: fs.s3.enableServerSideEncryption (+ fs.s3.serverSideEncryption.kms.keyId)."""
    properties = classification_properties(cluster_configurations(cluster), "emrfs-site")
    if str(properties.get("fs.s3.enableServerSideEncryption", "")).lower() != "true":
        return {}
    key_id = properties.get("fs.s3.serverSideEncryption.kms.keyId")
    if key_id:
        return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key_id}
    return {"ServerSideEncryption": "AES256"}


def _failing_command(message: str) -> list[str]:
    script = "import sys; sys.stderr.write(sys.argv[1] + '\\n'); sys.exit(1)"
    return [sys.executable, "-c", script, message]
