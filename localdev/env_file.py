"""Read localdev/airflow.env the way Docker Compose reads an `env_file`.

The file is the one configuration of the local Airflow stack: compose gives it to every Airflow
service, and `make airflow` (localdev.airflow_stack) builds its services' environment with this
reader, so the two cannot drift. It implements the subset of Compose's env-file syntax the file
is allowed to use (tests/localdev/test_compose_env_file.py checks the file stays within it):
KEY=VALUE lines, unquoted, comments on their own lines, `${NAME:-default}` references.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

ENV_FILE = Path(__file__).resolve().parent / "airflow.env"

KEY = re.compile(r"[A-Z_][A-Z0-9_]*")
REFERENCE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}$]*))?\}")


def env_file_entries(path: Path = ENV_FILE) -> list[tuple[int, str, str]]:
    """(line number, key, raw value) for every assignment, in order."""
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        key, separator, value = text.partition("=")
        if not separator:
            raise ValueError(f"{path.name}:{number}: not KEY=VALUE: {line!r}")
        entries.append((number, key, value))
    return entries


def read_env_file(path: Path, variables: Mapping[str, str]) -> dict[str, str]:
    """The environment the file gives, `${NAME:-default}` resolved from `variables`, then from
    the keys above it, then the default (Compose's order)."""
    values: dict[str, str] = {}

    def resolve(match: re.Match[str]) -> str:
        name = match["name"]
        return variables.get(name) or values.get(name) or match["default"] or ""

    for _, key, raw in env_file_entries(path):
        values[key] = REFERENCE.sub(resolve, raw)
    return values
