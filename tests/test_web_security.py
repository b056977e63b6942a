"""The web server is local and read-only: Host check (DNS rebinding), GET/HEAD only, no CORS, strict headers."""
from __future__ import annotations

import http.client
import re
import threading
from html.parser import HTMLParser
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from web import create_app
from web.security import allowed_hosts, host_name

STATIC = Path(__file__).resolve().parents[1] / "web" / "static"
PATHS = ("/", "/api/usage/stats", "/api/usage/daily", "/api/health", "/api/processes", "/metrics",
         "/static/app.js", "/api/no-such-thing", "/no-such-page")


@pytest.fixture
def app():
    return create_app({"TESTING": True, "BIND_HOST": "10.1.2.3", "ALLOWED_HOSTS": ["box.lan", "Dash.Example:8443"]})


@pytest.fixture
def client(app):
    return app.test_client()


def assert_hardened(response) -> None:
    h = response.headers
    assert h["X-Content-Type-Options"] == "nosniff"
    csp = h["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and "*" not in csp
    assert h["Referrer-Policy"] == "no-referrer"
    assert h["X-Frame-Options"] == "DENY"
    assert not [k for k in h.keys() if k.lower().startswith("access-control-")]


# ---------------------------------------------------------------- Host header

@pytest.mark.parametrize("host", ["localhost", "localhost:5176", "LOCALHOST:5176", "127.0.0.1", "127.0.0.1:5176",
                                  "[::1]", "[::1]:5176", "10.1.2.3:5176", "box.lan", "box.lan:80",
                                  "dash.example:8443", "dash.example", "localhost."])
def test_allowed_hosts_are_served(client, host):
    for path in ("/", "/api/health", "/metrics"):
        response = client.get(path, headers={"Host": host})
        assert response.status_code == 200, (host, path)
        assert_hardened(response)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:5176", "localhost.evil.example",
                                  "127.0.0.1.nip.io:5176", "[::2]:5176", "10.1.2.4", "localhost:abc",
                                  "local host", "box.lan.evil.example", "0.0.0.0:5176"])
def test_foreign_hosts_are_refused_everywhere(client, host):
    for path in PATHS:
        response = client.get(path, headers={"Host": host})
        assert response.status_code == 403, (host, path)
        assert b"total_tokens" not in response.data
        assert_hardened(response)
    assert client.post("/api/usage/stats", headers={"Host": host}).status_code == 403


def test_host_helpers():
    assert host_name("LocalHost:5176") == "localhost"
    assert host_name("[::1]:80") == "[::1]"
    assert host_name("a:b:c") is None and host_name("") is None and host_name(None) is None
    names = allowed_hosts("::1", "a.lan, b.lan:99")
    assert {"localhost", "127.0.0.1", "[::1]", "a.lan", "b.lan"} <= names
    assert "0.0.0.0" not in allowed_hosts("0.0.0.0", None)


def test_dns_rebinding_over_a_real_socket():
    """A rebound name reaches the socket with its own Host header: refused before any data is read."""
    app = create_app({"TESTING": True})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        def fetch(host: str) -> tuple[int, bytes]:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            conn.putrequest("GET", "/api/usage/stats", skip_host=True)
            conn.putheader("Host", host)
            conn.endheaders()
            response = conn.getresponse()
            body = response.read()
            conn.close()
            return response.status, body
        assert fetch(f"attacker.example:{server.port}")[0] == 403
        status, body = fetch(f"127.0.0.1:{server.port}")
        assert status == 200 and b'"totals"' in body
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()


# ---------------------------------------------------------------- methods

@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND"])
def test_only_get_and_head(client, method):
    for path in PATHS:
        response = client.open(path, method=method, headers={"Origin": "http://evil.example"})
        assert response.status_code == 405, (method, path)
        assert response.headers["Allow"] == "GET, HEAD"
        assert_hardened(response)
        if path.startswith("/api"):
            assert response.get_json() == {"error": "read-only: only GET and HEAD are allowed"}


def test_head_is_allowed(client):
    for path in ("/", "/api/health", "/metrics", "/static/app.css"):
        response = client.head(path)
        assert response.status_code == 200, path
        assert response.data == b""


# ---------------------------------------------------------------- CORS and headers

def test_no_cors_even_when_asked(client):
    for path in PATHS:
        response = client.get(path, headers={"Origin": "http://evil.example"})
        assert "Access-Control-Allow-Origin" not in response.headers
        assert_hardened(response)
    preflight = client.options("/api/usage/stats", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "GET"})
    assert preflight.status_code == 405 and "Access-Control-Allow-Origin" not in preflight.headers


def test_headers_on_every_status(client):
    for url, status in (("/", 200), ("/api/usage/stats", 200), ("/api/usage/daily?since=x", 400),
                        ("/api/usage/sessions/none", 404), ("/nope", 404), ("/static/app.js", 200)):
        response = client.get(url)
        assert response.status_code == status, url
        assert_hardened(response)
    assert client.get("/api/usage/stats").headers["Cache-Control"] == "no-store"
    assert client.get("/metrics").headers["Cache-Control"] == "no-store"


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_page_needs_nothing_inline_or_remote(client):
    """The CSP forbids inline script and style; the page must not rely on them, nor on any CDN."""
    html = client.get("/").get_data(as_text=True)
    parser = _Tags()
    parser.feed(html)
    for tag, attrs in parser.tags:
        assert "style" not in attrs, tag
        assert not any(k.startswith("on") for k in attrs), (tag, attrs)
        if tag == "script":
            assert attrs.get("src", "").startswith("/static/")
        for key in ("src", "href"):
            value = attrs.get(key)
            if value:
                assert value.startswith("/"), (tag, value)
    assert "<style" not in html
    for path in STATIC.rglob("*"):
        if path.suffix in (".js", ".css", ".html"):
            text = path.read_text()
            urls = set(re.findall(r"https?://[^\s\"')]+", text)) - {"http://www.w3.org/2000/svg"}
            assert not urls, (path.name, urls)
    js = (STATIC / "app.js").read_text()
    assert "innerHTML" not in js and "eval(" not in js
    assert set(re.findall(r'getJSON\("(/[a-z/]+)', js)) <= {"/api/usage/stats", "/api/usage/daily",
                                                          "/api/usage/models", "/api/usage/projects",
                                                          "/api/usage/events", "/api/usage/sessions",
                                                          "/api/usage/hosts", "/api/health", "/api/processes"}
