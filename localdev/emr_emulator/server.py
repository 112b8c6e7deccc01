"""The emulator: moto's server (S3, EMR, IAM, STS, ...) and the step runner in one process."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server

from localdev.emr_emulator import api_calls, moto_patches
from localdev.emr_emulator.request_guard import (
    WILDCARD_HOSTS,
    RequestGuard,
    allowed_host_names,
)
from localdev.emr_emulator.runner import StepRunner


class GuardedMotoServer:
    """moto's server (as moto.server.ThreadedMotoServer builds it) behind a RequestGuard.

    Our own few lines rather than ThreadedMotoServer, whose WSGI app cannot be wrapped; binding
    here, in the caller's thread, also turns a taken port into an error instead of a hang.
    """

    def __init__(self, host: str, port: int, guard: dict[str, Iterable[str]]) -> None:
        self.host = host
        self.port = port
        self.guard = guard
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        app = RequestGuard(DomainDispatcherApplication(create_backend_app), **self.guard)
        self._server = make_server(
            self.host, self.port, app, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="emr-emulator-http", daemon=True
        )
        self._thread.start()

    def get_host_and_port(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError("the server is not started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()


class EmrEmulator:
    """`with EmrEmulator(port=0) as emu:` serves AWS APIs at `emu.endpoint_url` and runs steps.

    port=0 picks a free port. Steps work under `work_dir` (a temporary folder, removed on stop,
    when not given). `startup_seconds` is how long a new cluster stays STARTING, so that callers
    see the states a real cluster goes through.

    Only spark-submit steps run; `allow_any_command=True` runs any command-runner.jar command
    and script-runner.jar scripts too, for tests only. Requests from web pages are refused (see
    request_guard): `allowed_hosts` adds names the Host header may give (compose's service
    name), `allowed_origins` origins whose pages may call it (none by default).
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
        allow_any_command: bool = False,
        allowed_hosts: Iterable[str] = (),
        allowed_origins: Iterable[str] = (),
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
        self.allow_any_command = allow_any_command
        self.allowed_hosts = allowed_host_names(host, allowed_hosts)
        self.allowed_origins = tuple(allowed_origins)
        self._server: GuardedMotoServer | None = None
        self.runner: StepRunner | None = None
        # The API calls moto answered, and faults to inject into them (see api_calls).
        self.api_calls = api_calls.CALLS

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        host, port = self._server.get_host_and_port()
        # Bound to every interface: clients here (the step runner, the steps) use loopback.
        if host in WILDCARD_HOSTS:
            host = "::1" if ":" in host else "127.0.0.1"
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self) -> EmrEmulator:
        moto_patches.activate()
        api_calls.install()
        if not self.verbose:  # one werkzeug line per API call drowns the step lines
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
        guard = {"allowed_hosts": self.allowed_hosts, "allowed_origins": self.allowed_origins}
        self._server = GuardedMotoServer(self.host, self.port, guard)
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
            allow_any_command=self.allow_any_command,
        )
        self.runner.start()
        print(f"emr-emulator: serving AWS APIs at {self.endpoint_url}", flush=True)
        if self.allow_any_command:
            print("emr-emulator: runs ANY step command (allow_any_command: tests only)", flush=True)
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
