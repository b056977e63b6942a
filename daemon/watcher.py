"""Watchdog wiring. Events are hints: they name a path to look at; the ingest path decides what changed.

A native observer (inotify, FSEvents, …) is used when it can start; when it cannot (inotify watch or
instance limits — ENOSPC/EMFILE — or a file system without events) the polling observer takes over, and
that is said once in the log and in `status`. The periodic reconcile covers whatever events are lost.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Iterable

from watchdog.events import (DirCreatedEvent, DirMovedEvent, FileCreatedEvent, FileDeletedEvent, FileModifiedEvent,
                             FileMovedEvent, FileSystemEvent, FileSystemEventHandler)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

log = logging.getLogger(__name__)

Sink = Callable[[str, bool], None]
"""Receives (path, is_directory) for every hint."""

EVENTS = [FileCreatedEvent, FileModifiedEvent, FileMovedEvent, FileDeletedEvent, DirCreatedEvent, DirMovedEvent]
"""The only events subscribed to (on Linux, the inotify mask). Not opens, reads or closes: ingest and
watchdog's own re-walks open every file and directory, and on a large tree those events alone overflow the
kernel queue — watchdog then re-walks the tree to rebuild its watches, which overflows it again, forever."""


class HintHandler(FileSystemEventHandler):
    """Turns file-system events under `projects/` into hints: transcript files, and new directories (whose
    files may have been written before a watch on them existed, as with `mkdir -p` then a write)."""

    def __init__(self, sink: Sink) -> None:
        super().__init__()
        self.sink = sink

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if not raw:
                continue
            path = raw.decode() if isinstance(raw, bytes) else raw
            if event.is_directory:
                if event.event_type in ("created", "moved"):
                    self.sink(path, True)
            elif path.endswith(".jsonl"):
                self.sink(path, False)


def start_observer(roots: Iterable[Path], handler: HintHandler, polling: bool = False,
                   poll_seconds: float = 2.0) -> tuple[BaseObserver, str]:
    """Start an observer watching every `<root>/projects` recursively; returns (observer, kind).

    `kind` is the observer's class name ("InotifyObserver", "PollingObserver", …). The observer carries
    `fallback_reason`: None, or — when the native observer could not start and polling took over — the
    error that stopped it (for `status`). The fallback is logged once, here.
    """
    roots = list(roots)
    reason: str | None = None
    if not polling:
        observer = Observer()
        try:
            for root in roots:
                observer.schedule(handler, str(root / "projects"), recursive=True, event_filter=EVENTS)
            observer.start()
            observer.fallback_reason = None
            return observer, type(observer).__name__
        except OSError as exc:
            reason = str(exc)
            log.warning("native file watching unavailable (%s); falling back to polling every %.0f s. "
                        "On Linux raise fs.inotify.max_user_watches / max_user_instances to restore it.",
                        exc, poll_seconds)
            try:
                observer.stop()
            except Exception:  # an observer that never started
                pass
    observer = PollingObserver(timeout=poll_seconds)
    for root in roots:
        observer.schedule(handler, str(root / "projects"), recursive=True, event_filter=EVENTS)
    observer.start()
    observer.fallback_reason = reason
    return observer, "PollingObserver"
