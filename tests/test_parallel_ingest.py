"""A large catch-up parses files in worker processes; the ledger must be identical, row for row, to the
one the serial path writes (same merge order, same offsets, same rollups)."""
from __future__ import annotations

import json

import pytest

from daemon.ingest import Ingester
from daemon.reports import Filters, Reports
from daemon.store import REQUEST_COLUMNS, open_store
from truth import assert_daily_matches, generate

COMPARED = [c for c in REQUEST_COLUMNS if c not in ("ingested_ms", "file_id")]


def ledger(store) -> tuple[list, list, list]:
    rows = store.db.execute_sql(f"SELECT {', '.join(COMPARED)}, (SELECT path FROM files WHERE id = file_id) "
                                "FROM requests ORDER BY key").fetchall()
    files = store.db.execute_sql('SELECT path, "offset", size, lines, skipped_lines, requests_seen, head_hash, '
                                 "tail_hash FROM files ORDER BY path").fetchall()
    buckets = store.db.execute_sql("SELECT * FROM usage_buckets ORDER BY bucket_ms, host, project, model").fetchall()
    return rows, files, buckets


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("par") / "c"
    generate(out, 3, 31, nasty=True)
    return out


def test_parallel_catch_up_writes_the_same_ledger_as_serial(corpus, tmp_path, monkeypatch):
    serial = open_store("sqlite:///" + str(tmp_path / "serial.db"))
    monkeypatch.setenv("CCTALLY_WORKERS", "1")
    Ingester(serial, [corpus], host="h", batch_bytes=256 << 10).catch_up()
    parallel = open_store("sqlite:///" + str(tmp_path / "parallel.db"))
    monkeypatch.setenv("CCTALLY_WORKERS", "2")
    monkeypatch.setenv("CCTALLY_PARALLEL_MIN_BYTES", "1")
    summary = Ingester(parallel, [corpus], host="h", batch_bytes=256 << 10).catch_up()
    assert summary.files_read == summary.files_seen and summary.skipped_lines > 0
    assert ledger(parallel) == ledger(serial)
    truth = json.loads((corpus / "truth.json").read_text())
    assert_daily_matches(Reports(parallel).period("daily", Filters()), truth)
    again = Ingester(parallel, [corpus], host="h").catch_up()
    assert (again.files_read, again.new_requests, again.updated_requests) == (0, 0, 0)


def test_parallel_catch_up_from_a_threaded_process_uses_spawned_workers(corpus, tmp_path, monkeypatch):
    """The daemon has threads, so its workers are spawned (fork is unsafe there): same ledger."""
    import threading
    serial = open_store("sqlite:///" + str(tmp_path / "serial.db"))
    monkeypatch.setenv("CCTALLY_WORKERS", "1")
    Ingester(serial, [corpus], host="h").catch_up()
    monkeypatch.setenv("CCTALLY_WORKERS", "2")
    monkeypatch.setenv("CCTALLY_PARALLEL_MIN_BYTES", "1")
    release = threading.Event()
    other = threading.Thread(target=release.wait, name="stand-in-daemon-thread")
    other.start()
    try:
        spawned = open_store("sqlite:///" + str(tmp_path / "spawned.db"))
        Ingester(spawned, [corpus], host="h").catch_up()
    finally:
        release.set()
        other.join()
    assert ledger(spawned) == ledger(serial)
