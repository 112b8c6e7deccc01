"""An emulator started in-process on a free port (once per session), and clients for it."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from localdev.emr_emulator import EmrEmulator
from tests.fakes import aws_client, set_fake_aws_env

_bucket_numbers = itertools.count()


@pytest.fixture(autouse=True)
def fake_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and region in these tests: nothing here may ever reach real AWS."""
    set_fake_aws_env(monkeypatch)


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmrEmulator]:
    work_dir = tmp_path_factory.mktemp("emr-emulator")
    # local[2]: the test machines have 2 cores; a short STARTING keeps state tests quick.
    # As users get it: only spark-submit steps run. Tests of other commands ask for any_command.
    with EmrEmulator(port=0, work_dir=work_dir, master="local[2]", startup_seconds=0.3) as emu:
        yield emu


@pytest.fixture
def any_command(emulator: EmrEmulator) -> Iterator[None]:
    """The test-only switch, for one test: steps may run any command (bash, sleep, scripts),
    which keeps the state-machine tests quick and free of Spark."""
    assert emulator.runner is not None
    emulator.runner.allow_any_command = True
    try:
        yield
    finally:
        emulator.runner.allow_any_command = False


@pytest.fixture(scope="session")
def emr(emulator: EmrEmulator) -> Any:
    return aws_client("emr", emulator.endpoint_url)


@pytest.fixture(scope="session")
def s3(emulator: EmrEmulator) -> Any:
    return aws_client("s3", emulator.endpoint_url)


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"emulator-test-{next(_bucket_numbers)}"
    s3.create_bucket(Bucket=name)
    return name
