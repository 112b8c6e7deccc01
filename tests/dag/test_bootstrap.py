"""The bootstrap action: shellcheck-clean, pinned like local runs, idempotent, loud on failure."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.dag.paths import BOOTSTRAP_DIR, REPO

SCRIPT = BOOTSTRAP_DIR / "install-python-deps.sh"
SHARED_PINS = ("tensorflow-cpu", "keras", "openvino", "numpy", "pillow", "h5py")


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9._-]+)(\[[^\]]*\])?==([^\s;#]+)", line.strip())
        if match:
            found[match.group(1).lower()] = match.group(3)
    return found


def test_shellcheck_is_clean():
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (make setup installs it)")
    scripts = sorted(BOOTSTRAP_DIR.glob("*.sh")) + sorted((REPO / "localdev").glob("*.sh"))
    assert len(scripts) >= 2
    result = subprocess.run([shellcheck, *map(str, scripts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_node_requirements_pin_the_same_versions_as_local_runs():
    local, node = pins(REPO / "requirements.txt"), pins(BOOTSTRAP_DIR / "requirements-emr.txt")
    for name in SHARED_PINS:
        assert name in node, f"{name} is not pinned in requirements-emr.txt"
        assert node[name] == local[name], f"{name}: EMR {node[name]} != local {local[name]}"


def test_script_is_strict_and_executable():
    text = SCRIPT.read_text()
    assert "set -euo pipefail" in text
    assert "python3.11" in text
    assert SCRIPT.stat().st_mode & stat.S_IXUSR


@pytest.fixture
def fake_node(tmp_path):
    """A PATH whose python3.11 records its arguments; pip fails when FAIL_PIP is set."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    python = bin_dir / "python3.11"
    python.write_text(
        "#!/usr/bin/env bash\n"
        'echo "$*" >> "$CALLS"\n'
        'if [[ "$*" == *"pip install"* && -n "${FAIL_PIP:-}" ]]; then exit 1; fi\n'
    )
    python.chmod(0o755)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# pinned\nnumpy==2.4.6\npillow==13.0.0\n")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "CALLS": str(tmp_path / "calls.log"),
        "SUDO": "",
        "STATE_DIR": str(tmp_path / "state"),
        "KERAS_HOME": str(tmp_path / "keras"),
    }
    return tmp_path, requirements, env


def run(args, env):
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True)


def pip_installs(tmp_path: Path) -> int:
    calls = (tmp_path / "calls.log").read_text().splitlines()
    return sum("pip install" in call for call in calls)


def test_installs_once_and_is_safe_to_run_twice(fake_node):
    tmp_path, requirements, env = fake_node
    first = run([str(requirements)], env)
    assert first.returncode == 0, first.stderr
    assert "requirements installed" in first.stderr
    assert pip_installs(tmp_path) == 1
    second = run([str(requirements)], env)
    assert second.returncode == 0, second.stderr
    assert "already installed: skipping pip" in second.stderr
    assert pip_installs(tmp_path) == 1
    assert (tmp_path / "keras").is_dir()


def test_constraints_and_weights_cache(fake_node):
    tmp_path, requirements, env = fake_node
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("absl-py==2.5.1\n")
    result = run(
        [str(requirements), "--constraints", str(constraints), "--cache-imagenet-weights"], env
    )
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "calls.log").read_text()
    assert "-c " in calls and "--only-binary=:all:" in calls
    assert "MobileNetV2" in calls  # the pre-cache ran with the node's python


def test_failed_install_fails_the_node_clearly(fake_node):
    tmp_path, requirements, env = fake_node
    result = run([str(requirements)], {**env, "FAIL_PIP": "1"})
    assert result.returncode != 0
    assert "ERROR: pip install failed" in result.stderr
    assert not (tmp_path / "state" / "requirements.sha256").exists()


def test_unpinned_requirement_is_refused(fake_node):
    tmp_path, requirements, env = fake_node
    requirements.write_text("numpy>=2\n")
    result = run([str(requirements)], env)
    assert result.returncode != 0
    assert "must be pinned" in result.stderr


def test_missing_argument_or_file(fake_node):
    tmp_path, _, env = fake_node
    assert "usage" in run([], env).stderr
    missing = run([str(tmp_path / "nope.txt")], env)
    assert missing.returncode != 0 and "cannot read" in missing.stderr


def test_the_real_node_requirements_pass_the_pin_check(fake_node):
    tmp_path, _, env = fake_node
    result = run([str(BOOTSTRAP_DIR / "requirements-emr.txt")], env)
    assert result.returncode == 0, result.stderr
