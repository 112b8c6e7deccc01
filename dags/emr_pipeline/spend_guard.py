"""The spend guard: what a deployment lets a run pay for, checked in preflight.

The limits are deployment settings (Airflow Variables or FRUIT_EMR_* environment variables,
emr_pipeline.settings), never trigger-form parameters: whoever triggers a run cannot raise
them. A refusal names the setting that would allow the run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from emr_pipeline.options import InvalidRunOptionsError, RunOptions
from emr_pipeline.settings import DeploymentSettings, where_to_set

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
