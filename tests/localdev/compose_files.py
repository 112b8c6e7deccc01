"""What the docker compose tests (test_compose_*.py) share: where the files are, the names of
the services, and how to read a service's command and bind mounts. Their fixtures (the compose
file's services, the environment each stack gives its Airflow services) are in conftest.py."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yaml"
COMPOSE_DOC = REPO / "docs" / "COMPOSE.md"

AIRFLOW_SERVICES = {
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
}
EMULATOR_SERVICE = "emr-emulator"
API_SERVICE = "airflow-apiserver"


def option(command: list[str], name: str) -> str:
    """The value after `name` in an exec-form command."""
    assert name in command, f"{name} missing from {command}"
    return command[command.index(name) + 1]


def bind_mounts(service: dict) -> dict[str, tuple[str, bool]]:
    """{container path: (host path, read-only)} for the service's bind mounts."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *mode = volume.split(":")
        if source.startswith((".", "/")):
            mounts[target] = (source, mode == ["ro"])
    return mounts
