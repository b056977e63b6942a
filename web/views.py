"""HTTP routes. Each view only parses the URL and delegates to `UsageAPI` (web/api.py)."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, render_template, request

from daemon import __version__
from daemon.reports import ReportError

from .api import UsageAPI

api = Blueprint("api", __name__, url_prefix="/api")
pages = Blueprint("pages", __name__)

REPORTS = ("daily", "weekly", "monthly", "projects", "models", "blocks", "hosts")


def usage_api() -> UsageAPI:
    return current_app.extensions["cctally"]


def _error(status: int, message: str, param: str | None = None) -> Response:
    body = {"error": message}
    if param:
        body["param"] = param
    response = jsonify(body)
    response.status_code = status
    return response


@api.errorhandler(ReportError)
def bad_parameter(exc: ReportError) -> Response:
    return _error(400, str(exc), exc.param)


@api.get("/usage/stats")
def stats() -> Response:
    return jsonify(usage_api().stats(request.args))


@api.get("/usage/<any(daily, weekly, monthly, projects, models, blocks, hosts):kind>")
def report(kind: str) -> Response:
    return jsonify(usage_api().report(kind, request.args))


@api.get("/usage/sessions")
def sessions() -> Response:
    return jsonify(usage_api().sessions(request.args))


@api.get("/usage/sessions/<path:session_id>")
def session(session_id: str) -> Response:
    data = usage_api().session(session_id, request.args)
    if data is None:
        return _error(404, f"no session {session_id!r} in the ledger (for these filters)", "session_id")
    return jsonify(data)


@api.get("/usage/events")
def events() -> Response:
    return jsonify(usage_api().events(request.args))


@api.get("/processes")
def processes() -> Response:
    data = usage_api().processes()
    if data is None:
        return _error(503, "process sampling not available")
    return jsonify(data)


@api.get("/health")
def health() -> Response:
    return jsonify(usage_api().health())


@pages.get("/")
def index() -> str:
    return render_template("index.html", version=__version__, poll_ms=int(current_app.config["POLL_MS"]))


def register_error_pages(app) -> None:
    """HTTP errors under /api answer JSON `{"error": ...}` like the rest of the API."""
    from werkzeug.exceptions import HTTPException

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if request.path.startswith("/api"):
            return _error(exc.code or 500, (exc.description or exc.name).rstrip("."))
        return exc
