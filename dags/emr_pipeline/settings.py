"""What a deployment sets once: defaults for the run parameters and the AWS plumbing.

Two sources, read at different times on purpose:

* `FRUIT_EMR_*` environment variables, read when the DAG file is parsed. They give the
  trigger form its defaults, the schedule and the connection id. Reading the environment is
  free; reading Airflow Variables at parse time would query the metadata database on every
  parse of the file, which Airflow's best practices warn against.
* Deployment settings that no run needs to change (artifacts location, EMR roles, subnet...)
  are resolved when the run starts, inside the preflight task: the Airflow Variable
  `fruit_features_emr_<name>` if set, else `FRUIT_EMR_<NAME>`, else the built-in default.
  Variables can be edited in the UI without a redeploy, and only a running task reads them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path

DAG_ID = "fruit_features_emr"
ENV_PREFIX = "FRUIT_EMR_"
VARIABLE_PREFIX = f"{DAG_ID}_"
DEFAULT_RELEASE_LABEL = "emr-7.13.0"  # newest EMR 7: Spark 3.5, Python 3.11 on the nodes

_REPO_ROOT = Path(__file__).resolve().parents[2]


def _env(environ: Mapping[str, str], name: str, default: str) -> str:
    value = environ.get(ENV_PREFIX + name.upper(), "").strip()
    return value or default


@dataclass(frozen=True)
class ParseTimeSettings:
    """Read from the environment when the DAG file is parsed (no database access)."""

    aws_conn_id: str = "aws_default"
    schedule: str | None = "@weekly"
    owner: str = "data-team"
    jobs_dir: str = str(_REPO_ROOT / "jobs")
    bootstrap_dir: str = str(_REPO_ROOT / "bootstrap")
    # The full pip freeze of the tested environment: passed to pip on the nodes as constraints,
    # so TensorFlow's own dependencies are pinned too. "none" ships no constraints.
    constraints_file: str = str(_REPO_ROOT / "constraints.txt")
    # Run parameter defaults (the trigger form shows these).
    input_uri: str = "s3://example-fruit-images/fruits-360/Training/"
    output_uri: str = "s3://example-fruit-features/runs/"
    weights: str = "imagenet"
    release_label: str = DEFAULT_RELEASE_LABEL
    master_instance_type: str = "m5.xlarge"
    core_instance_type: str = "m5.2xlarge"
    core_instance_count: int = 2
    core_spot: bool = False
    idle_timeout_seconds: int = 3600
    poke_interval_seconds: int = 60
    sensor_timeout_seconds: int = 6 * 3600
    deferrable: bool = True

    @property
    def constraints_path(self) -> Path | None:
        return None if self.constraints_file.lower() == "none" else Path(self.constraints_file)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ParseTimeSettings:
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in fields(cls):
            default = field.default
            text = _env(environ, field.name, "" if default is None else str(default))
            if isinstance(default, bool):
                values[field.name] = text.lower() in ("1", "true", "yes", "on")
            elif isinstance(default, int):
                values[field.name] = int(text)
            else:
                values[field.name] = text
        # "none" (or "off") turns the schedule off: manual and API-triggered runs only.
        schedule = str(values["schedule"])
        values["schedule"] = None if schedule.lower() in ("none", "off", "") else schedule
        return cls(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class DeploymentSettings:
    """Resolved at run time (Variable, then environment, then these defaults)."""

    # s3://bucket[/prefix] for job code, bootstrap and requirements; "" = the output's bucket.
    artifacts_uri: str = ""
    # EMR LogUri; "" = <artifacts_uri>/emr-logs/. Step stderr is read from here on failure.
    log_uri: str = ""
    service_role: str = "EMR_DefaultRole"
    job_flow_role: str = "EMR_EC2_DefaultRole"  # the EC2 instance profile of the nodes
    subnet_id: str = ""
    ec2_key_name: str = ""
    security_configuration: str = ""
    # Server-side encryption of every object the run writes: AES256 (SSE-S3) or aws:kms
    # (SSE-KMS, with s3_sse_kms_key_id or the account's aws/s3 key). Applies to the DAG's own
    # uploads and, through EMRFS (emrfs-site), to the Spark jobs' writes; a
    # security_configuration, when set, decides the jobs' encryption instead.
    s3_sse: str = "AES256"
    s3_sse_kms_key_id: str = ""
    # The spend guard (emr_pipeline.spend_guard): runs outside these limits are refused in
    # preflight. Instance families are the part of the type before the dot (m5 in m5.xlarge).
    allowed_instance_families: str = (
        "m5,m5a,m6i,m6a,m6g,m7i,m7a,m7g,m8g,c5,c5a,c6i,c6a,c6g,c7i,c7a,c7g,c8g"
    )
    max_core_instances: str = "20"
    max_idle_timeout_seconds: str = "10800"
    # Spark's binaryFile reader refuses larger files (and fails the whole job on one):
    # preflight refuses them first, and featurize is told the same limit.
    max_image_bytes: str = "2147483647"
    # The prices a run's cost estimate uses (emr_pipeline.cost): a local path on the workers or
    # an s3:// URI the connection may read; "" = the table shipped beside the DAG.
    price_table_uri: str = ""

    @classmethod
    def resolve(
        cls,
        variable: Callable[[str], str | None],
        environ: Mapping[str, str] | None = None,
    ) -> DeploymentSettings:
        """`variable(name)` returns an Airflow Variable's value or None when unset."""
        environ = os.environ if environ is None else environ
        values = {}
        for field in fields(cls):
            from_variable = (variable(VARIABLE_PREFIX + field.name) or "").strip()
            values[field.name] = from_variable or _env(environ, field.name, field.default)
        return cls(**values)


def where_to_set(name: str) -> str:
    """How a deployment changes the setting `name` (for messages that refuse a run)."""
    variable, env = VARIABLE_PREFIX + name, ENV_PREFIX + name.upper()
    return f"the Airflow Variable {variable} or the environment variable {env}"
