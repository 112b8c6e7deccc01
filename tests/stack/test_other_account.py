"""Another account on the machine gets nothing from a running `make airflow` (issue 30).

tests/stack/other_account.py runs as a separate uid with no capabilities (`setpriv`), as any
other user of a shared development box or CI runner would, against the stack of this session:
it cannot read the emulator's key, the stack's passwords or Airflow's secrets; every request
it sends the emulator (unsigned, or signed with a key it made up) is refused as AWS refuses it,
so its step, its bootstrap action with a local path and its `..` key do nothing; PostgreSQL
refuses the old known passwords; the UI refuses admin/admin. Meanwhile the stack's own clients
(the key file) work, and the other tests of this folder run the DAG on the same stack.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from localdev.airflow_stack.postgres import find_server_bin
from localdev.dag_run import emr_client
from localdev.emr_emulator.credentials import read_key_file
from tests.dag.dag_shapes import keys_under

SCRIPT = Path(__file__).with_name("other_account.py")
OTHER_UID = 61_234  # no account of the stack: not root, not PostgreSQL's server user


def run_as_other_account(config: dict) -> dict:
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("running as another uid needs root and setpriv (util-linux)")
    command = [
        setpriv,
        f"--reuid={OTHER_UID}",
        f"--regid={OTHER_UID}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "/usr/bin/python3",
        "-",
        json.dumps(config),
    ]
    result = subprocess.run(
        command,
        input=SCRIPT.read_text(),
        capture_output=True,
        text=True,
        timeout=180,
        cwd="/",
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "LANG": "C.UTF-8"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_another_account_gets_nothing_from_the_stack(airflow_stack):
    config = airflow_stack.config
    emr = emr_client(config.emulator_key_file)
    clusters_before = {c["Id"] for c in emr.list_clusters()["Clusters"]}
    input_uri = config.airflow_env()["FRUIT_EMR_INPUT_URI"]
    images_before = keys_under(airflow_stack.s3, input_uri)
    escape = Path(tempfile.mkdtemp(prefix="fruit-escape-")) / "planted"
    escape.parent.chmod(0o777)
    outcomes = run_as_other_account(
        {
            "emulator_url": config.emulator_url,
            "api_url": config.api_url,
            "db_port": config.ports.db_port,
            "psql": str(find_server_bin() / "psql"),
            "bucket": input_uri.removeprefix("s3://").split("/")[0],
            "escape_path": str(escape),
            "private_files": {
                "emulator key file": str(config.emulator_key_file),
                "admin password": str(config.secrets_dir / "admin-password"),
                "database connection": str(config.secrets_dir / "sql-alchemy-conn"),
                "airflow.cfg": str(config.airflow_home / "airflow.cfg"),
            },
        }
    )
    shown = json.dumps(outcomes, indent=1)

    for name in ("emulator key file", "admin password", "database connection", "airflow.cfg"):
        assert outcomes[f"read {name}"] == {"read": False, "error": "PermissionError"}, shown
    s3_refusals = {
        "s3 list unsigned": "AccessDenied",
        "s3 list signed with a made-up key": "InvalidAccessKeyId",
        "s3 put a .. key unsigned": "AccessDenied",
        "s3 put a .. key signed with a made-up key": "InvalidAccessKeyId",
    }
    for probe, code in s3_refusals.items():
        assert outcomes[probe]["status"] == 403, shown
        assert f"<Code>{code}</Code>" in outcomes[probe]["body"], shown
    # moto's own pages: unsigned requests like any other (a form POST reads as a query API's).
    for probe in ("moto state dump", "moto reset"):
        assert outcomes[probe]["status"] == 403, shown
        assert "Missing" in outcomes[probe]["body"] or "AccessDenied" in outcomes[probe]["body"]
    unsigned = outcomes["emr run a step and a bootstrap unsigned"]
    assert unsigned["status"] == 403, shown
    assert json.loads(unsigned["body"])["__type"] == "MissingAuthenticationTokenException"
    made_up = outcomes["emr run signed with a made-up key"]
    assert (made_up["status"], json.loads(made_up["body"])["__type"]) == (
        400,
        "UnrecognizedClientException",
    ), shown
    for user in ("airflow/airflow", "postgres/postgres", "postgres/(none)"):
        probe = outcomes[f"psql as {user}"]
        assert probe["code"] != 0, shown
        assert "password authentication failed" in probe["stderr"] or (
            "no password supplied" in probe["stderr"]
        ), shown
    assert outcomes["ui login admin/admin"]["status"] == 401, shown
    assert outcomes["api variables without a token"]["status"] in (401, 403), shown

    # Nothing happened: no cluster, no file outside the emulator's folder, nothing reset.
    assert {c["Id"] for c in emr.list_clusters()["Clusters"]} == clusters_before
    assert not escape.exists()
    assert keys_under(airflow_stack.s3, input_uri) == images_before
    shutil.rmtree(escape.parent, ignore_errors=True)


def test_the_stack_keeps_its_secrets_to_its_user_and_says_where_they_are(airflow_stack):
    config = airflow_stack.config
    for private in (config.secrets_dir, config.airflow_home, config.logs_dir, config.emulator_dir):
        assert private.stat().st_mode & 0o077 == 0, private
    for secret in [*config.secrets_dir.iterdir(), config.emulator_key_file]:
        assert secret.stat().st_mode & 0o077 == 0, secret
    first, *later = ("".join(output) for output in airflow_stack.outputs)
    # The admin's password printed on the first start only, with where it is kept; later
    # starts (test_airflow_stack restarts it) say where it is. The key file is named.
    password = airflow_stack.api.password
    assert f"password {password} (kept in {config.secrets_dir / 'admin-password'})" in first
    for output in later:
        assert password not in output
        assert f"password in {config.secrets_dir / 'admin-password'}" in output
    assert str(config.emulator_key_file) in first
    # An AWS CLI given the key file (and nothing else) reaches the emulator.
    key_file = read_key_file(config.emulator_key_file)
    env = {"PATH": os.environ["PATH"], "HOME": "/nonexistent", **key_file.client_env()}
    aws = Path(sys.executable).with_name("aws")
    listed = subprocess.run(
        [str(aws), "--endpoint-url", config.emulator_url, "s3", "ls"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    assert "demo-fruit-images" in listed.stdout
