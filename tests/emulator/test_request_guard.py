"""Web pages cannot drive the emulator: cross-origin requests, CORS preflights, page GETs and
DNS-rebinding Host names get 403, while AWS SDKs (no Origin, the address they were given) work.

The requests below are what a browser would send for a page on another origin: its `Origin`
header (every cross-origin POST and preflight has one), `Sec-Fetch-Site` (every request to a
loopback address has one), or the attacker's own name in `Host` after DNS rebinding.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest
from botocore.exceptions import ClientError

from localdev.emr_emulator import EmrEmulator
from localdev.emr_emulator.credentials import read_key_file
from localdev.emr_emulator.sigv4 import HEALTH_PATH
from tests.emulator.helpers import command_step, wait_for

REPO = Path(__file__).resolve().parents[2]
EVIL = "http://evil.example"


def _client_sending(emulator: EmrEmulator, service: str, headers: dict[str, str]) -> Any:
    """A boto3 client whose requests also carry `headers`, as a page's fetch() would."""
    client = read_key_file(emulator.key_file).client(service)

    def add_headers(request: Any, **_: Any) -> None:
        request.headers.update(headers)

    client.meta.events.register("before-send", add_headers)
    return client


def _request(url: str, method: str = "GET", headers: dict[str, str] | None = None, data=None):
    """(status, headers, body) of a raw HTTP request; errors are answers too."""
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def _request_signed(emulator: EmrEmulator, method: str, path: str):
    """(status, headers, body) of a request signed with the emulator's key, as botocore signs."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials as BotoCredentials

    key = read_key_file(emulator.key_file).credentials
    request = AWSRequest(method=method, url=emulator.endpoint_url + path)
    credentials = BotoCredentials(key.access_key, key.secret_key)
    S3SigV4Auth(credentials, "s3", "us-east-1").add_auth(request)
    return _request(request.url, method, dict(request.headers.items()))


def _cors_headers(headers: Any) -> list[str]:
    return [name for name in headers if name.lower().startswith("access-control-")]


def _cluster_names(emr: Any) -> set[str]:
    return {c["Name"] for c in emr.list_clusters()["Clusters"]}


def _job_flow(name: str, target: Path) -> dict[str, Any]:
    return {
        "Name": name,
        "ReleaseLabel": "emr-7.13.0",
        "Instances": {"MasterInstanceType": "m5.xlarge", "InstanceCount": 1},
        "Steps": [command_step("payload", "bash", "-c", f"touch {target}")],
        "JobFlowRole": "EMR_EC2_DefaultRole",
        "ServiceRole": "EMR_DefaultRole",
    }


def test_a_cross_origin_run_job_flow_is_refused_and_creates_nothing(emulator, emr, tmp_path):
    target = tmp_path / "ran"
    page = _client_sending(emulator, "emr", {"Origin": EVIL})
    with pytest.raises(ClientError) as refused:
        page.run_job_flow(**_job_flow("from a page", target))
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "from a page" not in _cluster_names(emr)
    # The same call from an AWS SDK (no Origin) works: the Origin alone made the difference.
    # Its bash step fails (only spark-submit runs), so nothing runs either way.
    emr.run_job_flow(**_job_flow("from an sdk", target))
    assert "from an sdk" in _cluster_names(emr)
    assert not target.exists()


def test_a_cross_origin_s3_write_is_refused(emulator, s3, bucket):
    url = f"{emulator.endpoint_url}/{bucket}/planted.py"
    status, _, body = _request(url, "PUT", {"Origin": EVIL}, b"import os")
    assert status == 403
    assert b"cross-origin request from 'http://evil.example' refused" in body
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="planted.py")
    # Through boto3 with an Origin header (a signed request, as a page could send): refused too.
    page = _client_sending(emulator, "s3", {"Origin": "null"})  # sandboxed frames, file://
    with pytest.raises(ClientError):
        page.put_object(Bucket=bucket, Key="planted.py", Body=b"import os")
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="planted.py")


def test_a_preflight_is_refused_without_cors_headers(emulator):
    preflight = {
        "Origin": EVIL,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,x-amz-target,content-type",
    }
    status, headers, _ = _request(f"{emulator.endpoint_url}/", "OPTIONS", preflight)
    assert status == 403
    assert _cors_headers(headers) == []
    # moto answers every request with Access-Control-Allow-Origin: *; the emulator never does.
    status, headers, _ = _request_signed(emulator, "GET", "/")
    assert status == 200
    assert _cors_headers(headers) == []


def test_a_page_get_without_origin_is_refused(emulator):
    """Image tags and no-cors GETs carry no Origin; browsers still say where they come from."""
    for site in ("cross-site", "same-site"):  # same-site: another port of localhost
        status, _, body = _request(f"{emulator.endpoint_url}/", "GET", {"Sec-Fetch-Site": site})
        assert status == 403, site
        assert f"Sec-Fetch-Site: {site}".encode() in body
    # Its own origin and a typed address pass this guard (and then need a signature).
    own = emulator.endpoint_url
    for headers in ({"Sec-Fetch-Site": "same-origin", "Origin": own}, {"Sec-Fetch-Site": "none"}):
        status, _, _ = _request(f"{own}{HEALTH_PATH}", "GET", headers)
        assert status == 200, headers


def test_a_rebinding_host_name_is_refused(emulator, s3, bucket):
    port = emulator.endpoint_url.rsplit(":", 1)[1]
    url = f"{emulator.endpoint_url}/{bucket}/from-rebinding"
    status, _, body = _request(url, "PUT", {"Host": f"rebind.evil.example:{port}"}, b"x")
    assert status == 403
    assert b"Host 'rebind.evil.example:" in body and b"--allow-host" in body
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="from-rebinding")
    for name in ("localhost", "127.0.0.1", "LOCALHOST"):
        url = f"{emulator.endpoint_url}{HEALTH_PATH}"
        status, _, _ = _request(url, "GET", {"Host": f"{name}:{port}"})
        assert status == 200, name


def test_allowed_hosts_and_origins_are_exactly_the_configured_ones(emulator, tmp_path):
    """compose reaches the emulator as `emr-emulator` (its --allow-host); an --allow-origin
    page gets moto's CORS answers. The bound address is no name a client may give."""
    with EmrEmulator(
        host="0.0.0.0",
        port=0,
        work_dir=tmp_path,
        startup_seconds=0.3,
        allowed_hosts=["emr-emulator"],
        allowed_origins=["http://localhost:8080"],
    ) as second:
        assert second.endpoint_url.startswith("http://127.0.0.1:")  # loopback for its runner
        port = second.endpoint_url.rsplit(":", 1)[1]
        root = second.endpoint_url + "/"
        health = second.endpoint_url + HEALTH_PATH
        for host, expected in (("emr-emulator", 200), ("0.0.0.0", 403), ("emr-emulator.x", 403)):
            status, _, _ = _request(health, "GET", {"Host": f"{host}:{port}"})
            assert status == expected, host
        preflight = {"Origin": "http://localhost:8080", "Access-Control-Request-Method": "POST"}
        status, headers, _ = _request(root, "OPTIONS", preflight)
        assert status == 200
        assert headers["Access-Control-Allow-Origin"] == "http://localhost:8080"
        status, _, _ = _request(root, "OPTIONS", {**preflight, "Origin": "http://localhost:8081"})
        assert status == 403


def test_the_cli_listens_on_loopback_only(tmp_path):
    """`python -m localdev.emr_emulator` (what `make airflow` starts) binds 127.0.0.1 by default:
    measured from the process's own listening sockets."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "localdev.emr_emulator", "--port", "0"]
    command += ["--work-dir", str(tmp_path)]
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "serving AWS APIs at http://127.0.0.1:" in line, line
        port = int(line.rsplit(":", 1)[1])
        listening = wait_for(
            lambda: [
                c.laddr
                for c in psutil.Process(process.pid).net_connections(kind="inet")
                if c.status == psutil.CONN_LISTEN
            ],
            what="the emulator's listening socket",
        )
        assert [(a.ip, a.port) for a in listening] == [("127.0.0.1", port)]
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
