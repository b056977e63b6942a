"""daemon.sampler and daemon.processes against REAL processes the tests start.

The fake Claude processes are small Python programs shaped like the real CLI as the OS sees it:
- `script`: an executable file named `claude` (shebang: this Python) that renames itself to `claude`, as the
  CLI does with `process.title` — name `claude`, command line `[python, …/claude]`;
- `node`: the npm package — a `node` (a symlink to this Python) running
  `…/node_modules/@anthropic-ai/claude-code/cli.js`.
Each burns a little CPU, holds ~40 MB, runs two extra threads and (optionally) one child process, and is
started with its working directory in a project dir. Every process is killed (its whole process group)
when the test ends.
"""
from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from fixtures_lines import HOST, assistant, db_url, ingest, session_path, user, write
from daemon.models import ProcessMinute, ProcessSample
from daemon.processes import process_overview, running_sessions
from daemon import sampler as sampler_mod
from daemon.sampler import MINUTE_MS, Sampler, is_claude_process
from daemon.store import open_store

FAKE_CLAUDE = r'''
import ctypes, os, subprocess, sys, threading, time
args = sys.argv[1:]
if "--rename" in args:                    # what the real CLI does with process.title
    ctypes.CDLL(None).prctl(15, b"claude", 0, 0, 0)
ballast = bytearray(b"\x01") * (40 << 20)
child = subprocess.Popen(["sleep", "120"]) if "--child" in args else None
for _ in range(2):
    threading.Thread(target=time.sleep, args=(120,), daemon=True).start()
print("ready", flush=True)
deadline = time.monotonic() + 90          # never outlive a crashed test run for long
while time.monotonic() < deadline:
    end = time.perf_counter() + 0.02
    while time.perf_counter() < end:
        pass
    time.sleep(0.02)
if child:
    child.kill()
'''


@pytest.fixture(autouse=True)
def no_thread_leaks():
    before = set(threading.enumerate())
    yield
    extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert not extra, f"threads leaked: {extra}"


class Fakes:
    """Starts fake Claude processes; kills every one (and its children) at teardown."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen] = []

    def project(self, name: str) -> Path:
        d = self.tmp / "work" / name
        d.mkdir(parents=True, exist_ok=True)
        return d.resolve()

    def _launch(self, argv: list[str], cwd: Path) -> psutil.Process:
        proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                start_new_session=True, text=True)
        self.procs.append(proc)
        assert proc.stdout.readline().strip() == "ready", "fake claude did not start"
        return psutil.Process(proc.pid)

    def script(self, cwd: Path, *, child: bool = False, where: str = "bin") -> psutil.Process:
        path = self.tmp / where / "claude"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"#!{sys.executable}\n" + FAKE_CLAUDE)
        path.chmod(0o755)
        return self._launch([str(path), "--rename"] + (["--child"] if child else []), cwd)

    def node(self, cwd: Path, *, child: bool = False) -> psutil.Process:
        node = self.tmp / "nodebin" / "node"
        node.parent.mkdir(parents=True, exist_ok=True)
        if not node.exists():
            node.symlink_to(sys.executable)
        cli = self.tmp / "lib" / "node_modules" / "@anthropic-ai" / "claude-code" / "cli.js"
        cli.parent.mkdir(parents=True, exist_ok=True)
        cli.write_text(FAKE_CLAUDE)
        return self._launch([str(node), str(cli)] + (["--child"] if child else []), cwd)

    def kill_all(self) -> None:
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=5)
            if proc.stdout:
                proc.stdout.close()


@pytest.fixture
def fakes(tmp_path, monkeypatch):
    """Fake Claude processes this test starts. The sampler's process listing is narrowed to this pytest
    process and its descendants, so a real Claude Code running on the developer's machine (or another
    test run) is invisible to the test; the processes it does see are real and measured for real."""
    f = Fakes(tmp_path)
    real_table = sampler_mod._process_table

    def ours_only() -> list[tuple[int, int, str]]:
        table = real_table()
        parents = {pid: ppid for pid, ppid, _ in table}
        me = os.getpid()

        def descends(pid: int) -> bool:
            for _ in range(64):
                if pid == me:
                    return True
                pid = parents.get(pid, 0)
                if pid <= 1:
                    return False
            return False
        return [row for row in table if descends(row[0])]

    monkeypatch.setattr(sampler_mod, "_process_table", ours_only)
    try:
        yield f
    finally:
        f.kill_all()


@pytest.fixture
def store(isolated_env):
    return open_store(db_url(isolated_env["db"]))


def samples(store) -> list[dict]:
    return list(ProcessSample.select().order_by(ProcessSample.ts_ms, ProcessSample.pid).dicts())


def now_ms() -> int:
    return int(time.time() * 1000)


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# ---- which processes

@pytest.mark.parametrize("name, cmdline, expected", [
    ("claude", ["claude"], True),                                               # native binary
    ("claude", ["claude", "-p", "fix the build"], True),
    ("node", ["node", "/usr/local/bin/claude", "--resume"], True),              # npm shim
    ("node", ["node", "/usr/lib/node_modules/@anthropic-ai/claude-code/cli.js"], True),
    ("bun", ["bun", "/home/u/.bun/install/global/node_modules/@anthropic-ai/claude-code/cli.js"], True),
    ("node", ["node", "server.js"], False),
    ("python3", ["python3", "-m", "pytest", "tests/"], False),
    ("vim", ["vim", "/home/u/src/claude/notes.md"], False),                    # "claude" as an argument only
    ("claude", ["/home/u/src/cctally/bin/claude"], False),                     # cctally itself, any name
    ("python3", ["python3", "-m", "cctally", "run"], False),
    ("node", ["node", "/usr/local/bin/claude", "cctally"], False),
])
def test_is_claude_process(name, cmdline, expected):
    assert is_claude_process(name, cmdline, set(), 4242) is expected


def test_process_table_names_and_parents():
    """The cheap process listing gives the same parents and names as psutil, also for a name holding
    spaces and parentheses (the /proc stat format puts it in parentheses)."""
    odd = subprocess.Popen([sys.executable, "-c", "import ctypes, sys, time; "
                            "ctypes.CDLL(None).prctl(15, b'we (ird) name', 0, 0, 0); print('ready', flush=True); "
                            "time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        assert odd.stdout.readline().strip() == "ready"
        table = {pid: (ppid, name) for pid, ppid, name in sampler_mod._process_table()}
        assert table[odd.pid] == (os.getpid(), "we (ird) name")
        me = psutil.Process()
        assert table[me.pid] == (me.ppid(), me.name()[:15])
    finally:
        odd.kill()
        odd.wait(timeout=5)
        odd.stdout.close()


def test_own_pids_never_match():
    assert is_claude_process("claude", ["claude"], {4242}, 4242) is False


# ---- sampling real processes

def test_sample_records_real_processes_and_links_their_sessions(fakes, store):
    proj_a, proj_b = fakes.project("api-server"), fakes.project("web-client")
    script = fakes.script(proj_a, child=True)
    node = fakes.node(proj_b)
    started_a = int(script.create_time() * 1000)
    # the ledger: a request from proj_a after its process started (linked), and one from proj_b before
    # the node process started (an older session in the same dir: not linked)
    root = Path(os.environ["CLAUDE_CONFIG_DIR"])
    write(session_path(root, "sess-live", str(proj_a)), [
        user("hi", session="sess-live", cwd=str(proj_a), at=iso(started_a + 500)),
        assistant("msg_live1", "req_live1", session="sess-live", cwd=str(proj_a), at=iso(started_a + 2000))])
    write(session_path(root, "sess-old", str(proj_b)), [
        assistant("msg_old1", "req_old1", session="sess-old", cwd=str(proj_b),
                  at=iso(int(node.create_time() * 1000) - 3_600_000))])
    ingest([root], Path(os.environ["CCTALLY_DB"]), store=store)

    sampler = Sampler(store, HOST)
    first = now_ms()
    assert sampler.sample(first) == 2
    time.sleep(0.4)
    assert sampler.sample(first + 400) == 2

    rows = samples(store)
    assert {r["pid"] for r in rows} == {script.pid, node.pid}
    assert os.getpid() not in {r["pid"] for r in rows}
    by_pid = {r["pid"]: r for r in rows if r["ts_ms"] == first + 400}
    a, b = by_pid[script.pid], by_pid[node.pid]
    assert a["name"] == "claude" and b["name"] == "node"
    assert a["started_ms"] == started_a and b["started_ms"] == int(node.create_time() * 1000)
    assert a["cwd"] == a["project"] == str(proj_a) and b["cwd"] == str(proj_b)
    for r in (a, b):
        assert r["cpu_percent"] > 5              # the fakes burn about half a core
        assert r["rss_bytes"] > 35 << 20         # and hold 40 MB
        assert r["threads"] >= 3                 # main + two sleepers
        assert r["host"] == HOST
    assert a["children"] == 1 and b["children"] == 0
    assert a["session_id"] == "sess-live"
    assert b["session_id"] is None
    first_rows = [r for r in rows if r["ts_ms"] == first]
    assert all(r["cpu_percent"] == 0.0 for r in first_rows)     # a first sighting has no interval yet


def test_cctally_processes_and_the_sampler_itself_are_not_matched(fakes, store):
    proj = fakes.project("p")
    # named `claude`, but living under a cctally path: never sampled
    ours = fakes.script(proj, where="cctally/bin")
    assert ours.name() == "claude"
    sampler = Sampler(store, HOST)
    pids = {o.pid for o in sampler.observe()}
    assert ours.pid not in pids
    assert os.getpid() not in pids
    assert sampler.sample() == 0 and samples(store) == []


def test_a_process_that_exits_between_listing_and_measuring_is_skipped(fakes, store, monkeypatch):
    proj = fakes.project("p")
    doomed = fakes.script(proj)
    survivor = fakes.node(proj)
    real_table = sampler_mod._process_table

    def listing_then_exit():
        listed = real_table()                                 # the listing sees `doomed` alive …
        os.killpg(doomed.pid, signal.SIGKILL)                 # … and it exits before it is measured
        fakes.procs[0].wait(timeout=5)
        assert any(pid == doomed.pid for pid, _, _ in listed)
        return listed

    monkeypatch.setattr(sampler_mod, "_process_table", listing_then_exit)
    sampler = Sampler(store, HOST)
    assert sampler.sample() == 1
    assert [r["pid"] for r in samples(store)] == [survivor.pid]


def test_a_zombie_is_not_a_running_claude(fakes, store):
    proj = fakes.project("p")
    proc = fakes.script(proj)
    popen = fakes.procs[0]
    os.kill(proc.pid, signal.SIGKILL)              # dead but not yet reaped by its parent (us)
    deadline = time.monotonic() + 5
    while proc.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.status() == psutil.STATUS_ZOMBIE
    assert Sampler(store, HOST).sample() == 0
    popen.wait(timeout=5)


def test_overview_lists_live_processes_with_series_and_drops_stale_ones(fakes, store):
    proj = fakes.project("p")
    proc = fakes.script(proj)
    sampler = Sampler(store, HOST)
    t0 = now_ms()
    for i in range(3):
        sampler.sample(t0 + i * 200)
        time.sleep(0.2)
    live = process_overview(store, now_ms=t0 + 500, interval_s=0.2)
    assert live["sampled_at"] == t0 + 400 and live["interval_s"] == 0.2
    [p] = live["live"]
    assert p["pid"] == proc.pid and p["name"] == "claude" and p["cwd"] == str(proj)
    assert [s["t"] for s in p["series"]] == [t0, t0 + 200, t0 + 400]
    assert all(s["rss_bytes"] > 35 << 20 for s in p["series"])
    assert p["started_at"].startswith(dt.datetime.fromtimestamp(proc.create_time(), dt.timezone.utc)
                                      .strftime("%Y-%m-%dT%H:%M:%S"))
    stale = process_overview(store, now_ms=t0 + 60_000, interval_s=0.2)
    assert stale["live"] == [] and stale["sampled_at"] == t0 + 400


def test_overview_of_an_empty_ledger(store):
    assert process_overview(store, interval_s=5) == {"live": [], "sampled_at": None, "interval_s": 5}
    assert running_sessions(store) == set()


# ---- rollups and retention on explicit rows

def _raw(ts_ms: int, pid: int = 100, cpu: float = 10.0, rss: int = 1000, session: str | None = "s1") -> dict:
    return dict(host=HOST, ts_ms=ts_ms, pid=pid, started_ms=1_000, name="claude", cwd="/p", project="/p",
                session_id=session, cpu_percent=cpu, rss_bytes=rss, threads=5, children=0)


def _minutes(store) -> list[dict]:
    return list(ProcessMinute.select().order_by(ProcessMinute.minute_ms, ProcessMinute.pid).dicts())


def test_rollup_per_minute_rows_idempotent(store):
    m0 = 1_800_000_000_000 - 1_800_000_000_000 % MINUTE_MS
    rows = [_raw(m0 + 1_000, cpu=10, rss=1000), _raw(m0 + 31_000, cpu=30, rss=3000),
            _raw(m0 + 1_000, pid=200, cpu=50, rss=5000, session=None),
            _raw(m0 + MINUTE_MS + 5_000, cpu=20, rss=2000),
            _raw(m0 + 2 * MINUTE_MS + 5_000, cpu=99, rss=9000)]      # the minute in progress: not yet
    with store.write():
        ProcessSample.insert_many(rows).execute()
    sampler = Sampler(store, HOST)
    now = m0 + 2 * MINUTE_MS + 10_000
    assert sampler.rollup(now) == 3
    want = [
        dict(host=HOST, minute_ms=m0, pid=100, started_ms=1_000, name="claude", project="/p", session_id="s1",
             samples=2, cpu_avg=20.0, cpu_max=30.0, rss_avg=2000.0, rss_max=3000),
        dict(host=HOST, minute_ms=m0, pid=200, started_ms=1_000, name="claude", project="/p", session_id=None,
             samples=1, cpu_avg=50.0, cpu_max=50.0, rss_avg=5000.0, rss_max=5000),
        dict(host=HOST, minute_ms=m0 + MINUTE_MS, pid=100, started_ms=1_000, name="claude", project="/p",
             session_id="s1", samples=1, cpu_avg=20.0, cpu_max=20.0, rss_avg=2000.0, rss_max=2000)]
    assert _minutes(store) == want
    assert sampler.rollup(now) == 0 and _minutes(store) == want           # run twice: nothing changes
    store.set_meta(f"rollup:{HOST}", "0")                                  # even when redone from scratch
    assert sampler.rollup(now) == 3 and _minutes(store) == want
    assert len(samples(store)) == 5                                        # raw rows stay (within retention)
    later = m0 + 3 * MINUTE_MS                                             # the next minute is folded later
    assert sampler.rollup(later) == 1 and len(_minutes(store)) == 4


def test_retention_deletes_old_raw_samples_and_rollups(store):
    day = 86_400_000
    now = 1_800_000_000_000
    with store.write():
        ProcessSample.insert_many([_raw(now - 8 * day), _raw(now - 6 * day), _raw(now - 1_000)]).execute()
        ProcessMinute.insert_many([
            dict(host=HOST, minute_ms=now - 400 * day, pid=1, started_ms=1, name="claude", samples=1),
            dict(host=HOST, minute_ms=now - 300 * day, pid=1, started_ms=1, name="claude", samples=1),
            dict(host="other-host", minute_ms=now - 400 * day, pid=1, started_ms=1, name="claude", samples=1),
        ]).execute()
    store.set_meta(f"rollup:{HOST}", str(now - MINUTE_MS))                 # old rows were folded long ago
    Sampler(store, HOST).rollup(now)
    assert [r["ts_ms"] for r in samples(store)] == [now - 6 * day, now - 1_000]
    kept = {(r["host"], r["minute_ms"]) for r in _minutes(store)}
    assert kept == {(HOST, now - 300 * day), (HOST, now - MINUTE_MS),      # the last minute, just folded
                    ("other-host", now - 400 * day)}                        # each host prunes its own


def test_running_sessions_follow_live_samples(store):
    now = now_ms()
    with store.write():
        ProcessSample.insert_many([_raw(now - 1_000, pid=1, session="s-live"),
                                   _raw(now - 1_000, pid=2, session=None),
                                   _raw(now - 600_000, pid=3, session="s-gone")]).execute()
    assert running_sessions(store, now) == {"s-live"}
    assert running_sessions(store, now + 600_000) == set()
