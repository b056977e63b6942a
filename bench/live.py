"""Live figures of `cctally run`: append -> visible latency, idle CPU and RSS on a populated ledger.

    python bench/live.py [--size-mb 100] [--appends 50] [--spacing 0.2] [--idle-seconds 60] [--no-web]

What it does, on a gen_corpus corpus of --size-mb (cached like run.py's, worked on as a hard-linked copy):
1. `cctally ingest` into a fresh store (so the daemon starts on a full ledger);
2. starts `cctally run` with its defaults (reconcile 60 s, sampling every 5 s) — serving the web on a free
   loopback port when `web.create_app` imports, else `--no-web`;
3. (a) appends one new request (a prompt line and its response) to a session file --appends times, every
   --spacing s, and times write -> visible: via GET /api/usage/stats `totals.requests` when the web is up,
   else via the SQLite file (read-only) looking the request's key up;
4. (b) idle CPU: the daemon's CPU time (user + system, psutil) over --idle-seconds, as % of one core;
5. (c) RSS at the end of the idle period (and the peak, VmHWM, where the OS reports it);
6. stops it with SIGTERM and times the shutdown.
Goals: p95 latency < 1 s, idle CPU < 0.5 %, RSS < 80 MB. Exit status 1 if a goal is missed.

`run.py` may import this module and call `measure(...)` with a config dir it prepared; `main()` is the
standalone entry point.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

GOAL_P95_S = 1.0
GOAL_IDLE_CPU_PCT = 0.5
GOAL_RSS_MB = 80.0


@dataclass
class LiveResult:
    size_mb: float
    web: bool
    visible_via: str
    appends: int
    latency_s: list[float] = field(default_factory=list)
    idle_seconds: float = 0.0
    idle_cpu_pct: float = 0.0
    idle_cpu_s: float = 0.0
    load_avg: list[float] = field(default_factory=list)      # 1-min load average before/after the idle period
    rss_mb: float = 0.0
    peak_rss_mb: float | None = None
    threads: int = 0
    shutdown_s: float = 0.0
    exit_code: int | None = None
    ingest_s: float = 0.0
    requests: int = 0

    @property
    def median_s(self) -> float:
        return statistics.median(self.latency_s) if self.latency_s else float("nan")

    @property
    def p95_s(self) -> float:
        return _percentile(sorted(self.latency_s), 95)

    def goals(self) -> list[tuple[str, str, str, bool]]:
        """(metric, value, goal, met) rows."""
        return [
            ("append -> visible, median", f"{self.median_s * 1000:.0f} ms", "", True),
            ("append -> visible, p95", f"{self.p95_s * 1000:.0f} ms", f"< {GOAL_P95_S * 1000:.0f} ms",
             self.p95_s < GOAL_P95_S),
            ("append -> visible, max", f"{max(self.latency_s) * 1000:.0f} ms" if self.latency_s else "-", "", True),
            (f"idle CPU over {self.idle_seconds:.0f} s (sampling on)",
             f"{self.idle_cpu_pct:.3f} % ({self.idle_cpu_s:.2f} CPU s)",
             f"< {GOAL_IDLE_CPU_PCT} %", self.idle_cpu_pct < GOAL_IDLE_CPU_PCT),
            ("RSS after idle", f"{self.rss_mb:.1f} MB", f"< {GOAL_RSS_MB:.0f} MB", self.rss_mb < GOAL_RSS_MB),
            ("peak RSS (VmHWM)", f"{self.peak_rss_mb:.1f} MB" if self.peak_rss_mb else "-", "", True),
            ("threads", str(self.threads), "", True),
            ("SIGTERM -> exit", f"{self.shutdown_s:.2f} s (exit {self.exit_code})", "< 5 s, exit 0",
             self.shutdown_s < 5 and self.exit_code == 0),
        ]

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(median_s=self.median_s, p95_s=self.p95_s)
        return d


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def web_available(repo: Path = REPO) -> bool:
    """True when the checkout's `web` package has `create_app` (the daemon can serve the API)."""
    probe = subprocess.run([sys.executable, "-c", "from web import create_app"], cwd=repo,
                           env={**os.environ, "PYTHONPATH": str(repo)}, capture_output=True)
    return probe.returncode == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cctally_env(config_dir: Path, store: Path, home: Path, repo: Path = REPO) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAUDE_", "CCTALLY_"))}
    env.update(CLAUDE_CONFIG_DIR=str(config_dir), CCTALLY_HOME=str(store), CCTALLY_DB=str(store / "cctally.db"),
               CCTALLY_HOST_ID="bench", HOME=str(home),
               PYTHONPATH=str(repo) + ((":" + os.environ["PYTHONPATH"]) if os.environ.get("PYTHONPATH") else ""))
    return env


class Appender:
    """Appends one prompt line and its response (a new request with a fresh key) to one session file."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.session, self.cwd = "bench-live", "/home/dev/src/bench-live"
        with open(target, "rb") as f:
            for raw in f:
                try:
                    line = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(line, dict) and line.get("sessionId") and line.get("cwd"):
                    self.session, self.cwd = line["sessionId"], line["cwd"]
                    break
        self.n = 0

    def append(self) -> str:
        """Write the two lines in one write; returns the request's ledger key."""
        self.n += 1
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
        prompt_uuid, answer_uuid = str(uuid.uuid4()), str(uuid.uuid4())
        mid, rid = f"msg_01BENCHLIVE{uuid.uuid4().hex[:16]}", f"req_011BENCHLIVE{uuid.uuid4().hex[:16]}"
        common = {"isSidechain": False, "userType": "external", "cwd": self.cwd, "sessionId": self.session,
                  "version": "2.1.39", "gitBranch": "main"}
        prompt = {"parentUuid": None, **common, "type": "user",
                  "message": {"role": "user", "content": f"live bench prompt {self.n}"},
                  "uuid": prompt_uuid, "timestamp": stamp}
        answer = {"parentUuid": prompt_uuid, **common, "type": "assistant", "uuid": answer_uuid,
                  "timestamp": stamp, "requestId": rid,
                  "message": {"id": mid, "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
                              "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
                              "stop_sequence": None,
                              "usage": {"input_tokens": 12, "cache_creation_input_tokens": 0,
                                        "cache_read_input_tokens": 3000, "output_tokens": 42,
                                        "service_tier": "standard"}}}
        data = b"".join(json.dumps(x, separators=(",", ":")).encode() + b"\n" for x in (prompt, answer))
        with open(self.target, "ab") as f:
            f.write(data)
        return f"m:{mid}|r:{rid}"


def _get_json(url: str, timeout: float = 5.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def _sqlite_has(db: Path, key: str) -> bool:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute("SELECT 1 FROM requests WHERE key = ?", (key,)).fetchone() is not None
    finally:
        con.close()


def _wait(check: Callable[[], bool], timeout: float, every: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except (OSError, sqlite3.Error, ValueError):
            pass
        time.sleep(every)
    return False


def measure(config_dir: Path, target: Path, scratch: Path, *, size_mb: float, appends: int = 50,
            spacing: float = 0.2, idle_seconds: float = 60.0, web: bool | None = None, repo: Path = REPO,
            log: Callable[[str], None] = print, env: dict[str, str] | None = None,
            store: Path | None = None) -> LiveResult:
    """Ingest `config_dir` into a fresh store under `scratch`, run the daemon on it and measure.
    `target` is a session file inside config_dir that may be appended to (a private copy, not a hard link
    into a cache). run.py passes `env` (its isolated cctally environment for `store`) and `store`, a dir
    whose cctally.db already holds config_dir's requests: then the ingest is a catch-up (nothing new)."""
    if store is None:
        store = scratch / "store"
        shutil.rmtree(store, ignore_errors=True)
        store.mkdir(parents=True)
    home = scratch / "home"
    home.mkdir(parents=True, exist_ok=True)
    if env is None:
        env = cctally_env(config_dir, store, home, repo)
    cctally = [sys.executable, "-m", "daemon.cli"]
    started = time.perf_counter()
    subprocess.run(cctally + ["ingest"], env=env, cwd=repo, check=True, stdout=subprocess.DEVNULL)
    ingest_s = time.perf_counter() - started
    db = Path(env.get("CCTALLY_DB") or store / "cctally.db")
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    requests = con.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
    con.close()
    log(f"ingested {requests:,} requests in {ingest_s:.1f} s")

    if web is None:
        web = web_available(repo)
    port = free_port()
    args = ["run", "--host", "127.0.0.1", "--port", str(port)] if web else ["run", "--no-web"]
    err_path = scratch / "daemon.log"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(cctally + ["--log-level", "info"] + args, env=env, cwd=repo, stdout=subprocess.DEVNULL,
                                stderr=err, stdin=subprocess.DEVNULL)
    result = LiveResult(size_mb=size_mb, web=web, visible_via="GET /api/usage/stats" if web else "SQLite (read-only)",
                        appends=appends, ingest_s=ingest_s, requests=requests)
    try:
        daemon = psutil.Process(proc.pid)
        base = f"http://127.0.0.1:{port}"
        ready = (lambda: _get_json(base + "/api/usage/stats")["totals"]["requests"] >= requests) if web else \
            (lambda: b"watching " in err_path.read_bytes())
        if not _wait(ready, 60, 0.05) or proc.poll() is not None:
            raise RuntimeError("the daemon did not come up:\n" + err_path.read_text(errors="replace")[-2000:])
        time.sleep(2.0)                    # let the start-up catch-up (a re-stat of every file) finish
        appender = Appender(target)
        expected = requests
        for i in range(appends):
            key = appender.append()
            t0 = time.perf_counter()
            expected += 1
            if web:
                check = (lambda want=expected: _get_json(base + "/api/usage/stats")["totals"]["requests"] >= want)
            else:
                check = (lambda k=key: _sqlite_has(db, k))
            if not _wait(check, 30, 0.01):
                raise RuntimeError(f"append {i + 1} never became visible")
            result.latency_s.append(time.perf_counter() - t0)
            time.sleep(spacing)
        log(f"append -> visible: median {result.median_s * 1000:.0f} ms, p95 {result.p95_s * 1000:.0f} ms")

        time.sleep(3.0)                    # settle: no work left from the appends
        log(f"measuring idle CPU for {idle_seconds:.0f} s ...")
        result.load_avg.append(os.getloadavg()[0])
        before = daemon.cpu_times()
        t_before = time.perf_counter()
        time.sleep(idle_seconds)
        after = daemon.cpu_times()
        result.idle_seconds = time.perf_counter() - t_before
        used = (after.user - before.user) + (after.system - before.system)
        result.idle_cpu_s = used
        result.idle_cpu_pct = 100.0 * used / result.idle_seconds
        result.load_avg.append(os.getloadavg()[0])
        result.rss_mb = daemon.memory_info().rss / 2**20
        result.threads = daemon.num_threads()
        result.peak_rss_mb = _peak_rss_mb(proc.pid)

        sent = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        try:
            result.exit_code = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            result.exit_code = None
        result.shutdown_s = time.perf_counter() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    return result


def _peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def table(result: LiveResult) -> str:
    rows = [("metric", "cctally run", "goal", "met")]
    for metric, value, goal, met in result.goals():
        rows.append((metric, value, goal, ("yes" if met else "NO") if goal else ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [f"live daemon on a {result.size_mb:g} MB corpus ({result.requests:,} requests; web "
             f"{'on' if result.web else 'off'}, visible via {result.visible_via}; {result.appends} appends)"]
    for n, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size-mb", type=float, default=100)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--appends", type=int, default=50)
    p.add_argument("--spacing", type=float, default=0.2, help="seconds between appends")
    p.add_argument("--idle-seconds", type=float, default=60)
    p.add_argument("--no-web", action="store_true", help="run the daemon with --no-web (poll SQLite)")
    p.add_argument("--gen-corpus", help="path of gen_corpus.py")
    p.add_argument("--cache", default=str(HERE / ".cache" / "corpora"))
    p.add_argument("--json", help="also write the raw figures here")
    args = p.parse_args(argv)

    from corpus import ensure_corpus, find_generator, make_workdir

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    corpus = ensure_corpus(Path(args.cache), find_generator(REPO, args.gen_corpus), args.size_mb, args.seed, log=log)
    with tempfile.TemporaryDirectory(prefix="cctally-live-") as tmp:
        scratch = Path(tmp)
        config_dir, targets = make_workdir(corpus, scratch / "claude", private_files=1, seed=args.seed)
        result = measure(config_dir, targets[0], scratch, size_mb=args.size_mb, appends=args.appends,
                         spacing=args.spacing, idle_seconds=args.idle_seconds,
                         web=False if args.no_web else None, log=log)
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result.as_dict(), indent=1))
    return 0 if all(met for _, _, goal, met in result.goals() if goal) else 1


if __name__ == "__main__":
    sys.exit(main())
