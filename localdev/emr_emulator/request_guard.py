"""Keep web pages away from the emulator: a WSGI middleware in front of moto's server.

The emulator runs the steps it is given on this machine, and moto answers cross-origin requests
from any page (flask-cors on every service). A page open in the developer's browser could then
create a cluster through their browser. AWS SDKs and CLIs send no `Origin` and no `Sec-Fetch-*`
header and name the emulator by the address they were given; browsers always send `Origin` on
cross-origin POSTs and `Sec-Fetch-Site` on every request to a loopback address, and a
DNS-rebinding page reaches the emulator under its own host name. So the guard refuses, with 403:

- a `Host` that is not one the emulator answers to (loopback names, the bound address, and the
  names given with `--allow-host`, e.g. compose's service name);
- an `Origin` that is neither the emulator's own (its /moto-api/ dashboard) nor one given with
  `--allow-origin` (none by default);
- `Sec-Fetch-Site: cross-site` or `same-site` without such an origin (a page's GET, which
  carries no `Origin`; another port on localhost is the same site).

and drops moto's `Access-Control-*` response headers unless the request's origin was allowed,
so no preflight ever tells a browser that a page may read the answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_PAGE_FETCH_SITES = frozenset({"cross-site", "same-site"})

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def host_name(host_header: str) -> str | None:
    """The host of a `Host` header, lower case, without port or IPv6 brackets; None if bad."""
    try:
        return urlsplit(f"//{host_header}").hostname
    except ValueError:  # e.g. a port that is not a number
        return None


def allowed_host_names(bind_host: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The names a request's `Host` may give: loopback, the bound address, and `extra`."""
    names = set(LOOPBACK_HOSTS) | {name.strip().lower() for name in extra if name.strip()}
    if bind_host not in WILDCARD_HOSTS:
        names.add(bind_host.strip("[]").lower())
    return frozenset(names)


def _normalised_origin(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


class RequestGuard:
    """`RequestGuard(app, allowed_hosts, allowed_origins)`: the WSGI app that refuses pages."""

    def __init__(
        self,
        app: WsgiApp,
        allowed_hosts: Iterable[str],
        allowed_origins: Iterable[str] = (),
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.allowed_hosts = frozenset(host.lower() for host in allowed_hosts)
        self.allowed_origins = frozenset(_normalised_origin(o) for o in allowed_origins)
        self.log = log or (lambda text: print(text, flush=True))

    def refusal(self, environ: dict[str, Any]) -> str | None:
        """Why this request is refused, or None when it may reach moto."""
        host_header = environ.get("HTTP_HOST")
        if host_header is not None:  # HTTP/1.0 clients may send none; browsers always do
            name = host_name(host_header)
            if name is None or name not in self.allowed_hosts:
                allowed = ", ".join(sorted(self.allowed_hosts))
                return (
                    f"Host {host_header!r} is not a name this emulator answers to ({allowed}); "
                    "add one with --allow-host NAME"
                )
        origin = environ.get("HTTP_ORIGIN")
        if origin is not None and not self._origin_allowed(origin, host_header):
            return (
                f"cross-origin request from {origin!r} refused: the emulator answers AWS SDKs "
                "and CLIs, not web pages; allow an origin with --allow-origin ORIGIN"
            )
        site = environ.get("HTTP_SEC_FETCH_SITE", "").lower()
        if site in _PAGE_FETCH_SITES and origin is None:
            return (
                f"request made by a web page (Sec-Fetch-Site: {site}) refused: the emulator "
                "answers AWS SDKs and CLIs, not web pages"
            )
        return None

    def _origin_allowed(self, origin: str, host_header: str | None) -> bool:
        normalised = _normalised_origin(origin)
        if normalised in self.allowed_origins:
            return True
        # Its own pages (moto's dashboard): the Host was checked above, so this is no rebinding.
        return host_header is not None and normalised == f"http://{host_header.lower()}"

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        reason = self.refusal(environ)
        if reason is not None:
            method, path = environ.get("REQUEST_METHOD", "?"), environ.get("PATH_INFO", "")
            self.log(f"emr-emulator: refused {method} {path}: {reason}")
            body = f"Forbidden: {reason}\n".encode()
            start_response(
                "403 Forbidden",
                [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
            )
            return [body]
        origin = environ.get("HTTP_ORIGIN")
        if origin is not None and _normalised_origin(origin) in self.allowed_origins:
            return self.app(environ, start_response)  # moto's (and S3 buckets') CORS apply

        def without_cors(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            kept = [(k, v) for k, v in headers if not k.lower().startswith("access-control-")]
            return start_response(status, kept, *exc_info)

        return self.app(environ, without_cors)
