"""Another local account's attempts on a running `make airflow` stack (issue 30's probes).

Run by tests/stack/test_other_account.py as a separate uid with no capabilities (`setpriv`),
with the system's python3 and nothing but its standard library (another account has no
access to the project's virtual environment, nor needs it): `python3 - CONFIG_JSON` with this
file on stdin. It prints one JSON object: {probe: what happened}. Each probe is written as an
attacker would write it; none of them may succeed.
"""

import datetime
import hashlib
import hmac
import json
import subprocess
import sys
import urllib.error
import urllib.request

config = json.loads(sys.argv[1])
emulator, api = config["emulator_url"], config["api_url"]
outcomes: dict[str, object] = {}


def http(url: str, method: str = "GET", body: bytes | None = None, headers=None) -> dict:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return {"status": response.status, "body": response.read(600).decode(errors="replace")}
    except urllib.error.HTTPError as error:
        return {"status": error.code, "body": error.read(600).decode(errors="replace")}
    except OSError as error:
        return {"status": None, "body": str(error)}


def signed_headers(method, path, body, service, key="FAKEOTHERACCOUNT00001", secret="guess"):
    """SigV4 as botocore computes it, with a key the attacker made up."""
    now = datetime.datetime.now(datetime.UTC)
    amz_date, date = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    host = emulator.split("//", 1)[1]
    payload = hashlib.sha256(body).hexdigest()
    canonical = "\n".join(
        [
            method,
            path,
            "",
            f"host:{host}\nx-amz-content-sha256:{payload}\nx-amz-date:{amz_date}\n",
            "host;x-amz-content-sha256;x-amz-date",
            payload,
        ]
    )
    scope = f"{date}/us-east-1/{service}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    signing = f"AWS4{secret}".encode()
    for part in (date, "us-east-1", service, "aws4_request"):
        signing = hmac.new(signing, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(signing, to_sign.encode(), hashlib.sha256).hexdigest()
    return {
        "x-amz-date": amz_date,
        "x-amz-content-sha256": payload,
        "Authorization": f"AWS4-HMAC-SHA256 Credential={key}/{scope}, "
        f"SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={signature}",
    }


def emr_call(action: str, request: dict, headers=None) -> dict:
    body = json.dumps(request).encode()
    base = {
        "X-Amz-Target": f"ElasticMapReduce.{action}",
        "Content-Type": "application/x-amz-json-1.1",
    }
    return http(emulator + "/", "POST", body, {**base, **(headers or {})})


# --- Secrets on disk: the emulator's key, the stack's passwords, Airflow's JWT secret
for name, path in config["private_files"].items():
    try:
        with open(path) as stream:
            outcomes[f"read {name}"] = {"read": True, "text": stream.read(80)}
    except OSError as error:
        outcomes[f"read {name}"] = {"read": False, "error": type(error).__name__}

# --- The emulator: unsigned, then signed with a made-up key
outcomes["s3 list unsigned"] = http(emulator + "/")
outcomes["s3 list signed with a made-up key"] = http(
    emulator + "/", headers=signed_headers("GET", "/", b"", "s3")
)
bucket = config["bucket"]
planted = f"/{bucket}/jobs/" + "../" * 30 + config["escape_path"].lstrip("/")
outcomes["s3 put a .. key unsigned"] = http(emulator + planted, "PUT", b"planted")
outcomes["s3 put a .. key signed with a made-up key"] = http(
    emulator + planted, "PUT", b"planted", signed_headers("PUT", planted, b"planted", "s3")
)
outcomes["moto state dump"] = http(emulator + "/moto-api/data.json")
outcomes["moto reset"] = http(emulator + "/moto-api/reset", "POST", b"")
evil_step = {
    "Name": "evil",
    "ActionOnFailure": "CONTINUE",
    "HadoopJarStep": {
        "Jar": "command-runner.jar",
        "Args": ["spark-submit", f"s3://{bucket}/evil.py"],
    },
}
job_flow = {
    "Name": "other-account",
    "ReleaseLabel": "emr-7.13.0",
    "Instances": {"MasterInstanceType": "m5.xlarge", "InstanceCount": 1},
    "Steps": [evil_step],
    "BootstrapActions": [
        {
            "Name": "read-a-file",
            "ScriptBootstrapAction": {
                "Path": f"s3://{bucket}/install-python-deps.sh",
                "Args": [config["private_files"]["emulator key file"]],
            },
        }
    ],
    "JobFlowRole": "EMR_EC2_DefaultRole",
    "ServiceRole": "EMR_DefaultRole",
}
outcomes["emr run a step and a bootstrap unsigned"] = emr_call("RunJobFlow", job_flow)
outcomes["emr run signed with a made-up key"] = emr_call(
    "RunJobFlow",
    job_flow,
    signed_headers("POST", "/", json.dumps(job_flow).encode(), "elasticmapreduce"),
)

# --- PostgreSQL: the old known passwords, and none
for user, password in (("airflow", "airflow"), ("postgres", "postgres"), ("postgres", "")):
    result = subprocess.run(
        [
            config["psql"],
            "-h",
            "127.0.0.1",
            "-p",
            str(config["db_port"]),
            "-U",
            user,
            "-d",
            "airflow",
            "-w",
            "-c",
            "COPY (SELECT 1) TO PROGRAM 'id'",
        ],
        env={"PGPASSWORD": password, "PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    outcomes[f"psql as {user}/{password or '(none)'}"] = {
        "code": result.returncode,
        "stderr": result.stderr[-300:],
    }

# --- The UI and its API: the old admin/admin, and no token
login = json.dumps({"username": "admin", "password": "admin"}).encode()
outcomes["ui login admin/admin"] = http(
    api + "/auth/token", "POST", login, {"Content-Type": "application/json"}
)
outcomes["api variables without a token"] = http(api + "/api/v2/variables")

print(json.dumps(outcomes))
