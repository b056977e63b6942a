"""`cctally status`: what cctally reads, where it writes, and how current the ledger is."""
from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Any, TextIO

from peewee import DatabaseError, InterfaceError

from .config import NoClaudeRootsError, candidate_roots, claude_roots, database_url, host_id


def _ago(ms: int | None) -> str:
    if not ms:
        return "never"
    seconds = max(0, dt.datetime.now(dt.timezone.utc).timestamp() - ms / 1000)
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def collect_status(args: argparse.Namespace) -> dict[str, Any]:
    """A JSON-able status: roots, database, files, requests, last ingest, daemon heartbeat."""
    info: dict[str, Any] = {"host": host_id(args.host_id)}
    try:
        info["roots"] = [str(r) for r in claude_roots(args.claude_dir)]
    except NoClaudeRootsError as exc:
        info["roots"] = []
        info["roots_error"] = str(exc)
        info["looked_in"] = candidate_roots(args.claude_dir)
    url = database_url(args.db)
    info["database"] = url
    host = info["host"]
    local = _local_daemon_state()
    from .store import StoreError
    try:
        _ledger_status(info, url, host, local)
    except (StoreError, DatabaseError, InterfaceError) as exc:   # a team database may be down: say so
        info["database_error"] = str(exc).strip()
        info["daemon"] = local
        if local:
            local["running"] = _alive(local)
    return info


def _ledger_status(info: dict[str, Any], url: str, host: str, local: dict[str, Any] | None) -> None:
    from peewee import fn
    from .models import Request, SourceFile
    from .store import open_store
    store = open_store(url)
    files = SourceFile.select().where(SourceFile.host == host)
    info["files_tracked"] = files.count()
    info["files_missing"] = files.where(SourceFile.missing == True).count()  # noqa: E712
    info["skipped_lines"] = int(SourceFile.select(fn.COALESCE(fn.SUM(SourceFile.skipped_lines), 0))
                                .where(SourceFile.host == host).scalar() or 0)
    info["requests"] = Request.select().count()
    info["first_request_ms"] = Request.select(fn.MIN(Request.ts_ms)).scalar()
    info["last_request_ms"] = Request.select(fn.MAX(Request.ts_ms)).scalar()
    last = store.get_meta("last_ingest")
    info["last_ingest"] = json.loads(last) if last else None
    beat = store.get_meta(f"daemon:{host}")
    info["daemon"] = json.loads(beat) if beat else None
    if local and (not info["daemon"] or local.get("heartbeat_ms", 0) > info["daemon"].get("heartbeat_ms", 0)):
        info["daemon"] = local
    if info["daemon"]:
        info["daemon"]["running"] = _alive(info["daemon"])
    store.close()


def _local_daemon_state() -> dict[str, Any] | None:
    from .heartbeat import state_file
    try:
        return json.loads(state_file().read_text())
    except (OSError, ValueError):
        return None


def _alive(daemon: dict[str, Any]) -> bool:
    """A daemon is running when its heartbeat is fresh (it writes one every few seconds)."""
    beat = daemon.get("heartbeat_ms") or 0
    from .heartbeat import STALE_MS
    return dt.datetime.now(dt.timezone.utc).timestamp() * 1000 - beat < STALE_MS and not daemon.get("stopped")


def render_status(info: dict[str, Any], out: TextIO) -> None:
    w = out.write
    w(f"host:           {info['host']}\n")
    if info["roots"]:
        w("claude dirs:    " + "\n                ".join(info["roots"]) + "\n")
    else:
        w(f"claude dirs:    none ({info['roots_error']})\n")
    w(f"database:       {info['database']}\n")
    if info.get("database_error"):
        w(f"                UNREACHABLE: {info['database_error']}\n")
        _render_daemon(info, w)
        return
    w(f"files tracked:  {info['files_tracked']} ({info['files_missing']} deleted from disk, kept in the ledger)\n")
    w(f"requests:       {info['requests']:,}\n")
    if info["first_request_ms"]:
        first = dt.datetime.fromtimestamp(info["first_request_ms"] / 1000, dt.timezone.utc).date()
        last = dt.datetime.fromtimestamp(info["last_request_ms"] / 1000, dt.timezone.utc).date()
        w(f"history:        {first} .. {last}\n")
    w(f"skipped lines:  {info['skipped_lines']}\n")
    last = info["last_ingest"]
    w(f"last ingest:    {_ago(last['at_ms']) + ' — ' + last['summary'] if last else 'never'}\n")
    _render_daemon(info, w)


def _render_daemon(info: dict[str, Any], w: Any) -> None:
    d = info["daemon"]
    if not d:
        w("daemon:         not running (start it with `cctally run` or `cctally service install`)\n")
    else:
        state = "running" if d["running"] else "not running"
        w(f"daemon:         {state} (pid {d.get('pid')}, heartbeat {_ago(d.get('heartbeat_ms'))}, "
          f"observer {d.get('observer', '?')}, lag {d.get('lag_ms', '?')} ms)\n")
        if d.get("observer_fallback"):
            w(f"file watching:  polling; native watching failed: {d['observer_fallback']}\n")
        if d.get("web"):
            w(f"web:            {d['web']}\n")
        if d.get("last_error"):
            w(f"last error:     {d['last_error']}\n")
