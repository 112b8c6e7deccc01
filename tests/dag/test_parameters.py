"""One table of run parameters (RunOptions' fields): the trigger form and RunOptions.validate
refuse the same out-of-bounds values, and the deployment's defaults parse as the field's type."""

from __future__ import annotations

import dataclasses

import pytest
from airflow.sdk import Param
from airflow.sdk.definitions.param import ParamValidationError

from emr_pipeline.operators import build_params
from emr_pipeline.options import InvalidRunOptionsError, RunOptions
from emr_pipeline.parameter import declared, deployment_defaults
from emr_pipeline.settings import ENV_PREFIX, ParseTimeSettings

VALID = {"input_uri": "s3://in-bucket/fruits/", "output_uri": "s3://out-bucket/runs/"}


def out_of_bounds(schema: dict) -> list:
    """Values each of the schema's bounds refuses."""
    values = []
    if "minimum" in schema:
        values.append(schema["minimum"] - 1)
    if "maximum" in schema:
        values.append(schema["maximum"] + 1)
    if "exclusiveMinimum" in schema:
        values.append(schema["exclusiveMinimum"])
    if "enum" in schema:
        values.append(schema["enum"][0].upper())
    if "pattern" in schema:
        values.append("NOT-" + "x")
    if "minLength" in schema:
        values.append("")
    return values


BOUNDED = [
    (field.name, value)
    for field, _ in declared(RunOptions)
    for value in out_of_bounds(field.metadata["schema"])
]


def test_every_parameter_is_in_the_form_with_its_declared_type():
    params = build_params(ParseTimeSettings.from_env({}))
    assert list(params) == [field.name for field in dataclasses.fields(RunOptions)]
    assert params["pca_k"].schema["type"] == ["null", "integer"]
    assert params["poke_interval_seconds"].schema["type"] == "number"
    assert params["core_spot"].schema["type"] == "boolean"
    assert len(BOUNDED) >= 15


@pytest.mark.parametrize(("name", "value"), BOUNDED, ids=[f"{n}={v!r}" for n, v in BOUNDED])
def test_the_form_and_validate_refuse_the_same_values(name, value):
    param: Param = build_params(ParseTimeSettings.from_env({}))[name]
    with pytest.raises(ParamValidationError):
        param.resolve(value)
    with pytest.raises(InvalidRunOptionsError, match=name):
        RunOptions.from_params({**VALID, name: value})


def test_the_deployment_sets_defaults_as_the_parameters_types():
    env = {
        f"{ENV_PREFIX}POKE_INTERVAL_SECONDS": "2.5",
        f"{ENV_PREFIX}CORE_INSTANCE_COUNT": "4",
        f"{ENV_PREFIX}DEFERRABLE": "off",
        f"{ENV_PREFIX}TASK_CPUS": "8",  # not a deployment default: the form keeps 1
    }
    defaults = deployment_defaults(RunOptions, env, ENV_PREFIX)
    assert defaults["poke_interval_seconds"] == 2.5
    assert defaults["core_instance_count"] == 4 and defaults["deferrable"] is False
    assert "task_cpus" not in defaults
    params = build_params(ParseTimeSettings.from_env(env))
    assert params["poke_interval_seconds"].value == 2.5
    assert params["task_cpus"].value == 1
    # The form's defaults make a valid run.
    RunOptions.from_params({name: params[name].value for name in params} | VALID)
