"""daemon.watcher: which file-system events become hints, and how the observer starts (or falls back).

Handlers are tested by building watchdog's immutable event objects directly; the observers are real
(inotify on Linux, polling) and watch a real tree in tmp_path.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import pytest
from watchdog.events import (DirCreatedEvent, DirDeletedEvent, DirModifiedEvent, DirMovedEvent, FileClosedEvent,
                             FileClosedNoWriteEvent, FileCreatedEvent, FileDeletedEvent, FileModifiedEvent,
                             FileMovedEvent, FileOpenedEvent)
from watchdog.observers.polling import PollingObserver

from daemon import watcher
from daemon.watcher import HintHandler, start_observer


@pytest.fixture(autouse=True)
def no_thread_leaks():
    """Fail a test that leaves a thread running (observers and emitters must be stopped and joined)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra:
            return
        time.sleep(0.02)
    pytest.fail(f"threads leaked: {extra}")


class Sink:
    """Collects (path, is_dir) hints, thread-safe, with a wait helper."""

    def __init__(self) -> None:
        self.hints: list[tuple[str, bool]] = []
        self._cond = threading.Condition()

    def __call__(self, path: str, is_dir: bool) -> None:
        with self._cond:
            self.hints.append((path, is_dir))
            self._cond.notify_all()

    def wait_for(self, pred, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred(list(self.hints)):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True


def hints_for(event) -> list[tuple[str, bool]]:
    sink = Sink()
    HintHandler(sink).dispatch(event)
    return sink.hints


# ---- events -> hints

@pytest.mark.parametrize("event_cls", [FileCreatedEvent, FileModifiedEvent, FileClosedEvent, FileDeletedEvent])
def test_transcript_file_events_are_hints(event_cls):
    assert hints_for(event_cls("/c/projects/p/s.jsonl")) == [("/c/projects/p/s.jsonl", False)]


@pytest.mark.parametrize("event_cls", [FileOpenedEvent, FileClosedNoWriteEvent])
def test_reads_are_not_hints(event_cls):
    """Our own reads produce open/close-no-write events; hinting on them would loop forever."""
    assert hints_for(event_cls("/c/projects/p/s.jsonl")) == []


@pytest.mark.parametrize("name", ["s.json", "s.jsonl.tmp", "notes.txt", ".s.jsonl.swp"])
def test_other_files_are_not_hints(name):
    assert hints_for(FileModifiedEvent(f"/c/projects/p/{name}")) == []


def test_new_and_moved_directories_are_hints_modified_and_deleted_are_not():
    assert hints_for(DirCreatedEvent("/c/projects/p/sub")) == [("/c/projects/p/sub", True)]
    assert hints_for(DirMovedEvent("/c/projects/old", "/c/projects/new")) == [
        ("/c/projects/old", True), ("/c/projects/new", True)]
    assert hints_for(DirModifiedEvent("/c/projects/p")) == []
    assert hints_for(DirDeletedEvent("/c/projects/p")) == []


def test_a_rename_hints_both_ends():
    """Atomic replace (write a temp file, rename over the transcript): the destination is what changed;
    a transcript renamed away is hinted too, so the old path is marked missing."""
    assert hints_for(FileMovedEvent("/c/projects/p/.tmp123", "/c/projects/p/s.jsonl")) == [
        ("/c/projects/p/s.jsonl", False)]
    assert hints_for(FileMovedEvent("/c/projects/p/a.jsonl", "/c/projects/p/b.jsonl")) == [
        ("/c/projects/p/a.jsonl", False), ("/c/projects/p/b.jsonl", False)]


def test_bytes_paths_are_decoded():
    assert hints_for(FileModifiedEvent(b"/c/projects/p/s.jsonl")) == [("/c/projects/p/s.jsonl", False)]


# ---- real observers

def _covered(hints: list[tuple[str, bool]], path: Path) -> bool:
    """A hint names `path` itself, or a new directory above it (ingest_dir reads everything below)."""
    p = str(path)
    return any(h == p or (is_dir and p.startswith(h + os.sep)) for h, is_dir in hints)


def _stop(observer) -> None:
    observer.stop()
    observer.join(timeout=5)
    assert not observer.is_alive()


@pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")   # watchdog: a watch added twice in the race
def test_native_observer_hints_appends_new_files_and_mkdir_p_then_write(isolated_env):
    root = isolated_env["claude"]
    existing = root / "projects" / "-home-dev-a" / "s1.jsonl"
    existing.parent.mkdir(parents=True)
    existing.write_bytes(b"{}\n")
    sink = Sink()
    observer, kind = start_observer([root], HintHandler(sink))
    try:
        assert kind != "PollingObserver"            # inotify here; FSEvents/kqueue/… elsewhere
        with open(existing, "ab") as f:
            f.write(b"{}\n")
        assert sink.wait_for(lambda h: _covered(h, existing))
        # mkdir -p then an immediate write: the file may exist before any watch on its directory does
        nested = root / "projects" / "-home-dev-b" / "s2" / "subagents" / "agent-1.jsonl"
        nested.parent.mkdir(parents=True)
        nested.write_bytes(b"{}\n")
        assert sink.wait_for(lambda h: _covered(h, nested))
    finally:
        _stop(observer)


class CountingHandler(HintHandler):
    """Counts every event the observer dispatches, hinted or not."""

    def __init__(self, sink) -> None:
        super().__init__(sink)
        self.events: list = []

    def dispatch(self, event) -> None:
        self.events.append(event)
        super().dispatch(event)


def test_reading_the_tree_produces_no_events(isolated_env):
    """Ingest and watchdog itself open every file and directory; those opens, reads and closes must not
    even be subscribed to: on a large tree they overflowed the inotify queue, and watchdog's re-walk after
    an overflow overflowed it again, forever (events lost, a core busy)."""
    root = isolated_env["claude"]
    files = []
    for d in range(20):
        path = root / "projects" / f"-p{d}" / "s" / "subagents" / "agent.jsonl"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"{}\n" * 10)
        files.append(path)
    sink = Sink()
    handler = CountingHandler(sink)
    observer, _ = start_observer([root], handler)
    try:
        for _ in range(3):
            for dirpath, _dirs, names in os.walk(root / "projects"):
                for name in names:
                    with open(os.path.join(dirpath, name), "rb") as f:
                        f.read()
        with open(files[0], "ab") as f:          # a marker event, to know the reads were all seen
            f.write(b"{}\n")
        assert sink.wait_for(lambda h: _covered(h, files[0]))
        assert {type(e).__name__ for e in handler.events} == {"FileModifiedEvent"}
    finally:
        _stop(observer)


def test_polling_observer_on_request(isolated_env):
    root = isolated_env["claude"]
    sink = Sink()
    observer, kind = start_observer([root], HintHandler(sink), polling=True, poll_seconds=0.1)
    try:
        assert kind == "PollingObserver" and isinstance(observer, PollingObserver)
        new = root / "projects" / "-home-dev-a" / "s.jsonl"
        new.parent.mkdir(parents=True)
        new.write_bytes(b"{}\n")
        assert sink.wait_for(lambda h: _covered(h, new))
    finally:
        _stop(observer)


class _WatchLimitObserver(watcher.Observer):
    """A native observer on a machine out of inotify watches."""

    def schedule(self, *args, **kwargs):
        raise OSError(28, "inotify watch limit reached")


class _NoInstancesObserver(watcher.Observer):
    """A native observer whose emitter cannot start (EMFILE: out of inotify instances)."""

    def start(self):
        raise OSError(24, "inotify instance limit reached")


@pytest.mark.parametrize("broken", [_WatchLimitObserver, _NoInstancesObserver])
def test_native_failure_falls_back_to_polling_and_says_so_once(isolated_env, monkeypatch, caplog, broken):
    monkeypatch.setattr(watcher, "Observer", broken)
    root = isolated_env["claude"]
    sink = Sink()
    with caplog.at_level(logging.WARNING, logger="daemon.watcher"):
        observer, kind = start_observer([root], HintHandler(sink), poll_seconds=0.1)
    try:
        assert kind == "PollingObserver" and isinstance(observer, PollingObserver)
        warnings = [r for r in caplog.records if r.name == "daemon.watcher"]
        assert len(warnings) == 1
        assert "limit reached" in warnings[0].getMessage() and "polling" in warnings[0].getMessage()
        assert observer.fallback_reason and "limit reached" in observer.fallback_reason
        new = root / "projects" / "-home-dev-a" / "s.jsonl"          # and it still sees files
        new.parent.mkdir(parents=True)
        new.write_bytes(b"{}\n")
        assert sink.wait_for(lambda h: _covered(h, new))
    finally:
        _stop(observer)


def test_no_fallback_reason_when_native_works(isolated_env):
    observer, kind = start_observer([isolated_env["claude"]], HintHandler(Sink()))
    try:
        assert getattr(observer, "fallback_reason", None) is None
    finally:
        _stop(observer)
