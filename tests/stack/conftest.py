"""One native Airflow stack (what `make airflow` starts) for the tests of this folder.

The stack runs as `python -m localdev.airflow_stack`, the command `make airflow` runs, in a
temporary state folder on free ports, so a user's own stack can run beside it. It is stopped the
way a user stops it, with SIGINT (Ctrl-C), and the teardown checks that every process it started
is gone; whatever is left after a failure is killed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from localdev.airflow_stack.config import StackConfig, StackPorts
from localdev.airflow_stack.ports import free_port
from localdev.airflow_stack.postgres import PostgresError, find_server_bin
from localdev.airflow_stack.processes import recorded_pids
from localdev.airflow_stack.stack import READY_LINE
from localdev.dag_run import FAKE_CREDENTIALS, s3_client
from localdev.local_spark import REPO_ROOT
from tests.stack.airflow_api import AirflowApi

SAMPLE_IMAGES = 24  # enough for every label, few enough for quick steps
START_TIMEOUT = 420
STOP_TIMEOUT = 120
# make test sets this: there, a missing PostgreSQL or Chromium is an error, not a skip.
REQUIRED = os.environ.get("FRUIT_TESTS_REQUIRE_STACK") == "1"
ARTIFACTS = REPO_ROOT / "out" / "test-artifacts" / "airflow-stack"


def missing(what: str) -> None:
    if REQUIRED:
        pytest.fail(f"{what} (FRUIT_TESTS_REQUIRE_STACK=1: `make test` installs it)")
    pytest.skip(what)


def chromium_path() -> str:
    path = os.environ.get("FRUIT_CHROMIUM") or shutil.which("chromium")
    if not path:
        missing("Chromium is not installed (Debian: apt-get install chromium)")
    return path


SERVICES = {"postgres", "emr-emulator", "api-server", "scheduler", "dag-processor", "triggerer"}


def _read_lines(stream, lines: list[str], ready: threading.Event) -> None:
    for line in stream:
        lines.append(line)
        if READY_LINE in line:
            ready.set()
    ready.set()  # the launcher ended: stop waiting


def _process_tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


class LaunchedStack:
    """`python -m localdev.airflow_stack` (make airflow's command) in `env`, started and stopped
    as a user does: wait for the ready line; Ctrl-C."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.config = StackConfig.from_env(env, images=SAMPLE_IMAGES)
        # The admin's password is the stack's random one, read once the stack has made it.
        self.api = AirflowApi(self.config.api_url, "admin", "")
        self.launcher: subprocess.Popen | None = None
        self.output: list[str] = []
        self.outputs: list[list[str]] = []  # every start's, in order
        self.started: dict[str, int] = {}

    @property
    def s3(self):
        return s3_client(self.config.emulator_key_file)

    def start(self) -> None:
        self.output = []
        self.outputs.append(self.output)
        self.launcher = subprocess.Popen(
            [sys.executable, "-m", "localdev.airflow_stack", "--images", str(SAMPLE_IMAGES)],
            cwd=REPO_ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        ready = threading.Event()
        reader = threading.Thread(
            target=_read_lines, args=(self.launcher.stdout, self.output, ready), daemon=True
        )
        reader.start()
        ready.wait(START_TIMEOUT)
        self.started = recorded_pids(self.config.pids_file)
        up = self.launcher.poll() is None and any(READY_LINE in line for line in self.output)
        assert up, "the stack did not start:\n" + "".join(self.output[-60:])
        self.api.password = (self.config.secrets_dir / "admin-password").read_text().strip()

    def stop(self) -> None:
        """Ctrl-C the launcher; then check (and enforce) that nothing it started is left."""
        launcher, self.launcher = self.launcher, None
        if launcher is None:
            return
        tree = _process_tree(launcher.pid)
        for pid in self.started.values():
            tree += _process_tree(pid)
        launcher.send_signal(signal.SIGINT)
        try:
            code = launcher.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            code = None
        _, alive = psutil.wait_procs(tree, timeout=10)
        for process in alive:
            process.kill()
        tail = "".join(self.output[-40:])
        assert code == 0, f"the launcher ended with {code} after Ctrl-C:\n{tail}"
        assert not alive, f"left running after Ctrl-C: {[p.pid for p in alive]}"
        assert set(self.started) == SERVICES
        assert not self.config.pids_file.exists()


@pytest.fixture(scope="session")
def airflow_stack() -> Iterator[LaunchedStack]:
    try:
        find_server_bin()
    except PostgresError as error:
        missing(str(error))
    # Directly under the temporary folder (pytest's own is closed to other users): the state
    # folder must be reachable by the unprivileged user PostgreSQL runs as where we are root.
    state = Path(tempfile.mkdtemp(prefix="fruit-airflow-stack-"))
    state.chmod(0o755)
    ports = {f"FRUIT_LOCAL_{name.upper()}": str(free_port()) for name in StackPorts().all()}
    stack = LaunchedStack({**os.environ, **ports, "FRUIT_LOCAL_STATE_DIR": str(state)})
    try:
        stack.start()
        with pytest.MonkeyPatch.context() as patch:
            # The tests' own AWS calls go to the emulator, with its fake keys.
            for name, value in FAKE_CREDENTIALS.items():
                patch.setenv(name, value)
            yield stack
    finally:
        try:
            stack.stop()
        finally:
            shutil.rmtree(state, ignore_errors=True)
