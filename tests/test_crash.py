"""kill -9 at random points of `cctally ingest`, then one clean run: exactly the truth, no duplicates.

The ingest runs as a real subprocess on a ~20 MB gen_corpus corpus with small transactions
(CCTALLY_BATCH_BYTES=64 KiB, a few hundred commits). The test watches its progress through the ledger
(SQLite WAL: reading never blocks the writer) and sends SIGKILL when a random share of the corpus is
committed, plus a random few milliseconds so some kills land inside a transaction. Set CCTALLY_CRASH_SEED
to replay a failing run.
"""
from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from fixtures_lines import report_json
from truth import assert_daily_matches, generate

ROUNDS = 6
BATCH_BYTES = 64 * 1024
SEED = int(os.environ.get("CCTALLY_CRASH_SEED") or random.randrange(1 << 30))


def committed_bytes(db: Path) -> int:
    """Bytes of transcript the ledger has committed so far (0 before the schema exists)."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return int(con.execute("SELECT COALESCE(SUM(offset), 0) FROM files").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def check_ledger(db: Path) -> int:
    """The ledger is a consistent SQLite file without duplicate requests; returns its row count."""
    con = sqlite3.connect(str(db), timeout=10)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("SELECT COUNT(*) - COUNT(DISTINCT key) FROM requests").fetchone()[0] == 0
        dup = con.execute("SELECT message_id, request_id FROM requests WHERE request_id IS NOT NULL "
                          "GROUP BY message_id, request_id HAVING COUNT(*) > 1").fetchall()
        assert dup == []
        # every file's offset ends a line (a torn batch would leave it mid-line)
        for path, offset in con.execute("SELECT path, offset FROM files WHERE offset > 0"):
            with open(path, "rb") as f:
                f.seek(offset - 1)
                assert f.read(1) == b"\n", path
        return con.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
    finally:
        con.close()


def stored_requests(db: Path) -> dict[str, tuple]:
    con = sqlite3.connect(str(db))
    try:
        return {k: tuple(v) for k, *v in con.execute(
            "SELECT key, model, session_id, project, ts_ms, input_tokens, output_tokens, cache_write_5m, "
            "cache_write_1h, cache_read FROM requests")}
    finally:
        con.close()


def truth_requests(truth: dict) -> dict[str, tuple]:
    """truth.json's requests under cctally's keys (FORMAT-NOTES 5.4)."""
    out = {}
    for r in truth["by_request"]:
        a, b = r["key"]
        k = f"m:{a}|r:{b}" if a.startswith("msg_") else f"s:{a}|m:{b}"
        ts_ms = int(datetime.fromisoformat(r["ts"].replace("Z", "+00:00")).timestamp() * 1000)
        out[k] = (r["model"], r["session"], r["project"], ts_ms, r["input"], r["output"], r["cache_write_5m"],
                  r["cache_write_1h"], r["cache_read"])
    return out


def start_ingest(claude: Path, db: Path) -> subprocess.Popen:
    env = dict(os.environ, CCTALLY_BATCH_BYTES=str(BATCH_BYTES), CCTALLY_DB=str(db))
    return subprocess.Popen([sys.executable, "-m", "daemon.cli", "ingest", "--claude-dir", str(claude)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict]:
    claude = tmp_path_factory.mktemp("crash") / "corpus"
    return claude, generate(claude, 20, seed=11, nasty=True)


@pytest.mark.timeout(240)
def test_kill_9_at_random_points_then_a_clean_run_equals_truth(corpus, isolated_env):
    rng = random.Random(SEED)
    claude, truth = corpus
    db = isolated_env["db"]
    total = truth["bytes"]
    want_rows = truth["totals"]["requests"]
    interrupted, partial_ledgers = 0, 0
    for i in range(ROUNDS):
        target = total * rng.uniform(i / ROUNDS, (i + 1) / ROUNDS) * 0.95
        proc = start_ingest(claude, db)
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if committed_bytes(db) >= target:
                time.sleep(rng.uniform(0, 0.02))
                break
            time.sleep(0.002)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            interrupted += 1
        proc.wait()
        proc.stdout.close()
        if db.exists():
            n = check_ledger(db)
            assert n <= want_rows, f"seed {SEED}"
            partial_ledgers += 0 < n < want_rows
    assert interrupted >= ROUNDS // 2, f"seed {SEED}: the ingests finished before they could be killed"
    assert partial_ledgers >= 1, f"seed {SEED}: no kill landed mid-ingest"

    proc = start_ingest(claude, db)                 # the clean run
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, f"seed {SEED}"
    assert out.startswith("ingested ")
    assert check_ledger(db) == want_rows, f"seed {SEED}"
    got, want = stored_requests(db), truth_requests(truth)
    assert set(got) == set(want), f"seed {SEED}"
    assert {k: v for k, v in got.items() if v != want[k]} == {}, f"seed {SEED}"
    assert_daily_matches(report_json("daily", "--db", str(db)), truth)

    proc = start_ingest(claude, db)                 # and once more: nothing to do
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and " 0 new requests, 0 updated" in out, out


@pytest.mark.timeout(240)
def test_concurrent_ingests_count_each_request_once(corpus, isolated_env):
    """`cctally report` catches up while the daemon (or another ingest) is writing: one ledger, several
    writers, small transactions. Offsets are checked inside each transaction, so nothing is applied twice."""
    claude, truth = corpus
    db = isolated_env["db"]
    procs = [start_ingest(claude, db) for _ in range(3)]
    outs = [p.communicate(timeout=180)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    assert check_ledger(db) == truth["totals"]["requests"]
    got, want = stored_requests(db), truth_requests(truth)
    assert {k: v for k, v in got.items() if v != want.get(k)} == {}
    assert_daily_matches(report_json("daily", "--db", str(db)), truth)
