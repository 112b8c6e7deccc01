"""The Makefile parses and its README targets say what they run (`make -n`, nothing runs)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_every_documented_target_dry_runs():
    result = subprocess.run(
        ["make", "-n", "setup", "demo", "jobs-demo", "airflow", "test", "lint", "bench"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    commands = result.stdout
    for module in ("localdev.dag_demo", "localdev.local_demo", "localdev.airflow_stack"):
        assert f"-m {module}" in commands, module
    assert "localdev/install-system-packages.sh" in commands
    assert "FRUIT_TESTS_REQUIRE_STACK=1" in commands


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_stack_tests_can_be_left_out():
    result = subprocess.run(
        ["make", "-n", "test", "STACK_TESTS=0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert 'if [ "0" = 1 ]; then localdev/install-system-packages.sh; fi' in result.stdout
    assert '-m "not stack"' in result.stdout
