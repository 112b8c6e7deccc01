"""The DAG package's layers (pyproject.toml's import-linter contracts, checked by make lint)
hold, and break when a lower module imports a higher one or two modules import each other."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.dag.paths import DAGS_DIR, REPO

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(dags_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(REPO / "pyproject.toml")],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(dags_dir)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_package_keeps_its_layers():
    result = lint_imports(DAGS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # a pure builder calling into the AWS layer
        ("plan", "from emr_pipeline import preflight", "three layers"),
        # two modules of one layer importing each other
        ("s3", "from emr_pipeline import preflight", "no import circle"),
        # the AWS layer importing Airflow
        ("cost", "import airflow", "never import Airflow"),
    ],
)
def test_a_wrong_import_breaks_a_contract(tmp_path: Path, module: str, line: str, broken: str):
    copy = tmp_path / "dags"
    shutil.copytree(DAGS_DIR / "emr_pipeline", copy / "emr_pipeline")
    source = copy / "emr_pipeline" / f"{module}.py"
    source.write_text(source.read_text() + f"\n{line}  # noqa\n")
    result = lint_imports(copy)
    assert result.returncode != 0
    broken_lines = [row for row in result.stdout.splitlines() if row.endswith("BROKEN")]
    assert any(broken in row for row in broken_lines), result.stdout
