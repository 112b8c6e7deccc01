"""The stack's passwords: random, made once, in a folder only their readers can open.

`make airflow` may run on a machine other people use: a known password on 127.0.0.1 is open to
every local account. So the PostgreSQL superuser, Airflow's metadata role and the UI's admin
each get a random password the first time the stack starts, kept in its secrets folder (mode
0700, each file 0600) and read from there after:

- `db-superuser-password`: the cluster's `postgres` role, which only creates Airflow's role and
  database (initdb's superuser);
- `db-password`: the `airflow` role, which owns the metadata database and is no superuser;
- `sql-alchemy-conn`: Airflow's connection string with that password; airflow.env points
  AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD at it, so the password is in no environment;
- `admin-password`: the UI's `admin` (localdev/write_admin_passwords.py reads it; edit it and
  restart to choose your own).

docker compose's `stack-secrets` service writes the same files with
`python -m localdev.airflow_stack.secrets --compose FOLDER`, each owned by the container user
that reads it (the postgres image's uid 999, the Airflow image's 50000).
"""

from __future__ import annotations

import argparse
import secrets
from dataclasses import dataclass
from pathlib import Path

from localdev.emr_emulator.credentials import write_private_file

DB_ROLE = "airflow"
DB_NAME = "airflow"
DB_SUPERUSER = "postgres"
# Compose: who reads which file (the postgres image's user, the Airflow image's).
COMPOSE_POSTGRES_UID = 999
COMPOSE_AIRFLOW_UID = 50000
COMPOSE_DB_HOST, COMPOSE_DB_PORT = "postgres", 5432  # the postgres service


@dataclass(frozen=True)
class StackSecrets:
    db_superuser_password: str
    db_password: str
    admin_password: str

    def __repr__(self) -> str:  # never a password in a log or a traceback
        return "StackSecrets(***)"


def sql_alchemy_conn(password: str, host: str, port: int) -> str:
    return f"postgresql+psycopg2://{DB_ROLE}:{password}@{host}:{port}/{DB_NAME}"


def _read(folder: Path, name: str) -> str:
    return (folder / name).read_text().strip()


def load_or_create(
    folder: Path, db_host: str, db_port: int, owners: dict[str, tuple[int, int]] | None = None
) -> tuple[StackSecrets, bool]:
    """The stack's secrets in `folder`, each made there first if missing; True when the
    admin's password was made now (the first start: the launcher prints it once).

    `owners` ({file name: (uid, gid)}) hands files to other users (compose's containers)."""
    owners = owners or {}
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700 if not owners else 0o755)  # compose: each file's mode protects it
    made_now = []
    values = {}
    # Each made only where missing, never rewritten: a cluster keeps the passwords it was
    # made with, and an admin password the user edited stays theirs.
    for name in ("db-superuser-password", "db-password", "admin-password"):
        if (folder / name).exists():
            values[name] = _read(folder, name)
        else:
            values[name] = secrets.token_urlsafe(24)
            # No newline: Airflow's `_CMD` keeps the command's output as it is.
            write_private_file(folder / name, values[name], owners.get(name))
            made_now.append(name)
    found = StackSecrets(
        values["db-superuser-password"], values["db-password"], values["admin-password"]
    )
    # Written every start: the host and port may move (FRUIT_LOCAL_DB_PORT).
    conn = sql_alchemy_conn(found.db_password, db_host, db_port)
    write_private_file(folder / "sql-alchemy-conn", conn, owners.get("sql-alchemy-conn"))
    return found, "admin-password" in made_now


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="write the compose stack's random passwords")
    parser.add_argument("--compose", type=Path, required=True, metavar="FOLDER")
    args = parser.parse_args(argv)
    postgres = (COMPOSE_POSTGRES_UID, COMPOSE_POSTGRES_UID)
    airflow = (COMPOSE_AIRFLOW_UID, 0)
    owners = {
        "db-superuser-password": postgres,
        "db-password": postgres,
        "sql-alchemy-conn": airflow,
        "admin-password": airflow,
    }
    _, made = load_or_create(args.compose, COMPOSE_DB_HOST, COMPOSE_DB_PORT, owners)
    print("stack-secrets:", "made" if made else "kept", "the passwords in", args.compose)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
