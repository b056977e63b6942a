"""Tailer + parser + store: turn new transcript bytes into ledger rows, exactly once.

Contract: for every batch of complete lines, the merged request rows and the file's new offset commit in
one transaction, so a crash at any point leaves a state from which a rerun reaches the same totals as a
clean run. Copies of one request (streamed lines, resumed/forked sessions, agent_progress embeds, other
roots) merge by key: the highest `copy_rank` supplies the fields (a tie: the later line of the same file;
across files the copy read first stays), the earliest timestamp is kept.
`/btw` sidechain replays of a main-chain message under another requestId are not requests (FORMAT-NOTES 5.2),
whichever copy is read first.
"""
from __future__ import annotations

import getpass
import logging
import os
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

from peewee import IntegrityError

from . import rollups
from .store import REQUEST_COLUMNS, FileRow, FileState, Store, merge_request_rows
from .tailer import Change, classify, fingerprints, read_lines, DEFAULT_BATCH_BYTES
from .transcript import LineKind, UsageRecord, parse_line, user_line_stamp

if TYPE_CHECKING:
    from .pricing import Pricer

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called with (bytes done, bytes to do) while catching up."""

_COL = {name: i for i, name in enumerate(REQUEST_COLUMNS)}
_I_KEY, _I_MID, _I_RID = _COL["key"], _COL["message_id"], _COL["request_id"]
_I_FILE = _COL["file_id"]
_SKIP_DIRS = {"tool-results"}
_WRITE_RETRIES = 5
PARALLEL_MIN_BYTES = 32 << 20      # a catch-up this large is parsed by worker processes
MAX_WORKERS = 4
IN_FLIGHT_BYTES = 48 << 20         # file bytes handed to workers and not yet committed (bounds memory)
CHUNK_BYTES = 4 << 20              # files are handed to workers in groups of about this many bytes
_PROMPT_MEMORY = 50_000
"""User-line timestamps remembered for response latency (a live session's prompt and its answer are
usually read in different passes)."""


@dataclass
class IngestSummary:
    """What one catch-up did."""

    files_seen: int = 0
    files_read: int = 0
    files_missing: int = 0
    files_reset: int = 0
    new_requests: int = 0
    updated_requests: int = 0
    skipped_lines: int = 0
    bytes_read: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def add(self, other: "IngestSummary") -> None:
        """Fold another pass's counts into this one (time and files seen are the caller's)."""
        for name in ("files_read", "files_missing", "files_reset", "new_requests", "updated_requests",
                     "skipped_lines", "bytes_read"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors.extend(other.errors)

    def line(self) -> str:
        return (f"{self.files_seen} files ({self.files_read} read), {self.new_requests} new requests, "
                f"{self.updated_requests} updated, {self.skipped_lines} skipped lines, "
                f"{self.bytes_read / 1e6:.1f} MB in {self.seconds:.2f} s")


def is_transcript(name: str) -> bool:
    """A `*.jsonl` transcript, not the subagent lifecycle journal."""
    return name.endswith(".jsonl") and name != "journal.jsonl"


def discover(roots: Iterable[Path]) -> list[tuple[Path, str]]:
    """Every transcript under `<root>/projects/**`, as (root, canonical path), each file once.

    Follows symlinked directories but never the same directory twice (no loops); files reachable by
    two paths (symlinks, overlapping roots) are returned once, by (device, inode).
    """
    return _walk([(root, str(root / "projects")) for root in roots])


def discover_under(root: Path, directory: str) -> list[tuple[Path, str]]:
    """Transcripts below `directory` when it lies inside `root`'s projects/ (else none)."""
    real = os.path.realpath(directory)
    base = str(root / "projects")
    if real != base and not real.startswith(base + os.sep):
        return []
    return _walk([(root, real)])


def _walk(starts: list[tuple[Path, str]]) -> list[tuple[Path, str]]:
    # Canonical paths are built from each directory's canonical path and identities come from the
    # directory listing (d_ino); only symlinked entries cost a stat and a realpath. A 1 GB history has
    # ~11k files in ~5k directories, and this walk runs on every reconcile.
    found: list[tuple[Path, str]] = []
    seen_files: set[tuple[int, int]] = set()
    seen_dirs: set[tuple[int, int]] = set()
    for root, start in starts:
        try:
            st = os.stat(start)
        except OSError as exc:
            log.warning("cannot read %s: %s", start, exc)
            continue
        stack = [(start, os.path.realpath(start), st.st_dev, st.st_ino)]
        while stack:
            directory, real_dir, dev, ino = stack.pop()
            if (dev, ino) in seen_dirs:
                continue
            seen_dirs.add((dev, ino))
            try:
                entries = list(os.scandir(directory))
            except OSError as exc:
                log.warning("cannot read %s: %s", directory, exc)
                continue
            prefix = real_dir + os.sep
            for entry in entries:
                try:
                    link = entry.is_symlink()
                    if entry.is_dir(follow_symlinks=True):
                        if entry.name in _SKIP_DIRS:
                            continue
                        if link:
                            target = entry.stat(follow_symlinks=True)
                            stack.append((entry.path, os.path.realpath(entry.path), target.st_dev, target.st_ino))
                        else:
                            stack.append((entry.path, prefix + entry.name, dev, entry.inode()))
                    elif is_transcript(entry.name) and entry.is_file(follow_symlinks=True):
                        if link:
                            target = entry.stat(follow_symlinks=True)
                            ident = (target.st_dev, target.st_ino)
                            real = os.path.realpath(entry.path)
                        else:
                            ident = (dev, entry.inode())
                            real = prefix + entry.name
                        if ident not in seen_files:
                            seen_files.add(ident)
                            found.append((root, real))
                except OSError:
                    continue
    found.sort(key=lambda rp: rp[1])
    return found


def _resume_point(state: FileState | FileRow | None, change: Change) -> tuple[int, int]:
    """(byte offset, 1-based line number) to read a file from: where the last pass stopped, unless the
    file is new or must be re-read from the start."""
    if change is not Change.APPENDED or state is None:
        return 0, 1
    return state.offset, state.lines + 1


def _project_fallback(root: Path, path: str) -> str:
    """The project directory name, used only when a line has no `cwd` (the name is lossy, FORMAT-NOTES 1.2)."""
    try:
        rel = Path(path).relative_to(root / "projects")
        return rel.parts[0] if len(rel.parts) > 1 else ""
    except ValueError:
        return ""


@dataclass(slots=True)
class ParsedBatch:
    """The requests found in one batch of complete lines of one file, and where the batch ends."""

    records: dict[str, UsageRecord]
    end: int
    read_to: int
    head: str
    tail: str
    last_line: int
    skipped: int
    first_bad_line: int | None


def parse_file(path: str, start: int, line_no: int, batch_bytes: int, mtime_ms: int, fallback_project: str,
               prompts: "OrderedDict[str, int]") -> Iterator[ParsedBatch]:
    """Parse the complete lines of `path` from `start`, batch by batch. Pure apart from reading the file
    and remembering prompt times in `prompts` (for response latency); safe to run in a worker process.

    A file with nothing new but a partial line yields one empty batch (so its size/mtime are recorded).
    Raises OSError if the file cannot be opened.
    """
    last_ts = mtime_ms
    last_prompt: int | None = None
    with open(path, "rb") as f:
        produced = False
        for batch in read_lines(f, start, line_no, batch_bytes=batch_bytes):
            records: dict[str, UsageRecord] = {}
            skipped = batch.oversized
            first_bad: int | None = None
            for i, raw in enumerate(batch.lines):
                parsed = parse_line(raw)
                if parsed.kind is LineKind.MALFORMED:
                    skipped += 1
                    if first_bad is None:
                        first_bad = batch.first_line_no + i
                    continue
                record = parsed.record
                if record is None:
                    if parsed.kind is LineKind.OTHER:
                        stamp = user_line_stamp(raw)
                        if stamp is not None:
                            last_prompt = stamp[1]
                            prompts[stamp[0]] = stamp[1]
                            if len(prompts) > _PROMPT_MEMORY:
                                prompts.popitem(last=False)
                    continue
                if record.ts_ms is None:
                    record.ts_ms = last_ts
                else:
                    last_ts = record.ts_ms
                if record.parent_uuid:
                    asked = prompts.get(record.parent_uuid)
                else:       # no parent link (some writers): the last prompt line before it in this file
                    asked = None if record.embedded else last_prompt
                if asked is not None and record.ts_ms >= asked:
                    record.latency_ms = record.ts_ms - asked
                if not record.project:
                    record.project = fallback_project
                record.source = path
                _merge_into(records, record)
            head, tail = fingerprints(f, batch.end)
            produced = True
            yield ParsedBatch(records, batch.end, batch.read_to, head, tail,
                              batch.first_line_no + len(batch.lines) - 1, skipped, first_bad)
        if not produced:
            head, tail = fingerprints(f, start)
            yield ParsedBatch({}, start, os.fstat(f.fileno()).st_size, head, tail, line_no - 1, 0, None)


_RECORD_FIELDS = tuple(UsageRecord.__slots__)


def _parse_files(tasks: list[tuple]) -> list[tuple[list[tuple] | None, str | None]]:
    """Worker entry point: for each file, its batches (records as plain tuples: pickling slotted
    instances costs several times more) or the error that stopped it."""
    out: list[tuple[list[tuple] | None, str | None]] = []
    for task in tasks:
        try:
            batches = []
            for b in parse_file(*task, OrderedDict()):
                records = [tuple(getattr(r, f) for f in _RECORD_FIELDS) for r in b.records.values()]
                batches.append((records, b.end, b.read_to, b.head, b.tail, b.last_line, b.skipped, b.first_bad_line))
            out.append((batches, None))
        except OSError as exc:
            out.append((None, str(exc)))
    return out


def _unpack(batches: list[tuple]) -> list[ParsedBatch]:
    out = []
    for records, *rest in batches:
        recs = [UsageRecord(*r) for r in records]
        out.append(ParsedBatch({r.key: r for r in recs}, *rest))
    return out


@dataclass(slots=True)
class _Pending:
    """One parsed batch of one file, not yet committed."""

    path: str
    root: str
    reset: bool                      # first batch after a decision to re-read from 0
    start: int                       # offset this batch starts at (must still be the stored one)
    st: os.stat_result
    batch: ParsedBatch


class Ingester:
    """Reads transcripts under `roots` into `store`. One per process; not thread-safe (one writer).

    `batch_bytes` is how many bytes of complete lines go into one transaction — from one file or from
    several small ones; default: the env var `CCTALLY_BATCH_BYTES` if set (tests and benchmarks use it
    to commit often), else 8 MiB.
    """

    def __init__(self, store: Store, roots: Sequence[Path], *, host: str, pricer: "Pricer | None" = None,
                 batch_bytes: int | None = None) -> None:
        self.store = store
        self.roots = list(roots)
        self.host = host
        self.os_user = _os_user()
        self._pricer = pricer
        self.batch_bytes = batch_bytes or int(os.environ.get("CCTALLY_BATCH_BYTES") or DEFAULT_BATCH_BYTES)
        self._prompts: OrderedDict[str, int] = OrderedDict()   # uuid -> ts of recent user lines
        self.cancelled = False      # set from another thread to stop after the transaction in flight
        self._pending: list[_Pending] = []
        self._pending_bytes = 0

    @property
    def pricer(self) -> "Pricer":
        """The price table, loaded on first use (a catch-up with nothing new never imports it)."""
        if self._pricer is None:
            from .pricing import default_pricer
            self._pricer = default_pricer()
        return self._pricer

    # ---- public
    def catch_up(self, progress: Progress | None = None) -> IngestSummary:
        """Discover every transcript, read what changed, and mark vanished files missing."""
        started = time.monotonic()
        summary = IngestSummary()
        files = discover(self.roots)
        summary.files_seen = len(files)
        known = self.store.file_rows(self.host)
        work: list[tuple[Path, str, FileRow | None, Change, os.stat_result]] = []
        found_again: list[FileRow] = []
        total = 0
        for root, path in files:
            state = known.pop(path, None)
            change, st = classify(path, state)
            if change is Change.UNCHANGED and state is not None and state.missing:
                found_again.append(state)        # back exactly as it was (its dir moved out and back)
            if change in (Change.UNCHANGED, Change.GONE) or st is None:
                continue
            total += max(0, st.st_size - _resume_point(state, change)[0])
            work.append((root, path, state, change, st))
        gone = [s for s in known.values() if not s.missing]   # tracked but no longer under any root
        if found_again or gone:
            with self.store.write():
                self.store.set_missing([s.id for s in found_again], False)
                self.store.set_missing([s.id for s in gone], True)
            for s in gone:
                log.info("%s is gone; its %d request(s) stay in the ledger", s.path, s.requests_seen)
            summary.files_missing += len(gone)
        report = (lambda n: progress(n, total)) if progress else None
        workers = self._workers(total)
        if workers > 1:
            self._read_parallel(work, workers, summary, report)
        else:
            for root, path, state, change, st in work:
                if self.cancelled:
                    break
                self._read(root, path, state, change, st, summary, report)
        self._flush(summary)
        summary.seconds = time.monotonic() - started
        if progress:
            progress(total, total)
        return summary

    def _workers(self, total: int) -> int:
        """Parser processes for a catch-up of `total` bytes: several for a large one (cold start), else 1.
        Env overrides (tests, benchmarks): CCTALLY_WORKERS, CCTALLY_PARALLEL_MIN_BYTES."""
        if total < int(os.environ.get("CCTALLY_PARALLEL_MIN_BYTES") or PARALLEL_MIN_BYTES):
            return 1
        configured = os.environ.get("CCTALLY_WORKERS")
        return max(1, int(configured)) if configured else min(os.cpu_count() or 1, MAX_WORKERS)

    def _read_parallel(self, work: list, workers: int, summary: IngestSummary,
                       progress: Callable[[int], None] | None) -> None:
        """Parse files in worker processes, in order, with a bounded number of files in flight; this
        process prices, merges and commits exactly as in the serial path."""
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        # fork is cheap, but only safe while this process has no other threads (the daemon has some)
        method = "fork" if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods() \
            else "spawn"
        groups: list[tuple[list, int]] = []          # files handed to a worker together, ~CHUNK_BYTES each
        for item in work:
            size = max(0, item[4].st_size - _resume_point(item[2], item[3])[0])
            if not groups or groups[-1][1] >= CHUNK_BYTES:
                groups.append(([], 0))
            groups[-1][0].append(item)
            groups[-1] = (groups[-1][0], groups[-1][1] + size)
        inflight: deque = deque()
        queued = 0
        todo = iter(groups)
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method)) as pool:
            while True:
                while queued < IN_FLIGHT_BYTES and not self.cancelled:
                    group = next(todo, None)
                    if group is None:
                        break
                    items, size = group
                    tasks = []
                    for root, path, state, change, st in items:
                        tasks.append((path, *_resume_point(state, change), self.batch_bytes,
                                      int(st.st_mtime_ns // 1_000_000), _project_fallback(root, path)))
                    inflight.append((items, size, pool.submit(_parse_files, tasks)))
                    queued += size
                if not inflight:
                    break
                items, size, future = inflight.popleft()
                queued -= size
                for (root, path, state, change, st), (batches, error) in zip(items, future.result()):
                    if error is not None:
                        summary.files_read += 1
                        summary.errors.append(f"{path}: {error}")
                        log.warning("cannot read %s: %s", path, error)
                        continue
                    self._read(root, path, state, change, st, summary, progress, parsed=_unpack(batches))
                    if self.cancelled:
                        break
            if self.cancelled:
                for _, _, future in inflight:
                    future.cancel()

    def _root_of(self, path: str, real: str) -> Path | None:
        """The root whose `projects/` holds `path`, as given or resolved (`projects/` itself or a project
        dir inside it may be a symlink, FORMAT-NOTES 6)."""
        given = os.path.abspath(path)
        for r in self.roots:
            for base in (str(r / "projects"), os.path.realpath(r / "projects")):
                if given.startswith(base + os.sep) or real.startswith(base + os.sep):
                    return r
        return None

    def ingest_path(self, path: str) -> IngestSummary:
        """Read one file (a watcher hint) and commit. Unknown roots and non-transcripts are ignored."""
        summary = IngestSummary()
        real = os.path.realpath(path)
        root = self._root_of(path, real)
        if root is None or not is_transcript(os.path.basename(real)):
            return summary
        state = self.store.file_state(self.host, real)
        change, st = classify(real, state)
        if change is Change.GONE or (change is Change.UNCHANGED and state is not None and state.missing):
            if state is not None and state.missing != (change is Change.GONE):
                with self.store.write():
                    self.store.set_missing([state.id], change is Change.GONE)
                summary.files_missing += change is Change.GONE
            return summary
        if change is Change.UNCHANGED or st is None:
            return summary
        started = time.monotonic()
        self._read(root, real, state, change, st, summary, None)
        self._flush(summary)
        summary.seconds = time.monotonic() - started
        return summary

    def ingest_dir(self, directory: str) -> IngestSummary:
        """Read every transcript below a directory (a new-directory hint: its files may predate the watch)."""
        total = IngestSummary()
        for root in self.roots:
            for _, path in discover_under(root, directory):
                total.add(self.ingest_path(path))
        return total

    # ---- reading one file into pending batches
    def _read(self, root: Path, path: str, state: FileState | FileRow | None, change: Change, st: os.stat_result,
              summary: IngestSummary, progress: Callable[[int], None] | None,
              parsed: "list[ParsedBatch] | None" = None) -> None:
        """Queue the new batches of one file (parsing them here unless a worker already did: `parsed`)."""
        reset = change is Change.RESET
        if reset:
            summary.files_reset += 1
            log.info("re-reading %s from the start (truncated, rewritten or replaced)", path)
        start, line_no = _resume_point(state, change)
        summary.files_read += 1
        batches = parsed if parsed is not None else parse_file(
            path, start, line_no, self.batch_bytes, int(st.st_mtime_ns // 1_000_000),
            _project_fallback(root, path), self._prompts)
        first = True
        bad_count, bad_first = 0, None
        try:
            for batch in batches:
                bad_count += batch.skipped
                bad_first = bad_first or batch.first_bad_line
                self._add(_Pending(path, str(root), reset and first, start, st, batch), batch.end - start, summary)
                first = False
                start = batch.end
                if progress:
                    progress(summary.bytes_read)
                if self.cancelled:
                    break
        except OSError as exc:
            summary.errors.append(f"{path}: {exc}")
            log.warning("cannot read %s: %s", path, exc)
            return
        if bad_count:
            log.warning("%s: skipped %d unreadable line(s) (first at line %s)", path, bad_count,
                        bad_first if bad_first is not None else "?")

    def _add(self, pending: _Pending, size: int, summary: IngestSummary) -> None:
        self._pending.append(pending)
        self._pending_bytes += size
        summary.bytes_read += size
        if self._pending_bytes >= self.batch_bytes or self.cancelled:
            self._flush(summary)

    # ---- committing
    def _flush(self, summary: IngestSummary) -> None:
        """Commit the pending batches: rows and offsets in one transaction, retried when another writer
        inserted one of the keys first (team databases): the retry re-reads those rows and merges."""
        if not self._pending:
            return
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        for attempt in range(_WRITE_RETRIES):
            try:
                self._commit(pending, summary)
                return
            except IntegrityError:
                if attempt == _WRITE_RETRIES - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def _commit(self, pending: list[_Pending], summary: IngestSummary) -> None:
        now = int(time.time() * 1000)
        with self.store.write():
            current = self.store.file_states(self.host, list(dict.fromkeys(p.path for p in pending)))
            states: dict[str, FileState] = {}
            refused: set[str] = set()
            accepted: list[_Pending] = []
            for p in pending:
                if p.path in refused:
                    continue
                state = states.get(p.path)
                if state is None:
                    state = current.get(p.path)
                    if state is not None and not p.reset and state.offset != p.start:
                        refused.add(p.path)   # another writer moved this file on; the next pass resumes
                        log.info("skipping %s: its offset was advanced by another writer", p.path)
                        continue
                    if state is None:
                        state = FileState(None, self.host, p.path, p.root, first_seen_ms=now)
                    states[p.path] = state
                b = p.batch
                if p.reset:
                    state.resets += 1 if state.id is not None else 0
                    state.skipped_lines = state.requests_seen = 0
                state.root = p.root
                state.dev, state.inode = p.st.st_dev, p.st.st_ino
                state.size, state.offset, state.mtime_ns = b.read_to, b.end, p.st.st_mtime_ns
                state.head_hash, state.tail_hash = b.head, b.tail
                state.lines = b.last_line
                state.skipped_lines += b.skipped
                state.requests_seen += len(b.records)
                state.last_ingest_ms = now
                state.missing = False
                accepted.append(p)
            self.store.save_file_states(states.values())
            merged: dict[str, UsageRecord] = {}
            for p in accepted:
                for record in p.batch.records.values():
                    _merge_into(merged, record)
            inserted, updated = self._apply(merged, {path: s.id for path, s in states.items()}, now)
        summary.new_requests += inserted
        summary.updated_requests += updated
        summary.skipped_lines += sum(p.batch.skipped for p in accepted)

    # ---- merging
    def _row(self, r: UsageRecord, file_id: int | None, now: int) -> tuple:
        price = self.pricer.price(r.model, r.input_tokens, r.output_tokens, r.cache_write_5m, r.cache_write_1h,
                                  r.cache_read, r.speed, _utc(r.ts_ms))
        return (r.key, r.message_id, r.request_id, r.session_id, r.agent_id, r.is_sidechain, r.embedded,
                r.project or "", r.git_branch, r.model, r.ts_ms, r.version, r.input_tokens, r.output_tokens,
                r.cache_write_5m, r.cache_write_1h, r.cache_read, r.web_search, r.web_fetch, r.speed,
                r.service_tier, price.cost_usd, r.logged_cost_usd, price.priced, r.copy_rank, file_id,
                self.host, self.os_user, now, r.latency_ms)

    def _apply(self, records: dict[str, UsageRecord], file_ids: dict[str, int], now: int) -> tuple[int, int]:
        """Merge batch records with the stored rows; returns (rows inserted net of btw deletions, rows updated).
        `records` may be changed (replays dropped); `file_ids` maps each record's source path to its id."""
        if not records:
            return 0, 0
        store = self.store
        # /btw replays: a sidechain copy of a main-chain message under another requestId is not a request
        main = {r.message_id: set() for r in records.values() if not r.is_sidechain and r.message_id}
        for r in records.values():
            if not r.is_sidechain and r.message_id:
                main[r.message_id].add(r.request_id)
        side_mids = {r.message_id for r in records.values() if r.is_sidechain and r.message_id}
        if side_mids:
            for mid, rids in store.main_chain_request_ids(side_mids).items():
                main.setdefault(mid, set()).update(rids)
        drop = [k for k, r in records.items()
                if r.is_sidechain and r.message_id in main and main[r.message_id] - {r.request_id}]
        for k in drop:
            del records[k]
        deleted: list[tuple] = []
        if main:
            deleted = [row for row in store.sidechain_rows_for_messages(main.keys())
                       if main.get(row[_I_MID]) and main[row[_I_MID]] - {row[_I_RID]}]
        existing = store.requests_by_key(records.keys())
        inserts: list[tuple] = []
        updates: list[tuple] = []
        replaced: list[tuple] = []
        for key, r in records.items():
            old = existing.get(key)
            file_id = file_ids.get(r.source) if r.source else None
            if old is None:
                inserts.append(self._row(r, file_id, now))
                continue
            # a tie goes to the later line of the same file (as within a batch, so batch cuts and
            # crashes cannot change the result); across files the copy read first stays
            row = merge_request_rows(old, self._row(r, file_id, now), new_wins_tie=old[_I_FILE] == file_id)
            if row is not None:
                updates.append(row)
                replaced.append(old)
        store.delete_requests([row[_I_KEY] for row in deleted])
        store.insert_requests(inserts)
        store.update_requests(updates)
        rollups.apply(store, inserts + updates, replaced + deleted)
        return len(inserts) - len(deleted), len(updates)


def _merge_into(records: dict[str, UsageRecord], record: UsageRecord) -> None:
    """Keep one record per key, merging in reading order: highest copy_rank (a tie: the later line of the
    same file; across files the copy read first stays, as in the store), earliest timestamp."""
    old = records.get(record.key)
    if old is None:
        records[record.key] = record
        return
    earliest = min(old.ts_ms, record.ts_ms)
    latency = _min_known(old.latency_ms, record.latency_ms)
    better = record.copy_rank > old.copy_rank or (record.copy_rank == old.copy_rank and record.source == old.source)
    keep = record if better else old
    keep.ts_ms, keep.latency_ms = earliest, latency
    records[record.key] = keep


def _min_known(a: int | None, b: int | None) -> int | None:
    """The smaller of two optional values (the first copy of a response answers soonest)."""
    if a is None:
        return b
    return a if b is None else min(a, b)


def _utc(ms: int) -> datetime:
    """Request time for pricing (prices change over time)."""
    return datetime.fromtimestamp(ms / 1000, timezone.utc)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return str(os.getuid()) if hasattr(os, "getuid") else ""
