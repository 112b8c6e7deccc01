"""Running a cluster's bootstrap actions the way EMR does, before the cluster accepts steps.

Each action's script and its s3:// arguments are staged like a step's, then the script runs
with bash on the cluster's "node", with the overrides our bootstrap script takes: PYTHON is the
project's interpreter (so pip finds every pin already satisfied; PIP_NO_INDEX keeps pip from
ever downloading into it), SUDO is empty, and its state and cache folders live under the
cluster's work folder. Its stdout and stderr go, gzipped, to
`<LogUri>/<cluster>/node/<instance>/bootstrap-actions/<n>/`, as EMR puts them.

Only this project's own bootstrap scripts run (byte for byte a file of bootstrap/); another
script runs only with the emulator's test-only `allow_any_command`, as for steps. The script
and every argument that is not an option name (`--word`) must be s3:// URIs, checked before
anything is staged: a local path would have the script read, and log, a file of this machine
that the caller could not read (on EMR, the node's own files are nobody else's to name).
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.imagefeatures.contract import is_arm64
from localdev.emr_emulator.credentials import Credentials
from localdev.emr_emulator.log_upload import join_s3, put_gzipped_logs
from localdev.emr_emulator.node_config import node_process_env
from localdev.emr_emulator.process_groups import wait_or_kill
from localdev.emr_emulator.staging import S3Stager, UnsafeKeyError, parse_s3_uri
from localdev.local_spark import REPO_ROOT

PROJECT_BOOTSTRAP_DIR = REPO_ROOT / "bootstrap"
OPTION_NAME = re.compile(r"^--[a-z][a-z0-9-]*$")


def _instance_types(cluster: Any) -> set[str]:
    return {group.instance_type for group in getattr(cluster, "instance_groups", None) or []}


@dataclass(frozen=True)
class BootstrapFailure:
    number: int
    message: str


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def project_scripts() -> set[str]:
    """sha256 of every script this project ships in bootstrap/."""
    return {_digest(path) for path in PROJECT_BOOTSTRAP_DIR.glob("*.sh")}


def master_instance_id(cluster: Any) -> str:
    instances = getattr(cluster, "ec2_instances", None) or []
    master = [i for i in instances if getattr(i.instance_group, "role", "") == "MASTER"]
    chosen = (master or instances or [None])[0]
    return getattr(chosen, "ec2_instance_id", None) or "i-0emulatormaster"


def node_environment(
    node_root: Path, endpoint_url: str, credentials: Credentials
) -> dict[str, str]:
    """What a bootstrap script sees on the emulated node: the overrides it takes."""
    overrides = {
        "PYTHON": sys.executable,
        "SUDO": "",
        "STATE_DIR": str(node_root / "var/lib/fruit-features"),
        "KERAS_HOME": str(node_root / "var/cache/keras"),
        "PIP_NO_INDEX": "1",
    }
    return node_process_env(endpoint_url, credentials, overrides)


class BootstrapRunner:
    """Runs the bootstrap actions of one cluster; `run()` returns the first failure or None."""

    def __init__(
        self,
        cluster: Any,
        s3: Any,
        cluster_dir: Path,
        endpoint_url: str,
        node_credentials: Credentials,
        allow_any_script: bool,
        stopped: Any,
    ) -> None:
        self.cluster = cluster
        self.s3 = s3
        self.stager = S3Stager(s3)
        self.cluster_dir = cluster_dir
        self.endpoint_url = endpoint_url
        self.node_credentials = node_credentials
        self.allow_any_script = allow_any_script
        self.stopped = stopped  # () -> bool: the cluster ended or the emulator stops

    def run(self) -> BootstrapFailure | None:
        for number, action in enumerate(self.cluster.bootstrap_actions, start=1):
            failure = self._run_action(number, action.script_path or "", list(action.args or []))
            if failure is not None:
                return failure
        return None

    def _run_action(self, number: int, path: str, args: list[str]) -> BootstrapFailure | None:
        folder = self.cluster_dir / "bootstrap-actions" / str(number)
        not_s3 = [a for a in [path, *args] if parse_s3_uri(a) is None and not OPTION_NAME.match(a)]
        if not_s3 or parse_s3_uri(path) is None:
            return BootstrapFailure(
                number,
                f"bootstrap action {number} ({path}): the script and its arguments must be "
                f"s3:// URIs (or --option names), not {not_s3 or [path]}: the emulator gives "
                "a bootstrap action no local path",
            )
        try:
            staged = self.stager.stage([path, *args], folder / "s3")
        except UnsafeKeyError as error:
            return BootstrapFailure(number, f"bootstrap action {number}: {error}")
        script = Path(staged.local_args[0])
        if not script.is_file():
            return BootstrapFailure(
                number,
                f"Master instance failed attempting to download bootstrap action {number} "
                f"file from S3: {path} does not exist",
            )
        ours = _digest(script) in project_scripts()
        if not self.allow_any_script and not ours:
            return BootstrapFailure(
                number,
                f"bootstrap action {number} ({path}) is not one of this project's bootstrap "
                f"scripts: the emulator runs only those (any script only with "
                f"allow_any_command, for tests)",
            )
        stdout, stderr = folder / "stdout", folder / "stderr"
        arm = [t for t in _instance_types(self.cluster) if is_arm64(t)]
        if arm and ours:
            # The emulator's node is x86_64: what the project's script would meet on arm64.
            stdout.write_bytes(b"")
            stderr.write_text(
                f"emr-emulator: these nodes are Graviton (aarch64): {', '.join(sorted(arm))}. "
                "pip finds no aarch64 wheel of tensorflow-cpu==2.21.0, and OpenVINO's needs "
                "glibc 2.35 (EMR 7 has 2.34): install-python-deps.sh would fail here\n"
            )
            self._upload_logs(number, stdout, stderr)
            return self._nonzero(number)
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = subprocess.Popen(
                ["bash", str(script), *staged.local_args[1:]],
                cwd=folder,
                env=node_environment(
                    self.cluster_dir / "node", self.endpoint_url, self.node_credentials
                ),
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            returncode, killed = wait_or_kill(process, self.stopped, poll_seconds=0.2)
        self._upload_logs(number, stdout, stderr)
        if returncode == 0 and not killed:
            return None
        return self._nonzero(number)

    def _nonzero(self, number: int) -> BootstrapFailure:
        """What EMR says of a bootstrap action that failed."""
        return BootstrapFailure(
            number,
            f"On the master instance ({master_instance_id(self.cluster)}), bootstrap action "
            f"{number} returned a non-zero return code",
        )

    def log_uri(self, number: int) -> str | None:
        log_uri = (self.cluster.log_uri or "").strip()
        if not log_uri:
            return None
        instance = master_instance_id(self.cluster)
        return join_s3(log_uri, self.cluster.id, "node", instance, "bootstrap-actions", str(number))

    def _upload_logs(self, number: int, stdout: Path, stderr: Path) -> None:
        logs = {"stdout.gz": stdout, "stderr.gz": stderr}
        put_gzipped_logs(self.s3, self.log_uri(number) or "", logs)
