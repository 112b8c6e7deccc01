"""docker-compose.yaml, its Dockerfiles and localdev/airflow.env agree with each other and the code.

No container engine runs on the machines that test this project, so these tests read the files:
the services and their wiring (health checks, depends_on conditions, ports on 127.0.0.1), the
pins of the images against requirements.txt, every path a container mounts or an image copies,
and the one environment file that both docker compose and `make airflow` use. Where the
`docker compose` plugin exists, `docker compose config` (no engine needed) checks the file too.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from emr_pipeline.settings import DeploymentSettings, ParseTimeSettings
from localdev.airflow_stack.config import StackConfig
from localdev.dag_run import FAKE_CREDENTIALS, aws_connection
from localdev.emr_emulator.request_guard import LOOPBACK_HOSTS, allowed_host_names
from localdev.env_file import ENV_FILE, KEY, REFERENCE, env_file_entries, read_env_file
from localdev.seed_images import DEFAULT_IMAGES

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yaml"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE_DOC = REPO / "docs" / "COMPOSE.md"

AIRFLOW_SERVICES = {
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
}
LONG_RUNNING = AIRFLOW_SERVICES - {"airflow-init"} | {"postgres", "emr-emulator"}
ONE_SHOT = {"airflow-init", "seed-images"}
EMULATOR_SERVICE = "emr-emulator"
API_SERVICE = "airflow-apiserver"

# ---------------------------------------------------------------------------------------------
# The environment file, read as Compose reads it (localdev/env_file.py, which `make airflow`
# uses too) and with the places `make airflow` gives its own processes.


@pytest.fixture(scope="module")
def compose_env() -> dict[str, str]:
    """What docker compose gives each Airflow service (no FRUIT_LOCAL_* set)."""
    return read_env_file(ENV_FILE, {})


@pytest.fixture(scope="module")
def native_config() -> StackConfig:
    return StackConfig.from_env({}, images=DEFAULT_IMAGES)


@pytest.fixture(scope="module")
def native_variables(native_config) -> dict[str, str]:
    """The FRUIT_LOCAL_* places of `make airflow` (its defaults: nothing exported)."""
    return native_config.local_variables()


@pytest.fixture(scope="module")
def native_env(native_config) -> dict[str, str]:
    """What `make airflow` gives its Airflow services, less AIRFLOW_HOME (its own)."""
    env = native_config.airflow_env()
    assert env.pop("AIRFLOW_HOME") == str(native_config.airflow_home)
    return env


# ---------------------------------------------------------------------------------------------
# The compose file


@pytest.fixture(scope="module")
def services() -> dict[str, dict]:
    return yaml.safe_load(COMPOSE_FILE.read_text())["services"]


def option(command: list[str], name: str) -> str:
    """The value after `name` in an exec-form command."""
    assert name in command, f"{name} missing from {command}"
    return command[command.index(name) + 1]


def healthcheck_text(service: dict) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else test


def bind_mounts(service: dict) -> dict[str, tuple[str, bool]]:
    """{container path: (host path, read-only)} for the service's bind mounts."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *mode = volume.split(":")
        if source.startswith((".", "/")):
            mounts[target] = (source, mode == ["ro"])
    return mounts


def dockerfile_lines(path: Path) -> list[str]:
    """Instructions with continuation lines joined, comments dropped."""
    lines, current = [], ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        current += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            lines.append(" ".join(current.split()))
            current = ""
    return lines


_PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9_.\-]*)(?:\[[^\]]*\])?==([^\s\"';]+)")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(text: str) -> dict[str, str]:
    """{normalised name: version} for every `name==version` (extras ignored) in `text`."""
    found = {}
    for line in text.splitlines():
        code = line.split("#", 1)[0]
        for name, version in _PIN.findall(code):
            found[normalise(name)] = version
    return found


@pytest.fixture(scope="module")
def requirement_pins() -> dict[str, str]:
    return pins((REPO / "requirements.txt").read_text())


@pytest.fixture(scope="module")
def constraint_pins() -> dict[str, str]:
    return pins((REPO / "constraints.txt").read_text())


def python_version() -> str:
    """The Python the project pins: requires-python = ">=3.11,<3.12" gives 3.11."""
    text = (REPO / "pyproject.toml").read_text()
    match = re.search(r'requires-python\s*=\s*">=(\d+\.\d+),<\d+\.\d+"', text)
    assert match, "pyproject.toml: requires-python is not >=X.Y,<X.Z"
    return match[1]


# ---------------------------------------------------------------------------------------------
# Services and their wiring


def test_the_stack_has_the_expected_services(services):
    assert set(services) == LONG_RUNNING | ONE_SHOT


def test_every_long_running_service_has_a_healthcheck(services):
    for name in LONG_RUNNING:
        check = services[name].get("healthcheck")
        assert check and not check.get("disable"), f"{name} has no health check"
        test = check["test"]
        assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL"), name
        assert services[name].get("restart") == "unless-stopped", name
    for name in ONE_SHOT:
        assert services[name].get("restart") == "no", f"{name} runs once, it must not restart"


def test_depends_on_waits_for_health_or_completion(services):
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions"
        for dependency, spec in depends_on.items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            expected = (
                "service_healthy"
                if dependency in LONG_RUNNING
                else "service_completed_successfully"
            )
            assert spec.get("condition") == expected, f"{name} -> {dependency}"

    def needs(name: str) -> set[str]:
        return set(services[name].get("depends_on", {}))

    assert needs("airflow-init") == {"postgres"}
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        assert {"postgres", "airflow-init"} <= needs(name), name
    # Tasks (scheduler) and triggers (triggerer) report to the api-server and call the emulator.
    for name in ("airflow-scheduler", "airflow-triggerer"):
        assert {API_SERVICE, EMULATOR_SERVICE} <= needs(name), name
    assert needs("seed-images") == {EMULATOR_SERVICE}
    assert needs(EMULATOR_SERVICE) == needs("postgres") == set()


def test_ports_are_published_on_localhost_only(services):
    published = {}
    for name, service in services.items():
        # The host's network would put every port the container listens on on the host's.
        assert service.get("network_mode") != "host", name
        for port in service.get("ports", []):
            assert isinstance(port, str), f"{name}: use HOST_IP:HOST:CONTAINER"
            parts = port.split(":")
            assert len(parts) == 3 and parts[0] == "127.0.0.1", f"{name} publishes {port} widely"
            _, host_port, container_port = parts
            published[name] = (int(host_port), int(container_port))
    assert published[API_SERVICE] == (8080, 8080)  # the UI at http://localhost:8080
    emulator_port = int(option(services[EMULATOR_SERVICE]["command"], "--port"))
    assert published[EMULATOR_SERVICE] == (emulator_port, emulator_port)
    assert set(published) == {API_SERVICE, EMULATOR_SERVICE}


def test_the_compose_file_reads_nothing_from_the_shell():
    """Every `$` is escaped (`$$`): the file resolves the same in every shell, and the only
    place things may vary is localdev/airflow.env."""
    text = COMPOSE_FILE.read_text().replace("$$", "")
    assert "$" not in text


def test_images_are_pinned(services):
    for name, service in services.items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", f"{name}: {image}"
    assert re.fullmatch(r"postgres:\d+\.\d+-bookworm", services["postgres"]["image"])


# ---------------------------------------------------------------------------------------------
# Images: pins and the files they copy


def test_airflow_image_pins_equal_requirements(services, requirement_pins):
    airflow = requirement_pins["apache-airflow"]
    amazon = requirement_pins["apache-airflow-providers-amazon"]
    python = python_version()
    dockerfile = REPO / "localdev" / "Dockerfile.airflow"
    instructions = dockerfile_lines(dockerfile)
    assert instructions[0] == f"FROM apache/airflow:{airflow}-python{python}"
    installs = [line for line in instructions if "pip install" in line]
    assert len(installs) == 1
    assert pins(installs[0]) == {
        "apache-airflow": airflow,
        "apache-airflow-providers-amazon": amazon,
        "aiobotocore": requirement_pins["aiobotocore"],  # deferrable waits, the default
    }
    assert "--constraint /tmp/fruit-constraints.txt" in installs[0]
    assert "COPY constraints.txt /tmp/fruit-constraints.txt" in instructions
    for name in AIRFLOW_SERVICES:
        service = services[name]
        assert service["build"] == {"context": ".", "dockerfile": "localdev/Dockerfile.airflow"}
        assert service["image"].endswith(f":{airflow}-python{python}"), name


def test_emulator_image_pins_agree_with_requirements(services, requirement_pins, constraint_pins):
    dockerfile = REPO / "localdev" / "Dockerfile.emulator"
    instructions = dockerfile_lines(dockerfile)
    assert instructions[0] == f"FROM python:{python_version()}-slim-bookworm"
    assert any("openjdk-17-jre-headless" in line for line in instructions)  # Spark 3.5: Java 17
    installs = [line for line in instructions if line.startswith("RUN pip install")]
    assert len(installs) == 1
    install = installs[0]
    assert "--constraint constraints.txt" in install
    inline = pins(install)
    requirement_files = re.findall(r"-r (\S+)", install)
    assert requirement_files == ["bootstrap/requirements-emr.txt"]
    from_files = pins((REPO / requirement_files[0]).read_text())
    installed = inline | from_files
    for name, version in installed.items():
        assert requirement_pins.get(name, version) == version, f"{name}: requirements.txt"
        assert constraint_pins.get(name) == version, f"{name}: constraints.txt"
    # What the emulator and the Spark jobs import.
    needed = {"pyspark", "moto", "boto3", "tensorflow-cpu", "keras", "numpy", "pillow", "pandas"}
    assert needed <= set(installed)
    assert re.search(r"moto\[server\]==", install), "the emulator serves moto's server"
    # The image's own command is the one compose runs.
    cmd = next(line for line in instructions if line.startswith("CMD "))
    assert json.loads(cmd.removeprefix("CMD ")) == services[EMULATOR_SERVICE]["command"]
    for name in (EMULATOR_SERVICE, "seed-images"):
        assert services[name]["build"] == {
            "context": ".",
            "dockerfile": "localdev/Dockerfile.emulator",
        }


def _dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _ignored(relative: str, patterns: list[str]) -> bool:
    parts = relative.rstrip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(
        fnmatch.fnmatch(prefix, pattern.removeprefix("**/")) or fnmatch.fnmatch(prefix, pattern)
        for pattern in patterns
        for prefix in prefixes
    )


def test_every_build_context_dockerfile_and_copy_source_exists(services):
    patterns = _dockerignore_patterns()
    assert {".venv", "out", ".state", "**/__pycache__"} <= set(patterns)
    dockerfiles = set()
    for name, service in services.items():
        if "build" not in service:
            continue
        context = REPO / service["build"]["context"]
        assert context.is_dir(), name
        dockerfiles.add((context, context / service["build"]["dockerfile"]))
    assert len(dockerfiles) == 2
    for context, dockerfile in dockerfiles:
        assert dockerfile.is_file(), dockerfile
        for line in dockerfile_lines(dockerfile):
            if not line.startswith(("COPY ", "ADD ")) or "--from=" in line:
                continue
            *sources, _destination = [word for word in line.split()[1:] if "--" not in word]
            for source in sources:
                assert (context / source).exists(), f"{dockerfile.name}: {source} is missing"
                relative = (context / source).resolve().relative_to(REPO).as_posix()
                assert not _ignored(relative, patterns), f".dockerignore drops {source}"


def test_every_mounted_host_path_exists(services):
    for name, service in services.items():
        for target, (source, _) in bind_mounts(service).items():
            assert (REPO / source).exists(), f"{name}: {source} (for {target}) is missing"


# ---------------------------------------------------------------------------------------------
# The environment file and what it points at


def test_env_file_syntax_is_what_compose_and_python_both_read():
    keys = []
    for number, key, raw in env_file_entries():
        where = f"airflow.env:{number}"
        assert KEY.fullmatch(key), f"{where}: key {key!r}"
        assert not raw.startswith(("'", '"')), f"{where}: quoted values are read differently"
        assert " #" not in raw and "\t#" not in raw, f"{where}: inline comment"
        assert raw == raw.strip(), f"{where}: surrounding spaces"
        assert "$" not in REFERENCE.sub("", raw), f"{where}: only ${{NAME:-default}} references"
        for reference in REFERENCE.finditer(raw):
            assert reference["name"].startswith("FRUIT_LOCAL_"), f"{where}: {reference[0]}"
        keys.append(key)
    assert len(keys) == len(set(keys)), "a key is set twice"


def test_every_airflow_service_gets_exactly_the_env_file(services):
    for name in AIRFLOW_SERVICES | {"seed-images"}:
        assert services[name]["env_file"] == ["localdev/airflow.env"], name
        # Nothing added on the compose side only: `make airflow` sets the same environment.
        assert "environment" not in services[name], name
    assert "env_file" not in services[EMULATOR_SERVICE]


def test_location_defaults_are_the_same_wherever_they_appear(native_variables):
    defaults: dict[str, set[str]] = {}
    for _, _, raw in env_file_entries():
        for reference in REFERENCE.finditer(raw):
            defaults.setdefault(reference["name"], set()).add(reference["default"])
    for name, values in defaults.items():
        assert len(values) == 1, f"{name} has different defaults: {values}"
    # Every place the file leaves open is one `make airflow` fills in.
    assert set(defaults) - {"FRUIT_LOCAL_ADMIN_PASSWORD"} == set(native_variables)


def test_fruit_emr_keys_are_settings_of_the_dag(compose_env):
    names = {field.name for field in fields(ParseTimeSettings)}
    names |= set(ParseTimeSettings.from_env({}).param_defaults)
    names |= {field.name for field in fields(DeploymentSettings)}
    keys = [key for key in compose_env if key.startswith("FRUIT_EMR_")]
    assert keys
    for key in keys:
        assert key.removeprefix("FRUIT_EMR_").lower() in names, f"{key} is no DAG setting"
    settings = ParseTimeSettings.from_env(compose_env)  # every value parses
    defaults = settings.param_defaults
    assert defaults["poke_interval_seconds"] == int(compose_env["FRUIT_EMR_POKE_INTERVAL_SECONDS"])
    assert defaults["input_uri"] == compose_env["FRUIT_EMR_INPUT_URI"]
    deployment = DeploymentSettings.resolve(lambda _: None, compose_env)
    assert deployment.artifacts_uri == compose_env["FRUIT_EMR_ARTIFACTS_URI"]


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


def test_the_scheduler_health_check_listens_on_loopback(compose_env, native_env):
    """Airflow's default is 0.0.0.0; its own container (compose) or machine asks, no one else."""
    for env in (compose_env, native_env):
        assert env["AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST"] == "127.0.0.1"


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


def test_the_native_stack_gets_the_same_settings_at_its_own_addresses(
    compose_env, native_env, native_config
):
    """One file for both stacks: only the FRUIT_LOCAL_* places differ, and with them set no
    value names a compose service or a container path."""
    assert native_env.keys() == compose_env.keys()
    differing = {key for key in compose_env if compose_env[key] != native_env[key]}
    located = {key for _, key, raw in env_file_entries() if "${FRUIT_LOCAL_" in raw}
    assert differing == located - {"FRUIT_LOCAL_ADMIN_PASSWORD"}
    service_names = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    for key, value in native_env.items():
        for name in service_names:
            assert f"//{name}:" not in value and f"@{name}:" not in value, f"{key}: {value}"
        assert "/opt/" not in value, f"{key}: {value}"
    url = urlsplit(json.loads(native_env["AIRFLOW_CONN_AWS_DEFAULT"])["extra"]["endpoint_url"])
    assert (url.hostname, url.port) == ("127.0.0.1", native_config.ports.emulator_port)
    # Its addresses are its own: nothing listens on compose's (or on each other's) ports.
    ports = native_config.ports.all().values()
    assert len(set(ports)) == len(ports)
    assert not set(ports) & {5000, 5432, 8080, 8793, 8794, 8974}


def test_the_native_launcher_gives_its_services_this_file(native_config, native_variables):
    """`make airflow`'s services get the env file as read here, plus their own AIRFLOW_HOME and
    what local Spark needs; the launcher's own AIRFLOW_*/AWS_* settings do not leak in."""
    leaky = {"AIRFLOW__CORE__EXECUTOR": "SequentialExecutor", "AWS_PROFILE": "production"}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in leaky.items():
            patch.setenv(key, value)
        env = native_config.process_env(native_config.airflow_env())
    from_file = read_env_file(ENV_FILE, native_variables)
    assert {key: env[key] for key in from_file} == from_file
    assert "AWS_PROFILE" not in env
    assert env["AIRFLOW_HOME"] == str(native_config.airflow_home)
    prefixes = ("AIRFLOW", "AWS_")
    assert {k for k in env if k.startswith(prefixes)} == {
        k for k in from_file if k.startswith(prefixes)
    } | {"AIRFLOW_HOME"}


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


def test_the_readme_section_says_how_to_start_and_stop():
    doc = COMPOSE_DOC.read_text()
    for needed in ("docker compose up --build", "http://localhost:8080", "docker compose down"):
        assert needed in doc, needed


# ---------------------------------------------------------------------------------------------
# Docker's own reading of the file, where the compose plugin is installed (no engine needed)


def _compose_plugin() -> bool:
    if shutil.which("docker") is None:
        return False
    result = subprocess.run(
        ["docker", "compose", "version"], capture_output=True, text=True, check=False
    )
    return result.returncode == 0


@pytest.mark.skipif(not _compose_plugin(), reason="the docker compose plugin is not installed")
def test_docker_compose_config_resolves_the_same_environment(compose_env):
    env = {key: value for key, value in os.environ.items() if not key.startswith("FRUIT_LOCAL_")}
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE_FILE), "config", "--format", "json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    resolved = json.loads(result.stdout)["services"]
    for name in AIRFLOW_SERVICES | {"seed-images"}:
        assert resolved[name]["environment"] == compose_env, name
