"""`python -m localdev.emr_emulator --host 127.0.0.1 --port 5000`: serve until interrupted."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from localdev.emr_emulator.server import EmrEmulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="moto (S3, EMR, IAM, STS, ...) plus a step runner using local Spark"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--work-dir", type=Path, default=None, help="where steps run (kept)")
    parser.add_argument("--master", default="local[*]", help="Spark master for spark-submit")
    parser.add_argument(
        "--startup-seconds", type=float, default=1.0, help="how long new clusters stay STARTING"
    )
    parser.add_argument(
        "--keep-staged", action="store_true", help="keep each step's staged S3 copies"
    )
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name clients reach the emulator by, besides loopback and --host "
        "(compose's service name); other Host headers are refused (DNS rebinding)",
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a web origin (http://host:port) whose pages may call the emulator; "
        "by default every cross-origin request is refused",
    )
    parser.add_argument(
        "--key-file",
        type=Path,
        default=None,
        help="where to write the access key callers sign with (an AWS config file, mode "
        "0600); default: <work dir>/aws-config",
    )
    parser.add_argument(
        "--allow-any-command",
        action="store_true",
        help="FOR TESTS ONLY: run any command-runner.jar command and script-runner.jar "
        "script, not only spark-submit",
    )
    args = parser.parse_args(argv)
    done = threading.Event()
    # SIGTERM (docker stop) ends as cleanly as Ctrl-C: running steps are killed, CANCELLED.
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    with EmrEmulator(
        host=args.host,
        port=args.port,
        work_dir=args.work_dir,
        master=args.master,
        startup_seconds=args.startup_seconds,
        keep_staged=args.keep_staged,
        allow_any_command=args.allow_any_command,
        allowed_hosts=args.allow_host,
        allowed_origins=args.allow_origin,
        key_file=args.key_file,
    ):
        done.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
