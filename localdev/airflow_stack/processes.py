"""The stack's child processes: started in their own sessions, stopped together, and recorded.

Each service runs in a session of its own, so a Ctrl-C in the terminal reaches only the launcher,
which then stops the services in reverse order: SIGTERM (SIGINT for PostgreSQL: its fast
shutdown) to the service's process group, SIGKILL to whatever of its process tree is left after
a grace period. Nothing else is signalled. The pids are written to a file, so that a second
launcher can tell the stack is already running, and a test can check that nothing is left.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

_PR_SET_PDEATHSIG = 1


def _die_with_launcher() -> None:
    """In the child, before exec: get SIGTERM if the launcher dies without stopping us."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Service:
    name: str
    process: subprocess.Popen
    log_file: Path
    stop_signal: int = signal.SIGTERM

    def exited(self) -> int | None:
        return self.process.poll()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Supervisor:
    """Starts services, remembers them, and stops them all (newest first)."""

    logs_dir: Path
    pids_file: Path
    services: list[Service] = field(default_factory=list)

    def start(
        self,
        name: str,
        command: Sequence[str],
        env: Mapping[str, str],
        stop_signal: int = signal.SIGTERM,
        **popen_options: object,
    ) -> Service:
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        log_file = self.logs_dir / f"{name}.log"
        with open(log_file, "ab") as log:
            process = subprocess.Popen(
                list(command),
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_launcher,
                **popen_options,
            )
        service = Service(name, process, log_file, stop_signal)
        self.services.append(service)
        self._write_pids()
        return service

    def first_exited(self) -> Service | None:
        return next((s for s in self.services if s.exited() is not None), None)

    def stop_all(self, grace_seconds: float = 30.0) -> None:
        """Stop every service, newest first; each gets `grace_seconds` before SIGKILL."""
        if not self.services:
            return  # nothing started: the pids file (if any) is another launcher's
        for service in reversed(self.services):
            stop_process_tree(service.process.pid, service.stop_signal, grace_seconds)
            service.process.wait()
        self.services.clear()
        self.pids_file.unlink(missing_ok=True)

    def _write_pids(self) -> None:
        pids = {service.name: service.process.pid for service in self.services}
        self.pids_file.write_text(json.dumps({"launcher": os.getpid(), "services": pids}))


def stop_process_tree(pid: int, stop_signal: int, grace_seconds: float) -> None:
    """Signal the process group led by `pid`; SIGKILL its tree (pid included) after the grace."""
    try:
        tree = [psutil.Process(pid)]
        tree += tree[0].children(recursive=True)
    except psutil.NoSuchProcess:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, stop_signal)
    _, alive = psutil.wait_procs(tree, timeout=grace_seconds)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    # A child that left the group (its own session) but is still running is part of the tree too.
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(alive, timeout=10)


def running_launcher(pids_file: Path) -> int | None:
    """The pid of a live launcher recorded in `pids_file`, if any."""
    try:
        recorded = json.loads(pids_file.read_text())
    except (OSError, ValueError):
        return None
    pid = recorded.get("launcher")
    return pid if pid and psutil.pid_exists(pid) and pid != os.getpid() else None


def recorded_pids(pids_file: Path) -> dict[str, int]:
    """{service: pid} as last written (empty if the file is gone: everything was stopped)."""
    try:
        return json.loads(pids_file.read_text())["services"]
    except (OSError, ValueError, KeyError):
        return {}


def wait_until(check, timeout: float, interval: float = 1.0, what: str = ""):
    """Call `check()` until it returns something true, and return that; TimeoutError naming
    `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout:.0f} s")
        time.sleep(interval)
    return value
