"""Fixtures for the DAG tests: fake AWS, an Airflow home with a migrated SQLite DB, and a
moto server whose EMR steps a simulator finishes (moto never finishes a step on its own).

Airflow reads its configuration once, when it is first imported, so the environment below
is set at this module's import, before any test module imports airflow.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
}

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="fruit-emr-airflow-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME}/airflow.db",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        # Nothing in these tests may reach real AWS, even by accident.
        **FAKE_AWS_ENV,
    }
)
if "airflow" in sys.modules:  # pragma: no cover - a guard for a misordered suite
    sys.stderr.write("tests/dag: airflow was imported before its conftest set AIRFLOW_HOME\n")


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials (again, per test): moto accepts them, real AWS would not."""
    for name, value in FAKE_AWS_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def mocked_aws(aws_credentials: None) -> Iterator[None]:
    """moto in-process (mock_aws): for the helpers that take a boto3 client."""
    from moto import mock_aws

    with mock_aws():
        yield


@pytest.fixture
def s3(mocked_aws: None) -> Any:
    import boto3

    return boto3.client("s3", region_name=REGION)


@pytest.fixture
def emr(mocked_aws: None) -> Any:
    import boto3

    return boto3.client("emr", region_name=REGION)


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

    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST"))
    connection = {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {"region_name": REGION, "endpoint_url": moto_server},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(connection))
    return moto_server


def server_client(endpoint: str, service: str) -> Any:
    import boto3

    return boto3.client(service, region_name=REGION, endpoint_url=endpoint)


def _arg(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


class EmrStepSimulator:
    """Plays EMR's part: RUNNING steps finish, the next PENDING one starts.

    `outcomes` maps a step name to "COMPLETED" (default) or "FAILED". A completed validate
    step writes a passed report.json where the step's --output says; a failed step gets
    FailureDetails and a stderr.gz under the cluster's LogUri, as EMR writes them.
    """

    STDERR = "featurize: error: input s3://in/ holds 3 images that TensorFlow rejected\n"

    def __init__(
        self, endpoint: str, outcomes: dict[str, str] | None = None, run_seconds: float = 0
    ) -> None:
        self.s3 = server_client(endpoint, "s3")
        self.outcomes = outcomes or {}
        self.run_seconds = run_seconds  # how long a step stays RUNNING
        self._running_since: dict[str, float] = {}
        self.finished: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> EmrStepSimulator:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        from moto.emr.models import emr_backends

        while not self._stop.wait(0.05):
            for cluster in list(emr_backends[ACCOUNT][REGION].clusters.values()):
                for step in list(cluster.steps):
                    if step.state != "RUNNING":
                        continue
                    started = self._running_since.setdefault(step.id, time.monotonic())
                    if time.monotonic() - started >= self.run_seconds:
                        self._finish(cluster, step)
                idle = not any(s.state == "RUNNING" for s in cluster.steps)
                if idle and cluster.state not in ("TERMINATING", "TERMINATED"):
                    pending = [s for s in cluster.steps if s.state == "PENDING"]
                    if pending:
                        pending[0].state = "RUNNING"

    def _finish(self, cluster: Any, step: Any) -> None:
        outcome = self.outcomes.get(step.name, "COMPLETED")
        if outcome == "FAILED":
            log_uri = cluster.log_uri.rstrip("/")
            bucket, _, prefix = log_uri.removeprefix("s3://").partition("/")
            key = f"{prefix}/{cluster.id}/steps/{step.id}/stderr.gz".lstrip("/")
            self.s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(self.STDERR.encode()))
            step.failure_details = {
                "Reason": "Unknown Error.",
                "Message": "Step failed with exitCode 2.",
                "LogFile": f"s3://{bucket}/{key}",
            }
        elif step.name == "validate":
            self._write_report(step.args)
        step.state = outcome
        self.finished.append((step.name, outcome))

    def _write_report(self, args: list[str]) -> None:
        input_uri, output_uri = _arg(args, "--input"), _arg(args, "--output")
        in_bucket, _, in_prefix = input_uri.removeprefix("s3://").partition("/")
        listed = self.s3.list_objects_v2(Bucket=in_bucket, Prefix=in_prefix).get("Contents", [])
        images = [o["Key"] for o in listed if o["Key"].lower().endswith((".jpg", ".png"))]
        report = {
            "status": "passed",
            "input": input_uri,
            "output": output_uri,
            "images": len(images),
            "features": len(images),
            "rejects": 0,
            "labels": {"Apple": {"features": len(images), "rejects": 0}},
            "rejected_files": [],
            "pca": {"k": 2, "explained_variance": [0.6, 0.2], "cumulative_variance": [0.6, 0.8]},
            "checks": [],
        }
        bucket, _, prefix = output_uri.removeprefix("s3://").partition("/")
        self.s3.put_object(
            Bucket=bucket, Key=f"{prefix.rstrip('/')}/report.json", Body=json.dumps(report)
        )


@pytest.fixture
def wait_until():
    def wait(predicate, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return predicate()

    return wait
