"""An emulator started in-process on a free port (once per test module), and clients for it.

Module scope, as tests/dag's: moto's backends are global to the process, so an emulator left
running would run the steps of the next module's clusters too (its own emulator's faults
unapplied, a simulated step run for real). With pytest-xdist a worker takes modules in any
order, so none may outlive its module."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from localdev.emr_emulator import EmrEmulator
from localdev.emr_emulator.credentials import read_key_file
from tests.fakes import set_fake_aws_env

_bucket_numbers = itertools.count()


@pytest.fixture(autouse=True)
def fake_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and region in these tests: nothing here may ever reach real AWS."""
    set_fake_aws_env(monkeypatch)


@pytest.fixture(scope="module")
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


@pytest.fixture(scope="module")
def emr(emulator: EmrEmulator) -> Any:
    return read_key_file(emulator.key_file).client("emr")


@pytest.fixture(scope="module")
def s3(emulator: EmrEmulator) -> Any:
    return read_key_file(emulator.key_file).client("s3")


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"emulator-test-{next(_bucket_numbers)}"
    s3.create_bucket(Bucket=name)
    return name
