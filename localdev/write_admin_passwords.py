"""Give every SimpleAuthManager user the stack's admin password (the secrets folder's).

Airflow 3's SimpleAuthManager reads the passwords of the users in
AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS from a file in AIRFLOW_HOME, and generates random ones
where the file lacks them. Writing the file before the api-server starts gives the login the
stack's own random password (localdev/airflow_stack/secrets.py): compose's airflow-init service
and `make airflow` both run this script, with the environment of localdev/airflow.env. A plain
script (no project imports): the Airflow image has only Airflow.
"""

import json
import os
from pathlib import Path

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager


def main() -> int:
    users = [user.username for user in SimpleAuthManager.get_users()]
    secret = Path(os.environ["FRUIT_LOCAL_SECRETS_DIR"]) / "admin-password"
    password = secret.read_text().strip()
    if len(password) < 12:
        raise SystemExit(f"{secret}: the admin password must have at least 12 characters")
    path = SimpleAuthManager.get_generated_password_file()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as stream:
        os.fchmod(stream.fileno(), 0o600)
        json.dump({name: password for name in users}, stream)
    print("UI login for", ", ".join(users), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
