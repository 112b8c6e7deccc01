"""A cluster's Configurations, applied to its steps as EMR applies them on the nodes.

- `spark-defaults` properties become spark-submit confs, placed before the step's own `--conf`
  options, which therefore win (as a step's confs win over spark-defaults.conf on EMR).
- `spark-env` exports become the step's environment variables.

Values naming node paths are mapped to this machine by an explicit table: the node's Python
becomes the project's interpreter (the one with TensorFlow), and folders under the node's
/var, /home/hadoop, /mnt and /tmp become folders under the cluster's work folder. An
interpreter setting (PYSPARK_PYTHON, spark.pyspark.python...) that is neither mapped nor an
executable here fails the step, as it would fail on the node.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from localdev.emr_emulator.credentials import Credentials
from localdev.local_spark import local_spark_env

# The launcher's AWS settings that would send the nodes' calls elsewhere or sign them with
# another key: the nodes get the emulator's endpoint and the nodes' key, nothing else. Nor do
# they get the launcher's AIRFLOW_* (make demo's AIRFLOW_CONN_AWS_DEFAULT holds the caller's key).
_LAUNCHER_AWS_SETTINGS = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)

# Node interpreters EMR 7 has (Amazon Linux 2023), and what runs in their place here.
NODE_INTERPRETERS = {
    "/usr/bin/python3.11": sys.executable,
    "/usr/bin/python3": sys.executable,
}
# Node folders a configuration may point at; mapped to <cluster work folder>/node/<path>.
NODE_FOLDERS = ("/var/", "/home/hadoop/", "/mnt/", "/tmp/")
INTERPRETER_SETTINGS = frozenset(
    {
        "PYSPARK_PYTHON",
        "PYSPARK_DRIVER_PYTHON",
        "spark.pyspark.python",
        "spark.pyspark.driver.python",
        "spark.executorEnv.PYSPARK_PYTHON",
        "spark.yarn.appMasterEnv.PYSPARK_PYTHON",
    }
)


class NodeConfigError(ValueError):
    """A configuration the step's node could not honour (e.g. a missing interpreter)."""


def node_process_env(
    endpoint_url: str, credentials: Credentials, overrides: Mapping[str, str] | None = None
) -> dict:
    """The environment a step or bootstrap action starts with on the emulated node: local
    Spark's, the nodes' key (the instance profile's credentials on EMR), then `overrides`;
    commands that call AWS (boto3, the AWS CLI) reach the emulator, as on EMR they reach AWS."""
    env = {
        k: v
        for k, v in local_spark_env().items()
        if k not in _LAUNCHER_AWS_SETTINGS and not k.startswith("AIRFLOW")
    }
    env["AWS_ENDPOINT_URL"] = endpoint_url
    env["AWS_ACCESS_KEY_ID"] = credentials.access_key
    env["AWS_SECRET_ACCESS_KEY"] = credentials.secret_key
    return {**env, **(overrides or {})}


def classification_properties(
    configurations: Iterable[Mapping[str, Any]], classification: str
) -> dict:
    found: dict[str, str] = {}
    for config in configurations:
        if config.get("Classification") == classification:
            found.update(config.get("Properties") or {})
    return found


def _exports(configurations: Iterable[Mapping[str, Any]], classification: str) -> dict:
    found: dict[str, str] = {}
    for config in configurations:
        if config.get("Classification") != classification:
            continue
        for nested in config.get("Configurations") or []:
            if nested.get("Classification") == "export":
                found.update(nested.get("Properties") or {})
    return found


def map_node_value(name: str, value: str, node_root: Path) -> str:
    """`value` of setting `name` as it must read on this machine."""
    if name in INTERPRETER_SETTINGS:
        mapped = NODE_INTERPRETERS.get(value, value)
        if not (os.path.isfile(mapped) and os.access(mapped, os.X_OK)):
            raise NodeConfigError(
                f"{name}={value}: no such interpreter on the node (the emulator maps "
                f"{', '.join(sorted(NODE_INTERPRETERS))} to the project's Python)"
            )
        return mapped
    if value.startswith(NODE_FOLDERS):
        return str(node_root / value.lstrip("/"))
    return value


def spark_defaults(configurations: Iterable[Mapping[str, Any]], node_root: Path) -> dict:
    """{spark conf: value} from spark-defaults, mapped to this machine."""
    properties = classification_properties(configurations, "spark-defaults")
    return {key: map_node_value(key, str(v), node_root) for key, v in properties.items()}


def spark_env(configurations: Iterable[Mapping[str, Any]], node_root: Path) -> dict:
    """{variable: value} from spark-env's exports, mapped to this machine."""
    exports = _exports(configurations, "spark-env")
    return {key: map_node_value(key, str(v), node_root) for key, v in exports.items()}
