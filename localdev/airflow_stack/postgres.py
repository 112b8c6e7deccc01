"""A PostgreSQL cluster of the stack's own, under its state folder, for Airflow's metadata.

Debian's `postgresql` package gives the server binaries; the cluster is ours: `initdb` once into
<state>/postgres/data, then the `postgres` server as a child process on 127.0.0.1 only (TCP,
no socket file), every login by password (scram-sha-256). The passwords are the stack's random
ones (secrets.py): initdb's superuser `postgres` only creates the `airflow` role, which is no
superuser, and its database. PostgreSQL refuses to run as root, so where the launcher is root
the cluster belongs to, and runs as, an unprivileged system user (`postgres`, which the Debian
package creates).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from localdev.airflow_stack.secrets import DB_NAME, DB_ROLE, DB_SUPERUSER, StackSecrets

INSTALL_HINT = (
    "PostgreSQL's server is not installed. On Debian/Ubuntu: `sudo apt-get install postgresql` "
    "(`make airflow` does it where it runs as root). Elsewhere, install PostgreSQL 13+ and put "
    "its bin/ folder (with initdb and postgres) on PATH, or set FRUIT_LOCAL_PG_BIN to it."
)
UNPRIVILEGED_USERS = ("postgres", "nobody")


class PostgresError(RuntimeError):
    """The local cluster could not be set up or started (the message says what to do)."""


DEBIAN_SERVER_BINS = "/usr/lib/postgresql/*/bin"


def find_server_bin(
    environ: dict[str, str] | None = None, debian_bins: str = DEBIAN_SERVER_BINS
) -> Path:
    """The folder with `initdb` and `postgres`: FRUIT_LOCAL_PG_BIN, Debian's newest, or PATH."""
    environ = dict(os.environ) if environ is None else environ
    candidates = []
    if environ.get("FRUIT_LOCAL_PG_BIN"):
        candidates.append(Path(environ["FRUIT_LOCAL_PG_BIN"]))
    debian = sorted(glob.glob(debian_bins), key=lambda p: int(Path(p).parent.name), reverse=True)
    candidates += [Path(p) for p in debian]
    on_path = shutil.which("postgres", path=environ.get("PATH"))
    if on_path:
        candidates.append(Path(on_path).parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    raise PostgresError(INSTALL_HINT)


def server_user() -> pwd.struct_passwd | None:
    """Who runs the server: None (this user) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in UNPRIVILEGED_USERS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PostgresError(f"running as root, and none of the users {UNPRIVILEGED_USERS} exists")


@dataclass(frozen=True)
class LocalPostgres:
    """The cluster in `root`, on 127.0.0.1:`port`, serving Airflow's database."""

    root: Path
    port: int
    secrets: StackSecrets
    bin_dir: Path
    host: str = "127.0.0.1"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    def _as_owner(self) -> dict[str, object]:
        user = server_user()
        return {} if user is None else {"user": user.pw_uid, "group": user.pw_gid}

    @property
    def made_with_secrets(self) -> Path:
        """Written after initdb: this cluster's superuser has the stack's random password."""
        return self.root / "made-with-stack-secrets"

    def prepare(self) -> None:
        """Create the cluster (once), its superuser's password the stack's secret.

        A cluster without the marker was made by an earlier `make airflow`, whose superuser
        was `airflow` with the password `airflow`: it is refused, never started."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)  # its log and data are the server user's alone
        made = (self.data_dir / "PG_VERSION").exists()
        if made and not self.made_with_secrets.exists():
            raise PostgresError(
                f"the PostgreSQL cluster in {self.data_dir} was made by an earlier make airflow "
                "with a known superuser password (airflow/airflow). Move it aside (it holds "
                f"only Airflow's run history): mv {self.root} {self.root}.known-password, "
                "then start again"
            )
        user = server_user()
        if user is not None:
            os.chown(self.root, user.pw_uid, user.pw_gid)
            if subprocess.run(["test", "-w", str(self.root)], **self._as_owner()).returncode:
                raise PostgresError(
                    f"user {user.pw_name!r} (PostgreSQL refuses to run as root) cannot write "
                    f"{self.root}: a parent folder is closed to other users. Put the state "
                    "elsewhere with FRUIT_LOCAL_STATE_DIR, or open the parents with chmod o+x."
                )
        if made:
            return
        with tempfile.NamedTemporaryFile("w", dir=self.root, delete=False) as pwfile:
            pwfile.write(self.secrets.db_superuser_password + "\n")
        try:
            if user is not None:
                os.chown(pwfile.name, user.pw_uid, user.pw_gid)
            result = subprocess.run(
                [
                    str(self.bin_dir / "initdb"),
                    "--pgdata",
                    str(self.data_dir),
                    "--username",
                    DB_SUPERUSER,
                    "--pwfile",
                    pwfile.name,
                    "--auth",
                    "scram-sha-256",
                    "--encoding",
                    "UTF8",
                    "--locale",
                    "C",
                ],
                capture_output=True,
                text=True,
                check=False,
                cwd=self.root,
                **self._as_owner(),
            )
        finally:
            os.unlink(pwfile.name)
        if result.returncode != 0:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            raise PostgresError(f"initdb failed:\n{result.stdout}{result.stderr}")
        self.made_with_secrets.write_text(f"superuser {DB_SUPERUSER}\n")

    def server_command(self) -> list[str]:
        host, port = self.host, self.port
        return [
            str(self.bin_dir / "postgres"),
            "-D",
            str(self.data_dir),
            "-h",
            host,
            "-p",
            str(port),
            # TCP only: no socket file whose path could be too long or land in /var/run.
            "-c",
            "unix_socket_directories=",
        ]

    def popen_options(self) -> dict[str, object]:
        return {"cwd": self.root, **self._as_owner()}

    def wait_and_create_database(
        self, alive: Callable[[], None] = lambda: None, timeout: float = 60.0
    ) -> None:
        """Wait until the server takes connections, then make Airflow's role (no superuser,
        the stack's password) and its database, where missing.

        `alive()` is called between tries; it raises when the server process has exited.
        """
        import psycopg2

        host, port = self.host, self.port
        deadline = time.monotonic() + timeout
        while True:
            alive()
            try:
                connection = psycopg2.connect(
                    host=host,
                    port=port,
                    user=DB_SUPERUSER,
                    password=self.secrets.db_superuser_password,
                    dbname="postgres",
                )
                break
            except psycopg2.OperationalError as error:
                if time.monotonic() > deadline:
                    raise PostgresError(
                        f"PostgreSQL did not accept connections on {host}:{port} within "
                        f"{timeout:.0f} s ({error}); see {self.log_file}"
                    ) from error
                time.sleep(0.5)
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (DB_ROLE,))
                verb = "ALTER" if cursor.fetchone() else "CREATE"
                cursor.execute(
                    f'{verb} ROLE "{DB_ROLE}" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE '
                    "NOREPLICATION NOBYPASSRLS PASSWORD %s",
                    (self.secrets.db_password,),
                )
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,))
                if cursor.fetchone() is None:
                    cursor.execute(f'CREATE DATABASE "{DB_NAME}" OWNER "{DB_ROLE}"')
        finally:
            connection.close()
