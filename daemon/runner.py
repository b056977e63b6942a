"""`cctally run`: catch up, then watch, reconcile, sample and serve, in one process, until a signal.

Shutdown contract: SIGTERM or SIGINT stops the observer and the jobs, lets the ingest worker finish the
transaction in flight (nothing is half-written: rows and offsets commit together), stops the web server,
and returns within about 5 seconds.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from .config import claude_roots, database_url, host_id
from .heartbeat import write_state_file
from .ingest import Ingester
from .jobs import IngestWorker, build_scheduler
from .store import open_store
from .watcher import HintHandler, start_observer

log = logging.getLogger(__name__)

SHUTDOWN_S = 4.0
DB_HEARTBEAT_MS = 30_000


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Daemon:
    """The running service; `start()` returns once everything is up, `stop()` tears it down."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.url = database_url(args.db)
        self.host = host_id(args.host_id)
        self.store = open_store(self.url)
        self.roots = claude_roots(args.claude_dir)
        self.ingester = Ingester(self.store, self.roots, host=self.host)
        self.worker = IngestWorker(self.ingester, self.store, self._heartbeat)
        self.sampler = None
        if not args.no_sample:
            from .sampler import Sampler
            self.sampler = Sampler(self.store, self.host)
        self.observer = None
        self.observer_kind = "none"
        self.observer_fallback: str | None = None     # why native watching failed, when polling took over
        self.scheduler = build_scheduler(self.worker, self.sampler, self.store,
                                         reconcile_s=args.reconcile_seconds, sample_s=args.sample_seconds)
        self.server = None
        self.server_thread: threading.Thread | None = None
        self.web_url: str | None = None
        self.started_ms = int(time.time() * 1000)
        self._last_db_beat = 0
        self._last_error: str | None = None

    def _heartbeat(self, extra: dict[str, Any] | None = None) -> None:
        info = {"pid": os.getpid(), "started_ms": self.started_ms, "heartbeat_ms": int(time.time() * 1000),
                "observer": self.observer_kind, "observer_fallback": self.observer_fallback, "web": self.web_url,
                "sample_seconds": None if self.sampler is None else self.args.sample_seconds,
                "roots": [str(r) for r in self.roots], "db": self.url, **(extra or {})}
        text = json.dumps(info)
        write_state_file(text)            # readable by `status` even while the database is unreachable
        # the database copy (seen by other hosts and the web) is refreshed less often: an idle daemon
        # should not commit a transaction every few seconds
        important = bool(extra and (extra.get("stopped") or extra.get("last_error") != self._last_error))
        if important or info["heartbeat_ms"] - self._last_db_beat >= DB_HEARTBEAT_MS:
            self.store.set_meta(f"daemon:{self.host}", text)
            self._last_db_beat = info["heartbeat_ms"]
            self._last_error = (extra or {}).get("last_error")

    def start(self) -> None:
        self.worker.start()
        self.worker.request_scan()                  # catch-up first; hints queue behind it
        handler = HintHandler(self.worker.hint)
        self.observer, self.observer_kind = start_observer(self.roots, handler, polling=self.args.polling)
        self.observer_fallback = getattr(self.observer, "fallback_reason", None)
        log.info("watching %s with %s", ", ".join(str(r) for r in self.roots), self.observer_kind)
        self.scheduler.start()
        if not self.args.no_web:
            self._start_web()
        self._heartbeat({"lag_ms": 0})

    def _start_web(self) -> None:
        from werkzeug.serving import make_server
        from web import create_app
        host, port = self.args.host, self.args.port
        app = create_app({"DB_URL": self.url, "ALLOWED_HOSTS": list(self.args.allow_host), "BIND_HOST": host})
        self.server = make_server(host, port, app, threaded=True)
        port = self.server.server_port
        shown = f"[{host}]" if ":" in host else host
        self.web_url = f"http://{shown}:{port}/"
        self.server_thread = threading.Thread(target=self.server.serve_forever, name="cctally-web", daemon=True)
        self.server_thread.start()
        print(f"cctally: serving {self.web_url}", file=sys.stderr, flush=True)

    def stop(self) -> None:
        deadline = time.monotonic() + SHUTDOWN_S
        if self.observer is not None:
            self.observer.stop()
        self.scheduler.shutdown(wait=False)
        self.worker.stop()
        if self.server is not None:
            self.server.shutdown()
        if self.observer is not None:
            self.observer.join(timeout=max(0.1, deadline - time.monotonic()))
        self.worker.join(timeout=max(0.1, deadline - time.monotonic()))
        try:
            self._heartbeat({"stopped": True, "lag_ms": self.worker.lag_ms})
        except Exception:
            log.debug("final heartbeat failed", exc_info=True)
        self.store.close()


def run_daemon(args: argparse.Namespace) -> int:
    """Entry point of `cctally run`; returns the exit code."""
    if not args.no_web and not _is_loopback(args.host):
        if not args.allow_remote:
            print(f"cctally: refusing to bind {args.host}: the page and API have no authentication. "
                  "Pass --allow-remote to serve other machines anyway.", file=sys.stderr)
            return 2
        print(f"cctally: WARNING: serving on {args.host} — anyone who can reach this port can read your usage.",
              file=sys.stderr)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("received %s; shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    daemon = Daemon(args)
    try:
        daemon.start()
    except OSError as exc:
        print(f"cctally: cannot start: {exc}", file=sys.stderr)
        daemon.stop()
        return 1
    while not stop.wait(1.0):
        pass
    daemon.stop()
    return 0
