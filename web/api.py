"""The plain-Python API the HTTP views delegate to (the aw-server layering): query-string mappings in,
JSON-able dicts out, `ReportError(param, message)` for bad input. No Flask here; every number comes from
`daemon.reports`, the query layer the CLI uses too.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
import time
from typing import Any, Callable, Mapping

from daemon import __version__
from daemon.reports import (KINDS, SESSION_SQL_SORTS, Filters, ReportError, Reports, TOKEN_FIELDS, local_tz,
                            parse_day)
from daemon.heartbeat import STALE_MS
from daemon.store import Store

log = logging.getLogger(__name__)

CLEANUP_DAYS = 30
"""Claude Code deletes transcripts older than this (its default `cleanupPeriodDays`)."""

EVENTS_DEFAULT, EVENTS_MAX = 100, 1000
SESSION_SORTS = frozenset({"last_ms", "first_ms", "duration_s", "project", "session_id", "subagents",
                           *TOKEN_FIELDS})
_CURSOR_RE = re.compile(r"^(\d{1,15})-(\d{1,15})$")

Overview = Callable[..., dict[str, Any]]


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _tz_name(tz: dt.tzinfo) -> str:
    return str(getattr(tz, "key", None) or tz)


def _int_arg(args: Mapping[str, str], name: str, default: int | None, low: int, high: int) -> int | None:
    value = args.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ReportError(name, f"{name} must be an integer, got {value!r}") from None
    if not low <= number <= high:
        raise ReportError(name, f"{name} must be between {low} and {high}, got {number}")
    return number


def _sort_value(value: Any) -> Any:
    """A sortable scalar: latency objects (`{"median": ms, "p95": ms}`) sort by their median."""
    return value.get("median") if isinstance(value, dict) else value


def load_process_overview() -> Overview | None:
    """`daemon.processes.process_overview`, or None while process sampling is not installed."""
    try:
        from daemon.processes import process_overview
    except ImportError:
        return None
    return process_overview


class UsageAPI:
    """Answers the /api routes over one store. Thread-safe as long as the store's connections are per thread."""

    def __init__(self, store: Store, default_tz: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.reports = Reports(store)
        self.default_tz = default_tz
        self.clock = clock

    # ---- parameters
    def filters(self, args: Mapping[str, str]) -> Filters:
        """since, until (YYYY-MM-DD, local to tz, inclusive), tz, project, model, host, mode."""
        return Filters(since=parse_day(args.get("since"), "since"), until=parse_day(args.get("until"), "until"),
                       tz=local_tz(args.get("tz") or self.default_tz), project=args.get("project") or None,
                       model=args.get("model") or None, host=args.get("host") or None,
                       mode=args.get("mode") or "auto")

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # ---- /api/usage/*
    def host_count(self) -> int:
        """How many machines (hosts) wrote to the ledger, whatever the filters: read from the small all-time
        rollup, so it costs one index-sized scan."""
        row = self.store.db.execute_sql("SELECT COUNT(DISTINCT host) FROM usage_totals").fetchone()
        return int(row[0] or 0) if row else 0

    def stats(self, args: Mapping[str, str]) -> dict[str, Any]:
        """Totals (all filters), today and this month (the other filters, their own dates), the active
        5-hour block, session count, how far back the ledger goes, which models are not priced, and how
        many hosts the ledger holds (unfiltered; the page shows per-machine figures when there are two+)."""
        f = self.filters(args)
        now_ms = self.now_ms()
        today = dt.datetime.fromtimestamp(now_ms / 1000, f.tz).date()
        undated = dataclasses.replace(f, since=None, until=None)
        span = self.reports.span(f)
        ledger = self.reports.span(undated) if (f.since or f.until) else span
        history_days = 0
        if ledger["first_ms"] is not None:
            first_day = dt.datetime.fromtimestamp(ledger["first_ms"] / 1000, f.tz).date()
            history_days = max(0, (today - first_day).days)
        last_ingest = self.reports.ingest_state(skipped=False)["last_ingest"] or {}
        return {
            "totals": self.reports.totals(f),
            "today": {"date": today.isoformat(),
                      **self.reports.totals(dataclasses.replace(undated, since=today, until=today))},
            "this_month": {"month": f"{today.year:04d}-{today.month:02d}",
                           **self.reports.totals(dataclasses.replace(undated, since=today.replace(day=1),
                                                                     until=today))},
            "active_block": self.reports.active_block(undated, now_ms),
            "sessions": span["sessions"],
            "first_request_at": _iso(span["first_ms"]),
            "last_request_at": _iso(span["last_ms"]),
            "first_request_ms": span["first_ms"],
            "last_request_ms": span["last_ms"],
            "history_since": _iso(ledger["first_ms"]),
            "history_days": history_days,
            "days_beyond_cleanup": max(0, history_days - CLEANUP_DAYS),
            "unpriced_models": self.reports.unpriced_models(f),
            "hosts": self.host_count(),
            "last_ingest_at": _iso(last_ingest.get("at_ms")) if isinstance(last_ingest.get("at_ms"), int) else None,
            "tz": _tz_name(f.tz),
            "now_ms": now_ms,
        }

    def report(self, kind: str, args: Mapping[str, str]) -> dict[str, Any]:
        """daily, weekly, monthly, projects, models, blocks, hosts: the same JSON as `cctally report KIND --json`."""
        if kind not in KINDS or kind == "sessions":
            raise ReportError("kind", f"unknown report {kind!r}")
        f = self.filters(args)
        data = self.reports.blocks(f, self.now_ms()) if kind == "blocks" else self.reports.report(kind, f)
        data["unpriced_models"] = self.reports.unpriced_models(f)
        return data

    def sessions(self, args: Mapping[str, str]) -> dict[str, Any]:
        """Sessions, newest first unless `sort` (a field) and `order` (asc|desc) say otherwise; `limit` rows."""
        f = self.filters(args)
        limit = _int_arg(args, "limit", None, 1, 100_000)
        order = args.get("order") or "desc"
        if order not in ("asc", "desc"):
            raise ReportError("order", "order must be asc or desc")
        sort = args.get("sort") or "last_ms"
        if sort in SESSION_SQL_SORTS:      # the database sorts and cuts; details are read for `limit` rows
            return self.reports.sessions(f, sort=sort, descending=order == "desc", limit=limit)
        data = self.reports.sessions(f)
        rows = data["sessions"]
        if sort not in SESSION_SORTS and not (rows and sort in rows[0]):
            raise ReportError("sort", f"cannot sort sessions by {sort!r}")
        present = [r for r in rows if _sort_value(r.get(sort)) is not None]
        present.sort(key=lambda r: (_sort_value(r[sort]), r["last_ms"]), reverse=order == "desc")
        rows = present + [r for r in rows if _sort_value(r.get(sort)) is None]        # unknown values last
        data["count"] = len(rows)
        data["sessions"] = rows[:limit] if limit else rows
        return data

    def session(self, session_id: str, args: Mapping[str, str]) -> dict[str, Any] | None:
        """One session's summary and its requests (ts, model, tokens, cost, agent_id; never text)."""
        f = self.filters(args)
        rows = self.reports.sessions(f, session_id=session_id)["sessions"]
        if not rows:
            return None
        return {"session": rows[0], "requests": self.reports.session_requests(session_id, f)}

    def events(self, args: Mapping[str, str]) -> dict[str, Any]:
        """Recent requests, newest first. `next_cursor` (or null at the end) fetches the following page."""
        f = self.filters(args)
        limit = _int_arg(args, "limit", EVENTS_DEFAULT, 1, EVENTS_MAX) or EVENTS_DEFAULT
        before = None
        cursor = args.get("cursor")
        if cursor:
            match = _CURSOR_RE.match(cursor)
            if not match:
                raise ReportError("cursor", "cursor must be a next_cursor value from a previous page")
            before = (int(match.group(1)), int(match.group(2)))
        rows = self.reports.events(f, limit + 1, before)
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = f"{rows[-1]['ts_ms']}-{rows[-1]['id']}" if more and rows else None
        return {"events": rows, "next_cursor": next_cursor, "limit": limit}

    # ---- /api/processes, /api/health
    def processes(self) -> dict[str, Any] | None:
        """The process sampler's overview, or None when sampling is not available in this build."""
        overview = load_process_overview()
        if overview is None:
            return None
        return overview(self.store, now_ms=self.now_ms())

    def health(self) -> dict[str, Any]:
        """Cheap liveness: the database answers; when the last ingest ran; which daemons beat recently."""
        state = self.reports.ingest_state()
        now = self.now_ms()
        daemons = {}
        for host, beat in state["daemons"].items():
            ms = beat.get("heartbeat_ms")
            daemons[host] = {"heartbeat_at": _iso(ms) if isinstance(ms, int) else None,
                             "lag_ms": beat.get("lag_ms"),
                             "running": isinstance(ms, int) and now - ms < STALE_MS and not beat.get("stopped")}
        last = state["last_ingest"] or {}
        return {"status": "ok", "version": __version__,
                "database": "postgresql" if self.store.is_postgres else "sqlite",
                "last_ingest_at": _iso(last.get("at_ms")) if isinstance(last.get("at_ms"), int) else None,
                "daemons": daemons, "skipped_lines": sum(state["skipped_lines"].values()),
                "process_sampling": load_process_overview() is not None, "now_ms": now}
