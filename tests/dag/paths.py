"""Paths the DAG tests share."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DAGS_DIR = REPO / "dags"
BOOTSTRAP_DIR = REPO / "bootstrap"
JOBS_DIR = REPO / "jobs"
