"""The daemon's moving parts: the single ingest worker thread and the APScheduler jobs around it.

One writer for the ledger's requests: every read of transcripts — watcher hints, the reconcile scan,
the start-up catch-up — goes through `IngestWorker`'s queue and runs on its thread. The sampler writes
only its own tables. Jobs coalesce and never overlap (max one instance each).
"""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Callable

from apscheduler.schedulers.background import BackgroundScheduler
from peewee import InterfaceError, OperationalError

from .ingest import Ingester, IngestSummary
from .store import Store

log = logging.getLogger(__name__)

DEBOUNCE_S = 0.05
MAX_BACKOFF_S = 60.0


class IngestWorker(threading.Thread):
    """Runs all ingestion on one thread. `hint()` and `request_scan()` are safe from any thread."""

    def __init__(self, ingester: Ingester, store: Store, heartbeat: Callable[[dict[str, Any]], None]) -> None:
        super().__init__(name="cctally-ingest", daemon=True)
        self.ingester = ingester
        self.store = store
        self.heartbeat = heartbeat
        self._cond = threading.Condition()
        self._files: dict[str, float] = {}       # path -> monotonic time of the first pending hint
        self._dirs: dict[str, float] = {}
        self._scan = False
        self._stopping = False
        self.lag_ms = 0
        self.last_error: str | None = None
        self.last_summary: IngestSummary | None = None
        self.scans = 0
        self.idle = threading.Event()
        self._backoff = 0.0

    def hint(self, path: str, is_dir: bool) -> None:
        with self._cond:
            target = self._dirs if is_dir else self._files
            target.setdefault(path, time.monotonic())
            self.idle.clear()
            self._cond.notify()

    def request_scan(self) -> None:
        with self._cond:
            self._scan = True
            self.idle.clear()
            self._cond.notify()

    def stop(self) -> None:
        """Stop after the transaction in flight (the ingester checks between batches)."""
        with self._cond:
            self._stopping = True
            self.ingester.cancelled = True
            self._cond.notify()

    def run(self) -> None:
        while True:
            with self._cond:
                while not (self._files or self._dirs or self._scan or self._stopping):
                    self.idle.set()
                    self._cond.wait(timeout=5.0)
                    if not (self._files or self._dirs or self._scan or self._stopping):
                        self._beat()
                if self._stopping:
                    return
            time.sleep(DEBOUNCE_S)      # let a burst of events for one write arrive, then take them all
            with self._cond:
                files, dirs, scan = self._files, self._dirs, self._scan
                self._files, self._dirs, self._scan = {}, {}, False
            try:
                self._process(files, dirs, scan)
                self.last_error = None
                self._backoff = 0.0
            except Exception as exc:   # keep the daemon alive; offsets only moved for committed batches
                self.last_error = f"{type(exc).__name__}: {exc}"
                self._retry_later(exc)
            self._beat()

    def _retry_later(self, exc: Exception) -> None:
        """A failed pass (database unreachable, disk full…) is retried with exponential backoff, 1 s to 60 s:
        a full scan, since the hints of the failed pass are lost with it."""
        self._backoff = min(MAX_BACKOFF_S, self._backoff * 2 or 1.0)
        if isinstance(exc, (OperationalError, InterfaceError)):
            try:
                self.store.db.close()          # reconnect on next use
            except Exception:
                pass
            log.warning("database unavailable (%s); retrying in %.0f s", exc, self._backoff)
        else:
            log.exception("ingest failed; retrying in %.0f s", self._backoff)
        timer = threading.Timer(self._backoff, self.request_scan)
        timer.daemon = True
        timer.start()

    def _process(self, files: dict[str, float], dirs: dict[str, float], scan: bool) -> None:
        if scan:
            summary = self.ingester.catch_up()
            self.scans += 1
            self.last_summary = summary
            self.store.set_meta("last_ingest", json.dumps({
                "at_ms": int(time.time() * 1000), "summary": summary.line(),
                "new_requests": summary.new_requests, "skipped_lines": summary.skipped_lines}))
            if summary.new_requests or summary.updated_requests:
                log.info("reconcile: %s", summary.line())
        for directory in dirs:
            self.ingester.ingest_dir(directory)
        for path in files:
            if self.ingester.cancelled:
                return
            self.ingester.ingest_path(path)
        hinted = list(files.values()) + list(dirs.values())
        if hinted:
            self.lag_ms = int((time.monotonic() - min(hinted)) * 1000)

    def _beat(self) -> None:
        try:
            self.heartbeat({"lag_ms": self.lag_ms, "last_error": self.last_error})
        except Exception:
            log.debug("heartbeat failed", exc_info=True)


def build_scheduler(worker: IngestWorker, sampler: Any | None, store: Store, *, reconcile_s: float,
                    sample_s: float) -> BackgroundScheduler:
    """Reconcile (re-stat every file, find new ones), sample processes, roll samples up, and once a day
    let SQLite optimise itself and checkpoint the WAL."""
    scheduler = BackgroundScheduler(job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30},
                                    daemon=True)
    scheduler.add_job(worker.request_scan, "interval", seconds=reconcile_s, id="reconcile", name="reconcile")
    if sampler is not None:
        scheduler.add_job(_quiet(sampler.sample), "interval", seconds=sample_s, id="sample", name="sample")
        scheduler.add_job(_quiet(sampler.rollup), "interval", seconds=60, id="rollup", name="rollup")
    if store.is_sqlite:
        scheduler.add_job(_quiet(lambda: _sqlite_maintenance(store)), "interval", hours=24, id="maintenance",
                          name="maintenance")
    return scheduler


def _quiet(func: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        try:
            func()
        except Exception:
            log.exception("%s failed", getattr(func, "__name__", "job"))
    run.__name__ = getattr(func, "__name__", "job")
    return run


def _sqlite_maintenance(store: Store) -> None:
    store.db.execute_sql("PRAGMA optimize")
    store.db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
