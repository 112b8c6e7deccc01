"""The step runner: drives moto's EMR clusters and steps the way EMR would, in-process.

One poll thread finds new clusters in moto's EMR backends; each cluster then gets its own worker
thread, which checks the bootstrap scripts, runs the cluster's steps one at a time in submission
order (so clusters run side by side, steps of one cluster never do), applies ActionOnFailure and
auto-terminates clusters that were not asked to stay alive.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from moto.core.utils import utcnow
from moto.emr.models import Cluster, Step, emr_backends

from localdev.emr_emulator import moto_patches
from localdev.emr_emulator.bootstrap_actions import BootstrapRunner
from localdev.emr_emulator.commands import build_command
from localdev.emr_emulator.node_config import (
    FAKE_CREDENTIALS,
    classification_properties,
    node_process_env,
    spark_defaults,
    spark_env,
)
from localdev.emr_emulator.process_groups import wait_or_kill
from localdev.emr_emulator.staging import (
    S3Stager,
    StagedStep,
    join_s3,
    put_gzipped_logs,
)

TERMINAL = moto_patches.TERMINAL_CLUSTER_STATES

# moto's backends are global to the process: when two emulators run in one process (two test
# suites), each cluster must still be driven by exactly one of them.
_claimed: set[tuple[str, str, str]] = set()
_claim_lock = threading.Lock()

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


class StepRunner:
    """Finds clusters in moto's EMR backends and runs them; `start()` / `stop()`."""

    def __init__(
        self,
        endpoint_url: str,
        work_dir: Path,
        master: str = "local[*]",
        poll_seconds: float = 0.2,
        startup_seconds: float = 1.0,
        keep_staged: bool = False,
        log: Callable[[str], None] | None = None,
        allow_any_command: bool = False,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.work_dir = work_dir
        self.master = master
        self.poll_seconds = poll_seconds
        self.startup_seconds = startup_seconds
        self.keep_staged = keep_staged
        # Off: only spark-submit steps run (see commands.build_command). Read at each step, so
        # a test may turn it on for a while on a shared emulator.
        self.allow_any_command = allow_any_command
        # AutoTerminationPolicy idle timeouts are multiplied by this (tests shrink a minute).
        self.idle_timeout_factor = 1.0
        # EMR as it often is: step logs reach S3 this long after the step ended, and a failed
        # step's FailureDetails say only "Unknown Error." (tests turn both on).
        self.log_delay_seconds = 0.0
        self.terse_failure_details = False
        self.log = log or _say
        self.stopping = threading.Event()
        # Fault injection for tests: {step name: message}. A step with that name fails with
        # exit code 1 and the message on its stderr, instead of running its command.
        self.step_faults: dict[str, str] = {}
        self._thread: threading.Thread | None = None
        self._workers: dict[tuple[str, str, str], threading.Thread] = {}

    def start(self) -> None:
        self._thread = threading.Thread(target=self._poll, name="emr-step-runner", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop polling; running steps are killed and end CANCELLED."""
        self.stopping.set()
        if self._thread:
            self._thread.join(timeout)
        for worker in list(self._workers.values()):
            worker.join(timeout)

    def s3_client(self, region: str = "us-east-1") -> Any:
        # Path-style: the endpoint is an IP address, virtual-host buckets cannot resolve.
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=region,
            config=Config(s3={"addressing_style": "path"}),
            **FAKE_CREDENTIALS,
        )

    def _poll(self) -> None:
        while not self.stopping.is_set():
            for account_id, regions in list(emr_backends.items()):
                for region, backend in list(regions.items()):
                    for cluster_id, cluster in list(backend.clusters.items()):
                        key = (account_id, region, cluster_id)
                        if (
                            not moto_patches.job_flow_recorded(cluster)
                            or cluster.state in TERMINAL
                            or not _claim(key)
                        ):
                            continue
                        worker = threading.Thread(
                            target=self._run_cluster_safely,
                            args=(cluster, region, key),
                            name=f"emr-{cluster_id}",
                            daemon=True,
                        )
                        self._workers[key] = worker
                        worker.start()
            self.stopping.wait(self.poll_seconds)

    def _run_cluster_safely(self, cluster: Cluster, region: str, key: tuple[str, str, str]) -> None:
        try:
            ClusterWorker(self, cluster, region).run()
        except Exception as exc:  # a bug here must not leave the cluster running forever
            self.log(f"emr-emulator: {cluster.id}: emulator error: {exc!r}")
            if cluster.state not in TERMINAL:
                moto_patches.end_cluster(
                    cluster, "TERMINATED_WITH_ERRORS", "INTERNAL_ERROR", f"Emulator error: {exc}"
                )
        finally:
            with _claim_lock:
                _claimed.discard(key)  # a cluster left alive by a stopped runner may be adopted


class ClusterWorker:
    """The life of one cluster: bootstrap check, then its steps in order."""

    def __init__(self, runner: StepRunner, cluster: Cluster, region: str) -> None:
        self.runner = runner
        self.cluster = cluster
        self.s3 = runner.s3_client(region)
        # EMRFS encrypts the jobs' writes when emrfs-site asks for it; so does the emulator.
        self.stager = S3Stager(self.s3, emrfs_encryption(cluster))

    def say(self, text: str) -> None:
        self.runner.log(f"emr-emulator: {self.cluster.id} {text}")

    def run(self) -> None:
        # A cluster adopted from a stopped emulator has started already.
        if self.cluster.state == "STARTING" and not self._start():
            return
        self._run_steps()

    def _start(self) -> bool:
        """STARTING -> BOOTSTRAPPING -> WAITING, or TERMINATED_WITH_ERRORS; False when ended."""
        cluster = self.cluster
        self.say(f"{cluster.name!r}: STARTING")
        if self.runner.stopping.wait(self.runner.startup_seconds) or self._ended():
            return False
        self._set_state("BOOTSTRAPPING")
        self.say("BOOTSTRAPPING")
        failure = BootstrapRunner(
            cluster,
            self.s3,
            self.runner.work_dir / cluster.id,
            self.runner.endpoint_url,
            self.runner.allow_any_command,
            stopped=lambda: self.runner.stopping.is_set() or cluster.state in TERMINAL,
        ).run()
        if self._ended():
            return False
        if failure is not None:
            moto_patches.end_cluster(
                cluster, "TERMINATED_WITH_ERRORS", "BOOTSTRAP_FAILURE", failure.message
            )
            self._cancel_pending()
            self.say(f"TERMINATED_WITH_ERRORS: {failure.message}")
            return False
        moto_patches.mark_ready(cluster)
        self._set_state("WAITING")
        self.say("WAITING")
        return True

    def _run_steps(self) -> None:
        cluster = self.cluster
        idle_since = time.monotonic()
        while not self.runner.stopping.is_set():
            if self._ended():
                return
            step = next((s for s in cluster.steps if s.state == "PENDING"), None)
            if step is None:
                if not cluster.keep_job_flow_alive_when_no_steps:
                    moto_patches.end_cluster(
                        cluster, "TERMINATED", "ALL_STEPS_COMPLETED", "Steps completed"
                    )
                    self.say("TERMINATED: steps completed")
                    return
                if self._idle_too_long(time.monotonic() - idle_since):
                    return
                self._set_state("WAITING")
                self.runner.stopping.wait(self.runner.poll_seconds)
                continue
            self._set_state("RUNNING")
            StepExecution(self, step).run()
            idle_since = time.monotonic()
            if step.state == "FAILED":
                self._on_failure(step)

    def _idle_too_long(self, idle_seconds: float) -> bool:
        """End the cluster once idle for its AutoTerminationPolicy's timeout, as EMR does."""
        timeout = getattr(self.cluster, "emulator_idle_timeout", None)
        if not timeout or idle_seconds < timeout * self.runner.idle_timeout_factor:
            return False
        moto_patches.end_cluster(
            self.cluster,
            "TERMINATED",
            "ALL_STEPS_COMPLETED",
            f"Cluster was idle for {timeout} seconds and was terminated by its auto-termination "
            f"policy",
        )
        self.say(f"TERMINATED: idle for {idle_seconds:.1f}s (AutoTerminationPolicy {timeout} s)")
        return True

    def _set_state(self, state: str) -> None:
        # moto's TerminateJobFlows may have ended the cluster meanwhile: never revive it.
        if self.cluster.state not in TERMINAL:
            self.cluster.state = state

    def _ended(self) -> bool:
        if self.cluster.state in TERMINAL:
            self._cancel_pending()
            if self.cluster.state == "TERMINATING":  # asked to terminate: nothing runs now
                moto_patches.finish_termination(self.cluster)
            self.say(f"{self.cluster.state}")
            return True
        return False

    def _cancel_pending(self, after: Step | None = None) -> None:
        steps = self.cluster.steps
        start = steps.index(after) + 1 if after is not None else 0
        for step in steps[start:]:
            if step.state == "PENDING":
                step.state = "CANCELLED"
                step.end_date_time = utcnow()

    def _on_failure(self, step: Step) -> None:
        action = step.action_on_failure
        if action in ("TERMINATE_CLUSTER", "TERMINATE_JOB_FLOW"):
            if self.cluster.termination_protected:
                action = "CANCEL_AND_WAIT"  # as on EMR: a protected cluster stays up
            else:
                self._cancel_pending(after=step)
                moto_patches.end_cluster(
                    self.cluster,
                    "TERMINATED_WITH_ERRORS",
                    "STEP_FAILURE",
                    "Shut down as step failed",
                )
                self.say("TERMINATED_WITH_ERRORS: shut down as step failed")
                return
        if action == "CANCEL_AND_WAIT":
            self._cancel_pending(after=step)


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
                staged = worker.stager.stage(list(step.args), stage_dir)
                seconds["staging"] = time.monotonic() - clock
                clock = time.monotonic()
                runner = worker.runner
                command = build_command(
                    step.jar,
                    staged.args,
                    runner.master,
                    runner.allow_any_command,
                    staged,
                    defaults,
                )
                fault = runner.step_faults.get(step.name)
                if fault is not None:
                    command = _failing_command(fault)
                returncode, cancelled = self._execute(command, out, err, env)
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
        self, command: list[str], out: Any, err: Any, node_env: dict[str, str]
    ) -> tuple[int, bool]:
        runner, cluster = self.worker.runner, self.worker.cluster
        env = node_process_env(runner.endpoint_url, node_env)  # spark-env's exports
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
        )

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


def _claim(key: tuple[str, str, str]) -> bool:
    with _claim_lock:
        if key in _claimed:
            return False
        _claimed.add(key)
        return True


def _say(text: str) -> None:
    print(text, flush=True)  # flushed: the emulator's output is often a pipe (docker logs)
