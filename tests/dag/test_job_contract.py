"""The DAG and the jobs read one contract: the same file, and a file that needs nothing but the
standard library (the Airflow side loads it without the jobs' packages)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from emr_pipeline import listing, options
from emr_pipeline.contract import contract, load_job_module, manifest_format

REPO = Path(__file__).resolve().parents[2]


def test_the_dag_loads_the_jobs_contract_file():
    from imagefeatures import contract as jobs_contract

    assert Path(contract.__file__).resolve() == Path(jobs_contract.__file__).resolve()
    assert listing.IMAGE_NAME_PATTERN is contract.IMAGE_NAME_PATTERN
    assert options.RUNTIMES is contract.RUNTIMES and options.FEATURE_SIZE == 1280


def _imported(nodes) -> set[str]:
    return {
        alias.name.split(".")[0]
        for node in nodes
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module)])
    }


def test_the_contract_imports_only_the_standard_library():
    """At import; the weights check imports h5py when it is called (the DAG's preflight and
    the featurize job both have it)."""
    tree = ast.parse(Path(contract.__file__).read_text())
    at_import = _imported(tree.body)
    assert at_import <= set(sys.stdlib_module_names) | {"__future__"}, at_import
    when_called = _imported(ast.walk(tree)) - at_import
    assert when_called <= {"h5py"}, when_called


def test_the_dag_side_never_imports_the_jobs_package():
    """Loading the DAG's modules leaves numpy, PIL and the imagefeatures package unimported (and
    pyarrow: the manifest's format loads when preflight first writes one)."""
    code = (
        "import sys; import emr_pipeline.plan, emr_pipeline.preflight; "
        "bad = [m for m in ('imagefeatures', 'numpy', 'PIL', 'pyarrow') if m in sys.modules]; "
        "print(bad)"
    )
    env_path = f"{REPO / 'dags'}"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, check=True, env={"PYTHONPATH": env_path, "PATH": ""},
    )  # fmt: skip
    assert result.stdout.strip() == "[]", result.stdout


def test_the_dag_writes_manifests_with_the_jobs_manifest_file():
    from imagefeatures import manifest as jobs_manifest

    fmt = manifest_format()
    assert Path(fmt.__file__).resolve() == Path(jobs_manifest.__file__).resolve()
    assert fmt is manifest_format()  # loaded once
    tree = ast.parse(Path(fmt.__file__).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module)])
    }
    assert imported <= set(sys.stdlib_module_names) | {"__future__", "pyarrow"}, imported


def test_a_jobs_folder_without_the_module_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="FRUIT_EMR_JOBS_DIR"):
        load_job_module(tmp_path, "contract")
