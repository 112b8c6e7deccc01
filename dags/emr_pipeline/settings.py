"""What a deployment sets once: defaults for the run parameters, the AWS plumbing, and the spend
guard's limits, each checked before a run uses it.

Two sources, read at different times on purpose:

* `FRUIT_EMR_*` environment variables, read when the DAG file is parsed. They give the
  trigger form its defaults, the schedule and the connection id. Reading Airflow Variables at
  parse time would query the metadata database on every parse of the file.
* Deployment settings that no run needs to change (artifacts location, EMR roles, subnet, the
  spend guard...) are resolved when the run starts, in preflight: the Airflow Variable
  `fruit_features_emr_<name>` if set, else `FRUIT_EMR_<NAME>`, else the built-in default.
  Whoever triggers a run cannot change them, and a refusal names the setting that would allow
  the run.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from emr_pipeline.contract import DEFAULT_JOBS_DIR
from emr_pipeline.options import RunOptions
from emr_pipeline.parameter import InvalidRunOptionsError, deployment_defaults
from emr_pipeline.uris import normalize_s3_uri

DAG_ID = "fruit_features_emr"

ENV_PREFIX = "FRUIT_EMR_"

VARIABLE_PREFIX = f"{DAG_ID}_"

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
    jobs_dir: str = str(DEFAULT_JOBS_DIR)
    bootstrap_dir: str = str(_REPO_ROOT / "bootstrap")
    # The full pip freeze of the tested environment: passed to pip on the nodes as constraints,
    # so TensorFlow's own dependencies are pinned too. "none" ships no constraints.
    constraints_file: str = str(_REPO_ROOT / "constraints.txt")
    # The run parameters' defaults that the deployment sets (FRUIT_EMR_INPUT_URI...): the
    # form shows them. Which parameters, and their types: RunOptions (emr_pipeline.options).
    param_defaults: Mapping[str, Any] = field(default_factory=dict)

    @property
    def constraints_path(self) -> Path | None:
        return None if self.constraints_file.lower() == "none" else Path(self.constraints_file)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ParseTimeSettings:
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {
            item.name: _env(environ, item.name, "" if item.default is None else str(item.default))
            for item in fields(cls)
            if item.name != "param_defaults"
        }
        # "none" (or "off") turns the schedule off: manual and API-triggered runs only.
        schedule = str(values["schedule"])
        values["schedule"] = None if schedule.lower() in ("none", "off", "") else schedule
        return cls(**values, param_defaults=deployment_defaults(RunOptions, environ, ENV_PREFIX))


@dataclass(frozen=True)
class DeploymentSettings:
    """Resolved at run time (Variable, then environment, then these defaults)."""

    # s3://bucket[/prefix] for job code, bootstrap and requirements; "" = the output's bucket.
    artifacts_uri: str = ""
    # EMR LogUri; "" = <artifacts_uri>/emr-logs/. Step stderr is read from here on failure.
    log_uri: str = ""
    service_role: str = "EMR_DefaultRole"
    # The nodes' EC2 instance profile: one of this DAG's own (iam/README.md), not AWS's shared
    # EMR_EC2_DefaultRole, which any cluster in the account may use.
    job_flow_role: str = "fruit-features-emr-nodes"
    subnet_id: str = ""
    ec2_key_name: str = ""
    security_configuration: str = ""
    # Server-side encryption of every object the run writes: AES256 (SSE-S3) or aws:kms
    # (SSE-KMS, with s3_sse_kms_key_id or the account's aws/s3 key). Applies to the DAG's own
    # uploads and, through EMRFS (emrfs-site), to the Spark jobs' writes; a
    # security_configuration, when set, decides the jobs' encryption instead.
    s3_sse: str = "AES256"
    s3_sse_kms_key_id: str = ""
    # The spend guard (SpendLimits, below): runs outside these limits are refused in
    # preflight. Instance families are the part of the type before the dot (m5 in m5.xlarge).
    # x86_64 only: Graviton types are refused whatever this says (emr_pipeline.options).
    allowed_instance_families: str = "m5,m5a,m6i,m6a,m7i,m7a,c5,c5a,c6i,c6a,c7i,c7a"
    max_core_instances: str = "20"
    max_idle_timeout_seconds: str = "10800"
    # Spark's binaryFile reader refuses larger files (and fails the whole job on one):
    # preflight refuses them first, and featurize is told the same limit.
    max_image_bytes: str = "2147483647"
    # Where an S3 Inventory configuration of the input's bucket writes its reports, as AWS lays
    # them out: s3://<destination-bucket>/<prefix>/<source-bucket>/<configuration id>/ (CSV
    # or Parquet, with the Size and ETag fields). Preflight then builds the run's manifest
    # from the latest report instead of listing the input: for catalogues too large to list
    # per run; objects newer than the report wait for the next one. "" = list the input.
    inventory_uri: str = ""
    # The prices a run's cost estimate uses (emr_pipeline.cost): a local path on the workers or
    # an s3:// URI the connection may read; "" = the table shipped beside the DAG.
    price_table_uri: str = ""
    # Which Airflow deployment runs are from (prod, staging): in every run's key, marker and
    # cluster tags, so that two deployments sharing an output root or an account never take
    # each other's runs for their own. "" = one made at the first run and kept in the Airflow
    # Variable (each deployment's metadata database has its own).
    deployment_id: str = ""

    @classmethod
    def resolve(
        cls,
        variable: Callable[[str], str | None],
        environ: Mapping[str, str] | None = None,
    ) -> DeploymentSettings:
        """`variable(name)` returns an Airflow Variable's value or None when unset."""
        environ = os.environ if environ is None else environ
        values = {}
        for item in fields(cls):
            from_variable = (variable(VARIABLE_PREFIX + item.name) or "").strip()
            values[item.name] = from_variable or _env(environ, item.name, item.default)
        return cls(**values)


# Lower-case letters, digits and dashes: a path segment, an EMR tag value, a cluster name part.
DEPLOYMENT_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")


class DeploymentIdError(ValueError):
    """The deployment's id cannot name its runs."""


def with_deployment_id(
    deployment: DeploymentSettings, store: Callable[[str, str], None]
) -> DeploymentSettings:
    """`deployment` with its id: the one set, checked, else a new random one, kept with
    `store(variable name, value)` (an Airflow Variable) so every later run has it too."""
    chosen = deployment.deployment_id
    if not chosen:
        chosen = f"d{secrets.token_hex(5)}"
        store(VARIABLE_PREFIX + "deployment_id", chosen)
    elif not DEPLOYMENT_ID.fullmatch(chosen):
        raise DeploymentIdError(
            f"deployment setting deployment_id: {chosen!r} must be 1 to 32 lower-case letters, "
            f"digits and dashes, starting with a letter or digit (set in "
            f"{where_to_set('deployment_id')})"
        )
    return replace(deployment, deployment_id=chosen)


def where_to_set(name: str) -> str:
    """How a deployment changes the setting `name` (for messages that refuse a run)."""
    variable, env = VARIABLE_PREFIX + name, ENV_PREFIX + name.upper()
    return f"the Airflow Variable {variable} or the environment variable {env}"


_FAMILY = re.compile(r"[a-z][a-z0-9-]*")


def _positive_int(deployment: DeploymentSettings, name: str) -> int:
    text = getattr(deployment, name)
    if not re.fullmatch(r"[0-9]+", text) or int(text) < 1:
        raise InvalidRunOptionsError(
            f"deployment setting {name}: expected a positive integer, got {text!r} "
            f"(set in {where_to_set(name)})"
        )
    return int(text)


@dataclass(frozen=True)
class SpendLimits:
    instance_families: tuple[str, ...]
    max_core_instances: int
    max_idle_timeout_seconds: int

    @classmethod
    def from_deployment(cls, deployment: DeploymentSettings) -> SpendLimits:
        families = tuple(
            f.strip() for f in deployment.allowed_instance_families.split(",") if f.strip()
        )
        malformed = [f for f in families if not _FAMILY.fullmatch(f)]
        if not families or malformed:
            raise InvalidRunOptionsError(
                "deployment setting allowed_instance_families: expected a comma-separated "
                f"list such as m5,c6i, got {deployment.allowed_instance_families!r} "
                f"(set in {where_to_set('allowed_instance_families')})"
            )
        return cls(
            instance_families=families,
            max_core_instances=_positive_int(deployment, "max_core_instances"),
            max_idle_timeout_seconds=_positive_int(deployment, "max_idle_timeout_seconds"),
        )


def check_spend(options: RunOptions, limits: SpendLimits) -> None:
    """Raise InvalidRunOptionsError naming the parameter and the setting that would allow it."""
    for name in ("master_instance_type", "core_instance_type"):
        if name == "core_instance_type" and options.core_instance_count == 0:
            continue  # no core nodes: their type costs nothing
        instance_type = getattr(options, name)
        family = instance_type.split(".", 1)[0]
        if family not in limits.instance_families:
            raise InvalidRunOptionsError(
                f"{name}: {instance_type} is of family {family}, which this deployment does "
                f"not allow ({', '.join(limits.instance_families)}); add it to the deployment "
                f"setting allowed_instance_families ({where_to_set('allowed_instance_families')})"
            )
    if options.core_instance_count > limits.max_core_instances:
        raise InvalidRunOptionsError(
            f"core_instance_count: {options.core_instance_count} is over this deployment's cap "
            f"of {limits.max_core_instances}; raise the deployment setting max_core_instances "
            f"({where_to_set('max_core_instances')})"
        )
    if options.idle_timeout_seconds > limits.max_idle_timeout_seconds:
        raise InvalidRunOptionsError(
            f"idle_timeout_seconds: {options.idle_timeout_seconds} is over this deployment's "
            f"cap of {limits.max_idle_timeout_seconds}; raise the deployment setting "
            f"max_idle_timeout_seconds ({where_to_set('max_idle_timeout_seconds')})"
        )


# The most a featurize worker reads of one image into memory (a Java int, as Spark's
# binaryFile limit was): larger images are refused before the cluster.
SPARK_MAX_FILE_BYTES = 2**31 - 1

SSE_ALGORITHMS = ("AES256", "aws:kms")


def s3_encryption(deployment: DeploymentSettings) -> dict[str, str]:
    """put_object/upload_file arguments for the deployment's server-side encryption."""
    if deployment.s3_sse not in SSE_ALGORITHMS:
        raise InvalidRunOptionsError(
            f"deployment setting s3_sse: expected one of {', '.join(SSE_ALGORITHMS)}, "
            f"got {deployment.s3_sse!r}"
        )
    extra = {"ServerSideEncryption": deployment.s3_sse}
    if deployment.s3_sse_kms_key_id:
        if deployment.s3_sse != "aws:kms":
            raise InvalidRunOptionsError(
                "deployment setting s3_sse_kms_key_id needs s3_sse=aws:kms"
            )
        extra["SSEKMSKeyId"] = deployment.s3_sse_kms_key_id
    return extra


def setting_uri(setting: str, uri: str) -> str:
    try:
        return normalize_s3_uri(uri)
    except ValueError as exc:
        raise InvalidRunOptionsError(
            f"deployment setting {setting}: {exc} (set in {where_to_set(setting)})"
        ) from exc


def max_image_bytes(deployment: DeploymentSettings) -> int:
    text = deployment.max_image_bytes
    if not re.fullmatch(r"[0-9]+", text) or not 1 <= int(text) <= SPARK_MAX_FILE_BYTES:
        raise InvalidRunOptionsError(
            f"deployment setting max_image_bytes: expected an integer in "
            f"[1, {SPARK_MAX_FILE_BYTES}] (what a worker reads of one image), got {text!r} "
            f"(set in {where_to_set('max_image_bytes')})"
        )
    return int(text)
