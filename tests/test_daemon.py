"""`cctally run` for real: the daemon watches, reconciles and shuts down cleanly, and the ledger stays exact.

Most tests start the real command as a subprocess (`cctally run --no-web`) with every path in tmp_path and
compare the ledger — read through a read-only SQLite connection, as any reader would — with the unique
requests written: a gen_corpus tree (its truth.json) plus hand-built lines. The lost-event and
observer-fallback tests run the `Daemon` class in-process, so they can stop or break its observer.
The last section covers what the sessions and models reports say about latency and running processes.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from fixtures_lines import assistant, db_url, encode_dir, ingest, session_path, ts, usage, user, write, append
from truth import assert_daily_matches, generate

from daemon import watcher
from daemon.cli import build_parser
from daemon.models import ProcessSample
from daemon.reports import Filters, Reports, percentile
from daemon.runner import Daemon
from daemon.status import collect_status, render_status
from daemon.store import open_store

FIELDS = ("requests", "input", "output", "cache_write_5m", "cache_write_1h", "cache_read")
FAST = ["--reconcile-seconds", "1", "--sample-seconds", "0.2"]


@pytest.fixture(autouse=True)
def no_thread_leaks():
    """Fail a test that leaves a thread of ours running after the daemon stopped."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 3
    while True:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not extra, f"threads leaked: {extra}"


# ---- helpers

def ledger(db: Path) -> dict[str, int] | None:
    """Totals in truth.json's vocabulary, read as any other reader would (read-only); None before the
    database exists."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    except sqlite3.OperationalError:
        return None
    try:
        row = con.execute("SELECT COUNT(*), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), "
                          "COALESCE(SUM(cache_write_5m), 0), COALESCE(SUM(cache_write_1h), 0), "
                          "COALESCE(SUM(cache_read), 0) FROM requests").fetchone()
    except sqlite3.OperationalError:       # not migrated yet
        return None
    finally:
        con.close()
    return dict(zip(FIELDS, (int(v) for v in row)))


def missing_files(db: Path) -> set[str]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return {r[0] for r in con.execute("SELECT path FROM files WHERE missing")}
    finally:
        con.close()


def wait_until(check: Callable[[], Any], timeout: float = 10.0, every: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


class Expected:
    """The unique requests written so far, as totals."""

    def __init__(self, base: dict[str, Any] | None = None) -> None:
        self.totals = {f: int((base or {}).get(f, 0)) for f in FIELDS}

    def request(self, n: int, *, session: str, cwd: str, at: str, i: int = 10, o: int = 100, cr: int = 0,
                c5: int = 0, c1: int = 0, counted: bool = True, **kw: Any) -> dict[str, Any]:
        """An assistant line for request n; `counted=False` for a streamed copy whose final copy follows."""
        if counted:
            for f, v in zip(FIELDS, (1, i, o, c5, c1, cr)):
                self.totals[f] += v
        return assistant(f"msg_01LIVE{n:06d}", f"req_011LIVE{n:06d}", session=session, cwd=cwd, at=at,
                         u=usage(input=i, output=o, cache_read=cr, cache_5m=c5, cache_1h=c1), **kw)

    def reached(self, db: Path) -> bool:
        return ledger(db) == self.totals


def cctally_argv() -> list[str]:
    exe = shutil.which("cctally")
    return [exe] if exe else [sys.executable, "-m", "daemon.cli"]


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(cctally_argv() + list(args), capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ))


class RunningDaemon:
    """`cctally run` as a child process; its log (stderr) goes to a file."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.log_path = tmp / f"daemon-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cctally_argv() + ["--log-level", "info", "run", "--no-web", *args],
                                     stdout=subprocess.DEVNULL, stderr=self._log, stdin=subprocess.DEVNULL,
                                     env=dict(os.environ))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 15) -> None:
        assert wait_until(lambda: "watching " in self.log() or self.proc.poll() is not None, timeout)
        assert self.proc.poll() is None, self.log()

    def signal(self, signum: int) -> tuple[int, float]:
        """Send `signum`; (exit code, seconds until exit)."""
        sent = time.monotonic()
        self.proc.send_signal(signum)
        try:
            rc = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            rc = None
        return rc, time.monotonic() - sent

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()


@pytest.fixture
def run_daemon(tmp_path):
    started: list[RunningDaemon] = []

    def start(*args: str) -> RunningDaemon:
        d = RunningDaemon(tmp_path, *args)
        started.append(d)
        return d

    try:
        yield start
    finally:
        for d in started:
            d.kill()


def daemon_args(*extra: str):
    return build_parser().parse_args(["run", "--no-web", *FAST, *extra])


# ---- live changes

def test_live_changes_end_in_exact_totals(isolated_env, run_daemon):
    root, db = isolated_env["claude"], isolated_env["db"]
    truth = generate(root, 1, seed=11)
    expect = Expected(truth["totals"])
    daemon = run_daemon(*FAST)
    daemon.wait_ready()
    assert wait_until(lambda: expect.reached(db)), (ledger(db), expect.totals)

    cwd = "/home/dev/src/live-proj"
    main = session_path(root, "sess-live", cwd)
    # a new file in a new project directory
    write(main, [user("hi", session="sess-live", cwd=cwd, at=ts(day=20, hour=9)),
                 expect.request(1, session="sess-live", cwd=cwd, at=ts(day=20, hour=9, second=2), i=7, o=70)])
    assert wait_until(lambda: expect.reached(db)), (ledger(db), expect.totals)

    # appended lines, including two streamed copies of one request (counted once, with the final usage)
    append(main, [expect.request(2, session="sess-live", cwd=cwd, at=ts(day=20, hour=9, minute=1), o=1,
                                 counted=False),
                  expect.request(2, session="sess-live", cwd=cwd, at=ts(day=20, hour=9, minute=1, ms=400), o=321,
                                 cr=5000),
                  expect.request(3, session="sess-live", cwd=cwd, at=ts(day=20, hour=9, minute=2), c5=900, c1=40)])
    assert wait_until(lambda: expect.reached(db)), (ledger(db), expect.totals)

    # an appended line that arrives in two writes: nothing until the newline, then exactly once
    line = json.dumps(expect.request(4, session="sess-live", cwd=cwd, at=ts(day=20, hour=9, minute=3)),
                      separators=(",", ":")).encode()
    with open(main, "ab") as f:
        f.write(line[:40])
    time.sleep(0.3)
    with open(main, "ab") as f:
        f.write(line[40:] + b"\n")
    assert wait_until(lambda: expect.reached(db)), (ledger(db), expect.totals)

    # mkdir -p, then an immediate write into the new nested directory (subagents/)
    sub = root / "projects" / encode_dir(cwd) / "sess-live" / "subagents" / "agent-a1.jsonl"
    sub.parent.mkdir(parents=True)
    write(sub, [expect.request(5, session="sess-live", cwd=cwd, at=ts(day=20, hour=9, minute=4), sidechain=True,
                               agent="a1"),
                expect.request(6, session="sess-live", cwd=cwd, at=ts(day=20, hour=9, minute=5), sidechain=True,
                               agent="a1")])
    deep = root / "projects" / "-home-dev-src-deep" / "x" / "y" / "sess-deep.jsonl"
    deep.parent.mkdir(parents=True)
    write(deep, [expect.request(7, session="sess-deep", cwd="/home/dev/src/deep", at=ts(day=21))])
    assert wait_until(lambda: expect.reached(db)), (ledger(db), expect.totals)

    # truncation: the file shrinks and starts over; what was counted stays, the new line counts
    trunc = session_path(root, "sess-trunc", cwd)
    write(trunc, [expect.request(n, session="sess-trunc", cwd=cwd, at=ts(day=22, minute=n)) for n in (8, 9, 10)])
    assert wait_until(lambda: expect.reached(db)), (ledger(db), expect.totals)
    write(trunc, [expect.request(11, session="sess-trunc", cwd=cwd, at=ts(day=22, hour=11))])
    assert wait_until(lambda: expect.reached(db)), (ledger(db), expect.totals)

    # rewrite in place: same size, same inode, other requests
    rewrite = session_path(root, "sess-rewrite", cwd)
    write(rewrite, [expect.request(n, session="sess-rewrite", cwd=cwd, at=ts(day=23, minute=n)) for n in (12, 13)])
    assert wait_until(lambda: expect.reached(db)), (ledger(db), expect.totals)
    size = rewrite.stat().st_size
    body = b"".join(json.dumps(expect.request(n, session="sess-rewrite", cwd=cwd, at=ts(day=23, minute=n - 2)),
                               separators=(",", ":")).encode() + b"\n" for n in (14, 15))
    assert len(body) == size
    with open(rewrite, "r+b") as f:
        f.write(body)
    assert wait_until(lambda: expect.reached(db)), (ledger(db), expect.totals)

    # deletion: the file goes, its requests stay (and the file is marked missing)
    trunc.unlink()
    assert wait_until(lambda: str(trunc) in missing_files(db))
    assert ledger(db) == expect.totals

    rc, took = daemon.signal(signal.SIGTERM)
    assert rc == 0 and took < 5, daemon.log()
    assert "Traceback" not in daemon.log()
    # and a one-shot catch-up afterwards finds nothing new to count
    assert cli("ingest").returncode == 0
    assert ledger(db) == expect.totals


def test_lost_events_are_found_by_the_reconcile(isolated_env):
    """Events are hints: with the observer stopped (every event lost), the periodic reconcile still finds
    new files, appends and new directories."""
    root, db = isolated_env["claude"], isolated_env["db"]
    cwd = "/home/dev/src/quiet"
    expect = Expected()
    main = session_path(root, "sess-q", cwd)
    write(main, [expect.request(101, session="sess-q", cwd=cwd, at=ts(day=3))])
    daemon = Daemon(daemon_args("--no-sample"))
    daemon.start()
    try:
        assert wait_until(lambda: expect.reached(db)), (ledger(db), expect.totals)
        daemon.observer.stop()
        daemon.observer.join(timeout=5)
        scans = daemon.worker.scans
        append(main, [expect.request(102, session="sess-q", cwd=cwd, at=ts(day=3, hour=11))])
        write(session_path(root, "sess-q2", cwd), [expect.request(103, session="sess-q2", cwd=cwd, at=ts(day=4))])
        nested = root / "projects" / "-new" / "sess-q3" / "subagents" / "agent-b.jsonl"
        nested.parent.mkdir(parents=True)
        write(nested, [expect.request(104, session="sess-q3", cwd="/new", at=ts(day=5), sidechain=True, agent="b")])
        assert wait_until(lambda: expect.reached(db), timeout=10), (ledger(db), expect.totals)
        assert daemon.worker.scans > scans          # found by a reconcile pass, not an event
    finally:
        daemon.stop()


def test_native_observer_failure_falls_back_to_polling(isolated_env, monkeypatch, caplog):
    class OutOfWatches(watcher.Observer):
        def schedule(self, *args, **kwargs):
            raise OSError(28, "inotify watch limit reached")

    monkeypatch.setattr(watcher, "Observer", OutOfWatches)
    root, db = isolated_env["claude"], isolated_env["db"]
    expect = Expected()
    args = daemon_args("--no-sample")
    daemon = Daemon(args)
    with caplog.at_level(logging.WARNING):
        daemon.start()
    try:
        assert daemon.observer_kind == "PollingObserver"
        assert type(daemon.observer).__name__ == "PollingObserver"
        fallbacks = [r for r in caplog.records if "falling back to polling" in r.getMessage()]
        assert len(fallbacks) == 1 and "inotify watch limit reached" in fallbacks[0].getMessage()
        write(session_path(root, "sess-p", "/p"), [expect.request(201, session="sess-p", cwd="/p", at=ts(day=6))])
        assert wait_until(lambda: expect.reached(db)), (ledger(db), expect.totals)
        info = collect_status(args)
        assert info["daemon"]["running"] is True
        assert info["daemon"]["observer"] == "PollingObserver"
        assert "inotify watch limit reached" in info["daemon"]["observer_fallback"]
        out = _render(info)
        assert "observer PollingObserver" in out and "native watching failed" in out
    finally:
        daemon.stop()
    assert len([r for r in caplog.records if "falling back to polling" in r.getMessage()]) == 1


def _render(info: dict[str, Any]) -> str:
    import io
    buf = io.StringIO()
    render_status(info, buf)
    return buf.getvalue()


# ---- status and signals

def test_status_shows_the_running_daemon_then_not_running(isolated_env, run_daemon):
    root = isolated_env["claude"]
    write(session_path(root, "sess-s", "/s"), [assistant("msg_01S1", "req_01S1", session="sess-s", cwd="/s",
                                                         at=ts(day=7))])
    daemon = run_daemon(*FAST)
    daemon.wait_ready()
    assert wait_until(lambda: ledger(isolated_env["db"]) and ledger(isolated_env["db"])["requests"] == 1)
    status = cli("status", "--json")
    assert status.returncode == 0, status.stderr
    d = json.loads(status.stdout)["daemon"]
    assert d["running"] is True and d["pid"] == daemon.proc.pid
    kind = d["observer"]
    assert kind == "InotifyObserver" or not sys.platform.startswith("linux")
    assert d["observer_fallback"] is None
    assert isinstance(d["lag_ms"], int) and d["lag_ms"] < 5_000
    assert d["sample_seconds"] == 0.2
    text = cli("status").stdout
    assert f"daemon:         running (pid {daemon.proc.pid}, heartbeat" in text
    assert f"observer {kind}, lag " in text and " ms)" in text

    rc, took = daemon.signal(signal.SIGINT)
    assert rc == 0 and took < 5, daemon.log()
    after = json.loads(cli("status", "--json").stdout)["daemon"]
    assert after["running"] is False and after["stopped"] is True
    assert "daemon:         not running" in cli("status").stdout


@pytest.fixture(scope="module")
def corpus_20mb(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus20")
    return out, generate(out, 20, seed=5)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_catch_up_exits_0_fast_and_loses_nothing(isolated_env, run_daemon, corpus_20mb, signum):
    corpus, truth = corpus_20mb
    db = isolated_env["db"]
    daemon = run_daemon("--claude-dir", str(corpus), *FAST)
    # signal as soon as the first batch of the catch-up is committed
    assert wait_until(lambda: (ledger(db) or {}).get("requests", 0) > 0 or daemon.proc.poll() is not None,
                      timeout=20, every=0.005)
    rc, took = daemon.signal(signum)
    assert rc == 0, daemon.log()
    assert took < 5
    partial = ledger(db)["requests"]
    assert 0 < partial < truth["totals"]["requests"], "the signal should land mid catch-up"
    assert "Traceback" not in daemon.log()
    # nothing half-written: a rerun finishes the job with exact totals, nothing lost, nothing doubled
    rerun = cli("ingest", "--claude-dir", str(corpus))
    assert rerun.returncode == 0, rerun.stderr
    report = cli("report", "daily", "--json", "--tz", "UTC", "--no-ingest", "--claude-dir", str(corpus))
    assert report.returncode == 0, report.stderr
    assert_daily_matches(json.loads(report.stdout), truth)
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()


# ---- sessions and models reports: latency and running

BASE_MS = int(dt.datetime(2026, 9, 10, 10, tzinfo=dt.timezone.utc).timestamp() * 1000)


def _at(ms_after: int) -> str:
    """ISO time `ms_after` ms after 2026-09-10T10:00:00Z."""
    return dt.datetime.fromtimestamp((BASE_MS + ms_after) / 1000, dt.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _exchange(n: int, session: str, asked_ms: int, latency: int, model: str = "claude-sonnet-4-5-20250929",
              cwd: str = "/home/dev/src/lat") -> list[dict]:
    """A prompt at asked_ms and its response `latency` ms later, linked by parentUuid."""
    prompt = user(f"question {n}", session=session, cwd=cwd, at=_at(asked_ms), uuid=f"u-{session}-{n}")
    answer = assistant(f"msg_01LAT{n:04d}", f"req_01LAT{n:04d}", session=session, cwd=cwd, model=model,
                       at=_at(asked_ms + latency), parent=f"u-{session}-{n}")
    return [prompt, answer]


def test_percentile_interpolates_between_ranks():
    assert percentile([], 50) is None
    assert percentile([1500], 50) == 1500 and percentile([1500], 95) == 1500
    assert percentile([1000, 2000], 50) == 1500
    assert percentile([1000, 1500, 2000, 4000], 50) == 1750
    assert percentile([1000, 1500, 2000, 4000], 95) == 3700       # 2000 + 0.85 * 2000
    assert percentile([0, 1000], 95) == 950 and percentile([0, 10, 20], 25) == 5


def test_sessions_report_latency_running_and_facts(isolated_env):
    root, db = isolated_env["claude"], isolated_env["db"]
    opus, sonnet = "claude-opus-4-6", "claude-sonnet-4-5-20250929"
    a = []
    for n, (asked, lat, model) in enumerate([(0, 1500, sonnet), (10_000, 1000, sonnet), (20_000, 2000, opus),
                                             (30_000, 4000, opus)], start=1):
        a += _exchange(n, "sess-a", asked, lat, model)
    main = write(session_path(root, "sess-a", "/home/dev/src/lat"), a)
    # a subagent's request in its own file, with no prompt line it answers: no latency
    write(main.parent / "sess-a" / "subagents" / "agent-sub1.jsonl", [
        assistant("msg_01LATSUB", "req_01LATSUB", session="sess-a", cwd="/home/dev/src/lat", at=_at(40_000),
                  sidechain=True, agent="sub1", model="claude-haiku-4-5-20251001")])
    write(session_path(root, "sess-b", "/home/dev/src/other"),
          _exchange(9, "sess-b", 100_000, 800, sonnet, cwd="/home/dev/src/other"))
    ingest([root], db)
    store = open_store(db_url(db))
    now = int(time.time() * 1000)
    with store.write():               # a live Claude process serving sess-b (as the sampler records it)
        ProcessSample.insert(host="h", ts_ms=now, pid=4242, started_ms=now - 60_000, name="claude",
                             cwd="/home/dev/src/other", project="/home/dev/src/other", session_id="sess-b",
                             cpu_percent=3.0, rss_bytes=1 << 20, threads=4, children=0).execute()
    reports = Reports(store)
    sessions = {s["session_id"]: s for s in reports.sessions(Filters())["sessions"]}
    sa, sb = sessions["sess-a"], sessions["sess-b"]
    assert sa["latency_ms"] == {"median": 1750, "p95": 3700}
    assert sb["latency_ms"] == {"median": 800, "p95": 800}
    assert sa["running"] is False and sb["running"] is True
    assert sa["project"] == "/home/dev/src/lat" and sa["requests"] == 5 and sa["subagents"] == 1
    assert sa["first_at"] == _at(1500) and sa["last_at"] == _at(40_000) and sa["duration_s"] == 38.5
    assert sa["models"] == sorted([opus, sonnet, "claude-haiku-4-5-20251001"])
    assert sa["cost_usd"] > 0 and sa["total_tokens"] == 5 * 110
    # one session by id, and a filter that leaves some latencies out
    [only] = reports.sessions(Filters(), session_id="sess-a")["sessions"]
    assert only["latency_ms"] == sa["latency_ms"]
    [opus_only] = reports.sessions(Filters(model="opus"))["sessions"]
    assert opus_only["latency_ms"] == {"median": 3000, "p95": 3900}
    # per model
    models = {m["model"]: m for m in reports.by_model(Filters())["models"]}
    assert models[sonnet]["latency_ms"] == {"median": 1000, "p95": 1450}     # 800, 1000, 1500
    assert models[opus]["latency_ms"] == {"median": 3000, "p95": 3900}
    assert models["claude-haiku-4-5-20251001"]["latency_ms"] == {"median": None, "p95": None}


def test_sessions_report_through_the_cli_json_and_csv(isolated_env):
    root = isolated_env["claude"]
    write(session_path(root, "sess-c", "/c"), _exchange(1, "sess-c", 0, 1500, cwd="/c"))
    out = cli("report", "sessions", "--json")
    assert out.returncode == 0, out.stderr
    [s] = json.loads(out.stdout)["sessions"]
    assert s["latency_ms"] == {"median": 1500, "p95": 1500} and s["running"] is False
    csv_out = cli("report", "sessions", "--csv", "--no-ingest")
    header, row = csv_out.stdout.splitlines()[:2]
    cols = dict(zip(header.split(","), row.split(",")))
    assert float(cols["latency_ms_median"]) == 1500 and cols["running"] == "False"
