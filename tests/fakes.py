"""The fake AWS every test talks to: one region, fake keys, and clients on them.

Nothing in the tests may reach real AWS: every client is built here, on keys that moto accepts
and AWS refuses, and pointed at moto (in-process, a moto server, or the emulator's endpoint).
"""

from __future__ import annotations

from typing import Any

import pytest

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
FAKE_KEY = "testing"
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": FAKE_KEY,
    "AWS_SECRET_ACCESS_KEY": FAKE_KEY,
    "AWS_SECURITY_TOKEN": FAKE_KEY,
    "AWS_SESSION_TOKEN": FAKE_KEY,
    "AWS_DEFAULT_REGION": REGION,
}


def aws_client(
    service: str, endpoint_url: str | None = None, key: str = FAKE_KEY, secret: str = FAKE_KEY
) -> Any:
    """A boto3 client on fake keys; `endpoint_url`: a moto server or the emulator (None: moto
    in-process, under mock_aws)."""
    import boto3

    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=endpoint_url,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
    )


def set_fake_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and region in the environment, and no profile to fall back on."""
    for name, value in FAKE_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
