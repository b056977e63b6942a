"""cctally's web package: the Flask app, the JSON API, the stats page and /metrics.

    app = create_app({"DB_URL": "sqlite:///…", "BIND_HOST": "127.0.0.1", "ALLOWED_HOSTS": ["box.lan"]})

Config keys: `DB_URL` (default `daemon.config.database_url()`), `BIND_HOST` (the address the server is
bound to; accepted as a Host name), `ALLOWED_HOSTS` (extra Host names, list or comma-separated; localhost,
127.0.0.1 and [::1] are always allowed, with or without port), `DEFAULT_TZ` (IANA name; None = local),
`POLL_MS` (how often the page polls, default 3000). The app opens the store once and never writes to it.
"""
from __future__ import annotations

from typing import Any

from flask import Flask, g

from daemon.config import database_url
from daemon.store import open_store

DEFAULTS: dict[str, Any] = {"DB_URL": None, "BIND_HOST": "127.0.0.1", "ALLOWED_HOSTS": (), "DEFAULT_TZ": None,
                            "POLL_MS": 3000}


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """The WSGI app over the ledger at `DB_URL`; safe to serve from a threaded server."""
    from . import metrics, security, views
    from .api import UsageAPI

    app = Flask(__name__)
    app.config.from_mapping(DEFAULTS)
    if test_config:
        app.config.from_mapping(test_config)
    app.config["DB_URL"] = app.config["DB_URL"] or database_url()
    app.json.sort_keys = False          # keep the documented field order

    store = open_store(app.config["DB_URL"], migrate=True)
    api = UsageAPI(store, default_tz=app.config["DEFAULT_TZ"])
    app.extensions["cctally"] = api
    app.extensions["cctally.metrics"] = metrics.make_registry(api)

    security.init_app(app)              # first: refuse foreign hosts and writes before touching the store

    @app.before_request
    def _connect() -> None:
        # Peewee keeps one connection per thread; a request thread that opens one closes it at teardown.
        # On SQLite those connections are query-only: the web cannot write even by mistake.
        if store.db.is_closed():
            store.db.connect()
            g.cctally_connection = True
            if store.is_sqlite:
                store.db.execute_sql("PRAGMA query_only = 1")

    @app.teardown_request
    def _close(_exc: BaseException | None) -> None:
        if g.pop("cctally_connection", False) and not store.db.is_closed():
            store.db.close()

    app.register_blueprint(views.api)
    app.register_blueprint(views.pages)
    app.register_blueprint(metrics.bp)
    views.register_error_pages(app)
    return app
