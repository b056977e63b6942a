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
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

from peewee import IntegrityError

from . import rollups
from .store import REQUEST_COLUMNS, FileState, Store
from .tailer import Change, Snapshot, classify, fingerprints, read_lines, DEFAULT_BATCH_BYTES
from .transcript import LineKind, UsageRecord, parse_line, user_line_stamp

if TYPE_CHECKING:
    from .pricing import Pricer

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called with (bytes done, bytes to do) while catching up."""

_COL = {name: i for i, name in enumerate(REQUEST_COLUMNS)}
_I_KEY, _I_MID, _I_RID, _I_SIDE = _COL["key"], _COL["message_id"], _COL["request_id"], _COL["is_sidechain"]
_I_TS, _I_RANK, _I_FILE = _COL["ts_ms"], _COL["copy_rank"], _COL["file_id"]
_I_LAT = _COL["latency_ms"]
_SKIP_DIRS = {"tool-results"}
_WRITE_RETRIES = 5
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
    # Canonical paths are built from each directory's canonical path; only symlinked entries are
    # resolved (a realpath per file costs ~13 syscalls; 11k files made that most of a catch-up).
    found: list[tuple[Path, str]] = []
    seen_files: set[tuple[int, int]] = set()
    seen_dirs: set[tuple[int, int]] = set()
    for root, start in starts:
        stack = [(start, os.path.realpath(start))]
        while stack:
            directory, real_dir = stack.pop()
            try:
                st = os.stat(directory)
                if (st.st_dev, st.st_ino) in seen_dirs:
                    continue
                seen_dirs.add((st.st_dev, st.st_ino))
                entries = list(os.scandir(directory))
            except OSError as exc:
                log.warning("cannot read %s: %s", directory, exc)
                continue
            for entry in entries:
                try:
                    link = entry.is_symlink()
                    if entry.is_dir(follow_symlinks=True):
                        if entry.name not in _SKIP_DIRS:
                            real = os.path.realpath(entry.path) if link else os.path.join(real_dir, entry.name)
                            stack.append((entry.path, real))
                    elif is_transcript(entry.name) and entry.is_file(follow_symlinks=True):
                        if link:
                            est = entry.stat(follow_symlinks=True)
                            ident = (est.st_dev, est.st_ino)
                            real = os.path.realpath(entry.path)
                        else:
                            ident = (st.st_dev, entry.inode())
                            real = os.path.join(real_dir, entry.name)
                        if ident not in seen_files:
                            seen_files.add(ident)
                            found.append((root, real))
                except OSError:
                    continue
    found.sort(key=lambda rp: rp[1])
    return found


def _project_fallback(root: Path, path: str) -> str:
    """The project directory name, used only when a line has no `cwd` (the name is lossy, FORMAT-NOTES 1.2)."""
    try:
        rel = Path(path).relative_to(root / "projects")
        return rel.parts[0] if len(rel.parts) > 1 else ""
    except ValueError:
        return ""


@dataclass(slots=True)
class _Pending:
    """One batch of one file, read but not yet committed."""

    path: str
    root: str
    reset: bool                      # first batch after a decision to re-read from 0
    start: int                       # offset this batch starts at (must still be the stored one)
    end: int
    read_to: int
    head: str
    tail: str
    last_line: int
    skipped: int
    st: os.stat_result
    records: dict[str, UsageRecord]


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
        known = self.store.file_states(self.host)
        work: list[tuple[Path, str, FileState | None, Change, os.stat_result]] = []
        found_again: list[FileState] = []
        total = 0
        for root, path in files:
            state = known.pop(path, None)
            change, st = classify(path, _snapshot(state))
            if change is Change.UNCHANGED and state is not None and state.missing:
                found_again.append(state)        # back exactly as it was (its dir moved out and back)
            if change in (Change.UNCHANGED, Change.GONE) or st is None:
                continue
            start = 0 if change in (Change.NEW, Change.RESET) or state is None else state.offset
            total += max(0, st.st_size - start)
            work.append((root, path, state, change, st))
        gone = [s for s in known.values() if not s.missing]   # tracked but no longer under any root
        if found_again or gone:
            with self.store.write():
                self.store.set_missing([s.id for s in found_again], False)
                self.store.set_missing([s.id for s in gone], True)
            for s in gone:
                log.info("%s is gone; its %d request(s) stay in the ledger", s.path, s.requests_seen)
            summary.files_missing += len(gone)
        done = 0
        for root, path, state, change, st in work:
            if self.cancelled:
                break
            done_before = summary.bytes_read
            self._read(root, path, state, change, st, summary,
                       (lambda n: progress(done + n, total)) if progress else None)
            done += summary.bytes_read - done_before
        self._flush(summary)
        summary.seconds = time.monotonic() - started
        if progress:
            progress(total, total)
        return summary

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
        change, st = classify(real, _snapshot(state))
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
                one = self.ingest_path(path)
                total.files_read += one.files_read
                total.new_requests += one.new_requests
                total.updated_requests += one.updated_requests
                total.skipped_lines += one.skipped_lines
                total.bytes_read += one.bytes_read
        return total

    # ---- reading one file into pending batches
    def _read(self, root: Path, path: str, state: FileState | None, change: Change, st: os.stat_result,
              summary: IngestSummary, progress: Callable[[int], None] | None) -> None:
        reset = change is Change.RESET
        if reset:
            summary.files_reset += 1
            log.info("re-reading %s from the start (truncated, rewritten or replaced)", path)
        start = 0 if (reset or state is None) else state.offset
        line_no = 1 if (reset or state is None) else state.lines + 1
        fallback_project = _project_fallback(root, path)
        last_ts = int(st.st_mtime_ns // 1_000_000)
        last_prompt: int | None = None
        bad_first: int | None = None
        bad_count = 0
        summary.files_read += 1
        try:
            f = open(path, "rb")
        except OSError as exc:
            summary.errors.append(f"{path}: {exc}")
            log.warning("cannot open %s: %s", path, exc)
            return
        with f:
            first = True
            for batch in read_lines(f, start, line_no, batch_bytes=self.batch_bytes):
                records: dict[str, UsageRecord] = {}
                skipped = batch.oversized
                for i, raw in enumerate(batch.lines):
                    parsed = parse_line(raw)
                    if parsed.kind is LineKind.MALFORMED:
                        skipped += 1
                        if bad_first is None:
                            bad_first = batch.first_line_no + i
                        continue
                    record = parsed.record
                    if record is None:
                        if parsed.kind is LineKind.OTHER:
                            stamp = user_line_stamp(raw)
                            if stamp is not None:
                                last_prompt = stamp[1]
                                self._prompts[stamp[0]] = stamp[1]
                                if len(self._prompts) > _PROMPT_MEMORY:
                                    self._prompts.popitem(last=False)
                        continue
                    if record.ts_ms is None:
                        record.ts_ms = last_ts
                    else:
                        last_ts = record.ts_ms
                    if record.parent_uuid:
                        asked = self._prompts.get(record.parent_uuid)
                    else:       # no parent link (some writers): the last prompt line before it in this file
                        asked = None if record.embedded else last_prompt
                    if asked is not None and record.ts_ms >= asked:
                        record.latency_ms = record.ts_ms - asked
                    if not record.project:
                        record.project = fallback_project
                    record.source = path
                    _merge_into(records, record)
                bad_count += skipped
                head, tail = fingerprints(f, batch.end)
                self._add(_Pending(path, str(root), reset and first, start, batch.end, batch.read_to, head, tail,
                                   batch.first_line_no + len(batch.lines) - 1, skipped, st, records),
                          batch.end - start, summary)
                first = False
                start = batch.end
                if progress:
                    progress(summary.bytes_read)
                if self.cancelled:
                    break
            if first:
                # nothing complete to read (only a partial line arrived): remember size/mtime so the
                # file is not re-examined until it changes again
                head, tail = fingerprints(f, start)
                self._add(_Pending(path, str(root), reset, start, start, st.st_size, head, tail, line_no - 1,
                                   0, st, {}), 0, summary)
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
                if p.reset:
                    state.resets += 1 if state.id is not None else 0
                    state.skipped_lines = state.requests_seen = 0
                state.root = p.root
                state.dev, state.inode = p.st.st_dev, p.st.st_ino
                state.size, state.offset, state.mtime_ns = p.read_to, p.end, p.st.st_mtime_ns
                state.head_hash, state.tail_hash = p.head, p.tail
                state.lines = p.last_line
                state.skipped_lines += p.skipped
                state.requests_seen += len(p.records)
                state.last_ingest_ms = now
                state.missing = False
                accepted.append(p)
            self.store.save_file_states(states.values())
            merged: dict[str, UsageRecord] = {}
            for p in accepted:
                for record in p.records.values():
                    _merge_into(merged, record)
            inserted, updated = self._apply(merged, {path: s.id for path, s in states.items()}, now)
        summary.new_requests += inserted
        summary.updated_requests += updated
        summary.skipped_lines += sum(p.skipped for p in accepted)

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
            latency = _min_known(old[_I_LAT], r.latency_ms)
            # a tie goes to the later line of the same file (as within a batch, so batch cuts and
            # crashes cannot change the result); across files the copy read first stays
            if r.copy_rank > old[_I_RANK] or (r.copy_rank == old[_I_RANK] and old[_I_FILE] == file_id):
                row = list(self._row(r, file_id, now))
                row[_COL["ingested_ms"]] = old[_COL["ingested_ms"]]
            elif r.ts_ms < old[_I_TS] or latency != old[_I_LAT]:
                row = list(old)
            else:
                continue
            row[_I_TS] = min(old[_I_TS], r.ts_ms)
            row[_I_LAT] = latency
            if tuple(row) != tuple(old):
                updates.append(tuple(row))
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


def _snapshot(state: FileState | None) -> Snapshot | None:
    if state is None:
        return None
    return Snapshot(dev=state.dev, inode=state.inode, size=state.size, offset=state.offset,
                    mtime_ns=state.mtime_ns, head_hash=state.head_hash, tail_hash=state.tail_hash)


def _utc(ms: int) -> datetime:
    """Request time for pricing (prices change over time)."""
    return datetime.fromtimestamp(ms / 1000, timezone.utc)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return str(os.getuid()) if hasattr(os, "getuid") else ""
