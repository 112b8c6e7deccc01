"""How a run parameter is declared, once: a RunOptions field made with `parameter(...)` holds
its type and default, its bounds, and the trigger form's section, title and description.

From that one declaration come the form's Param (`param_schema`), the checks of a single value
(`check_value`: the same bounds, for runs triggered without the form), and the deployment's
default read from `FRUIT_EMR_<NAME>` (`parse_setting`). No Airflow import: the options and their
checks stay testable without it.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from collections.abc import Iterable, Mapping
from typing import Any

# The form's sections, in the order the form shows them.
DATA, MODEL, CLUSTER, WAITING = "Data", "Model and PCA", "EMR cluster", "Waiting"

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}


class InvalidRunOptionsError(ValueError):
    """A parameter combination the pipeline cannot run; the message names the parameter."""


def parameter(
    default: Any,
    *,
    section: str,
    title: str,
    description: str,
    deployment: bool = False,
    form_default: Any = None,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: float | None = None,
    enum: Iterable[str] | None = None,
    pattern: str | None = None,
    min_length: int | None = None,
    value_pattern: str | None = None,
    expected: str | None = None,
    why: str = "",
) -> Any:
    """A RunOptions field. `deployment`: FRUIT_EMR_<NAME> sets its default in the form;
    `form_default`: the form's example value of a required field (`default` MISSING);
    `value_pattern`: a pattern checked by RunOptions.validate only, not by the form (whose
    message would be the bare regex); `expected`: what a value that misses `pattern` or
    `value_pattern` should look like; `why`: said after a bound's message."""
    schema = {
        "minimum": minimum,
        "maximum": maximum,
        "exclusiveMinimum": exclusive_minimum,
        "enum": None if enum is None else list(enum),
        "pattern": pattern,
        "minLength": min_length,
    }
    metadata = {
        "form": {"section": section, "title": title, "description": description},
        "schema": {key: value for key, value in schema.items() if value is not None},
        "deployment": deployment,
        "form_default": form_default,
        "value_pattern": value_pattern,
        "expected": expected,
        "why": f" ({why})" if why else "",
    }
    return dataclasses.field(default=default, metadata=metadata)


def declared(options_class: type) -> list[tuple[dataclasses.Field, Any]]:
    """(field, its resolved type annotation) of every parameter, in declaration order."""
    hints = typing.get_type_hints(options_class)
    return [(field, hints[field.name]) for field in dataclasses.fields(options_class)]


def param_schema(field: dataclasses.Field, annotation: Any) -> dict[str, Any]:
    """The keyword arguments of the field's Airflow Param, but its default."""
    kinds = [_JSON_TYPES[kind] for kind in _value_types(annotation)]
    json_type: Any = ["null", *kinds] if type(None) in typing.get_args(annotation) else kinds[0]
    return {"type": json_type, **field.metadata["schema"], **field.metadata["form"]}


def parse_setting(annotation: Any, text: str) -> Any:
    """A deployment's FRUIT_EMR_<NAME> value as the parameter's type."""
    kind = _value_types(annotation)[0]
    if kind is bool:
        return text.lower() in ("1", "true", "yes", "on")
    if kind is float and text.lstrip("-").isdigit():
        return int(text)  # a number written whole stays whole: the form shows 5, not 5.0
    return kind(text)


def check_value(field: dataclasses.Field, annotation: Any, value: Any) -> None:
    """The field's type (exactly, as JSON types) and bounds; InvalidRunOptionsError naming it."""
    name = field.name
    _check_type(name, annotation, value)
    if value is None:
        return
    schema, why = field.metadata["schema"], field.metadata["why"]
    if "minimum" in schema and value < schema["minimum"]:
        bound = schema["minimum"]
        raise InvalidRunOptionsError(f"{name} must be at least {bound}{why}, got {value}")
    if "maximum" in schema and value > schema["maximum"]:
        bound = schema["maximum"]
        raise InvalidRunOptionsError(f"{name} must be at most {bound}{why}, got {value}")
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        bound = schema["exclusiveMinimum"]
        raise InvalidRunOptionsError(f"{name} must be more than {bound}{why}, got {value}")
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(schema["enum"])
        raise InvalidRunOptionsError(f"{name}: expected one of {allowed}, got {value!r}")
    if "minLength" in schema and len(value) < schema["minLength"]:
        raise InvalidRunOptionsError(f"{name}: must not be empty")
    for pattern in (schema.get("pattern"), field.metadata["value_pattern"]):
        if pattern and not re.search(pattern, value):
            expected = field.metadata["expected"] or f"a value matching {pattern}"
            raise InvalidRunOptionsError(f"{name}: expected {expected}, got {value!r}")


def deployment_defaults(
    options_class: type, environ: Mapping[str, str], prefix: str
) -> dict[str, Any]:
    """{name: the form's default} of every parameter of `options_class` a deployment may set:
    `<prefix><NAME>` from `environ` when set, else the declared default."""
    defaults = {}
    for field, annotation in declared(options_class):
        if not field.metadata["deployment"]:
            continue
        text = environ.get(prefix + field.name.upper(), "").strip()
        declared_default = form_default(field)
        defaults[field.name] = parse_setting(annotation, text) if text else declared_default
    return defaults


def form_default(field: dataclasses.Field) -> Any:
    """The field's default, or the example the form shows for a required one."""
    if field.default is dataclasses.MISSING:
        return field.metadata["form_default"]
    return field.default


def _value_types(annotation: Any) -> list[type]:
    return [arg for arg in typing.get_args(annotation) or (annotation,) if arg is not type(None)]


def _type_error(name: str, expected: str, value: Any) -> InvalidRunOptionsError:
    return InvalidRunOptionsError(
        f"{name}: expected {expected}, got {value!r} ({type(value).__name__})"
    )


def _check_type(name: str, annotation: Any, value: Any) -> None:
    """Exact JSON types: 2.0 is not an integer here (JSON schema would accept it), and a
    boolean is neither an integer nor a number."""
    args = set(typing.get_args(annotation)) or {annotation}
    if value is None:
        if type(None) not in args:
            raise _type_error(name, "a value", value)
        return
    if int in args and float not in args and type(value) is not int:
        raise _type_error(name, "an integer", value)
    if float in args:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _type_error(name, "a number", value)
        if not math.isfinite(value):
            raise _type_error(name, "a finite number", value)
    if bool in args and type(value) is not bool:
        raise _type_error(name, "true or false", value)
    if str in args:
        if not isinstance(value, str):
            raise _type_error(name, "a string", value)
        if _CONTROL.search(value):
            raise InvalidRunOptionsError(f"{name}: control characters in {value!r}")
        if value != value.strip():
            raise InvalidRunOptionsError(f"{name}: leading or trailing whitespace in {value!r}")
