"""Sample CPU and memory of running Claude Code processes (psutil) into the ledger.

Which processes: the `claude` CLI (native binary or the npm package's node/bun process), recognised by
process name or by a command line that runs `claude` / `@anthropic-ai/claude-code`. This service itself
is never matched. Only the process name is stored, never the command line (it can hold a prompt:
`claude -p "…"`). Processes that vanish or deny access mid-sample, and zombies (exited, not yet reaped),
are skipped silently: that is normal.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Iterable

import psutil

from .models import ProcessMinute, ProcessSample
from .store import Store

log = logging.getLogger(__name__)

_RUNTIMES = {"node", "bun", "nodejs"}
_CLI_MARKERS = ("@anthropic-ai/claude-code", "claude-code/cli.js", "claude-code/cli.mjs")
MINUTE_MS = 60_000


def is_claude_process(name: str, cmdline: list[str], own_pids: set[int], pid: int) -> bool:
    """True for a Claude Code CLI process (by name or command line), never for cctally itself."""
    if pid in own_pids:
        return False
    joined = " ".join(cmdline[:4])
    if "cctally" in joined:
        return False
    base = os.path.basename(cmdline[0]) if cmdline else ""
    if name == "claude" or base == "claude":
        return True
    if name in _RUNTIMES or base in _RUNTIMES:
        for arg in cmdline[1:3]:
            if os.path.basename(arg) == "claude" or any(m in arg for m in _CLI_MARKERS):
                return True
    return False


@dataclass(slots=True)
class Observation:
    pid: int
    started_ms: int
    name: str
    cwd: str | None
    cpu_percent: float
    rss_bytes: int
    threads: int
    children: int


class Sampler:
    """Keeps psutil.Process handles between samples so cpu_percent measures the interval in between."""

    def __init__(self, store: Store, host: str) -> None:
        self.store = store
        self.host = host
        self._procs: dict[tuple[int, float], psutil.Process] = {}
        self._own = {os.getpid()}

    def observe(self) -> list[Observation]:
        """Find Claude processes now and measure them. The first sighting of a process reports 0 % CPU."""
        seen: dict[tuple[int, float], psutil.Process] = {}
        out: list[Observation] = []
        for proc in psutil.process_iter(["pid", "name", "cmdline", "create_time"]):
            try:
                info = proc.info
                if not is_claude_process(info["name"] or "", info["cmdline"] or [], self._own, info["pid"]):
                    continue
                ident = (info["pid"], info["create_time"])
                handle = self._procs.get(ident, proc)
                seen[ident] = handle
                with handle.oneshot():
                    if handle.status() == psutil.STATUS_ZOMBIE:     # exited, not yet reaped: not running
                        continue
                    cpu = handle.cpu_percent(interval=None)
                    rss = handle.memory_info().rss
                    threads = handle.num_threads()
                    try:
                        cwd = handle.cwd()
                    except (psutil.AccessDenied, psutil.ZombieProcess):
                        cwd = None
                try:
                    children = len(handle.children(recursive=True))
                except psutil.Error:
                    children = 0
                out.append(Observation(info["pid"], int(info["create_time"] * 1000), info["name"] or "claude",
                                       cwd, cpu, rss, threads, children))
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        self._procs = seen
        return out

    def sample(self, now_ms: int | None = None) -> int:
        """Observe and store one sample per Claude process; returns how many were stored."""
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        observations = self.observe()
        if not observations:
            return 0
        sessions = self._sessions_for(observations)
        rows = [dict(host=self.host, ts_ms=now_ms, pid=o.pid, started_ms=o.started_ms, name=o.name, cwd=o.cwd,
                     project=o.cwd, session_id=sessions.get((o.pid, o.started_ms)), cpu_percent=o.cpu_percent,
                     rss_bytes=o.rss_bytes, threads=o.threads, children=o.children) for o in observations]
        with self.store.write():
            ProcessSample.insert_many(rows).execute()
        return len(rows)

    def _sessions_for(self, observations: Iterable[Observation]) -> dict[tuple[int, int], str]:
        """Link a process to the session it serves: the session with the latest request in the process's
        working directory since the process started (the transcript it is writing)."""
        out: dict[tuple[int, int], str] = {}
        db, p = self.store.db, self.store.db.param
        for o in observations:
            if not o.cwd:
                continue
            row = db.execute_sql(f"SELECT session_id FROM requests WHERE project = {p} AND ts_ms >= {p} "
                                 "ORDER BY ts_ms DESC LIMIT 1", (o.cwd, o.started_ms)).fetchone()
            if row:
                out[(o.pid, o.started_ms)] = row[0]
        return out

    def rollup(self, now_ms: int | None = None, raw_days: float = 7, rollup_days: float = 365) -> int:
        """Fold finished minutes of raw samples into per-minute rows (idempotent), then apply retention:
        raw samples older than `raw_days`, rollups older than `rollup_days` are deleted."""
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        done_before = now_ms - now_ms % MINUTE_MS
        last = self.store.get_meta(f"rollup:{self.host}")
        since = int(last) if last else 0
        db, p = self.store.db, self.store.db.param
        rows = list(db.execute_sql(
            f"SELECT ts_ms / {MINUTE_MS} * {MINUTE_MS} AS m, pid, started_ms, MAX(name), MAX(project), "
            "MAX(session_id), COUNT(*), AVG(cpu_percent), MAX(cpu_percent), AVG(rss_bytes), MAX(rss_bytes) "
            f"FROM process_samples WHERE host = {p} AND ts_ms >= {p} AND ts_ms < {p} "
            "GROUP BY m, pid, started_ms", (self.host, since, done_before)))
        with self.store.write():
            for m, pid, started, name, project, session, n, cpu_avg, cpu_max, rss_avg, rss_max in rows:
                values = dict(host=self.host, minute_ms=int(m), pid=pid, started_ms=started, name=name,
                              project=project, session_id=session, samples=n, cpu_avg=cpu_avg, cpu_max=cpu_max,
                              rss_avg=rss_avg, rss_max=int(rss_max))
                ProcessMinute.insert(**values).on_conflict(
                    conflict_target=[ProcessMinute.host, ProcessMinute.minute_ms, ProcessMinute.pid,
                                     ProcessMinute.started_ms],
                    update={k: v for k, v in values.items()
                            if k not in ("host", "minute_ms", "pid", "started_ms")}).execute()
            self.store.set_meta(f"rollup:{self.host}", str(done_before))
            ProcessSample.delete().where((ProcessSample.host == self.host)
                                         & (ProcessSample.ts_ms < now_ms - raw_days * 86_400_000)).execute()
            ProcessMinute.delete().where((ProcessMinute.host == self.host)
                                         & (ProcessMinute.minute_ms < now_ms - rollup_days * 86_400_000)).execute()
        return len(rows)
