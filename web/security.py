"""Request guards for a local, read-only server.

- Host check (DNS rebinding): a page on evil.example that rebinds its name to 127.0.0.1 sends
  `Host: evil.example`; only the bound address, localhost, 127.0.0.1, [::1] and the names in
  `ALLOWED_HOSTS` are served, with or without a port. Anything else gets 403.
- Read-only: every method but GET and HEAD gets 405, on every path (also OPTIONS: no CORS preflight).
- No CORS headers, ever: other origins cannot read the API from a browser.
- Hardening headers on every response: nosniff, a strict CSP (default-src 'self'), no referrer, no framing.
"""
from __future__ import annotations

import re
from typing import Iterable

from flask import Flask, Response, current_app, jsonify, request

ALWAYS_ALLOWED = ("localhost", "127.0.0.1", "[::1]")
SAFE_METHODS = frozenset({"GET", "HEAD"})

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}

_HOST_RE = re.compile(r"^(\[[0-9a-f:.]+\]|[a-z0-9._-]+)(?::(\d{1,5}))?$")


def host_name(value: str | None) -> str | None:
    """The name part of a Host header, lower-cased, without port or trailing dot; None if malformed.

    >>> host_name("LocalHost:5176"), host_name("[::1]:80"), host_name("a:b:c")
    ('localhost', '[::1]', None)
    """
    if not value:
        return None
    match = _HOST_RE.match(value.strip().lower())
    if not match:
        return None
    name = match.group(1)
    return name[:-1] if name.endswith(".") and not name.startswith("[") else name


def _as_name(entry: str) -> str | None:
    entry = entry.strip().lower()
    if ":" in entry and not entry.startswith("[") and entry.count(":") > 1:
        entry = f"[{entry}]"           # a bare IPv6 address, as given to --host
    return host_name(entry)


def allowed_hosts(bind_host: str | None, extra: Iterable[str] | str | None) -> frozenset[str]:
    """The Host names to serve: the bound address, the loopback names and `extra` (names or name:port)."""
    if isinstance(extra, str):
        extra = extra.split(",")
    names = set(ALWAYS_ALLOWED)
    for entry in [bind_host or "", *(extra or ())]:
        name = _as_name(entry) if entry else None
        if name and name not in ("0.0.0.0", "[::]"):    # a wildcard bind is not a name a client sends
            names.add(name)
    return frozenset(names)


def _refuse(status: int, message: str) -> Response:
    if request.path.startswith("/api"):
        response = jsonify({"error": message})
    else:
        response = Response(message + "\n", mimetype="text/plain")
    response.status_code = status
    return response


def check_request() -> Response | None:
    """before_request: refuse foreign Host headers (403), then anything but GET/HEAD (405)."""
    if host_name(request.host) not in current_app.config["_ALLOWED_HOST_NAMES"]:
        return _refuse(403, "host not allowed: add it with --allow-host if you meant to serve it")
    if request.method not in SAFE_METHODS:
        response = _refuse(405, "read-only: only GET and HEAD are allowed")
        response.headers["Allow"] = "GET, HEAD"
        return response
    return None


def harden(response: Response) -> Response:
    """after_request: hardening headers on; any CORS header off; API and metrics never cached."""
    for name in [h for h in response.headers.keys() if h.lower().startswith("access-control-")]:
        del response.headers[name]
    response.headers.update(HEADERS)
    if request.path.startswith(("/api", "/metrics")):
        response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    app.config["_ALLOWED_HOST_NAMES"] = allowed_hosts(app.config.get("BIND_HOST"), app.config.get("ALLOWED_HOSTS"))
    app.before_request(check_request)
    app.after_request(harden)
