"""The emulator answers only requests signed with its key, and refuses the rest as AWS does.

What a caller on this machine could try with, or without, the key file: no signature, a key
the emulator never made, the right key id with a wrong secret, a signature from 20 minutes ago,
a body swapped after signing, a presigned URL, moto's own unsigned pages. The same-user side
of issue 30's probes; tests/stack/test_other_account.py runs them as another uid.
"""

from __future__ import annotations

import datetime
import stat
import urllib.error
import urllib.request
from typing import Any

import boto3
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from botocore.exceptions import ClientError

from localdev.emr_emulator import EmrEmulator
from localdev.emr_emulator.credentials import KeyFileError, read_key_file


def _raw(url: str, method: str = "GET", data: bytes | None = None, headers=None):
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _client(emulator: EmrEmulator, service: str, key: str, secret: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=emulator.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
    )


CALLS = {
    "s3": lambda c: c.list_buckets(),
    "emr": lambda c: c.list_clusters(),
    "sts": lambda c: c.get_caller_identity(),
    "iam": lambda c: c.list_roles(),
}


def _refusal(call, client) -> tuple[str, int]:
    with pytest.raises(ClientError) as refused:
        call(client)
    response = refused.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def test_the_key_file_is_this_users_alone_and_names_a_working_key(emulator):
    assert stat.S_IMODE(emulator.key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(emulator.work_dir.stat().st_mode) == 0o700
    key_file = read_key_file(emulator.key_file)
    assert key_file.endpoint_url == emulator.endpoint_url
    assert key_file.credentials.access_key.startswith("AKIA")
    assert len(key_file.credentials.secret_key) >= 40
    assert key_file.credentials.secret_key not in repr(key_file)
    for service, call in CALLS.items():
        call(key_file.client(service))  # signed with the file's key: answered


def test_a_key_the_emulator_never_made_is_refused_as_aws_refuses_it(emulator):
    codes = {s: _refusal(c, _client(emulator, s, "testing", "testing")) for s, c in CALLS.items()}
    assert codes == {
        "s3": ("InvalidAccessKeyId", 403),
        "emr": ("UnrecognizedClientException", 400),
        "sts": ("InvalidClientTokenId", 403),
        "iam": ("InvalidClientTokenId", 403),
    }


def test_the_right_key_id_with_a_wrong_secret_is_refused(emulator):
    key_id = read_key_file(emulator.key_file).credentials.access_key
    codes = {s: _refusal(c, _client(emulator, s, key_id, "guessed")) for s, c in CALLS.items()}
    assert codes == {
        "s3": ("SignatureDoesNotMatch", 403),
        "emr": ("InvalidSignatureException", 400),
        "sts": ("SignatureDoesNotMatch", 403),
        "iam": ("SignatureDoesNotMatch", 403),
    }


def test_unsigned_requests_and_moto_pages_are_refused_and_change_nothing(emulator, s3, bucket):
    assert _raw(f"{emulator.endpoint_url}/{bucket}")[0] == 403
    status, body = _raw(f"{emulator.endpoint_url}/{bucket}/planted", "PUT", b"x")
    assert status == 403 and "<Code>AccessDenied</Code>" in body
    emr = {"X-Amz-Target": "ElasticMapReduce.ListClusters"}
    status, body = _raw(emulator.endpoint_url + "/", "POST", b"{}", emr)
    assert status == 403 and "MissingAuthenticationTokenException" in body
    assert _raw(f"{emulator.endpoint_url}/moto-api/data.json")[0] == 403
    assert _raw(f"{emulator.endpoint_url}/moto-api/reset", "POST", b"")[0] == 403
    assert bucket in {b["Name"] for b in s3.list_buckets()["Buckets"]}  # not reset
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="planted")
    assert _raw(f"{emulator.endpoint_url}/_emulator/health") == (200, "ok\n")


def _signed(emulator, method: str, path: str, body: bytes, at: datetime.datetime | None = None):
    key = read_key_file(emulator.key_file).credentials
    request = AWSRequest(method=method, url=emulator.endpoint_url + path, data=body)
    signer = S3SigV4Auth(BotoCredentials(key.access_key, key.secret_key), "s3", "us-east-1")
    if at is None:
        signer.add_auth(request)
    else:
        import botocore.auth

        original = botocore.auth.get_current_datetime
        botocore.auth.get_current_datetime = lambda: at
        try:
            signer.add_auth(request)
        finally:
            botocore.auth.get_current_datetime = original
    return dict(request.headers.items())


def test_a_stale_signature_and_a_swapped_body_are_refused(emulator, s3, bucket):
    path = f"/{bucket}/signed"
    stale = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=20)
    headers = _signed(emulator, "PUT", path, b"original", at=stale.replace(tzinfo=None))
    status, body = _raw(emulator.endpoint_url + path, "PUT", b"original", headers)
    assert status == 403 and "<Code>RequestTimeTooSkewed</Code>" in body
    headers = _signed(emulator, "PUT", path, b"original")
    status, body = _raw(emulator.endpoint_url + path, "PUT", b"swapped!", headers)
    assert status == 400 and "<Code>XAmzContentSHA256Mismatch</Code>" in body
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="signed")
    status, _ = _raw(emulator.endpoint_url + path, "PUT", b"original", headers)
    assert status == 200  # the same request, as signed: accepted


def test_presigned_urls_are_refused(emulator, s3, bucket):
    s3.put_object(Bucket=bucket, Key="shared", Body=b"x")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "shared"})
    status, body = _raw(url)
    assert status == 403 and "Presigned URLs are not accepted" in body


def test_the_key_file_goes_with_the_emulator(tmp_path):
    key_file = tmp_path / "keys" / "aws-config"
    with EmrEmulator(port=0, work_dir=tmp_path / "work", key_file=key_file) as second:
        first_key = read_key_file(key_file).credentials.access_key
        assert first_key == second.credentials.access_key
    assert not key_file.exists()
    with pytest.raises(KeyFileError, match="the emulator writes it when it starts"):
        read_key_file(key_file)
    with EmrEmulator(port=0, work_dir=tmp_path / "work", key_file=key_file):
        assert read_key_file(key_file).credentials.access_key != first_key  # a new key each start


def test_an_unsigned_preflight_runs_nothing(emulator, s3, bucket):
    """Browsers never sign a CORS preflight, so it passes unsigned; moto would answer it by
    running the request's action (OPTIONS / listed every bucket): it never reaches moto."""
    host = emulator.endpoint_url.split("//", 1)[1]
    preflight = {
        "Origin": f"http://{host}",  # the emulator's own origin passes the RequestGuard
        "Access-Control-Request-Method": "POST",
        "X-Amz-Target": "ElasticMapReduce.RunJobFlow",
        "Content-Type": "application/x-amz-json-1.1",
    }
    status, body = _raw(emulator.endpoint_url + "/", "OPTIONS", b'{"Name": "x"}', preflight)
    assert (status, body) == (200, "")
    assert bucket not in body
