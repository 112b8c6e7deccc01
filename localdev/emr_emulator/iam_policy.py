"""IAM policy evaluation for the emulator: as much of AWS's logic as our policies can use.

An identity policy allows a request when no statement denies it and at least one allows it. A
statement applies when its Action (or NotAction), its Resource (or NotResource) and every one of
its conditions match. Action patterns are case-insensitive, resource patterns case-sensitive;
both use IAM's wildcards (`*` any run of characters, `/` included, and `?` one character).

Conditions follow AWS's rules for the operators below, with the `IfExists` suffix and the
`ForAnyValue:`/`ForAllValues:` set prefixes. An operator outside this list raises
UnsupportedPolicyError instead of guessing, so a policy edit the emulator cannot judge fails
loudly rather than passing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

ALLOW = "allow"
IMPLICIT_DENY = "implicit deny"
EXPLICIT_DENY = "explicit deny"

_STRING_OPERATORS = {
    "StringEquals": (False, False, False),  # (negated, wildcards, ignore case)
    "StringNotEquals": (True, False, False),
    "StringEqualsIgnoreCase": (False, False, True),
    "StringNotEqualsIgnoreCase": (True, False, True),
    "StringLike": (False, True, False),
    "StringNotLike": (True, True, False),
    "ArnEquals": (False, True, False),  # ARN operators take wildcards in every segment
    "ArnLike": (False, True, False),
    "ArnNotEquals": (True, True, False),
    "ArnNotLike": (True, True, False),
    "Bool": (False, False, True),
}


class UnsupportedPolicyError(ValueError):
    """The policy uses IAM syntax the emulator does not evaluate."""


@dataclass(frozen=True)
class Decision:
    outcome: str  # ALLOW, IMPLICIT_DENY or EXPLICIT_DENY
    statement: str | None = None  # the Sid (or index) that allowed or denied

    @property
    def allowed(self) -> bool:
        return self.outcome == ALLOW


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@lru_cache(maxsize=1024)
def _wildcard(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def matches(pattern: str, value: str, ignore_case: bool = False) -> bool:
    """IAM wildcard match of a whole value: `*` any characters (`/` too), `?` one."""
    return _wildcard(pattern, ignore_case).fullmatch(value) is not None


def _any_match(patterns: Iterable[str], value: str, ignore_case: bool) -> bool:
    return any(matches(pattern, value, ignore_case) for pattern in patterns)


def _context_values(context: Mapping[str, list[str]], key: str) -> list[str] | None:
    # Condition key names are case-insensitive.
    wanted = key.lower()
    for name, values in context.items():
        if name.lower() == wanted:
            return list(values)
    return None


def _value_matches(operator: str, policy_values: list[str], value: str) -> bool:
    _, wildcards, ignore_case = _STRING_OPERATORS[operator]
    if wildcards:
        return _any_match(policy_values, value, ignore_case)
    if ignore_case:
        return value.lower() in {v.lower() for v in policy_values}
    return value in policy_values


def _condition_holds(
    operator: str, key: str, policy_values: list[str], context: Mapping[str, list[str]]
) -> bool:
    values = _context_values(context, key)
    if operator == "Null":
        wants_absent = {str(v).lower() for v in policy_values} == {"true"}
        return (values is None or values == []) == wants_absent
    set_prefix = ""
    if ":" in operator:
        set_prefix, operator = operator.split(":", 1)
    if_exists = operator.endswith("IfExists")
    if if_exists:
        operator = operator[: -len("IfExists")]
    if operator not in _STRING_OPERATORS or set_prefix not in ("", "ForAnyValue", "ForAllValues"):
        raise UnsupportedPolicyError(f"condition operator {operator!r} is not evaluated here")
    negated = _STRING_OPERATORS[operator][0]
    policy_values = [str(v) for v in policy_values]
    if values is None:
        # A missing key: IfExists and ForAllValues hold; negated operators hold too (AWS
        # evaluates "not equal to anything" as true); everything else fails.
        return if_exists or set_prefix == "ForAllValues" or (negated and not set_prefix)
    hits = [_value_matches(operator, policy_values, value) for value in values]
    if set_prefix == "ForAllValues":
        return all(not hit for hit in hits) if negated else all(hits)
    if negated and not set_prefix:
        return not any(hits)
    return (not all(hits)) if negated else any(hits)


def _conditions_hold(statement: Mapping[str, Any], context: Mapping[str, list[str]]) -> bool:
    for operator, block in statement.get("Condition", {}).items():
        for key, policy_values in block.items():
            if not _condition_holds(operator, key, as_list(policy_values), context):
                return False
    return True


def _statement_applies(
    statement: Mapping[str, Any], action: str, resource: str, context: Mapping[str, list[str]]
) -> bool:
    if "Action" in statement:
        if not _any_match(as_list(statement["Action"]), action, ignore_case=True):
            return False
    elif _any_match(as_list(statement.get("NotAction", [])), action, ignore_case=True):
        return False
    if "Resource" in statement:
        if not _any_match(as_list(statement["Resource"]), resource, ignore_case=False):
            return False
    elif _any_match(as_list(statement.get("NotResource", [])), resource, ignore_case=False):
        return False
    return _conditions_hold(statement, context)


def evaluate(
    policy: Mapping[str, Any],
    action: str,
    resource: str,
    context: Mapping[str, list[str]] | None = None,
) -> Decision:
    """What `policy` says about `action` on `resource` given the request's condition keys."""
    context = context or {}
    allowed_by: str | None = None
    for index, statement in enumerate(as_list(policy["Statement"])):
        if "Principal" in statement or "NotPrincipal" in statement:
            raise UnsupportedPolicyError("identity policies have no Principal")
        if not _statement_applies(statement, action, resource, context):
            continue
        name = statement.get("Sid") or f"statement {index}"
        if statement.get("Effect") == "Deny":
            return Decision(EXPLICIT_DENY, name)
        if statement.get("Effect") == "Allow" and allowed_by is None:
            allowed_by = name
    return Decision(ALLOW, allowed_by) if allowed_by else Decision(IMPLICIT_DENY)
