"""Only callers holding one of the emulator's keys reach moto: SigV4 checked as AWS checks it.

A WSGI middleware in front of moto's server. It recomputes each request's Signature Version 4
(the canonical request as botocore builds it: S3's path as sent, other services' path encoded
once more; the query's pairs sorted; the signed headers; the payload's SHA-256, or S3's
`x-amz-content-sha256` header, which must then match the body) with the secret of the access
key the request names, and refuses, as the service would:

| what | S3 (403, XML) | JSON services, e.g. EMR (400) | query services, e.g. IAM, STS (403) |
|---|---|---|---|
| no signature | AccessDenied | MissingAuthenticationTokenException | MissingAuthenticationToken |
| unknown key | InvalidAccessKeyId | UnrecognizedClientException | InvalidClientTokenId |
| wrong signature | SignatureDoesNotMatch | InvalidSignatureException | SignatureDoesNotMatch |
| date off by > 15 min | RequestTimeTooSkewed | InvalidSignatureException | SignatureDoesNotMatch |

Not checked: the per-chunk signatures of S3's `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` uploads (the
seed signature is) and presigned URLs (refused). A CORS preflight (OPTIONS with Origin and
Access-Control-Request-Method), which browsers never sign, is answered here without moto (which
would run an action for it, e.g. list the buckets): 200 with the CORS headers it asks for, which
the RequestGuard in front keeps for the origins it allows only. Moto's own `/moto-api/`
pages (state dumps, a reset) are requests like any other: unsigned, refused.
`GET /_emulator/health` answers anyone (a bucket name cannot start with `_`), and says only
whether the emulator is ready: its key file written, its step runner started.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote

from localdev.emr_emulator.credentials import Keyring

HEALTH_PATH = "/_emulator/health"
MAX_SKEW = timedelta(minutes=15)
_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/,\s]+)/"
    r"(?P<service>[^/,\s]+)/aws4_request,\s*SignedHeaders=(?P<headers>[^,\s]+),\s*"
    r"Signature=(?P<signature>[0-9a-f]{64})\s*$"
)
_HEX_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


@dataclass(frozen=True)
class Refusal:
    kind: str  # missing, unknown_key, bad_signature, skewed, payload_mismatch, presigned
    detail: str  # for the emulator's log: which key, never a secret


# kind -> (S3 code, JSON code, query code, S3 message)
_CODES = {
    "missing": (
        "AccessDenied",
        "MissingAuthenticationTokenException",
        "MissingAuthenticationToken",
        "Access Denied",
    ),
    "presigned": (
        "AccessDenied",
        "MissingAuthenticationTokenException",
        "MissingAuthenticationToken",
        "Presigned URLs are not accepted by the local emulator",
    ),
    "unknown_key": (
        "InvalidAccessKeyId",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "The AWS Access Key Id you provided does not exist in our records.",
    ),
    "bad_signature": (
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
    ),
    "skewed": (
        "RequestTimeTooSkewed",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "The difference between the request time and the current time is too large.",
    ),
    "payload_mismatch": (
        "XAmzContentSHA256Mismatch",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "The provided 'x-amz-content-sha256' header does not match what was computed.",
    ),
}
_JSON_MESSAGES = {
    "missing": "Missing Authentication Token",
    "presigned": "Missing Authentication Token",
    "unknown_key": "The security token included in the request is invalid.",
}
_SIGNATURE_MESSAGE = (
    "The request signature we calculated does not match the signature you provided. Check "
    "your AWS Secret Access Key and signing method. Consult the service documentation for "
    "details."
)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = _hmac(f"AWS4{secret}".encode(), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return key


def _header(environ: dict[str, Any], name: str) -> str | None:
    if name == "content-type":
        return environ.get("CONTENT_TYPE")
    if name == "content-length":
        return environ.get("CONTENT_LENGTH")
    return environ.get("HTTP_" + name.upper().replace("-", "_"))


def _canonical_path(raw_path: str, service: str) -> str:
    if service == "s3":
        return raw_path or "/"  # S3: the path as sent
    # Others: botocore normalises the path's dot segments, then encodes it once more.
    segments: list[str] = []
    for segment in raw_path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment not in (".", ""):
            segments.append(segment)
    path = "/" + "/".join(segments)
    if raw_path.endswith("/") and path != "/":
        path += "/"
    return quote(path, safe="/~")


def _canonical_query(raw_query: str) -> str:
    if not raw_query:
        return ""
    pairs = [pair.partition("=")[::2] for pair in raw_query.split("&")]
    return "&".join(f"{key}={value}" for key, value in sorted(pairs))


def canonical_request(
    environ: dict[str, Any], signed_headers: list[str], service: str, payload_hash: str
) -> str:
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or quote(environ["PATH_INFO"])
    raw_path, _, raw_query = raw.partition("?")
    if not raw_query:
        raw_query = environ.get("QUERY_STRING", "")
    headers = []
    for name in signed_headers:
        value = _header(environ, name) or ""
        headers.append(f"{name}:{' '.join(value.split())}")
    return "\n".join(
        [
            environ.get("REQUEST_METHOD", "GET").upper(),
            _canonical_path(raw_path, service),
            _canonical_query(raw_query),
            "\n".join(headers) + "\n",
            ";".join(signed_headers),
            payload_hash,
        ]
    )


def _read_body(environ: dict[str, Any]) -> bytes:
    """The whole body, put back for moto to read."""
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH") or ""
    if length.isdigit():
        body = stream.read(int(length)) if int(length) else b""
    elif environ.get("wsgi.input_terminated"):  # chunked: werkzeug ends the stream for us
        body = stream.read()
    else:
        body = b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def check_signature(
    environ: dict[str, Any], keyring: Keyring, now: datetime | None = None
) -> Refusal | None:
    """Why this request is refused, or None when it is signed with a key of `keyring`."""
    authorization = _header(environ, "authorization")
    query = environ.get("QUERY_STRING", "")
    if not authorization:
        if "X-Amz-Signature=" in query or "Signature=" in query:
            return Refusal("presigned", "a presigned URL")
        return Refusal("missing", "no Authorization header")
    match = _AUTHORIZATION.match(authorization.strip())
    if match is None:
        return Refusal("missing", "an Authorization header that is not SigV4's")
    access_key = match["key"]
    secret = keyring.secret_for(access_key)
    if secret is None:
        return Refusal("unknown_key", f"access key {access_key!r} is not one of the emulator's")
    amz_date = _header(environ, "x-amz-date") or ""
    try:
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return Refusal("bad_signature", f"key {access_key}: no valid X-Amz-Date")
    now = now or datetime.now(UTC)
    if abs(now - signed_at) > MAX_SKEW:
        return Refusal("skewed", f"key {access_key}: signed at {amz_date}")
    signed_headers = match["headers"].split(";")
    if "host" not in signed_headers or amz_date[:8] != match["date"]:
        return Refusal("bad_signature", f"key {access_key}: host not signed or date mismatch")
    service = match["service"]
    body = _read_body(environ)
    declared = _header(environ, "x-amz-content-sha256")
    if declared is not None:
        payload_hash = declared
        if _HEX_SHA256.match(declared) and hashlib.sha256(body).hexdigest() != declared:
            return Refusal("payload_mismatch", f"key {access_key}: body hash mismatch")
    else:
        payload_hash = hashlib.sha256(body).hexdigest() if body else _EMPTY_SHA256
    canonical = canonical_request(environ, signed_headers, service, payload_hash)
    scope = f"{match['date']}/{match['region']}/{service}/aws4_request"
    string_to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = signing_key(secret, match["date"], match["region"], service)
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, match["signature"]):
        return Refusal("bad_signature", f"key {access_key}: the signature does not match")
    return None


def _is_cors_preflight(environ: dict[str, Any]) -> bool:
    """A browser's CORS preflight: never signed (AWS answers it from the CORS rules alone)."""
    return (
        environ.get("REQUEST_METHOD") == "OPTIONS"
        and "HTTP_ORIGIN" in environ
        and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ
    )


def _preflight_answer(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    """What moto's CORS answers a preflight, without running anything."""
    headers = [
        ("Access-Control-Allow-Origin", environ["HTTP_ORIGIN"]),
        ("Access-Control-Allow-Methods", environ["HTTP_ACCESS_CONTROL_REQUEST_METHOD"]),
        ("Access-Control-Allow-Headers", environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS", "*")),
        ("Content-Length", "0"),
    ]
    start_response("200 OK", headers)
    return [b""]


def _protocol(environ: dict[str, Any]) -> str:
    """s3, json or query: how the service the request is for answers errors."""
    match = _AUTHORIZATION.match((_header(environ, "authorization") or "").strip())
    if match and match["service"] == "s3":
        return "s3"
    if _header(environ, "x-amz-target"):
        return "json"
    if match:  # signed for another service without a target: IAM, STS...
        return "query"
    # Unsigned: query APIs are called on "/" (?Action=..., or a form POST); the rest is S3.
    content_type = (environ.get("CONTENT_TYPE") or "").lower()
    form_post = environ.get("REQUEST_METHOD") == "POST" and content_type.startswith(
        "application/x-www-form-urlencoded"
    )
    on_root = environ.get("PATH_INFO", "/") == "/"
    if on_root and (form_post or "Action=" in environ.get("QUERY_STRING", "")):
        return "query"
    return "s3"


def error_response(environ: dict[str, Any], refusal: Refusal) -> tuple[str, list, bytes]:
    """(status, headers, body) of the service's answer to a refused request."""
    s3_code, json_code, query_code, s3_message = _CODES[refusal.kind]
    request_id = uuid.uuid4().hex.upper()[:16]
    protocol = _protocol(environ)
    if protocol == "json":
        message = _JSON_MESSAGES.get(refusal.kind, _SIGNATURE_MESSAGE)
        if refusal.kind == "skewed":
            message = "Signature expired: the request time is more than 15 minutes away."
        missing = refusal.kind in ("missing", "presigned")
        status = "403 Forbidden" if missing else "400 Bad Request"
        body = json.dumps({"__type": json_code, "message": message}).encode()
        headers = [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", json_code)]
        return status, headers + [("x-amzn-RequestId", request_id)], body
    if protocol == "query":
        message = {
            "missing": "Request is missing Authentication Token",
            "presigned": "Request is missing Authentication Token",
            "unknown_key": "The security token included in the request is invalid.",
        }.get(refusal.kind, _SIGNATURE_MESSAGE)
        body = (
            "<ErrorResponse><Error><Type>Sender</Type>"
            f"<Code>{query_code}</Code><Message>{message}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
        return "403 Forbidden", [("Content-Type", "text/xml")], body
    status = "400 Bad Request" if refusal.kind == "payload_mismatch" else "403 Forbidden"
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{s3_code}</Code><Message>{s3_message}</Message>"
        f"<RequestId>{request_id}</RequestId></Error>"
    ).encode()
    return status, [("Content-Type", "application/xml"), ("x-amz-request-id", request_id)], body


class SignatureGuard:
    """`SignatureGuard(app, keyring)`: the WSGI app that lets only signed requests through."""

    def __init__(
        self, app: WsgiApp, keyring: Keyring, log: Callable[[str], None] | None = None
    ) -> None:
        self.app = app
        self.keyring = keyring
        self.log = log or (lambda text: print(text, flush=True))
        self.ready = False  # set once the key file is written and steps can run

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == HEALTH_PATH and environ.get("REQUEST_METHOD") == "GET":
            status, body = ("200 OK", b"ok\n") if self.ready else ("503 Unavailable", b"starting\n")
            start_response(
                status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
            )
            return [body]
        if _is_cors_preflight(environ):
            return _preflight_answer(environ, start_response)
        refusal = check_signature(environ, self.keyring)
        if refusal is None:
            return self.app(environ, start_response)
        method, path = environ.get("REQUEST_METHOD", "?"), unquote(environ.get("PATH_INFO", ""))
        self.log(f"emr-emulator: refused {method} {path[:200]}: {refusal.detail}")
        status, headers, body = error_response(environ, refusal)
        start_response(status, [*headers, ("Content-Length", str(len(body)))])
        return [body]
