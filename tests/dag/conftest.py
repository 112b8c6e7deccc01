"""Fixtures for the DAG tests: fake AWS, an Airflow home with a migrated SQLite DB, and a
moto server whose EMR steps a simulator finishes (moto never finishes a step on its own).

Airflow reads its configuration once, when it is first imported, so the environment below
is set at this module's import, before any test module imports airflow.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import FAKE_AWS_ENV, FAKE_KEY, aws_client, set_fake_aws_env

REPO = Path(__file__).resolve().parents[2]

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="fruit-emr-airflow-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME}/airflow.db",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        # The runs' deployment (localdev.dag_run.LOCAL_DEPLOYMENT_ID, what run_output_uri uses).
        "FRUIT_EMR_DEPLOYMENT_ID": "local",
        # Nothing in these tests may reach real AWS, even by accident.
        **FAKE_AWS_ENV,
    }
)
if "airflow" in sys.modules:  # pragma: no cover - a guard for a misordered suite
    sys.stderr.write("tests/dag: airflow was imported before its conftest set AIRFLOW_HOME\n")


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials (again, per test): moto accepts them, real AWS would not."""
    set_fake_aws_env(monkeypatch)


@pytest.fixture
def mocked_aws(aws_credentials: None) -> Iterator[None]:
    """moto in-process (mock_aws): for the helpers that take a boto3 client."""
    from moto import mock_aws

    with mock_aws():
        yield


@pytest.fixture
def s3(mocked_aws: None) -> Any:
    return aws_client("s3")


@pytest.fixture
def emr(mocked_aws: None) -> Any:
    return aws_client("emr")


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """`airflow db migrate` once per session, into this session's AIRFLOW_HOME."""
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A moto server on a free port, in this process (its backends are this process's)."""
    from moto.emr.models import Step
    from moto.server import ThreadedMotoServer

    # moto's DescribeStep has no FailureDetails; real EMR has. Add them when a test sets them.
    original_status = Step.status

    def status_with_failure_details(step: Step) -> dict[str, Any]:
        status = original_status.fget(step)
        details = getattr(step, "failure_details", None)
        return {**status, "FailureDetails": details} if details else status

    Step.status = property(status_with_failure_details)  # type: ignore[assignment]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        yield endpoint
    finally:
        server.stop()
        Step.status = original_status  # type: ignore[assignment]


@pytest.fixture
def aws_endpoint(moto_server: str, aws_credentials: None, monkeypatch: pytest.MonkeyPatch):
    """The Airflow connection `aws_default` pointed at the (reset) moto server."""
    import urllib.request

    from localdev.dag_run import aws_connection
    from localdev.emr_emulator.credentials import Credentials

    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST"))
    connection = aws_connection(moto_server, Credentials(FAKE_KEY, FAKE_KEY))
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", connection)
    return moto_server


# --- Fault-injection suite (tests/dag/on_emulator/): shared by its modules ---------------------


@pytest.fixture(scope="session")
def leaked_clusters() -> Iterator[list[str]]:
    """Every cluster any fault test left running; asserted empty when the session ends.

    The fault tests' fixtures add to it before each reset of the emulator (a reset would
    forget a leaked cluster), so this is the suite-wide count of leaked clusters.
    """
    ledger: list[str] = []
    yield ledger
    assert ledger == [], f"clusters left running after the suite: {ledger}"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """The local EMR emulator (real Spark steps), for one test module.

    Module scope: moto's backends are global to the process, and the simulator-driven tests
    (test_dag_run.py) must never meet a running step runner.
    """
    from localdev.emr_emulator import EmrEmulator

    work_dir = tmp_path_factory.mktemp("emulator")
    with EmrEmulator(port=0, work_dir=work_dir, master="local[2]", startup_seconds=0.3) as emu:
        yield emu
