"""Give every SimpleAuthManager user the stack's password: FRUIT_LOCAL_ADMIN_PASSWORD.

Airflow 3's SimpleAuthManager reads the passwords of the users in
AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS from a file in AIRFLOW_HOME, and generates random ones
where the file lacks them. Writing the file before the api-server starts makes the login known:
compose's airflow-init service and `make airflow` both run this script, with the environment of
localdev/airflow.env. A plain script (no project imports): the Airflow image has only Airflow.
"""

import json
import os

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager


def main() -> int:
    users = [user.username for user in SimpleAuthManager.get_users()]
    password = os.environ["FRUIT_LOCAL_ADMIN_PASSWORD"]
    path = SimpleAuthManager.get_generated_password_file()
    with open(path, "w") as stream:
        json.dump({name: password for name in users}, stream)
    os.chmod(path, 0o600)
    print("UI login for", ", ".join(users), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
