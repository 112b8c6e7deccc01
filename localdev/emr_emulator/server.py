"""The emulator: moto's server (S3, EMR, IAM, STS, ...) and the step runner in one process."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from moto.server import ThreadedMotoServer

from localdev.emr_emulator import api_calls, moto_patches
from localdev.emr_emulator.runner import StepRunner


class EmrEmulator:
    """`with EmrEmulator(port=0) as emu:` serves AWS APIs at `emu.endpoint_url` and runs steps.

    port=0 picks a free port. Steps work under `work_dir` (a temporary folder, removed on stop,
    when not given). `startup_seconds` is how long a new cluster stays STARTING, so that callers
    see the states a real cluster goes through.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        work_dir: Path | None = None,
        master: str = "local[*]",
        poll_seconds: float = 0.2,
        startup_seconds: float = 1.0,
        keep_staged: bool = False,
        verbose: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self._given_work_dir = work_dir
        self.work_dir: Path | None = None
        self.master = master
        self.poll_seconds = poll_seconds
        self.startup_seconds = startup_seconds
        self.keep_staged = keep_staged
        self.verbose = verbose
        self._server: ThreadedMotoServer | None = None
        self.runner: StepRunner | None = None
        # The API calls moto answered, and faults to inject into them (see api_calls).
        self.api_calls = api_calls.CALLS

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        host, port = self._server.get_host_and_port()
        return f"http://{host}:{port}"

    def start(self) -> EmrEmulator:
        moto_patches.activate()
        api_calls.install()
        if not self.verbose:  # one werkzeug line per API call drowns the step lines
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        self._server.start()
        if self._given_work_dir is not None:
            self.work_dir = Path(self._given_work_dir)
            self.work_dir.mkdir(parents=True, exist_ok=True)
        else:
            self.work_dir = Path(tempfile.mkdtemp(prefix="emr-emulator-"))
        self.runner = StepRunner(
            self.endpoint_url,
            self.work_dir,
            master=self.master,
            poll_seconds=self.poll_seconds,
            startup_seconds=self.startup_seconds,
            keep_staged=self.keep_staged,
        )
        self.runner.start()
        print(f"emr-emulator: serving AWS APIs at {self.endpoint_url}", flush=True)
        return self

    def stop(self) -> None:
        if self.runner is not None:
            self.runner.stop()
            self.runner = None
        if self._server is not None:
            self._server.stop()
            self._server = None
            moto_patches.deactivate()
        if self._given_work_dir is None and self.work_dir is not None:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> EmrEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
