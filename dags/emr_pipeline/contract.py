"""What the DAG shares with the Spark jobs: jobs/imagefeatures/contract.py (dataset names,
weights, runtimes, defaults), loaded by path from the deployment's jobs folder.

Loaded by path rather than imported as `imagefeatures.contract`: importing the package would
put the jobs' modules (numpy, PIL, pyspark) on the Airflow side's import path. The jobs folder
is the deployment's (`FRUIT_EMR_JOBS_DIR`, the checkout's jobs/ by default). Imports nothing of
this package: every other module may use it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

PACKAGE_NAME = "imagefeatures"
# Read before any other setting (emr_pipeline.settings): the contract is loaded from it when
# this module is imported.
JOBS_DIR_VARIABLE = "FRUIT_EMR_JOBS_DIR"
DEFAULT_JOBS_DIR = Path(__file__).resolve().parents[2] / "jobs"


def jobs_dir_from_env(environ: Mapping[str, str] | None = None) -> str:
    """The deployment's jobs folder: FRUIT_EMR_JOBS_DIR, else the checkout's jobs/."""
    environ = os.environ if environ is None else environ
    return environ.get(JOBS_DIR_VARIABLE, "").strip() or str(DEFAULT_JOBS_DIR)


def load_job_module(jobs_dir: Path, name: str) -> ModuleType:
    """jobs/imagefeatures/<name>.py as a module of its own (it may import the standard library
    and pyarrow, never the imagefeatures package)."""
    path = Path(jobs_dir) / PACKAGE_NAME / f"{name}.py"
    module_name = f"_{PACKAGE_NAME}_{name}"
    loaded = sys.modules.get(module_name)
    if loaded is not None and loaded.__file__ == str(path):
        return loaded
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None or not path.is_file():
        raise FileNotFoundError(f"cannot load {path}: is FRUIT_EMR_JOBS_DIR the jobs folder?")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # before running it: dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


contract = load_job_module(Path(jobs_dir_from_env()), "contract")


def manifest_format() -> ModuleType:
    """The manifest's format (jobs/imagefeatures/manifest.py), loaded on first use: it imports
    pyarrow, which the DAG file's parse should not pay for."""
    return load_job_module(Path(jobs_dir_from_env()), "manifest")
