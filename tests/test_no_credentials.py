"""No credentials in the repository: every file git knows of (or would add) is searched."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CREDENTIAL_PATTERNS = [
    re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),  # AWS access key ids
    re.compile(r"(?i)aws_secret_access_key\s*[=:]\s*['\"]?[A-Za-z0-9/+]{40}\b"),
    re.compile(r"-----BEGIN (RSA |EC |OPENSSH |DSA )?PRIVATE KEY-----"),
    re.compile(r"\bxox[abpr]-[0-9A-Za-z-]{10,}"),  # Slack tokens
    re.compile(r"\bgh[pousr]_[0-9A-Za-z]{36}\b"),  # GitHub tokens
]


def test_no_credentials_in_the_repository():
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    hits = []
    for name in listed:
        path = REPO / name
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        text = path.read_text(errors="ignore")
        for pattern in CREDENTIAL_PATTERNS:
            hits += [f"{name}: {m.group(0)[:12]}..." for m in pattern.finditer(text)]
    assert hits == []
