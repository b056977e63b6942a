"""The rollups the reports read equal what a full recomputation from `requests` gives, whatever the order
of copies, batch cuts, /btw deletions and re-reads — on both backends."""
from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest

from daemon import rollups
from daemon.ingest import Ingester
from daemon.migrations import run_migrations
from daemon.reports import Filters, Reports, local_tz
from daemon.store import open_store
from truth import generate

ROLLUP_QUERIES = {
    "usage_buckets": "SELECT bucket_ms, host, project, model, requests, input_tokens, output_tokens, cache_write_5m, "
                     "cache_write_1h, cache_read, cost_calc, cost_auto, cost_display, "
                     "unpriced FROM usage_buckets",
    "usage_totals": "SELECT host, project, model, requests, input_tokens, output_tokens, cache_write_5m, "
                    "cache_write_1h, cache_read, cost_calc, cost_auto, cost_display, "
                    "unpriced FROM usage_totals",
    "latency_counts": "SELECT model, latency_ms, n FROM latency_counts",
    "session_stats": "SELECT session_id, requests, first_ms, last_ms, input_tokens, output_tokens, cache_write_5m, "
                     "cache_write_1h, cache_read, cost_calc, cost_auto, cost_display, unpriced FROM session_stats",
}


def snapshot(store) -> dict[str, list]:
    out = {}
    for name, sql in ROLLUP_QUERIES.items():
        rows = [tuple(round(v, 4) if isinstance(v, float) else v for v in r) for r in store.db.execute_sql(sql)]
        out[name] = sorted(rows, key=repr)
    return out


def assert_rollups_exact(store) -> None:
    incremental = snapshot(store)
    with store.write():
        rollups.rebuild(store.db)
    assert snapshot(store) == incremental


@pytest.fixture(scope="module")
def nasty_corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rollup") / "c"
    generate(out, 2, 21, nasty=True)
    return out


def test_incremental_rollups_equal_rebuild(db_url, nasty_corpus, tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(nasty_corpus, tree)
    store = open_store(db_url)
    # small batches: many copies of one request land in different transactions (updates, not inserts)
    Ingester(store, [tree], host="h", batch_bytes=16 << 10).catch_up()
    assert_rollups_exact(store)
    # a rewrite in place and a /btw replay read before its main-chain copy (deleted later)
    victim = sorted(tree.rglob("*.jsonl"))[0]
    victim.write_bytes(victim.read_bytes()[::-1][:0] + victim.read_bytes())   # same bytes, new mtime
    main_line = {"type": "assistant", "sessionId": "btw-s", "cwd": "/p", "timestamp": "2026-09-03T10:00:00.000Z",
                 "requestId": "req_main", "isSidechain": False,
                 "message": {"id": "msg_btw", "model": "claude-opus-4-6",
                             "usage": {"input_tokens": 5, "output_tokens": 50, "cache_read_input_tokens": 1000}}}
    replay = dict(main_line, requestId="req_replay", isSidechain=True, timestamp="2026-09-03T11:00:00.000Z")
    side = tree / "projects" / "-p" / "btw-s" / "subagents" / "agent-x.jsonl"
    side.parent.mkdir(parents=True)
    side.write_text(json.dumps(replay) + "\n")
    Ingester(store, [tree], host="h").catch_up()
    assert store.db.execute_sql("SELECT COUNT(*) FROM requests WHERE message_id = 'msg_btw'").fetchone()[0] == 1
    (tree / "projects" / "-p" / "btw-s.jsonl").write_text(json.dumps(main_line) + "\n")
    Ingester(store, [tree], host="h").catch_up()
    rows = store.db.execute_sql("SELECT request_id FROM requests WHERE message_id = 'msg_btw'").fetchall()
    assert [r[0] for r in rows] == ["req_main"]
    assert_rollups_exact(store)


def test_reports_from_rollups_equal_reports_from_requests(nasty_corpus, tmp_path):
    """Every report figure read from the rollups equals the same figure summed from `requests`."""
    store = open_store("sqlite:///" + str(tmp_path / "r.db"))
    Ingester(store, [nasty_corpus], host="h").catch_up()
    reports = Reports(store)
    for tz in ("UTC", "America/New_York", "Asia/Kolkata"):
        filters = Filters(tz=local_tz(tz), since=dt.date(2026, 9, 10), until=dt.date(2026, 10, 5))
        daily = reports.period("daily", filters)
        lo, hi = filters.where("?")[1]
        expected: dict[str, int] = {}
        for ts, n in store.db.execute_sql("SELECT ts_ms, 1 FROM requests WHERE ts_ms >= ? AND ts_ms < ?", (lo, hi)):
            day = dt.datetime.fromtimestamp(ts / 1000, local_tz(tz)).date().isoformat()
            expected[day] = expected.get(day, 0) + n
        assert {r["date"]: r["requests"] for r in daily["daily"]} == expected
    total = store.db.execute_sql("SELECT COUNT(*), SUM(output_tokens), SUM(cost_usd) FROM requests").fetchone()
    got = reports.totals(Filters(mode="calculate"))
    assert (got["requests"], got["output_tokens"]) == (total[0], total[1])
    assert got["cost_usd"] == pytest.approx(total[2], abs=1e-6)


def test_migration_backfills_rollups_from_existing_requests(nasty_corpus, tmp_path):
    """A ledger written before the rollups existed gets them filled by the migration that adds them."""
    url = "sqlite:///" + str(tmp_path / "old.db")
    store = open_store(url)
    Ingester(store, [nasty_corpus], host="h").catch_up()
    before = snapshot(store)
    for table in ("usage_buckets", "usage_totals", "session_stats", "latency_counts"):
        store.db.execute_sql(f"DROP TABLE {table}")
    store.db.execute_sql("DROP INDEX files_skipped")
    store.db.execute_sql("DELETE FROM _migrations WHERE name IN ('m004_rollups', 'm006_session_sums', "
                         "'m007_stats_indexes_and_latency_counts')")
    assert run_migrations(store.db) == ["m004_rollups", "m006_session_sums", "m007_stats_indexes_and_latency_counts"]
    assert snapshot(store) == before


def test_model_latency_percentiles_from_counts_equal_the_sorted_scan(nasty_corpus, tmp_path):
    """All-time per-model latency comes from the latency_counts rollup; it must equal the exact
    percentiles of the sorted latencies (the path every filtered report still takes)."""
    store = open_store("sqlite:///" + str(tmp_path / "lat.db"))
    Ingester(store, [nasty_corpus], host="h").catch_up()
    reports = Reports(store)
    from_counts = reports.latency_by("model", Filters())
    scanned = reports.latency_by("model", Filters(), "latency_ms >= 0")      # forces the scan
    assert from_counts and from_counts == scanned
