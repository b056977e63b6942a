"""Rollups the reports read instead of scanning every request: per 15-minute bucket × host × project ×
model sums (`usage_buckets`), the same without the bucket for all-time figures (`usage_totals`), and
per-session sums with first and last activity (`session_stats`), and how many requests of each model
took each latency (`latency_counts`, for exact percentiles without a sort).

Contract: ingest calls `apply(store, plus, minus)` in the same transaction that changes `requests`, with
the rows it added (or the new versions of rows it replaced) in `plus` and the rows it removed (or the old
versions) in `minus`. The tables then equal what `rebuild` computes from `requests` — additive upserts,
so concurrent writers on PostgreSQL compose. Buckets are 15 minutes because every UTC offset is a
multiple of 15 minutes: local days, weeks and months are unions of whole buckets in any time zone.
"""
from __future__ import annotations

from typing import Iterable

from peewee import Database

from .store import REQUEST_COLUMNS, Store

BUCKET_MS = 15 * 60 * 1000
SUM_COLUMNS = ("requests", "input_tokens", "output_tokens", "cache_write_5m", "cache_write_1h", "cache_read",
               "cost_calc", "cost_auto", "cost_display", "unpriced")
KEY_COLUMNS = ("bucket_ms", "host", "project", "model")
TABLES = {"usage_buckets": KEY_COLUMNS, "usage_totals": KEY_COLUMNS[1:]}

_C = {name: i for i, name in enumerate(REQUEST_COLUMNS)}
_TOKENS = [_C[c] for c in ("input_tokens", "output_tokens", "cache_write_5m", "cache_write_1h", "cache_read")]
_TS, _HOST, _PROJECT, _MODEL, _SESSION = (_C[c] for c in ("ts_ms", "host", "project", "model", "session_id"))
_COST, _LOGGED, _PRICED = _C["cost_usd"], _C["logged_cost_usd"], _C["priced"]
_LATENCY = _C["latency_ms"]


def _add(acc: dict, row: tuple, sign: int) -> None:
    """Add `row` to its bucket key and (bucket_ms None) to its all-time key."""
    key = (row[_TS] - row[_TS] % BUCKET_MS, row[_HOST], row[_PROJECT], row[_MODEL])
    _add_to(acc, key, row, sign)
    _add_to(acc, (None,) + key[1:], row, sign)


def _add_to(acc: dict, key: tuple, row: tuple, sign: int) -> None:
    sums = acc.get(key)
    if sums is None:
        sums = acc[key] = [0] * 6 + [0.0] * 3 + [0]
    logged = row[_LOGGED]
    sums[0] += sign
    for i, col in enumerate(_TOKENS, start=1):
        sums[i] += sign * row[col]
    sums[6] += sign * row[_COST]
    sums[7] += sign * (logged if logged is not None else row[_COST])
    sums[8] += sign * (logged or 0.0)
    sums[9] += sign * (0 if row[_PRICED] else 1)


def apply(store: Store, plus: Iterable[tuple], minus: Iterable[tuple]) -> None:
    """Fold request rows (REQUEST_COLUMNS order) in (+) and out (−) of every rollup."""
    buckets: dict[tuple, list] = {}
    sessions: dict[str, list] = {}          # session -> SUM_COLUMNS deltas
    spans: dict[str, list[int]] = {}        # session -> [min ts, max ts] of the rows added
    plus_rows = list(plus)
    for row in plus_rows:
        _add(buckets, row, 1)
        _add_to(sessions, row[_SESSION], row, 1)
        span = spans.setdefault(row[_SESSION], [row[_TS], row[_TS]])
        span[0], span[1] = min(span[0], row[_TS]), max(span[1], row[_TS])
    minus_rows = list(minus)
    for row in minus_rows:
        _add(buckets, row, -1)
        _add_to(sessions, row[_SESSION], row, -1)
    changed = [(k, v) for k, v in buckets.items() if any(v)]
    for table, keys in TABLES.items():
        per_table = [(k if k[0] is not None else k[1:], v) for k, v in changed
                     if (k[0] is not None) == (table == "usage_buckets")]
        if per_table:
            _upsert(store, table, keys, per_table)
    db, p = store.db, store.db.param
    latencies: dict[tuple[str, int], int] = {}
    for rows, sign in ((plus_rows, 1), (minus_rows, -1)):
        for row in rows:
            if row[_LATENCY] is not None:
                k = (row[_MODEL], row[_LATENCY])
                latencies[k] = latencies.get(k, 0) + sign
    changed_latencies = [(m, ms, n) for (m, ms), n in latencies.items() if n]
    if changed_latencies:
        db.cursor().executemany(
            f"INSERT INTO latency_counts (model, latency_ms, n) VALUES ({p}, {p}, {p}) "
            "ON CONFLICT (model, latency_ms) DO UPDATE SET n = latency_counts.n + excluded.n", changed_latencies)
        if minus_rows:
            db.execute_sql("DELETE FROM latency_counts WHERE n <= 0")
    if sessions:
        cols = ("session_id",) + SUM_COLUMNS + ("first_ms", "last_ms")
        sets = ", ".join(f"{c} = session_stats.{c} + excluded.{c}" for c in SUM_COLUMNS)
        sql = (f"INSERT INTO session_stats ({', '.join(cols)}) VALUES ({', '.join([p] * len(cols))}) "
               f"ON CONFLICT (session_id) DO UPDATE SET {sets}, "
               "first_ms = CASE WHEN excluded.first_ms < session_stats.first_ms "
               "THEN excluded.first_ms ELSE session_stats.first_ms END, "
               "last_ms = CASE WHEN excluded.last_ms > session_stats.last_ms "
               "THEN excluded.last_ms ELSE session_stats.last_ms END")
        # a session only losing rows has no span of its own: (max, min) leaves the stored span alone
        db.cursor().executemany(sql, [(sid, *v, *spans.get(sid, (_FAR_FUTURE, 0))) for sid, v in sessions.items()])
    if minus_rows:
        db.execute_sql("DELETE FROM usage_buckets WHERE requests = 0")
        db.execute_sql("DELETE FROM usage_totals WHERE requests = 0")
        db.execute_sql("DELETE FROM session_stats WHERE requests <= 0")
        # a replaced or removed row may have held a session's first or last time: re-read those
        # from the (session_id, ts_ms) index instead of guessing
        touched = sorted({row[_SESSION] for row in minus_rows})
        db.cursor().executemany(
            f"UPDATE session_stats SET first_ms = (SELECT MIN(ts_ms) FROM requests WHERE session_id = {p}), "
            f"last_ms = (SELECT MAX(ts_ms) FROM requests WHERE session_id = {p}) WHERE session_id = {p}",
            [(sid, sid, sid) for sid in touched])


_FAR_FUTURE = 1 << 62


def _upsert(store: Store, table: str, keys: tuple[str, ...], rows: list[tuple[tuple, list]]) -> None:
    """Additive upsert: each sum column grows by the delta (atomic per row, so concurrent writers compose)."""
    p = store.db.param
    cols = keys + SUM_COLUMNS
    sets = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in SUM_COLUMNS)
    sql = (f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join([p] * len(cols))}) "
           f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {sets}")
    store.db.cursor().executemany(sql, [tuple(k) + tuple(v) for k, v in rows])


_REBUILD_SUMS = ("COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(cache_write_5m), SUM(cache_write_1h), "
                 "SUM(cache_read), SUM(cost_usd), SUM(COALESCE(logged_cost_usd, cost_usd)), "
                 "SUM(COALESCE(logged_cost_usd, 0)), SUM(CASE WHEN priced THEN 0 ELSE 1 END)")


def rebuild(db: Database) -> None:
    """Recompute every rollup from `requests` (migration backfill; repair)."""
    for table in ("usage_buckets", "usage_totals", "session_stats", "latency_counts"):
        db.execute_sql(f"DELETE FROM {table}")
    db.execute_sql("INSERT INTO latency_counts (model, latency_ms, n) SELECT model, latency_ms, COUNT(*) "
                   "FROM requests WHERE latency_ms IS NOT NULL GROUP BY model, latency_ms")
    bucket = f"ts_ms / {BUCKET_MS} * {BUCKET_MS}"   # no %: psycopg2 reads it as a placeholder
    db.execute_sql(f"INSERT INTO usage_buckets ({', '.join(KEY_COLUMNS + SUM_COLUMNS)}) "
                   f"SELECT {bucket}, host, project, model, {_REBUILD_SUMS} "
                   f"FROM requests GROUP BY {bucket}, host, project, model")
    db.execute_sql(f"INSERT INTO usage_totals ({', '.join(KEY_COLUMNS[1:] + SUM_COLUMNS)}) "
                   f"SELECT host, project, model, {_REBUILD_SUMS} FROM requests GROUP BY host, project, model")
    db.execute_sql(f"INSERT INTO session_stats (session_id, {', '.join(SUM_COLUMNS)}, first_ms, last_ms) "
                   f"SELECT session_id, {_REBUILD_SUMS}, MIN(ts_ms), MAX(ts_ms) FROM requests GROUP BY session_id")
