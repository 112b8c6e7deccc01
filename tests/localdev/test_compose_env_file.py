"""localdev/airflow.env, the one environment file that both docker compose and `make airflow`
use, read as Compose reads it (localdev/env_file.py): its syntax, every Airflow service given
exactly this file, the same default for each place `make airflow` fills in, FRUIT_EMR_* keys that
are settings of the DAG, and the native stack getting the same settings at its own addresses.
Where the `docker compose` plugin exists, `docker compose config` (no engine needed) resolves the
same environment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import fields
from urllib.parse import urlsplit

import pytest
import yaml

from emr_pipeline.settings import DeploymentSettings, ParseTimeSettings
from localdev.env_file import ENV_FILE, KEY, REFERENCE, env_file_entries, read_env_file
from tests.localdev.compose_files import (
    AIRFLOW_SERVICES,
    COMPOSE_FILE,
    EMULATOR_SERVICE,
    REPO,
)


@pytest.fixture(scope="module")
def native_variables(native_config) -> dict[str, str]:
    """The FRUIT_LOCAL_* places of `make airflow` (its defaults: nothing exported)."""
    return native_config.local_variables()


# ---------------------------------------------------------------------------------------------
# The environment file and the two stacks that read it


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
    assert set(defaults) == set(native_variables)


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


def test_the_scheduler_health_check_listens_on_loopback(compose_env, native_env):
    """Airflow's default is 0.0.0.0; its own container (compose) or machine asks, no one else."""
    for env in (compose_env, native_env):
        assert env["AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST"] == "127.0.0.1"


def test_the_native_stack_gets_the_same_settings_at_its_own_addresses(
    compose_env, native_env, native_config
):
    """One file for both stacks: only the FRUIT_LOCAL_* places differ, and with them set no
    value names a compose service or a container path."""
    assert native_env.keys() == compose_env.keys()
    differing = {key for key in compose_env if compose_env[key] != native_env[key]}
    located = {key for _, key, raw in env_file_entries() if "${FRUIT_LOCAL_" in raw}
    assert differing == located
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
