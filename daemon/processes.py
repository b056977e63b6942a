"""Read side of process sampling: what is running now, with recent CPU/RSS series (for web and CLI)."""
from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

from .store import Store

SERIES_MS = 30 * 60_000
LIVE_FACTOR = 3          # a process is live if seen within this many sampling intervals


def process_overview(store: Store, now_ms: int | None = None, interval_s: float | None = None) -> dict[str, Any]:
    """`{"live": [...], "sampled_at": ms | None, "interval_s": float}`.

    Each live process: pid, name, project, cwd, session_id, cpu_percent, rss_bytes, threads, children,
    started_at, and `series` (its samples over the last 30 minutes, oldest first). "Live" means seen in
    the newest sample, which itself is no older than a few sampling intervals.
    """
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    if interval_s is None:
        interval_s = _configured_interval(store)
    db, p = store.db, store.db.param
    newest = db.execute_sql("SELECT MAX(ts_ms) FROM process_samples").fetchone()[0]
    result: dict[str, Any] = {"live": [], "sampled_at": int(newest) if newest else None, "interval_s": interval_s}
    if not newest or now_ms - int(newest) > LIVE_FACTOR * interval_s * 1000 + 1000:
        return result
    latest = list(db.execute_sql(
        "SELECT host, pid, started_ms, name, project, cwd, session_id, cpu_percent, rss_bytes, threads, children "
        f"FROM process_samples WHERE ts_ms = {p} ORDER BY cpu_percent DESC", (newest,)))
    for host, pid, started, name, project, cwd, session, cpu, rss, threads, children in latest:
        series = [{"t": int(t), "cpu_percent": round(c, 1), "rss_bytes": int(r)} for t, c, r in db.execute_sql(
            f"SELECT ts_ms, cpu_percent, rss_bytes FROM process_samples WHERE host = {p} AND pid = {p} "
            f"AND started_ms = {p} AND ts_ms >= {p} ORDER BY ts_ms", (host, pid, started, now_ms - SERIES_MS))]
        result["live"].append({
            "host": host, "pid": pid, "name": name, "project": project, "cwd": cwd, "session_id": session,
            "cpu_percent": round(cpu, 1), "rss_bytes": int(rss), "threads": threads, "children": children,
            "started_at": dt.datetime.fromtimestamp(started / 1000, dt.timezone.utc).isoformat(), "series": series})
    return result


def running_sessions(store: Store, now_ms: int | None = None) -> set[str]:
    """Session ids a live Claude process is serving."""
    return {p["session_id"] for p in process_overview(store, now_ms)["live"] if p["session_id"]}


def _configured_interval(store: Store) -> float:
    """The sampling interval the daemon announced in its heartbeat (5 s when unknown)."""
    for key, value in store.db.execute_sql("SELECT key, value FROM meta WHERE key LIKE 'daemon:%'"):
        try:
            return float(json.loads(value).get("sample_seconds") or 5.0)
        except (ValueError, AttributeError):
            continue
    return 5.0
