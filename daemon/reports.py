"""Queries shared by the CLI and the web API. Reads the store; never writes.

Every report returns plain dicts with the token field names of DESIGN.md (`TOKEN_FIELDS`). Time is stored
in UTC; days, weeks and months are cut in the caller's time zone. The database aggregates by 15-minute UTC
buckets (every real UTC offset is a multiple of 15 minutes, so a bucket never straddles a local midnight)
and Python folds buckets into local periods: exact in any zone, portable across SQLite and PostgreSQL.
"""
from __future__ import annotations

import datetime as dt
import itertools
import json
from dataclasses import dataclass, field
from typing import Any, Iterable
from zoneinfo import ZoneInfo

from .store import Store

TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_creation_tokens", "cache_creation_5m_tokens",
                "cache_creation_1h_tokens", "cache_read_tokens", "total_tokens", "requests", "cost_usd")
BUCKET_MS = 15 * 60 * 1000
DAY_MS = 86_400_000
BLOCK_MS = 5 * 3600 * 1000
COST_MODES = ("auto", "calculate", "display")
KINDS = ("daily", "weekly", "monthly", "sessions", "projects", "models", "blocks", "hosts")

SESSION_SQL_SORTS = {
    "last_ms": "last_ms", "first_ms": "first_ms", "duration_s": "(last_ms - first_ms)", "session_id": "session_id",
    "requests": "requests", "input_tokens": "input_tokens", "output_tokens": "output_tokens",
    "cache_read_tokens": "cache_read", "cache_creation_5m_tokens": "cache_write_5m",
    "cache_creation_1h_tokens": "cache_write_1h", "cache_creation_tokens": "(cache_write_5m + cache_write_1h)",
    "total_tokens": "(input_tokens + output_tokens + cache_write_5m + cache_write_1h + cache_read)",
    "cost_usd": "cost",
}
"""Session orderings the database applies (before `limit`); others are sorted by the caller."""


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


_BUCKET_SUMS = ("SUM(input_tokens), SUM(output_tokens), SUM(cache_write_5m), SUM(cache_write_1h), "
                "SUM(cache_read), SUM(requests), SUM({cost})")
_SUMS = ("SUM(input_tokens), SUM(output_tokens), SUM(cache_write_5m), SUM(cache_write_1h), "
         "SUM(cache_read), COUNT(*), SUM({cost})")


class ReportError(ValueError):
    """A report parameter is invalid; `param` names it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def local_tz(name: str | None = None) -> dt.tzinfo:
    """The zone named (IANA, or 'UTC'), else the machine's local zone."""
    if name:
        try:
            return ZoneInfo(name)
        except Exception as exc:
            raise ReportError("tz", f"unknown time zone {name!r} (use an IANA name like Europe/Berlin or UTC)") from exc
    local = dt.datetime.now().astimezone().tzinfo
    try:
        import tzlocal  # optional: gives the IANA zone so DST is exact for past dates
        return tzlocal.get_localzone()
    except Exception:
        return local or dt.timezone.utc


def parse_day(value: str | None, param: str) -> dt.date | None:
    """YYYY-MM-DD or YYYYMMDD (ccusage style) -> date."""
    if not value:
        return None
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return dt.datetime.strptime(value, fmt).date()
        except ValueError:
            continue
    raise ReportError(param, f"{param} must be a date YYYY-MM-DD, got {value!r}")


@dataclass
class Filters:
    """Which requests a report covers. Dates are local to `tz` and inclusive."""

    since: dt.date | None = None
    until: dt.date | None = None
    tz: dt.tzinfo = field(default_factory=lambda: dt.timezone.utc)
    project: str | None = None     # exact path, or its last component
    model: str | None = None       # substring of the model name
    host: str | None = None
    mode: str = "auto"             # cost: auto (logged costUSD else priced) | calculate | display

    def __post_init__(self) -> None:
        if self.mode not in COST_MODES:
            raise ReportError("mode", f"mode must be one of {', '.join(COST_MODES)}")
        if self.since and self.until and self.since > self.until:
            raise ReportError("since", "since is after until")

    def where(self, param: str, ts_col: str = "ts_ms") -> tuple[str, list[Any]]:
        """SQL WHERE clause and parameters (placeholder `param`). `ts_col` may be `bucket_ms` (rollups): a
        local midnight is always a bucket boundary, so the same bounds select whole buckets exactly."""
        clauses: list[str] = []
        args: list[Any] = []
        if self.since:
            clauses.append(f"{ts_col} >= {param}")
            args.append(_local_midnight_ms(self.since, self.tz))
        if self.until:
            clauses.append(f"{ts_col} < {param}")
            args.append(_local_midnight_ms(self.until + dt.timedelta(days=1), self.tz))
        if self.project:
            clauses.append(f"(project = {param} OR project LIKE {param} ESCAPE '!')")
            args += [self.project, "%/" + _like_escape(self.project)]
        if self.model:
            clauses.append(f"model LIKE {param} ESCAPE '!'")
            args.append("%" + _like_escape(self.model) + "%")
        if self.host:
            clauses.append(f"host = {param}")
            args.append(self.host)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args

    def cost_sql(self) -> str:
        return {"auto": "COALESCE(logged_cost_usd, cost_usd)", "calculate": "cost_usd",
                "display": "COALESCE(logged_cost_usd, 0)"}[self.mode]

    def bucket_cost_column(self) -> str:
        return {"auto": "cost_auto", "calculate": "cost_calc", "display": "cost_display"}[self.mode]

    def is_unfiltered(self) -> bool:
        return not (self.since or self.until or self.project or self.model or self.host)


def _like_escape(text: str) -> str:
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


def _local_midnight_ms(day: dt.date, tz: dt.tzinfo) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=tz).timestamp() * 1000)


def empty_fields() -> dict[str, Any]:
    return {name: (0.0 if name == "cost_usd" else 0) for name in TOKEN_FIELDS}


def add_sums(acc: dict[str, Any], sums: Iterable[Any]) -> dict[str, Any]:
    """Add one SQL row of _SUMS (in, out, 5m, 1h, read, count, cost) into a TOKEN_FIELDS dict."""
    inp, out, c5, c1, cr, n, cost = (v or 0 for v in sums)
    acc["input_tokens"] += int(inp)
    acc["output_tokens"] += int(out)
    acc["cache_creation_5m_tokens"] += int(c5)
    acc["cache_creation_1h_tokens"] += int(c1)
    acc["cache_creation_tokens"] += int(c5) + int(c1)
    acc["cache_read_tokens"] += int(cr)
    acc["total_tokens"] += int(inp) + int(out) + int(c5) + int(c1) + int(cr)
    acc["requests"] += int(n)
    acc["cost_usd"] += float(cost)
    return acc


def _rounded(fields: dict[str, Any]) -> dict[str, Any]:
    fields["cost_usd"] = round(fields["cost_usd"], 6)
    return fields


class Reports:
    """The report queries over one store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.db
        self.param = store.db.param

    def _rows(self, select: str, filters: Filters, group: str = "", extra_where: str = "",
              extra_args: list[Any] | None = None, order: str = "") -> list[tuple]:
        where, args = filters.where(self.param)
        if extra_where:
            where = (where + " AND " if where else " WHERE ") + extra_where
            args += extra_args or []
        sql = f"SELECT {select} FROM requests{where}{group}{order}"
        return list(self.db.execute_sql(sql, args))

    def _sums(self, filters: Filters) -> str:
        return _SUMS.format(cost=filters.cost_sql())

    def _bucket_rows(self, select: str, filters: Filters, group: str = "", extra_where: str = "",
                     need_time: bool = False) -> list[tuple]:
        """Like `_rows`, over the rollups (daemon/rollups.py): `usage_buckets` when the query is cut by
        time (or `need_time`: it selects bucket_ms), else the far smaller all-time `usage_totals`."""
        table = "usage_buckets" if (need_time or filters.since or filters.until) else "usage_totals"
        where, args = filters.where(self.param, ts_col="bucket_ms")
        if extra_where:
            where = (where + " AND " if where else " WHERE ") + extra_where
        return list(self.db.execute_sql(f"SELECT {select} FROM {table}{where}{group}", args))

    def _bucket_sums(self, filters: Filters) -> str:
        return _BUCKET_SUMS.format(cost=filters.bucket_cost_column())

    # ---- totals
    def totals(self, filters: Filters) -> dict[str, Any]:
        rows = self._bucket_rows(self._bucket_sums(filters), filters)
        return _rounded(add_sums(empty_fields(), rows[0]))

    def unpriced_models(self, filters: Filters) -> list[str]:
        rows = self._bucket_rows("DISTINCT model", filters, extra_where="unpriced > 0")
        return sorted(r[0] for r in rows)

    # ---- periods
    def period(self, kind: str, filters: Filters) -> dict[str, Any]:
        """daily / weekly / monthly: rows per local period with per-model breakdowns, plus totals."""
        label = {"daily": "date", "weekly": "week", "monthly": "month"}[kind]
        periods: dict[str, dict[str, Any]] = {}
        by_model: dict[str, dict[str, dict[str, Any]]] = {}
        for day, model, sums in self._local_days(filters):
            if kind == "daily":
                name = day.isoformat()
            elif kind == "weekly":
                name = (day - dt.timedelta(days=day.weekday())).isoformat()
            else:
                name = f"{day.year:04d}-{day.month:02d}"
            add_sums(periods.setdefault(name, empty_fields()), sums)
            add_sums(by_model.setdefault(name, {}).setdefault(model, empty_fields()), sums)
        out = []
        for name in sorted(periods):
            fields = _rounded(periods[name])
            models = by_model[name]
            out.append({label: name, **fields, "models": sorted(models),
                        "model_breakdowns": [{"model": m, **_rounded(models[m])} for m in sorted(models)]})
        return {kind: out, "totals": _sum_rows(out)}

    def _local_days(self, filters: Filters) -> list[tuple[dt.date, str, tuple]]:
        """(local date, model, sums) rows, summed by the database.

        The covered time is cut into spans of constant UTC offset (split at the zone's DST transitions,
        which fall on bucket boundaries); within a span the local date is (bucket_ms + offset) // 1 day.
        """
        where, args = filters.where(self.param, ts_col="bucket_ms")
        lo = self.db.execute_sql(f"SELECT MIN(bucket_ms) FROM usage_buckets{where}", args).fetchone()[0]
        if lo is None:
            return []
        hi = self.db.execute_sql(f"SELECT MAX(bucket_ms) FROM usage_buckets{where}", args).fetchone()[0]
        out = []
        glue = " AND " if where else " WHERE "
        epoch = dt.date(1970, 1, 1)
        for start, end, offset in offset_spans(int(lo), int(hi) + BUCKET_MS, filters.tz):
            sql = (f"SELECT (bucket_ms + {offset}) / {DAY_MS} AS d, model, {self._bucket_sums(filters)} "
                   f"FROM usage_buckets{where}{glue}bucket_ms >= {self.param} AND bucket_ms < {self.param} "
                   "GROUP BY d, model")
            for d, model, *sums in self.db.execute_sql(sql, args + [start, end]):
                out.append((epoch + dt.timedelta(days=int(d)), model, sums))
        return out

    # ---- groupings
    def by_model(self, filters: Filters) -> dict[str, Any]:
        rows = self._bucket_rows(f"model, SUM(unpriced), {self._bucket_sums(filters)}", filters,
                                 group=" GROUP BY model")
        latency = self.latency_by("model", filters)
        out = [{"model": m, "priced": not u, **_rounded(add_sums(empty_fields(), sums)),
                "latency_ms": latency.get(m) or dict(_NO_LATENCY)} for m, u, *sums in rows]
        out.sort(key=lambda r: (-r["cost_usd"], -r["total_tokens"], r["model"]))
        return {"models": out, "totals": self.totals(filters)}

    def by_project(self, filters: Filters) -> dict[str, Any]:
        rows = self._rows(f"project, COUNT(DISTINCT session_id), MIN(ts_ms), MAX(ts_ms), {self._sums(filters)}",
                          filters, group=" GROUP BY project")
        out = [{"project": p, "sessions": int(s), "first_ms": int(a), "last_ms": int(b),
                "first_at": _iso(a), "last_at": _iso(b), **_rounded(add_sums(empty_fields(), sums))}
               for p, s, a, b, *sums in rows]
        out.sort(key=lambda r: (-r["cost_usd"], r["project"]))
        return {"projects": out, "totals": self.totals(filters)}

    def sessions(self, filters: Filters, session_id: str | None = None, sort: str = "last_ms",
                 descending: bool = True, limit: int | None = None) -> dict[str, Any]:
        """Sessions with requests in the filter: project, first/last activity, duration, models, subagents,
        tokens, cost, response latency (median, p95), whether a Claude process runs it now.

        `sort` (a key of SESSION_SQL_SORTS) and `limit` are applied by the database, and the per-session
        details are then read for the rows returned only; unfiltered, the list is read from the
        `session_stats` rollup. `count` is the number of sessions before `limit`.
        """
        if sort not in SESSION_SQL_SORTS:
            raise ReportError("sort", f"cannot sort sessions by {sort!r} here; one of {', '.join(SESSION_SQL_SORTS)}")
        cost = filters.bucket_cost_column()
        if filters.is_unfiltered() and not session_id:
            source = (f"(SELECT session_id, first_ms, last_ms, requests, input_tokens, output_tokens, cache_write_5m, "
                      f"cache_write_1h, cache_read, {cost} AS cost FROM session_stats) s")
            args: list[Any] = []
        else:
            extra, extra_args = ("session_id = " + self.param, [session_id]) if session_id else ("", [])
            where, args = filters.where(self.param)
            if extra:
                where = (where + " AND " if where else " WHERE ") + extra
                args += extra_args
            source = (f"(SELECT session_id, MIN(ts_ms) AS first_ms, MAX(ts_ms) AS last_ms, COUNT(*) AS requests, "
                      "SUM(input_tokens) AS input_tokens, SUM(output_tokens) AS output_tokens, "
                      "SUM(cache_write_5m) AS cache_write_5m, SUM(cache_write_1h) AS cache_write_1h, "
                      f"SUM(cache_read) AS cache_read, SUM({filters.cost_sql()}) AS cost "
                      f"FROM requests{where} GROUP BY session_id) s")
        count = int(self.db.execute_sql(f"SELECT COUNT(*) FROM {source}", args).fetchone()[0])
        direction = "DESC" if descending else "ASC"
        page = f" LIMIT {int(limit)}" if limit else ""
        rows = list(self.db.execute_sql(
            f"SELECT session_id, first_ms, last_ms, input_tokens, output_tokens, cache_write_5m, cache_write_1h, "
            f"cache_read, requests, cost FROM {source} ORDER BY {SESSION_SQL_SORTS[sort]} {direction}, "
            f"last_ms {direction}, session_id{page}", args))
        ids = [r[0] for r in rows]
        models: dict[str, set[str]] = {}
        projects: dict[str, dict[str, int]] = {}
        agents: dict[str, int] = {}
        latency: dict[str, dict[str, float | None]] = {}
        for chunk in _chunks(ids, 500):
            inside = f"session_id IN ({', '.join([self.param] * len(chunk))})"
            for sid, model, project, n in self._rows("session_id, model, project, COUNT(*)", filters,
                                                     group=" GROUP BY session_id, model, project",
                                                     extra_where=inside, extra_args=list(chunk)):
                models.setdefault(sid, set()).add(model)
                counts = projects.setdefault(sid, {})
                counts[project] = counts.get(project, 0) + int(n)
            for sid, n in self._rows("session_id, COUNT(DISTINCT agent_id)", filters, group=" GROUP BY session_id",
                                     extra_where=inside, extra_args=list(chunk)):
                agents[sid] = int(n or 0)
            latency.update(self.latency_by("session_id", filters, inside, list(chunk)))
        running = self.running_sessions()
        out = []
        for sid, first, last, *sums in rows:
            counts = projects.get(sid, {})
            out.append({"session_id": sid,
                        "project": max(counts, key=lambda p: (counts[p], p)) if counts else "",
                        "first_ms": int(first), "last_ms": int(last), "first_at": _iso(first), "last_at": _iso(last),
                        "duration_s": round((int(last) - int(first)) / 1000, 3),
                        "models": sorted(models.get(sid, ())), "subagents": agents.get(sid, 0),
                        **_rounded(add_sums(empty_fields(), sums)),
                        "latency_ms": latency.get(sid) or dict(_NO_LATENCY), "running": sid in running})
        totals = _sum_rows(out) if session_id else self.totals(filters)
        return {"sessions": out, "count": count, "totals": totals}

    def latency_by(self, column: str, filters: Filters, extra_where: str = "",
                   extra_args: list[Any] | None = None) -> dict[str, dict[str, float | None]]:
        """Response latency per value of `column` ("session_id" or "model"): `{"median": ms, "p95": ms}` over
        the filtered requests whose latency is known. One query fetches every known latency ordered by
        (column, latency); percentiles are computed in Python (portable across SQLite and PostgreSQL)."""
        if column == "model" and not extra_where and filters.is_unfiltered():
            return self._model_latency_from_counts()
        known = "latency_ms IS NOT NULL"
        where = f"{extra_where} AND {known}" if extra_where else known
        rows = self._rows(f"{column}, latency_ms", filters, extra_where=where, extra_args=list(extra_args or []),
                          order=f" ORDER BY {column}, latency_ms")
        out: dict[str, dict[str, float | None]] = {}
        for key, group in itertools.groupby(rows, key=lambda r: r[0]):
            values = [int(r[1]) for r in group]
            out[key] = {"median": percentile(values, 50), "p95": percentile(values, 95)}
        return out

    def _model_latency_from_counts(self) -> dict[str, dict[str, float | None]]:
        """All-time latency percentiles per model from the `latency_counts` rollup: the same interpolation
        as `percentile`, reading the two ranks around each position off cumulative counts."""
        out: dict[str, dict[str, float | None]] = {}
        rows = self.db.execute_sql("SELECT model, latency_ms, n FROM latency_counts ORDER BY model, latency_ms")
        for model, group in itertools.groupby(rows, key=lambda r: r[0]):
            values = [(int(ms), int(n)) for _, ms, n in group]
            total = sum(n for _, n in values)
            out[model] = {"median": _percentile_from_counts(values, total, 50),
                          "p95": _percentile_from_counts(values, total, 95)}
        return out

    def running_sessions(self) -> set[str]:
        """Sessions a live Claude process is serving now (from the newest process samples)."""
        from .processes import running_sessions
        return running_sessions(self.store)

    def by_host(self, filters: Filters) -> dict[str, Any]:
        """Per machine (team databases): requests recorded by each host, with its OS users."""
        rows = self._rows(f"host, COUNT(DISTINCT session_id), MIN(ts_ms), MAX(ts_ms), {self._sums(filters)}",
                          filters, group=" GROUP BY host")
        users: dict[str, set[str]] = {}
        for host, user in self._rows("DISTINCT host, os_user", filters):
            users.setdefault(host, set()).add(user)
        out = [{"host": h, "os_users": sorted(users.get(h, ())), "sessions": int(s), "first_at": _iso(a),
                "last_at": _iso(b), **_rounded(add_sums(empty_fields(), sums))} for h, s, a, b, *sums in rows]
        out.sort(key=lambda r: (-r["cost_usd"], r["host"]))
        return {"hosts": out, "totals": self.totals(filters)}

    # ---- 5-hour blocks
    def blocks(self, filters: Filters, now_ms: int | None = None) -> dict[str, Any]:
        """ccusage-style 5-hour billing windows: a block starts at the hour of its first request and lasts
        5 h; a request after the block's end, or after a gap of 5 h, starts a new block. The active block
        (now within it) gets a burn rate and a projection to its end."""
        minute = 60_000
        rows = self._rows(f"ts_ms / {minute} AS m, {self._sums(filters)}", filters,
                          group=" GROUP BY m", order=" ORDER BY m")
        now_ms = now_ms if now_ms is not None else int(dt.datetime.now(dt.timezone.utc).timestamp() * 1000)
        blocks: list[dict[str, Any]] = []
        current: dict[str, Any] | None = None
        for m, *sums in rows:
            t = int(m) * minute
            if current is None or t >= current["end_ms"] or t - current["last_ms"] >= BLOCK_MS:
                start = t - t % 3_600_000
                current = {"start_ms": start, "end_ms": start + BLOCK_MS, "first_ms": t, "last_ms": t,
                           **empty_fields()}
                blocks.append(current)
            current["last_ms"] = t
            add_sums(current, sums)
        out = []
        for b in blocks:
            active = b["start_ms"] <= now_ms < b["end_ms"]
            item = {"start": _iso(b["start_ms"]), "end": _iso(b["end_ms"]), "first_at": _iso(b["first_ms"]),
                    "last_at": _iso(b["last_ms"]), "start_ms": b["start_ms"], "end_ms": b["end_ms"],
                    "is_active": active, **_rounded({k: b[k] for k in TOKEN_FIELDS})}
            if active:
                elapsed_min = max(1.0, (now_ms - b["first_ms"]) / 60_000)
                remaining_min = (b["end_ms"] - now_ms) / 60_000
                tpm = b["total_tokens"] / elapsed_min
                cph = b["cost_usd"] / elapsed_min * 60
                item["burn_rate"] = {"tokens_per_minute": round(tpm, 1), "cost_per_hour": round(cph, 4)}
                item["projection"] = {"total_tokens": int(b["total_tokens"] + tpm * remaining_min),
                                      "cost_usd": round(b["cost_usd"] + cph / 60 * remaining_min, 4),
                                      "remaining_minutes": round(remaining_min, 1)}
            out.append(item)
        return {"blocks": out, "totals": _sum_rows(out)}

    def active_block(self, filters: Filters, now_ms: int | None = None) -> dict[str, Any] | None:
        now_ms = now_ms if now_ms is not None else int(dt.datetime.now(dt.timezone.utc).timestamp() * 1000)
        recent = Filters(since=(dt.datetime.fromtimestamp(now_ms / 1000, filters.tz) - dt.timedelta(hours=11)).date(),
                         tz=filters.tz, project=filters.project, model=filters.model, host=filters.host,
                         mode=filters.mode)
        for b in self.blocks(recent, now_ms)["blocks"]:
            if b["is_active"]:
                return b
        return None

    # ---- ledger facts and single requests (web API, metrics)
    def span(self, filters: Filters) -> dict[str, Any]:
        """First and last request time (epoch ms, or None when empty) and the number of sessions."""
        if filters.is_unfiltered():     # rollup: a count, not a scan of every request
            # two statements: SQLite answers a lone MIN or MAX from the index, both together by a scan
            first = self.db.execute_sql("SELECT MIN(ts_ms) FROM requests").fetchone()[0]
            last = self.db.execute_sql("SELECT MAX(ts_ms) FROM requests").fetchone()[0]
            sessions = self.db.execute_sql("SELECT COUNT(*) FROM session_stats").fetchone()[0]
        else:
            first, last, sessions = self._rows("MIN(ts_ms), MAX(ts_ms), COUNT(DISTINCT session_id)", filters)[0]
        return {"first_ms": int(first) if first is not None else None,
                "last_ms": int(last) if last is not None else None, "sessions": int(sessions or 0)}

    def events(self, filters: Filters, limit: int = 100,
               before: tuple[int, int] | None = None) -> list[dict[str, Any]]:
        """Single requests, newest first, ordered by (ts_ms, id) descending. `before` is the (ts_ms, id) of
        the last row of the previous page: rows inserted meanwhile never shift a page (keyset pagination)."""
        extra, args = "", []
        if before is not None:
            p = self.param
            extra, args = f"ts_ms <= {p} AND (ts_ms < {p} OR id < {p})", [before[0], before[0], before[1]]
        rows = self._rows(_REQUEST_SELECT.format(cost=filters.cost_sql()), filters, extra_where=extra,
                          extra_args=args, order=f" ORDER BY ts_ms DESC, id DESC LIMIT {int(limit)}")
        return [_request_dict(r) for r in rows]

    def session_requests(self, session_id: str, filters: Filters) -> list[dict[str, Any]]:
        """The requests of one session, oldest first (counts, ids, model and timing; no text)."""
        rows = self._rows(_REQUEST_SELECT.format(cost=filters.cost_sql()), filters,
                          extra_where=f"session_id = {self.param}", extra_args=[session_id],
                          order=" ORDER BY ts_ms, id")
        return [_request_dict(r) for r in rows]

    def by_model_project(self, filters: Filters) -> list[dict[str, Any]]:
        """Totals per (model, project) pair, for counters that carry both labels."""
        rows = self._bucket_rows(f"model, project, {self._bucket_sums(filters)}", filters,
                                 group=" GROUP BY model, project")
        return [{"model": m, "project": p, **_rounded(add_sums(empty_fields(), sums))} for m, p, *sums in rows]

    def ingest_state(self, skipped: bool = True) -> dict[str, Any]:
        """What the writers left in meta: `last_ingest`, each daemon's heartbeat (`daemon:<host>`), and (if
        `skipped`) the lines skipped as unreadable per host (sum of files.skipped_lines)."""
        last_ingest = None
        daemons: dict[str, Any] = {}
        for key, value in self.db.execute_sql(
                "SELECT key, value FROM meta WHERE key = 'last_ingest' OR key LIKE 'daemon:%'"):
            try:
                parsed = json.loads(value)
            except ValueError:
                continue
            if not isinstance(parsed, dict):
                continue
            if key == "last_ingest":
                last_ingest = parsed
            else:
                daemons[key.split(":", 1)[1]] = parsed
        per_host = {h: int(n or 0) for h, n in self.db.execute_sql(        # the partial index of m007
            "SELECT host, SUM(skipped_lines) FROM files WHERE skipped_lines > 0 GROUP BY host")} if skipped else {}
        return {"last_ingest": last_ingest, "daemons": daemons, "skipped_lines": per_host}

    def report(self, kind: str, filters: Filters) -> dict[str, Any]:
        """Dispatch by report name (one of KINDS)."""
        if kind in ("daily", "weekly", "monthly"):
            return self.period(kind, filters)
        if kind == "sessions":
            return self.sessions(filters)
        if kind == "projects":
            return self.by_project(filters)
        if kind == "models":
            return self.by_model(filters)
        if kind == "blocks":
            return self.blocks(filters)
        if kind == "hosts":
            return self.by_host(filters)
        raise ReportError("kind", f"unknown report {kind!r}; one of {', '.join(KINDS)}")


_REQUEST_SELECT = ("id, ts_ms, session_id, agent_id, is_sidechain, project, model, host, latency_ms, "
                   "input_tokens, output_tokens, cache_write_5m, cache_write_1h, cache_read, 1, {cost}")


def _request_dict(row: tuple) -> dict[str, Any]:
    rid, ts, sid, agent, side, project, model, host, latency, *sums = row
    return {"id": int(rid), "ts": _iso(ts), "ts_ms": int(ts), "session_id": sid, "agent_id": agent,
            "is_sidechain": bool(side), "project": project, "model": model, "host": host,
            "latency_ms": int(latency) if latency is not None else None,
            **_rounded(add_sums(empty_fields(), sums))}


_NO_LATENCY: dict[str, float | None] = {"median": None, "p95": None}


def percentile(ordered: list[int], q: float) -> float | None:
    """The q-th percentile of ascending `ordered` by linear interpolation between closest ranks (as numpy's
    default and PostgreSQL's percentile_cont), rounded to 0.1 ms; None when empty. q=50 is the median."""
    if not ordered:
        return None
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return round(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo), 1)


def _percentile_from_counts(values: list[tuple[int, int]], total: int, q: float) -> float | None:
    """`percentile` over a sorted multiset given as (value, count) pairs."""
    if total <= 0:
        return None
    pos = (total - 1) * q / 100
    lo_rank, hi_rank = int(pos), min(int(pos) + 1, total - 1)
    lo = hi = None
    seen = 0
    for value, n in values:
        if lo is None and lo_rank < seen + n:
            lo = value
        if hi_rank < seen + n:
            hi = value
            break
        seen += n
    return round(lo + (hi - lo) * (pos - int(pos)), 1)


def _offset_ms(ms: int, tz: dt.tzinfo) -> int:
    offset = dt.datetime.fromtimestamp(ms / 1000, tz).utcoffset() or dt.timedelta(0)
    return int(offset.total_seconds() * 1000)


def offset_spans(lo: int, hi: int, tz: dt.tzinfo) -> list[tuple[int, int, int]]:
    """[start, end) UTC ms spans covering [lo, hi) with one UTC offset each, cut at `tz`'s transitions
    (found to the bucket: offsets and transitions are multiples of 15 minutes)."""
    spans = []
    start, offset = lo, _offset_ms(lo, tz)
    t = lo
    while t < hi:
        nxt = min(t + DAY_MS, hi)
        if _offset_ms(nxt - 1, tz) != offset:
            a, b = t, nxt - 1                   # offset(a) == offset, offset(b) != offset
            while b - a > BUCKET_MS:
                mid = a + (b - a) // 2
                mid -= mid % BUCKET_MS
                if mid <= a:
                    mid = a + BUCKET_MS
                if _offset_ms(mid, tz) == offset:
                    a = mid
                else:
                    b = mid
            cut = b - b % BUCKET_MS if _offset_ms(b - b % BUCKET_MS, tz) != offset else a + BUCKET_MS
            spans.append((start, cut, offset))
            start, offset = cut, _offset_ms(cut, tz)
            t = cut
            continue
        t = nxt
    spans.append((start, hi, offset))
    return spans


def _sum_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    totals = empty_fields()
    for r in rows:
        for k in TOKEN_FIELDS:
            totals[k] += r[k]
    return _rounded(totals)


def _iso(ms: Any) -> str:
    return dt.datetime.fromtimestamp(int(ms) / 1000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
