"""Run the real DAG with `dag.test()` against the local EMR emulator.

Shared by `make demo` and the end-to-end tests: an Airflow home with a migrated SQLite
database, the `aws_default` connection pointed at the emulator, buckets seeded with images,
one DAG run, and what it left behind (task durations, report, plot).
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localdev.emr_emulator.credentials import REGION, Credentials, read_key_file
from localdev.local_spark import REPO_ROOT, use_local_spark_env

# The DAG's package, importable as Airflow imports it (dags/ on the path): the URIs here follow
# the DAG's own rules.
DAGS_DIR = str(REPO_ROOT / "dags")
if DAGS_DIR not in sys.path:
    sys.path.insert(0, DAGS_DIR)
from emr_pipeline.uris import as_prefix, join_uri, run_key, split_s3_uri  # noqa: E402

DAG_ID = "fruit_features_emr"
# The Airflow process's own environment: fake keys that AWS refuses and the emulator does not
# know, so that a call made outside the connection reaches nothing.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
}


def aws_connection(endpoint_url: str, credentials: Credentials) -> str:
    """AIRFLOW_CONN_AWS_DEFAULT for the emulator (or a moto server), as JSON."""
    return json.dumps(
        {
            "conn_type": "aws",
            "login": credentials.access_key,
            "password": credentials.secret_key,
            "extra": {"region_name": REGION, "endpoint_url": endpoint_url},
        }
    )


def emulator_connection(key_file: Path) -> str:
    """AIRFLOW_CONN_AWS_DEFAULT for the emulator whose key file is `key_file` (read as any
    other client of the emulator reads it)."""
    emulator = read_key_file(key_file)
    return aws_connection(emulator.endpoint_url, emulator.credentials)


# The deployment id of the demo's and the tests' local Airflow (the DAG's deployment_id).
LOCAL_DEPLOYMENT_ID = "local"


def airflow_env(airflow_home: Path) -> dict[str, str]:
    """Environment for a local Airflow that runs this checkout's dags/ on SQLite."""
    return {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home}/airflow.db",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        "FRUIT_EMR_SCHEDULE": "none",
        "FRUIT_EMR_DEPLOYMENT_ID": LOCAL_DEPLOYMENT_ID,
        **FAKE_CREDENTIALS,
    }


def migrate_db(env: Mapping[str, str]) -> None:
    """`airflow db migrate` (a no-op when the database is already current)."""
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{result.stdout[-2000:]}{result.stderr}")


# Where the step sensors and their triggers log (emr_pipeline.sensors, emr_pipeline.triggers).
STEP_WATCH_LOGGERS = "airflow.task.operators.emr_pipeline.sensors=INFO emr_pipeline.triggers=INFO"


@contextmanager
def emulated_airflow(state_dir: Path, say: Any = print) -> Iterator[Any]:
    """This process set up to run the DAG with `run_dag`: local Spark for the steps, an Airflow
    home on SQLite under `state_dir/airflow` (migrated on first use), and a running EMR emulator
    (work folder `state_dir/emulator`) that the `aws_default` connection points at."""
    use_local_spark_env()
    env = airflow_env(state_dir / "airflow")
    # Task logs at WARNING, but the step sensors' (and their triggers') own lines: the step's
    # state, its progress and its new log lines while it runs.
    env.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    env.setdefault("AIRFLOW__LOGGING__NAMESPACE_LEVELS", STEP_WATCH_LOGGERS)
    os.environ.update(env)
    say("preparing Airflow's metadata database (first run only takes a while)")
    (state_dir / "airflow").mkdir(parents=True, exist_ok=True)
    (state_dir / "airflow").chmod(0o700)  # its database holds the runs' settings and XComs
    migrate_db(env)

    from localdev.emr_emulator import EmrEmulator

    with EmrEmulator(port=0, work_dir=state_dir / "emulator") as emulator:
        os.environ["AIRFLOW_CONN_AWS_DEFAULT"] = emulator_connection(emulator.key_file)
        yield emulator


def s3_client(key_file: Path) -> Any:
    """An S3 client on the emulator whose key file is `key_file`."""
    return read_key_file(key_file).client("s3")


def emr_client(key_file: Path) -> Any:
    """An EMR client on the emulator whose key file is `key_file`."""
    return read_key_file(key_file).client("emr")


def ensure_bucket(s3: Any, bucket: str) -> None:
    if bucket not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
        s3.create_bucket(Bucket=bucket)


def upload_tree(s3: Any, root: Path, uri: str) -> int:
    """Upload every file under `root` to the prefix `uri`; returns the number of files."""
    bucket, prefix = split_s3_uri(uri)
    ensure_bucket(s3, bucket)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    for path in files:
        key = f"{prefix.rstrip('/')}/{path.relative_to(root).as_posix()}".lstrip("/")
        s3.upload_file(str(path), bucket, key)
    return len(files)


@dataclass
class DagRunResult:
    state: str
    run_id: str
    task_states: dict[str, str]
    task_seconds: dict[str, float]
    summary: dict[str, Any] | None  # read_report's XCom, when it ran


def load_dag() -> Any:
    """A fresh DAG object from dags/fruit_features_emr.py (Airflow env must be set already).

    Fresh on purpose: in-process task runs write the run's conf into the Param objects the
    DAG shares with them (airflow.sdk process_params), so a reused DAG object would carry one
    run's parameters into the next `dag.test()`. Production runs tasks in new processes.
    """
    import fruit_features_emr

    return importlib.reload(fruit_features_emr).dag


def run_dag(run_conf: dict[str, Any], dag: Any = None) -> DagRunResult:
    """One `dag.test()` run with `run_conf`, on `dag` or a freshly loaded one."""
    dag_run = (dag or load_dag()).test(run_conf=run_conf)
    instances = dag_run.get_task_instances()
    states = {ti.task_id: str(ti.state) for ti in instances}
    seconds = {
        ti.task_id: (ti.end_date - ti.start_date).total_seconds()
        for ti in instances
        if ti.start_date and ti.end_date
    }
    summary = None
    for ti in instances:
        if ti.task_id == "read_report" and str(ti.state) == "success":
            summary = ti.xcom_pull(task_ids="read_report")
    return DagRunResult(str(dag_run.state), dag_run.run_id, states, seconds, summary)


def cluster_states(key_file: Path, settle_seconds: float = 20) -> dict[str, str]:
    """Every cluster the emulator knows, by id: its state, once none is still TERMINATING
    (waiting up to `settle_seconds`: a terminated cluster passes through it, as on EMR)."""
    deadline = time.monotonic() + settle_seconds
    while True:
        clusters = emr_client(key_file).list_clusters()["Clusters"]
        states = {c["Id"]: c["Status"]["State"] for c in clusters}
        if "TERMINATING" not in states.values() or time.monotonic() > deadline:
            return states
        time.sleep(0.2)


def run_output_uri(output_root: str, run_id: str, deployment_id: str = LOCAL_DEPLOYMENT_ID) -> str:
    """Where the DAG writes a run: <output_root>/<run key>/ (the DAG's own rule)."""
    return as_prefix(join_uri(output_root, run_key(run_id, deployment_id)))


def download(s3: Any, uri: str, destination: Path) -> Path:
    bucket, key = split_s3_uri(uri)
    destination.parent.mkdir(parents=True, exist_ok=True)
    s3.download_file(bucket, key, str(destination))
    return destination
