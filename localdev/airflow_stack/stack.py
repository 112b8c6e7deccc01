"""The services of docker-compose.yaml, started natively from the project's virtual environment.

In compose's order: the stack's random passwords (compose: stack-secrets), PostgreSQL, the EMR
emulator, the sample images (compose: seed-images), the
database migration and the login (compose: airflow-init), then Airflow's api-server, scheduler,
dag-processor and triggerer. `run_stack` starts them, says where the UI is, and stops every one
of them when interrupted or when one of them dies.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping

from localdev.airflow_stack.config import StackConfig
from localdev.airflow_stack.ports import PortInUseError, check_ports_free
from localdev.airflow_stack.postgres import LocalPostgres, PostgresError, find_server_bin
from localdev.airflow_stack.processes import Supervisor, running_launcher, wait_until
from localdev.airflow_stack.secrets import StackSecrets, load_or_create
from localdev.emr_emulator.sigv4 import HEALTH_PATH
from localdev.local_spark import REPO_ROOT

AIRFLOW = [sys.executable, "-m", "airflow"]
# Every service listens on 127.0.0.1 only (the api-server: --host; the scheduler's health check:
# airflow.env; PostgreSQL and the emulator: their -h/--host). The scheduler's and triggerer's
# log servers have no address setting and listen on every interface, so here they do not run:
# all services share one AIRFLOW_HOME, and the api-server reads the task and trigger logs from
# its log folder (compose keeps them: its services are separate hosts, none publishes them).
AIRFLOW_SERVICES = {
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}
LOOPBACK = "127.0.0.1"
# /api/v2/monitor/health names these components; the stack is up when all are healthy.
HEALTH_COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")
READY_LINE = "airflow stack ready"  # tests wait for this line


class StackError(RuntimeError):
    """The stack could not start; the message says why (and which log to read)."""


def _get_json(url: str, timeout: float = 5.0) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.load(response)
    except (OSError, ValueError, urllib.error.URLError):
        return None


def _responds(url: str, timeout: float = 5.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except (OSError, urllib.error.URLError):
        return False


def healthy_components(api_url: str) -> set[str]:
    """The components /api/v2/monitor/health reports healthy (empty while it does not answer)."""
    health = _get_json(f"{api_url}/api/v2/monitor/health") or {}
    return {name for name, part in health.items() if (part or {}).get("status") == "healthy"}


def _run_once(command: list[str], env: Mapping[str, str], what: str) -> str:
    result = subprocess.run(
        command, env=dict(env), cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise StackError(f"{what} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    return result.stdout


def emulator_command(config: StackConfig) -> list[str]:
    """The emulator's command line: on loopback, answering to loopback names only."""
    command = [sys.executable, "-m", "localdev.emr_emulator", "--host", LOOPBACK]
    command += ["--port", str(config.ports.emulator_port)]
    command += ["--key-file", str(config.emulator_key_file)]
    return command + ["--work-dir", str(config.emulator_dir)]


def airflow_commands(config: StackConfig) -> dict[str, list[str]]:
    """{service: command line} of the stack's Airflow services, in start order."""
    api = ["api-server", "--port", str(config.ports.api_port), "--host", LOOPBACK]
    commands = {"api-server": [*AIRFLOW, *api]}
    commands.update({name: [*AIRFLOW, *args] for name, args in AIRFLOW_SERVICES.items()})
    return commands


class AirflowStack:
    """Start and stop the stack described by `config`; `say` reports progress."""

    def __init__(self, config: StackConfig, say: Callable[[str], None] = print) -> None:
        self.config = config
        self.say = say
        self.supervisor = Supervisor(config.logs_dir, config.pids_file)
        self.airflow_env = config.process_env(config.airflow_env())
        self.secrets: StackSecrets | None = None
        self.secrets_made_now = False

    def _watch(self, name: str) -> None:
        """Fail fast, with the log's tail, if a service exited while we were waiting for it."""
        exited = self.supervisor.first_exited()
        if exited is not None:
            raise StackError(
                f"{exited.name} exited with code {exited.exited()} while starting {name}; "
                f"{exited.log_file} ends with:\n{exited.log_tail()}"
            )

    def _wait(self, name: str, check: Callable[[], bool], timeout: float) -> None:
        def ready() -> bool:
            self._watch(name)
            return check()

        try:
            wait_until(ready, timeout, interval=0.5, what=name)
        except TimeoutError as error:
            raise StackError(f"{error}; see {self.config.logs_dir}/{name}.log") from error

    def start(self) -> None:
        config = self.config
        config.state_dir.mkdir(parents=True, exist_ok=True)
        other = running_launcher(config.pids_file)
        if other is not None:
            raise StackError(
                f"this stack is already running (launcher pid {other}, state {config.state_dir}):"
                " stop it with Ctrl-C in its terminal, or use another FRUIT_LOCAL_STATE_DIR"
            )
        try:
            check_ports_free(config.ports.all())
        except PortInUseError as error:
            raise StackError(str(error)) from error
        self._make_private()
        self.secrets, self.secrets_made_now = load_or_create(
            config.secrets_dir, "127.0.0.1", config.ports.db_port
        )
        self._start_postgres()
        self._start_emulator()
        self._seed_images()
        self._init_airflow()
        self._start_airflow()

    def _make_private(self) -> None:
        """What holds a secret is this user's alone: airflow.cfg (the API's JWT secret), the
        logs, the emulator's folder (its key file). The state folder itself stays open to
        traversal: where we are root, PostgreSQL's user must reach its own folder in it."""
        for folder in (self.config.airflow_home, self.config.logs_dir, self.config.emulator_dir):
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o700)

    def _start_postgres(self) -> None:
        assert self.secrets is not None
        postgres = LocalPostgres(
            self.config.postgres_dir, self.config.ports.db_port, self.secrets, find_server_bin()
        )
        self.say(f"postgres: cluster in {postgres.data_dir}")
        postgres.prepare()
        self.supervisor.start(
            "postgres",
            postgres.server_command(),
            self.config.process_env({}),
            stop_signal=signal.SIGINT,  # PostgreSQL's fast shutdown
            **postgres.popen_options(),
        )
        postgres.wait_and_create_database(alive=lambda: self._watch("postgres"))

    def _start_emulator(self) -> None:
        config = self.config
        self.say(f"emr-emulator: {config.emulator_url}")
        config.emulator_dir.mkdir(parents=True, exist_ok=True)
        command = emulator_command(config)
        self.supervisor.start("emr-emulator", command, self.airflow_env, cwd=REPO_ROOT)
        self._wait(
            "emr-emulator",
            lambda: _responds(config.emulator_url + HEALTH_PATH),
            timeout=120,
        )

    def _seed_images(self) -> None:
        command = [sys.executable, "-m", "localdev.seed_images"]
        command += ["--images", str(self.config.images)]
        command += ["--cache-dir", str(self.config.images_cache)]
        self.say(_run_once(command, self.airflow_env, "seed-images").strip())

    def _init_airflow(self) -> None:
        self.config.airflow_home.mkdir(parents=True, exist_ok=True)
        self.say("airflow: db migrate")
        _run_once([*AIRFLOW, "db", "migrate"], self.airflow_env, "airflow db migrate")
        script = str(REPO_ROOT / "localdev" / "write_admin_passwords.py")
        _run_once([sys.executable, script], self.airflow_env, "writing the UI login")

    def _start_airflow(self) -> None:
        config = self.config
        for name, command in airflow_commands(config).items():
            self.supervisor.start(name, command, self.airflow_env, cwd=REPO_ROOT)
        self.say("airflow: waiting for the api-server, scheduler, dag-processor and triggerer")
        self._wait(
            "api-server",
            lambda: set(HEALTH_COMPONENTS) <= healthy_components(config.api_url),
            timeout=300,
        )

    def stop(self) -> None:
        self.supervisor.stop_all()

    def login_line(self) -> str:
        """The UI's login: the password itself on the first start only, then where it is."""
        where = self.config.secrets_dir / "admin-password"
        if self.secrets is not None and self.secrets_made_now:
            return f"user admin, password {self.secrets.admin_password} (kept in {where})"
        return f"user admin, password in {where}"


class StartInterruptedError(Exception):
    """Ctrl-C (or SIGTERM) while the stack was starting."""


def run_stack(config: StackConfig) -> int:
    """Start the stack, serve until SIGINT/SIGTERM or until a service dies, then stop it all."""
    stopping = threading.Event()
    starting = True

    def on_signal(signum: int, _frame: object) -> None:
        stopping.set()
        if starting:
            raise StartInterruptedError(signal.Signals(signum).name)

    previous = {
        signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)
    }

    def say(message: str) -> None:
        print(f"[make airflow] {message}", flush=True)

    stack = AirflowStack(config, say)
    code = 0
    try:
        stack.start()
        starting = False
        say(
            f"{READY_LINE}: open {config.api_url} and log in ({stack.login_line()}).\n"
            f"  The DAG fruit_features_emr starts paused: unpause it, or press Trigger.\n"
            f"  Emulator (S3, EMR): {config.emulator_url}   logs: {config.logs_dir}\n"
            f"  Its access key (AWS CLI: AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE): "
            f"{config.emulator_key_file}\n"
            "  Ctrl-C stops everything this started."
        )
        while not stopping.wait(1.0):
            exited = stack.supervisor.first_exited()
            if exited is not None:
                say(f"{exited.name} exited with code {exited.exited()}:\n{exited.log_tail()}")
                code = 1
                break
    except (StackError, PostgresError) as error:
        say(f"failed: {error}")
        code = 1
    except StartInterruptedError as signal_name:
        say(f"interrupted ({signal_name}) while starting")
        code = 130
    finally:
        starting = False
        say("stopping every service this started")
        stack.stop()
        say("stopped")
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return code
