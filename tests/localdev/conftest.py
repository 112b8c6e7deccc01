"""Fixtures of the docker compose tests (test_compose_*.py): the services of
docker-compose.yaml, and the environment that docker compose and `make airflow` each give their
Airflow services from localdev/airflow.env."""

from __future__ import annotations

import pytest
import yaml

from localdev.airflow_stack.config import StackConfig
from localdev.env_file import ENV_FILE, read_env_file
from localdev.seed_images import DEFAULT_IMAGES
from tests.localdev.compose_files import COMPOSE_FILE

# ---------------------------------------------------------------------------------------------
# The compose file


@pytest.fixture(scope="module")
def services() -> dict[str, dict]:
    return yaml.safe_load(COMPOSE_FILE.read_text())["services"]


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
def native_env(native_config) -> dict[str, str]:
    """What `make airflow` gives its Airflow services, less AIRFLOW_HOME (its own)."""
    env = native_config.airflow_env()
    assert env.pop("AIRFLOW_HOME") == str(native_config.airflow_home)
    return env
