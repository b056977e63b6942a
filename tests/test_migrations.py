"""daemon.migrations: an old ledger upgrades in place, keeps its data, and records every step once."""
from __future__ import annotations

from pathlib import Path

import pytest
from peewee import SqliteDatabase

from daemon import migrations
from daemon.migrations import MIGRATIONS, applied, run_migrations
from fixtures_lines import HOST, db_url, fresh_store, report_json

NAMES = [name for name, _ in MIGRATIONS]

M001_REQUEST_COLS = ("key", "message_id", "request_id", "session_id", "agent_id", "is_sidechain", "embedded",
                     "project", "git_branch", "model", "ts_ms", "version", "input_tokens", "output_tokens",
                     "cache_write_5m", "cache_write_1h", "cache_read", "web_search", "web_fetch", "speed",
                     "service_tier", "cost_usd", "logged_cost_usd", "priced", "copy_rank", "file_id", "host",
                     "os_user", "ingested_ms")
DAY1 = 1788264000000          # 2026-09-01T12:00:00Z
DAY2 = DAY1 + 86_400_000


def old_rows() -> list[tuple]:
    return [
        ("m:msg_1|r:req_1", "msg_1", "req_1", "sess-1", None, 0, 0, "/home/dev/a", "main",
         "claude-opus-4-6", DAY1, "2.1.39", 10, 200, 300, 0, 4000, 0, 0, None, "standard", 0.5, None, 1,
         123, 1, HOST, "dev", DAY1),
        ("s:sess-1|m:msg_2", "msg_2", None, "sess-1", "a1", 1, 0, "/home/dev/a", "main",
         "claude-haiku-4-5-20251001", DAY1 + 60_000, "2.0.76", 3, 40, 0, 50, 0, 0, 0, None, None, 0.01, None, 1,
         45, 1, HOST, "dev", DAY1),
        ("m:msg_3|r:req_3", "msg_3", "req_3", "sess-2", None, 0, 0, "/home/dev/b", None,
         "kimi-for-coding", DAY2, "1.0.8", 7, 8, 0, 0, 0, 0, 0, None, None, 0.0, 0.25, 0, 9, 2, HOST, "dev", DAY2),
    ]


def m001_ledger(path: Path) -> SqliteDatabase:
    """A ledger as the first release wrote it: only m001 applied, with rows in that schema."""
    db = SqliteDatabase(str(path))
    db.connect()
    assert run_migrations(db, upto="m001_initial") == ["m001_initial"]
    assert applied(db) == ["m001_initial"]
    cols = [r.name for r in db.get_columns("requests")]
    assert tuple(cols[1:]) == M001_REQUEST_COLS               # the frozen m001 schema, whatever models.py says
    db.execute_sql("INSERT INTO files (host, path, root, offset, size, lines, skipped_lines, requests_seen, "
                   "resets, first_seen_ms, last_ingest_ms, missing, dev, inode, mtime_ns, head_hash, tail_hash) "
                   "VALUES (?, ?, ?, 100, 100, 3, 1, 2, 0, 1, 2, 0, 0, 0, 0, '', ''), "
                   "(?, ?, ?, 50, 50, 1, 0, 1, 0, 1, 2, 1, 0, 0, 0, '', '')",
                   (HOST, "/x/a.jsonl", "/x", HOST, "/x/b.jsonl", "/x"))
    ph = ", ".join("?" * len(M001_REQUEST_COLS))
    for row in old_rows():
        db.execute_sql(f"INSERT INTO requests ({', '.join(M001_REQUEST_COLS)}) VALUES ({ph})", row)
    db.execute_sql("INSERT INTO meta (key, value) VALUES ('last_ingest', '{\"at_ms\": 1}')")
    return db


def test_upgrade_from_m001_keeps_data_and_records_every_migration(tmp_path):
    path = tmp_path / "old.db"
    db = m001_ledger(path)
    ran = run_migrations(db)
    assert ran == NAMES[1:]
    assert applied(db) == NAMES
    assert run_migrations(db) == []                           # a second run applies nothing
    assert applied(db) == NAMES
    got = list(db.execute_sql(f"SELECT {', '.join(M001_REQUEST_COLS)} FROM requests ORDER BY key"))
    assert [tuple(r) for r in got] == sorted(old_rows())
    assert [r[0] for r in db.execute_sql("SELECT path FROM files ORDER BY path")] == ["/x/a.jsonl", "/x/b.jsonl"]
    assert list(db.execute_sql("SELECT value FROM meta WHERE key = 'last_ingest'")) == [('{"at_ms": 1}',)]
    if "latency_ms" in [c.name for c in db.get_columns("requests")]:
        assert list(db.execute_sql("SELECT DISTINCT latency_ms FROM requests")) == [(None,)]
    db.close()


def test_upgraded_ledger_reports_its_old_rows(tmp_path, isolated_env):
    db = m001_ledger(isolated_env["db"])
    db.close()
    fresh_store(isolated_env["db"])                           # open_store applies the rest
    daily = report_json("daily")
    assert [(d["date"], d["requests"]) for d in daily["daily"]] == [("2026-09-01", 2), ("2026-09-02", 1)]
    t = daily["totals"]
    assert (t["input_tokens"], t["output_tokens"], t["cache_creation_5m_tokens"], t["cache_creation_1h_tokens"],
            t["cache_read_tokens"]) == (20, 248, 300, 50, 4000)
    assert t["cost_usd"] == pytest.approx(0.5 + 0.01 + 0.25)                 # auto: logged costUSD wins
    assert report_json("daily", "--mode", "calculate")["totals"]["cost_usd"] == pytest.approx(0.51)
    assert report_json("models")["unpriced_models"] == ["kimi-for-coding"]
    sessions = {s["session_id"]: s["requests"] for s in report_json("sessions")["sessions"]}
    assert sessions == {"sess-1": 2, "sess-2": 1}


def test_fresh_ledger_gets_every_migration_once(tmp_path):
    db = SqliteDatabase(str(tmp_path / "new.db"))
    assert run_migrations(db) == NAMES
    assert run_migrations(db) == []
    assert [r[0] for r in db.execute_sql("SELECT name FROM _migrations ORDER BY name")] == sorted(NAMES)
    db.close()


def test_a_failing_migration_leaves_the_schema_at_the_previous_boundary(tmp_path, monkeypatch):
    db = SqliteDatabase(str(tmp_path / "x.db"))
    run_migrations(db)

    def m999_broken(db_, migrator):
        db_.execute_sql("CREATE TABLE half_done (x INTEGER)")
        db_.execute_sql("INSERT INTO requests (key) VALUES ('not even valid')")   # NOT NULL columns: fails

    monkeypatch.setattr(migrations, "MIGRATIONS", MIGRATIONS + [("m999_broken", m999_broken)])
    with pytest.raises(Exception):
        run_migrations(db)
    assert "half_done" not in db.get_tables()
    assert applied(db) == NAMES
    db.close()


def test_upto_stops_after_the_named_migration(tmp_path):
    db = SqliteDatabase(str(tmp_path / "y.db"))
    assert run_migrations(db, upto=NAMES[1]) == NAMES[:2]
    assert run_migrations(db) == NAMES[2:]
    db.close()


def test_open_store_on_an_old_file_upgrades_it(isolated_env):
    db = m001_ledger(isolated_env["db"])
    db.close()
    store = fresh_store(isolated_env["db"])
    assert applied(store.db) == NAMES
    assert store.get_meta("last_ingest") == '{"at_ms": 1}'
    assert db_url(isolated_env["db"]) == store.url


RACER = """
import sys, time
start = float(sys.argv[2])
while time.time() < start:
    pass
from daemon.store import open_store
open_store("sqlite:///" + sys.argv[1])
"""


def test_processes_upgrading_one_ledger_at_once(tmp_path):
    """The daemon and a CLI (or two CLIs) starting together after an upgrade: every migration runs once,
    and none of them fails on a step the other has just applied."""
    import subprocess
    import sys
    import time
    for attempt in range(2):
        path = tmp_path / f"race-{attempt}.db"
        db = m001_ledger(path)
        db.execute_sql("PRAGMA journal_mode=wal")           # as open_store leaves every ledger
        db.close()
        start = time.time() + 0.5
        procs = [subprocess.Popen([sys.executable, "-c", RACER, str(path), str(start)], stderr=subprocess.PIPE,
                                  text=True) for _ in range(4)]
        errors = [p.communicate(timeout=60)[1] for p in procs]
        assert [p.returncode for p in procs] == [0] * 4, "\n".join(errors)
        db = SqliteDatabase(str(path))
        assert [r[0] for r in db.execute_sql("SELECT name FROM _migrations")] == NAMES
        assert db.execute_sql("SELECT COUNT(*) FROM requests").fetchone()[0] == 3
        db.close()
