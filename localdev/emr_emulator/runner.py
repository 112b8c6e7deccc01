"""The step runner: drives moto's EMR clusters and steps the way EMR would, in-process.

One poll thread finds new clusters in moto's EMR backends; each cluster then gets its own worker
thread, which checks the bootstrap scripts, runs the cluster's steps one at a time in submission
order (so clusters run side by side, steps of one cluster never do), applies ActionOnFailure and
auto-terminates clusters that were not asked to stay alive.
"""

from __future__ import annotations

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
from localdev.emr_emulator.credentials import Credentials
from localdev.emr_emulator.staging import S3Stager
from localdev.emr_emulator.step_execution import StepExecution, emrfs_encryption

TERMINAL = moto_patches.TERMINAL_CLUSTER_STATES

# moto's backends are global to the process: when two emulators run in one process (two test
# suites), each cluster must still be driven by exactly one of them.
_claimed: set[tuple[str, str, str]] = set()
_claim_lock = threading.Lock()


class StepRunner:
    """Finds clusters in moto's EMR backends and runs them; `start()` / `stop()`."""

    def __init__(
        self,
        endpoint_url: str,
        work_dir: Path,
        node_credentials: Credentials,
        master: str = "local[*]",
        poll_seconds: float = 0.2,
        startup_seconds: float = 1.0,
        keep_staged: bool = False,
        log: Callable[[str], None] | None = None,
        allow_any_command: bool = False,
    ) -> None:
        self.endpoint_url = endpoint_url
        # The nodes' key: the runner's own S3 calls (EMRFS) and the steps' processes sign
        # with it, as the instance profile's credentials sign them on EMR.
        self.node_credentials = node_credentials
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
        # While a step runs: how often what it wrote reaches S3, and its logs LogUri (EMR
        # uploads step logs every few minutes; with log_delay_seconds, only after the step).
        self.live_publish_seconds = 2.0
        self.log = log or _say
        self.stopping = threading.Event()
        # Fault injection for tests: {step name: message}. A step with that name fails with
        # exit code 1 and the message on its stderr, instead of running its command.
        self.step_faults: dict[str, str] = {}
        # The world moving under a run, for tests: {step name: callable}, called once the step
        # is RUNNING, before its command starts (a catalogue that changes while featurize runs).
        self.on_step_start: dict[str, Callable[[], None]] = {}
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
            **self.node_credentials.boto3_kwargs(),
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
            self.runner.node_credentials,
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


def _claim(key: tuple[str, str, str]) -> bool:
    with _claim_lock:
        if key in _claimed:
            return False
        _claimed.add(key)
        return True


def _say(text: str) -> None:
    print(text, flush=True)  # flushed: the emulator's output is often a pipe (docker logs)
