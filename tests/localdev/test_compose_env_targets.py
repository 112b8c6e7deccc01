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

from localdev.airflow_stack.secrets import COMPOSE_DB_HOST, COMPOSE_DB_PORT, load_or_create
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
    # No key in the connection: boto3 takes the one in the emulator's key file, which the
    # emulator writes to the volume the Airflow services mount, and no other file.
    assert set(connection) == {"conn_type", "extra"}
    key_file = option(command, "--key-file")
    assert compose_env["AWS_CONFIG_FILE"] == compose_env["AWS_SHARED_CREDENTIALS_FILE"] == key_file
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"} & set(compose_env)
    key_folder = str(Path(key_file).parent)
    for name in [*AIRFLOW_SERVICES, "seed-images"]:
        assert f"emulator-keys:{key_folder}:ro" in services[name]["volumes"], name
    assert f"emulator-keys:{key_folder}" in services[EMULATOR_SERVICE]["volumes"]


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


def test_database_points_at_the_postgres_service_with_a_random_password(
    services, compose_env, tmp_path
):
    """Airflow reads its connection string from the file stack-secrets writes (the secrets
    volume, mounted read-only): the postgres service, the `airflow` role that the init script
    makes, its random password; the superuser's password is another random one, by file."""
    command = compose_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD"].split()
    assert command[0] == "cat"
    folder = str(Path(command[1]).parent)
    writer = services["stack-secrets"]
    assert writer["command"][-2:] == ["--compose", folder]
    assert f"stack-secrets:{folder}" in writer["volumes"]
    for name in [*AIRFLOW_SERVICES, "postgres"]:
        assert f"stack-secrets:{folder}:ro" in services[name]["volumes"], name
    secrets, _ = load_or_create(tmp_path, COMPOSE_DB_HOST, COMPOSE_DB_PORT)
    url = urlsplit((tmp_path / Path(command[1]).name).read_text().strip())
    assert url.scheme.startswith("postgresql")
    assert (url.hostname, url.port) == ("postgres", 5432)
    assert (url.username, url.password, url.path) == ("airflow", secrets.db_password, "/airflow")
    postgres = services["postgres"]["environment"]
    assert postgres["POSTGRES_USER"] != "airflow" and "POSTGRES_PASSWORD" not in postgres
    assert postgres["POSTGRES_PASSWORD_FILE"] == f"{folder}/db-superuser-password"
    init = (REPO / "localdev" / "postgres-init.sh").read_text()
    assert f"{folder}/db-password" in init
    assert "CREATE ROLE airflow WITH LOGIN NOSUPERUSER" in init


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
    init = "\n".join(services["airflow-init"]["command"])
    assert "airflow db migrate" in init
    # The same script `make airflow` runs, mounted where the command looks for it.
    script = "localdev/write_admin_passwords.py"
    assert f"python /opt/fruit/{script}" in init
    mounts = bind_mounts(services["airflow-init"])
    assert mounts[f"/opt/fruit/{script}"] == (f"./{script}", True)
    doc = COMPOSE_DOC.read_text()
    assert "admin-password" in doc and "`admin`" not in doc


def test_secrets_are_made_once_each_and_never_rewritten(tmp_path):
    """A lost admin-password is made again alone: the database passwords a cluster was made
    with stay (rewriting them would lock the stack out of its own database)."""
    first, made = load_or_create(tmp_path, "127.0.0.1", 15432)
    assert made
    again, made = load_or_create(tmp_path, "127.0.0.1", 15433)
    assert (again, made) == (first, False)
    assert (
        (tmp_path / "sql-alchemy-conn")
        .read_text()
        .endswith(f"{first.db_password}@127.0.0.1:15433/airflow")
    )
    (tmp_path / "admin-password").unlink()
    third, made = load_or_create(tmp_path, "127.0.0.1", 15433)
    assert made and third.admin_password != first.admin_password
    assert (third.db_password, third.db_superuser_password) == (
        first.db_password,
        first.db_superuser_password,
    )
    assert {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()} == dict.fromkeys(
        ("db-superuser-password", "db-password", "admin-password", "sql-alchemy-conn"), 0o600
    )


def test_the_init_script_gives_the_admin_the_stacks_password(compose_env, tmp_path):
    """The script airflow-init runs, with the file's auth manager and users, in a fresh
    AIRFLOW_HOME: the password file SimpleAuthManager reads names the secrets folder's
    admin-password, made at random by the stack's secrets (as compose's stack-secrets runs)."""
    secrets, made = load_or_create(tmp_path / "secrets", "postgres", 5432)
    assert made and len(secrets.admin_password) >= 24
    assert (tmp_path / "secrets").stat().st_mode & 0o077 == 0
    names = ("AIRFLOW__CORE__AUTH_MANAGER", "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS")
    env = {
        **{name: compose_env[name] for name in names},
        "FRUIT_LOCAL_SECRETS_DIR": str(tmp_path / "secrets"),
        "AIRFLOW_HOME": str(tmp_path / "home"),
        "PATH": os.environ.get("PATH", ""),
    }
    script = REPO / "localdev" / "write_admin_passwords.py"
    result = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (written,) = (tmp_path / "home").glob("*passwords*")
    assert json.loads(written.read_text()) == {"admin": secrets.admin_password}
    assert written.stat().st_mode & 0o077 == 0  # readable by its owner only
