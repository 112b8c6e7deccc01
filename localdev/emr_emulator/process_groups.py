"""Stopping a command the emulator started, with everything it started (Spark's JVM too)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable


def kill_group(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL, the process group of `process` (started with a new session)."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def wait_or_kill(
    process: subprocess.Popen,
    should_stop: Callable[[], bool],
    poll_seconds: float,
    while_running: Callable[[], None] | None = None,
) -> tuple[int, bool]:
    """Wait for `process`; kill its group as soon as `should_stop()`. (returncode, killed).
    `while_running` is called at every poll while the process runs."""
    while True:
        try:
            return process.wait(timeout=poll_seconds), False
        except subprocess.TimeoutExpired:
            if while_running is not None:
                while_running()
            if should_stop():
                kill_group(process)
                return process.returncode, True
