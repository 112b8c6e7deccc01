"""The emulator's access keys, and the key file its callers read them from.

The emulator runs the steps it is given on this machine, so it answers only requests signed
with a key it made (SigV4, see sigv4.py). When it starts it creates two random keys:

- the caller's key, written to the key file (mode 0600, so only the emulator's own user can
  read it): the DAG's connection, the demo, `make airflow`, the tests and the AWS CLI use it;
- the nodes' key, which only the step and bootstrap processes it starts get, in their
  environment (what the instance profile's credentials are on EMR).

The key file is an AWS config file with one `[default]` profile (keys, region, endpoint), so
that boto3 and the AWS CLI read it as it is: point both AWS_CONFIG_FILE and
AWS_SHARED_CREDENTIALS_FILE at it (and unset AWS_ACCESS_KEY_ID and AWS_PROFILE, which would
win over it).
"""

from __future__ import annotations

import configparser
import os
import secrets
import string
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REGION = "us-east-1"
KEY_FILE_NAME = "aws-config"
_KEY_ID_ALPHABET = string.ascii_uppercase + "234567"  # as AWS's key ids: base32 letters


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str = ""

    @classmethod
    def generate(cls, prefix: str = "AKIA") -> Credentials:
        """A random key pair shaped like AWS's (20-character id, 40-character secret)."""
        key_id = prefix + "".join(secrets.choice(_KEY_ID_ALPHABET) for _ in range(16))
        return cls(key_id, secrets.token_urlsafe(30))

    def __repr__(self) -> str:  # never the secret in a log or a traceback
        return f"Credentials(access_key={self.access_key!r}, secret_key='***')"

    def boto3_kwargs(self) -> dict[str, str]:
        return {"aws_access_key_id": self.access_key, "aws_secret_access_key": self.secret_key}


class Keyring:
    """The access keys the emulator accepts, and their secrets (thread-safe)."""

    def __init__(self) -> None:
        self._secrets: dict[str, str] = {}
        self._lock = threading.Lock()

    def add(self, credentials: Credentials) -> None:
        if not credentials.access_key or not credentials.secret_key:
            raise ValueError("an access key needs an id and a secret")
        with self._lock:
            self._secrets[credentials.access_key] = credentials.secret_key

    def secret_for(self, access_key: str) -> str | None:
        with self._lock:
            return self._secrets.get(access_key)


@dataclass(frozen=True)
class KeyFile:
    """What a key file tells a client: where the emulator is, and the key to sign with."""

    path: Path
    endpoint_url: str
    region: str
    credentials: Credentials

    def client(self, service: str, endpoint_url: str | None = None, **kwargs: Any) -> Any:
        """A boto3 client for `service` on the emulator, signed with the file's key; at
        `endpoint_url` where the caller reaches the emulator by another name (compose)."""
        import boto3
        from botocore.config import Config

        # Path-style S3: the endpoint is an IP address, virtual-host buckets cannot resolve.
        kwargs.setdefault("config", Config(s3={"addressing_style": "path"}))
        return boto3.client(
            service,
            endpoint_url=endpoint_url or self.endpoint_url,
            region_name=self.region,
            **self.credentials.boto3_kwargs(),
            **kwargs,
        )

    def client_env(self) -> dict[str, str]:
        """Environment under which boto3 and the AWS CLI use this file and nothing else."""
        return {
            "AWS_CONFIG_FILE": str(self.path),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.path),
        }


class KeyFileError(RuntimeError):
    """The key file is missing or unreadable (the message says what to do)."""


def write_private_file(path: Path, text: str, owner: tuple[int, int] | None = None) -> None:
    """`text` at `path`, readable by its owner only (this user, or `owner`'s (uid, gid)).

    mkstemp makes a new file (O_EXCL, mode 0600) under a name no one can guess and plant a link
    at; the rename replaces whatever `path` is (a link itself, never its target)."""
    descriptor, partial = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        if owner is not None:
            os.fchown(descriptor, *owner)
        os.write(descriptor, text.encode())
    finally:
        os.close(descriptor)
    os.replace(partial, path)


def write_key_file(path: Path, credentials: Credentials, endpoint_url: str) -> None:
    """Write the key file, readable by this user only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (
        "# Written by the local EMR emulator when it started; valid while it runs.\n"
        "# Use: AWS_CONFIG_FILE=<this file> AWS_SHARED_CREDENTIALS_FILE=<this file>\n"
        "[default]\n"
        f"aws_access_key_id = {credentials.access_key}\n"
        f"aws_secret_access_key = {credentials.secret_key}\n"
        f"region = {REGION}\n"
        f"endpoint_url = {endpoint_url}\n"
    )
    write_private_file(path, text)


def read_key_file(path: Path) -> KeyFile:
    """The emulator's endpoint and key from its key file."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path) as stream:
            parser.read_file(stream)
        profile = parser["default"]
        return KeyFile(
            Path(path),
            profile["endpoint_url"],
            profile.get("region", REGION),
            Credentials(profile["aws_access_key_id"], profile["aws_secret_access_key"]),
        )
    except FileNotFoundError as error:
        raise KeyFileError(
            f"no emulator key file at {path}: the emulator writes it when it starts "
            "(make demo and make airflow start one)"
        ) from error
    except PermissionError as error:
        raise KeyFileError(
            f"cannot read the emulator's key file {path}: only the user who started the "
            "emulator may read it"
        ) from error
    except (KeyError, configparser.Error) as error:
        raise KeyFileError(f"{path} is not an emulator key file ({error})") from error
