"""What localdev/airflow.env's values point at in docker-compose.yaml: the DAG's paths (the
checkout, mounted read-only), the emulator (the AWS connection and the host names it answers to),
the api-server, PostgreSQL, the ports of the health checks, the images seeded (as `make airflow`
seeds them) and the admin's login, whose password the init script writes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from localdev.dag_run import FAKE_CREDENTIALS, aws_connection
from localdev.emr_emulator.request_guard import LOOPBACK_HOSTS, allowed_host_names
from localdev.seed_images import DEFAULT_IMAGES
from tests.localdev.compose_files import (
    AIRFLOW_SERVICES,
    API_SERVICE,
    COMPOSE_DOC,
    EMULATOR_SERVICE,
    REPO,
    bind_mounts,
    option,
)


def healthcheck_text(service: dict) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else test


def test_dag_paths_are_the_checkout_mounted_read_only(services, compose_env, native_env):
    """The DAG folder and what the DAG uploads are mounted in every Airflow container, and the
    container path maps to the same checkout path that `make airflow` uses."""
    path_keys = [
        "AIRFLOW__CORE__DAGS_FOLDER",
        "FRUIT_EMR_JOBS_DIR",
        "FRUIT_EMR_BOOTSTRAP_DIR",
        "FRUIT_EMR_CONSTRAINTS_FILE",
    ]
    for name in AIRFLOW_SERVICES:
        mounts = bind_mounts(services[name])
        for key in path_keys:
            container_path = compose_env[key]
            assert container_path in mounts, f"{name}: {key}={container_path} is not mounted"
            source, read_only = mounts[container_path]
            assert read_only, f"{name}: {container_path} must be read-only"
            assert (REPO / source).resolve() == Path(native_env[key]), key


def test_aws_connection_points_at_the_emulator(services, compose_env):
    connection = json.loads(compose_env["AIRFLOW_CONN_AWS_DEFAULT"])
    endpoint = connection["extra"]["endpoint_url"]
    url = urlsplit(endpoint)
    command = services[EMULATOR_SERVICE]["command"]
    assert url.scheme == "http"
    assert url.hostname == EMULATOR_SERVICE
    assert url.port == int(option(command, "--port"))
    assert option(command, "--host") == "0.0.0.0"  # reachable from the other containers
    assert f":{url.port}/" in healthcheck_text(services[EMULATOR_SERVICE])
    # The same connection the demo and the end-to-end tests build (localdev/dag_run.py).
    assert connection == json.loads(aws_connection(endpoint))
    for key, value in FAKE_CREDENTIALS.items():
        assert compose_env[key] == value, key


def test_the_emulator_answers_to_the_names_its_clients_use_and_no_other(services, compose_env):
    """Host names the emulator accepts (DNS rebinding): the one airflow.env's connection uses
    (Airflow and seed-images), loopback (its health check; the host, through the published
    port), nothing else. It runs spark-submit steps only: no test-only switch here."""
    service = services[EMULATOR_SERVICE]
    command = service["command"]
    extra = [command[i + 1] for i, arg in enumerate(command) if arg == "--allow-host"]
    allowed = allowed_host_names(option(command, "--host"), extra)
    connection = json.loads(compose_env["AIRFLOW_CONN_AWS_DEFAULT"])
    clients = {urlsplit(connection["extra"]["endpoint_url"]).hostname}
    clients.add(re.search(r"http://([^:/']+)", healthcheck_text(service))[1])
    assert clients <= allowed
    assert allowed == LOOPBACK_HOSTS | {EMULATOR_SERVICE}
    assert "--allow-any-command" not in command and "--allow-origin" not in command


def test_execution_api_points_at_the_api_server(services, compose_env):
    url = urlsplit(compose_env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    command = services[API_SERVICE]["command"]
    assert command[0] == "api-server"
    assert (url.scheme, url.hostname, url.path) == ("http", API_SERVICE, "/execution/")
    assert url.port == int(option(command, "--port"))
    assert f"localhost:{url.port}/" in healthcheck_text(services[API_SERVICE])
    assert compose_env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"


def test_database_points_at_the_postgres_service(services, compose_env):
    url = urlsplit(compose_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    postgres = services["postgres"]["environment"]
    assert url.scheme.startswith("postgresql")
    assert (url.hostname, url.port) == ("postgres", 5432)
    assert (url.username, url.password) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
    )
    assert url.path == "/" + postgres["POSTGRES_DB"]


def test_health_checks_use_the_ports_the_file_sets(services, compose_env):
    scheduler = compose_env["AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT"]
    assert f"localhost:{scheduler}/health" in healthcheck_text(services["airflow-scheduler"])
    assert compose_env["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "True"


def test_compose_and_make_airflow_seed_the_same_images(services):
    command = services["seed-images"]["command"]
    assert command[:3] == ["python", "-m", "localdev.seed_images"]
    assert int(option(command, "--images")) == DEFAULT_IMAGES
    makefile = (REPO / "Makefile").read_text()
    assert re.search(rf"^STACK_IMAGES \?= {DEFAULT_IMAGES}$", makefile, re.MULTILINE)


def test_login_is_the_simple_auth_manager_admin(services, compose_env):
    users = dict(
        item.split(":")[:2]
        for item in compose_env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(",")
    )
    assert users == {"admin": "admin"}
    assert compose_env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] == "False"
    password = compose_env["FRUIT_LOCAL_ADMIN_PASSWORD"]
    assert password
    init = "\n".join(services["airflow-init"]["command"])
    assert "airflow db migrate" in init
    # The same script `make airflow` runs, mounted where the command looks for it.
    script = "localdev/write_admin_passwords.py"
    assert f"python /opt/fruit/{script}" in init
    mounts = bind_mounts(services["airflow-init"])
    assert mounts[f"/opt/fruit/{script}"] == (f"./{script}", True)
    doc = COMPOSE_DOC.read_text()
    assert "admin" in doc and f"`{password}`" in doc


def test_the_init_script_gives_the_admin_the_stacks_password(compose_env, tmp_path):
    """The script airflow-init runs, with the file's auth manager and users, in a fresh
    AIRFLOW_HOME: the password file SimpleAuthManager reads names the file's password."""
    names = ("AIRFLOW__CORE__AUTH_MANAGER", "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS")
    env = {
        **{name: compose_env[name] for name in names},
        "FRUIT_LOCAL_ADMIN_PASSWORD": compose_env["FRUIT_LOCAL_ADMIN_PASSWORD"],
        "AIRFLOW_HOME": str(tmp_path),
        "PATH": os.environ.get("PATH", ""),
    }
    script = REPO / "localdev" / "write_admin_passwords.py"
    result = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (written,) = tmp_path.glob("*passwords*")
    assert json.loads(written.read_text()) == {"admin": compose_env["FRUIT_LOCAL_ADMIN_PASSWORD"]}
    assert written.stat().st_mode & 0o077 == 0  # readable by its owner only
