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
from localdev.emr_emulator.credentials import (
    KEY_FILE_NAME,
    Credentials,
    Keyring,
    write_key_file,
)
from localdev.emr_emulator.request_guard import (
    WILDCARD_HOSTS,
    RequestGuard,
    allowed_host_names,
)
from localdev.emr_emulator.runner import StepRunner
from localdev.emr_emulator.sigv4 import SignatureGuard


class GuardedMotoServer:
    """moto's server (as moto.server.ThreadedMotoServer builds it) behind a RequestGuard (no
    web pages) and a SignatureGuard (only requests signed with a key of `keyring`).

    Our own few lines rather than ThreadedMotoServer, whose WSGI app cannot be wrapped; binding
    here, in the caller's thread, also turns a taken port into an error instead of a hang.
    """

    def __init__(
        self, host: str, port: int, guard: dict[str, Iterable[str]], keyring: Keyring
    ) -> None:
        self.host = host
        self.port = port
        self.guard = guard
        self.keyring = keyring
        self._server: BaseWSGIServer | None = None
        self.signatures: SignatureGuard | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        moto_app = DomainDispatcherApplication(create_backend_app)
        self.signatures = SignatureGuard(moto_app, self.keyring)
        app = RequestGuard(self.signatures, **self.guard)
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

    It answers only requests signed with one of its keys: it makes a random one when it starts
    and writes it, with the endpoint, to `key_file` (default `<work_dir>/aws-config`, mode
    0600: only this user can read it; see credentials.py), and gives the step processes a
    second one of their own. Tests may add keys with `add_principal`.

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
        key_file: Path | None = None,
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
        self._given_key_file = key_file
        self.key_file: Path | None = None
        self.keyring = Keyring()
        self.credentials = Credentials.generate()
        self.node_credentials = Credentials.generate(prefix="ASIA")
        self.keyring.add(self.credentials)
        self.keyring.add(self.node_credentials)
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
        if self._given_work_dir is not None:
            self.work_dir = Path(self._given_work_dir)
            self.work_dir.mkdir(parents=True, exist_ok=True)
        else:
            self.work_dir = Path(tempfile.mkdtemp(prefix="emr-emulator-"))
        # Staged inputs, step logs and the nodes' state are this user's alone.
        self.work_dir.chmod(0o700)
        self._server = GuardedMotoServer(self.host, self.port, guard, self.keyring)
        self._server.start()
        self.key_file = self._given_key_file or self.work_dir / KEY_FILE_NAME
        write_key_file(self.key_file, self.credentials, self.endpoint_url)
        self.runner = StepRunner(
            self.endpoint_url,
            self.work_dir,
            self.node_credentials,
            master=self.master,
            poll_seconds=self.poll_seconds,
            startup_seconds=self.startup_seconds,
            keep_staged=self.keep_staged,
            allow_any_command=self.allow_any_command,
        )
        self.runner.start()
        assert self._server.signatures is not None
        self._server.signatures.ready = True
        print(f"emr-emulator: serving AWS APIs at {self.endpoint_url}", flush=True)
        print(f"emr-emulator: its access key is in {self.key_file} (this user only)", flush=True)
        if self.allow_any_command:
            print("emr-emulator: runs ANY step command (allow_any_command: tests only)", flush=True)
        return self

    def add_principal(self, credentials: Credentials) -> None:
        """Accept requests signed with `credentials` too (tests give each of their principals,
        e.g. the DAG's connection, a key of its own, as IAM users each have theirs)."""
        self.keyring.add(credentials)

    def reset(self) -> None:
        """Empty moto's state (every service, every account), as /moto-api/reset did, and the
        log of calls (api_calls, process-wide: an earlier emulator's calls too); only this
        process may (the HTTP route needs a signature like any request)."""
        from moto.moto_api._internal.models import moto_api_backend

        moto_api_backend.reset()
        self.api_calls.clear()

    def stop(self) -> None:
        if self.runner is not None:
            self.runner.stop()
            self.runner = None
        if self._server is not None:
            self._server.stop()
            self._server = None
            moto_patches.deactivate()
        if self.key_file is not None:  # the key dies with the emulator
            self.key_file.unlink(missing_ok=True)
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
