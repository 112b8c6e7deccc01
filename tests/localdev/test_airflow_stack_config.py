"""`make airflow`'s set-up decisions, without starting the stack: places, ports, refusals, the
addresses its services listen on."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest

from localdev.airflow_stack.config import DEFAULT_STATE_DIR, StackConfig, StackPorts
from localdev.airflow_stack.ports import PortInUseError, check_ports_free, free_port
from localdev.airflow_stack.postgres import LocalPostgres, PostgresError, find_server_bin
from localdev.airflow_stack.processes import Supervisor, running_launcher, wait_until
from localdev.airflow_stack.secrets import load_or_create
from localdev.airflow_stack.stack import airflow_commands, emulator_command
from localdev.local_spark import REPO_ROOT
from localdev.seed_images import cached_images


def test_places_default_to_the_checkout_and_move_with_fruit_local_variables(tmp_path):
    default = StackConfig.from_env({})
    assert default.state_dir == DEFAULT_STATE_DIR
    assert default.ports == StackPorts()
    moved = StackConfig.from_env(
        {"FRUIT_LOCAL_STATE_DIR": str(tmp_path), "FRUIT_LOCAL_API_PORT": "8081"}
    )
    assert moved.state_dir == tmp_path
    assert moved.ports.api_port == 8081
    assert moved.api_url == "http://127.0.0.1:8081"
    env = moved.airflow_env()
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8081/execution/"
    assert env["AIRFLOW_HOME"] == str(tmp_path / "airflow-home")


def test_a_port_that_is_not_a_number_is_refused_by_name():
    with pytest.raises(ValueError, match="FRUIT_LOCAL_DB_PORT='fifteen'"):
        StackPorts.from_env({"FRUIT_LOCAL_DB_PORT": "fifteen"})


def test_a_taken_port_is_named_with_the_variable_that_moves_it():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"127.0.0.1:{port} .*FRUIT_LOCAL_API_PORT"):
            check_ports_free({"db_port": free_port(), "api_port": port})
    check_ports_free({"api_port": port})  # free again


def test_missing_postgres_says_how_to_install_it(tmp_path):
    with pytest.raises(PostgresError, match="apt-get install postgresql"):
        find_server_bin(
            {"PATH": str(tmp_path), "FRUIT_LOCAL_PG_BIN": str(tmp_path)},
            debian_bins=str(tmp_path / "postgresql" / "*" / "bin"),
        )


def test_sample_images_are_generated_once(tmp_path):
    images = cached_images(tmp_path, 6)
    files = sorted(p for p in images.rglob("*") if p.is_file())
    made = [p.stat().st_mtime_ns for p in files]
    assert len(files) >= 6
    assert cached_images(tmp_path, 6) == images
    assert [p.stat().st_mtime_ns for p in files] == made
    cached_images(tmp_path, 8)  # another count: made again
    assert len([p for p in images.rglob("*") if p.is_file()]) == len(files) + 2


def test_the_supervisor_stops_a_service_and_its_children(tmp_path):
    supervisor = Supervisor(tmp_path / "logs", tmp_path / "pids.json")
    # A service whose child ignores SIGTERM: it must still be gone after the grace period.
    script = (
        "import signal, subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', "
        "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'])\n"
        "time.sleep(60)\n"
    )
    service = supervisor.start("stubborn", [sys.executable, "-c", script], env={})
    assert running_launcher(tmp_path / "pids.json") is None  # it is us
    wait_until(lambda: psutil.Process(service.process.pid).children(), 10, 0.1, "its child")
    tree = [psutil.Process(service.process.pid), *psutil.Process(service.process.pid).children()]
    assert len(tree) == 2
    supervisor.stop_all(grace_seconds=1)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in tree)
    assert not (tmp_path / "pids.json").exists()


def test_a_second_launcher_on_the_same_state_is_refused(tmp_path):
    pids = tmp_path / "pids.json"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        pids.write_text(f'{{"launcher": {other.pid}, "services": {{}}}}')
        assert running_launcher(pids) == other.pid
    finally:
        other.send_signal(signal.SIGTERM)
        other.wait()
    assert running_launcher(pids) is None  # a stale file (its launcher is gone) is ignored


def test_a_refused_second_launcher_leaves_the_first_ones_record(tmp_path):
    """Refused because the stack runs already: it stops nothing and keeps the pids file."""
    from localdev.airflow_stack.stack import run_stack

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        config = StackConfig.from_env({"FRUIT_LOCAL_STATE_DIR": str(tmp_path)})
        config.pids_file.write_text(f'{{"launcher": {sleeper.pid}, "services": {{}}}}')
        assert run_stack(config) == 1
        assert config.pids_file.exists()
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_cluster_from_before_the_stacks_secrets_is_refused_and_kept(tmp_path, capsys):
    """An earlier make airflow's PostgreSQL cluster (superuser airflow/airflow, no secrets
    folder) is not started with its known password: the launcher stops before any service,
    names the command that moves it aside, and leaves the cluster as it was."""
    from localdev.airflow_stack.stack import run_stack

    try:
        find_server_bin()
    except PostgresError:
        pytest.skip("PostgreSQL is not installed")
    ports = {f"FRUIT_LOCAL_{name.upper()}": str(free_port()) for name in StackPorts().all()}
    config = StackConfig.from_env({**ports, "FRUIT_LOCAL_STATE_DIR": str(tmp_path)})
    old = config.postgres_dir / "data"
    old.mkdir(parents=True)
    (old / "PG_VERSION").write_text("15\n")
    for start in ("first", "second"):  # the second finds the secrets made by the first
        assert run_stack(config) == 1, start
        said = capsys.readouterr().out
        assert "made by an earlier make airflow with a known superuser password" in said
        assert f"mv {config.postgres_dir} {config.postgres_dir}.known-password" in said
        assert (old / "PG_VERSION").read_text() == "15\n"
        assert not config.pids_file.exists()


def _option(command: list[str], name: str) -> str:
    assert name in command, f"{name} missing from {command}"
    return command[command.index(name) + 1]


def test_every_service_of_the_native_stack_listens_on_loopback_only(tmp_path):
    """Each address setting of each service is 127.0.0.1; what has no address setting (Airflow's
    log servers, which bind every interface) does not run."""
    config = StackConfig.from_env({"FRUIT_LOCAL_STATE_DIR": str(tmp_path)})
    env = config.airflow_env()
    commands = airflow_commands(config)
    assert set(commands) == {"api-server", "scheduler", "dag-processor", "triggerer"}
    assert _option(commands["api-server"], "--host") == "127.0.0.1"
    assert env["AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST"] == "127.0.0.1"
    for name in ("scheduler", "triggerer"):
        assert "--skip-serve-logs" in commands[name], name
    assert _option(emulator_command(config), "--host") == "127.0.0.1"
    assert "--allow-any-command" not in emulator_command(config)
    secrets, _ = load_or_create(config.secrets_dir, "127.0.0.1", config.ports.db_port)
    postgres = LocalPostgres(config.postgres_dir, config.ports.db_port, secrets, Path("/unused"))
    server = postgres.server_command()
    assert _option(server, "-h") == "127.0.0.1"
    database = (config.secrets_dir / "sql-alchemy-conn").read_text().strip()
    assert urlsplit(database).hostname == "127.0.0.1"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD"].endswith(
        str(config.secrets_dir / "sql-alchemy-conn")
    )
    assert "unix_socket_directories=" in server  # TCP on loopback only, no socket file


def _listening(pid: int) -> list[tuple[str, int]]:
    """The addresses a process and its children listen on (psutil: what the kernel says)."""
    process = psutil.Process(pid)
    found = []
    for each in [process, *process.children(recursive=True)]:
        for connection in each.net_connections(kind="inet"):
            if connection.status == psutil.CONN_LISTEN:
                found.append((connection.laddr.ip, connection.laddr.port))
    return found


def test_the_scheduler_health_server_listens_on_loopback_only(tmp_path):
    """Airflow's own health server (what `airflow scheduler` starts with enable_health_check),
    with the stack's environment: measured, it listens on 127.0.0.1 only (Airflow's default is
    0.0.0.0, every interface)."""
    port = free_port()
    config = StackConfig.from_env(
        {"FRUIT_LOCAL_STATE_DIR": str(tmp_path), "FRUIT_LOCAL_SCHEDULER_HEALTH_PORT": str(port)}
    )
    config.airflow_home.mkdir(parents=True)
    load_or_create(config.secrets_dir, "127.0.0.1", config.ports.db_port)
    env = config.process_env(config.airflow_env())
    code = "from airflow.utils.scheduler_health import serve_health_check; serve_health_check()"
    server = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=REPO_ROOT)

    def listening_or_exited() -> bool:
        return bool(_listening(server.pid)) or server.poll() is not None

    try:
        wait_until(listening_or_exited, 60, interval=0.2, what="the health server")
        assert server.poll() is None, "the health server exited"
        assert _listening(server.pid) == [("127.0.0.1", port)]
    finally:
        server.terminate()
        server.wait(timeout=30)
