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


def _process_table() -> list[tuple[int, int, str]]:
    """(pid, parent pid, short name) of every process, as cheaply as the platform allows: on Linux one
    read of `/proc/<pid>/stat` each (no psutil object); elsewhere psutil. Processes that vanish are left out."""
    if not _PROC_STAT:
        return [(p.info["pid"], p.info["ppid"] or 0, p.info["name"] or "")
                for p in psutil.process_iter(["pid", "ppid", "name"])]
    table: list[tuple[int, int, str]] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fd = os.open(f"/proc/{entry}/stat", os.O_RDONLY)
            try:
                data = os.read(fd, 512)
            finally:
                os.close(fd)
            # "pid (comm) state ppid ..."; comm may itself hold spaces and parentheses
            left, right = data.index(b"("), data.rindex(b")")
            ppid = int(data[right + 2:].split(None, 2)[1])
            table.append((int(entry), ppid, data[left + 1:right].decode("utf-8", "replace")))
        except (OSError, ValueError, IndexError):
            continue
    return table


_PROC_STAT = os.path.exists("/proc/self/stat")


def _children_map(table: list[tuple[int, int, str]]) -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for pid, ppid, _ in table:
        kids.setdefault(ppid, []).append(pid)
    return kids


def _descendants(children: dict[int, list[int]], pid: int) -> int:
    """How many processes descend from `pid` (children, grandchildren, …)."""
    count, stack, seen = 0, list(children.get(pid, ())), {pid}
    while stack:
        child = stack.pop()
        if child in seen:
            continue
        seen.add(child)
        count += 1
        stack.extend(children.get(child, ()))
    return count


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
        self._procs: dict[int, psutil.Process] = {}
        self._own = {os.getpid()}

    def observe(self) -> list[Observation]:
        """Find Claude processes now and measure them. The first sighting of a process reports 0 % CPU.

        Cost: one pass over the process table reading names and parents only (on Linux one small read of
        `/proc/<pid>/stat` per process); command lines are read, and measurements taken, only for processes
        named `claude` or a JS runtime — a Claude CLI always has one of those names (the native binary, and
        the npm CLI, which sets its process title, are `claude`; node/bun run the npm package).
        """
        table = _process_table()
        handles: dict[int, psutil.Process] = {}
        children: dict[int, list[int]] | None = None
        out: list[Observation] = []
        for pid, _ppid, comm in table:
            if pid in self._own or not (comm == "claude" or comm in _RUNTIMES):
                continue
            try:
                handle = self._procs.get(pid)
                if handle is None or not handle.is_running():      # new, or its pid was reused
                    handle = psutil.Process(pid)
                with handle.oneshot():
                    name = handle.name()
                    if not is_claude_process(name, handle.cmdline(), self._own, pid):
                        continue
                    if handle.status() == psutil.STATUS_ZOMBIE:     # exited, not yet reaped: not running
                        continue
                    started_ms = int(handle.create_time() * 1000)
                    cpu = handle.cpu_percent(interval=None)
                    rss = handle.memory_info().rss
                    threads = handle.num_threads()
                    try:
                        cwd = handle.cwd()
                    except (psutil.AccessDenied, psutil.ZombieProcess):
                        cwd = None
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            handles[pid] = handle
            if children is None:
                children = _children_map(table)
            out.append(Observation(pid, started_ms, name or "claude", cwd, cpu, rss, threads,
                                   _descendants(children, pid)))
        self._procs = handles
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
