"""Where the native stack lives and listens, and the environment each of its services gets.

The services' environment is localdev/airflow.env (the file docker compose gives its Airflow
services) read with this stack's places in the FRUIT_LOCAL_* variables; only AIRFLOW_HOME and
what local Spark needs are added. Every place can be moved with its FRUIT_LOCAL_* variable, so
that two stacks (a user's and a test's) can run side by side.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from localdev.env_file import ENV_FILE, read_env_file
from localdev.local_spark import REPO_ROOT, local_spark_env

DEFAULT_STATE_DIR = REPO_ROOT / ".state" / "airflow-stack"  # make demo has .state/airflow


@dataclass(frozen=True)
class StackPorts:
    """Ports on 127.0.0.1 (compose's services use the defaults in airflow.env, each on its own
    host; here they share one host, hence other numbers)."""

    db_port: int = 15432
    api_port: int = 18080
    emulator_port: int = 15000
    worker_log_port: int = 18793
    trigger_log_port: int = 18794
    scheduler_health_port: int = 18974

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> StackPorts:
        values = {}
        for field in fields(cls):
            text = environ.get(f"FRUIT_LOCAL_{field.name.upper()}", "").strip()
            if text and not text.isdigit():
                raise ValueError(f"FRUIT_LOCAL_{field.name.upper()}={text!r} is not a port number")
            values[field.name] = int(text) if text else field.default
        return cls(**values)

    def all(self) -> dict[str, int]:
        return {field.name: getattr(self, field.name) for field in fields(self)}


@dataclass(frozen=True)
class StackConfig:
    state_dir: Path
    ports: StackPorts
    images: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, images: int = 240) -> StackConfig:
        environ = os.environ if environ is None else environ
        state = environ.get("FRUIT_LOCAL_STATE_DIR", "").strip()
        return cls(
            Path(state).resolve() if state else DEFAULT_STATE_DIR,
            StackPorts.from_env(environ),
            images,
        )

    @property
    def airflow_home(self) -> Path:
        return self.state_dir / "airflow-home"

    @property
    def postgres_dir(self) -> Path:
        return self.state_dir / "postgres"

    @property
    def emulator_dir(self) -> Path:
        return self.state_dir / "emulator"

    @property
    def emulator_key_file(self) -> Path:
        return self.emulator_dir / "aws-config"

    @property
    def secrets_dir(self) -> Path:
        return self.state_dir / "secrets"

    @property
    def images_cache(self) -> Path:
        return self.state_dir / "sample-images"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def pids_file(self) -> Path:
        return self.state_dir / "pids.json"

    def local_variables(self) -> dict[str, str]:
        """The FRUIT_LOCAL_* places that airflow.env's `${FRUIT_LOCAL_...:-...}` refer to."""
        places = {
            "FRUIT_LOCAL_REPO_DIR": str(REPO_ROOT),
            "FRUIT_LOCAL_API_HOST": "127.0.0.1",
            "FRUIT_LOCAL_EMULATOR_HOST": "127.0.0.1",
            "FRUIT_LOCAL_EMULATOR_KEY_FILE": str(self.emulator_key_file),
            "FRUIT_LOCAL_SECRETS_DIR": str(self.secrets_dir),
        }
        for name, port in self.ports.all().items():
            if name != "db_port":  # in the secrets folder's connection string (secrets.py)
                places[f"FRUIT_LOCAL_{name.upper()}"] = str(port)
        return places

    def airflow_env(self) -> dict[str, str]:
        """What each Airflow service of the stack gets on top of the launcher's environment."""
        return {
            **read_env_file(ENV_FILE, self.local_variables()),
            "AIRFLOW_HOME": str(self.airflow_home),
        }

    def process_env(self, extra: Mapping[str, str]) -> dict[str, str]:
        """The launcher's environment plus `extra`, with the venv's Python and Java for Spark."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_"))}
        env.update(extra)
        env["PYSPARK_PYTHON"] = sys.executable
        return local_spark_env(env)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.api_port}"

    @property
    def emulator_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.emulator_port}"
