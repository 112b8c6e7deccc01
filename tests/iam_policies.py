"""The IAM policies in iam/, loaded for the tests.

The emulator evaluates them (conditions included) on every call signed with the key they are
enforced for: localdev.emr_emulator.iam_policy and api_calls.enforce.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from localdev.emr_emulator.iam_policy import as_list

IAM_DIR = Path(__file__).resolve().parents[1] / "iam"
CONNECTION_POLICY = IAM_DIR / "airflow-connection-policy.json"
INSTANCE_POLICY = IAM_DIR / "emr-instance-role-policy.json"

__all__ = ["CONNECTION_POLICY", "IAM_DIR", "INSTANCE_POLICY", "as_list", "load", "statements"]


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return as_list(policy["Statement"])
