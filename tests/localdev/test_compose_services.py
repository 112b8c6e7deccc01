"""docker-compose.yaml's services and the images they build, read as files (no container engine
runs on the machines that test this project): the services and their wiring (health checks,
depends_on conditions, ports on 127.0.0.1, nothing read from the shell), the pins of the images
against requirements.txt and constraints.txt, every path an image copies or a container mounts,
and docs/COMPOSE.md saying how to start and stop the stack."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

import pytest

from tests.localdev.compose_files import (
    AIRFLOW_SERVICES,
    API_SERVICE,
    COMPOSE_DOC,
    COMPOSE_FILE,
    EMULATOR_SERVICE,
    REPO,
    bind_mounts,
    option,
)

DOCKERIGNORE = REPO / ".dockerignore"
LONG_RUNNING = AIRFLOW_SERVICES - {"airflow-init"} | {"postgres", "emr-emulator"}
ONE_SHOT = {"stack-secrets", "airflow-init", "seed-images"}


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
    assert needs(EMULATOR_SERVICE) == set()
    assert needs("postgres") == {"stack-secrets"}  # its superuser's password


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
    assert published[API_SERVICE] == (8080, 8080)  # the UI at http://127.0.0.1:8080
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
        "h5py": requirement_pins["h5py"],  # preflight reads a weights file's arrays
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
# docs/COMPOSE.md


def test_the_readme_section_says_how_to_start_and_stop():
    doc = COMPOSE_DOC.read_text()
    for needed in ("docker compose up --build", "http://127.0.0.1:8080", "docker compose down"):
        assert needed in doc, needed
