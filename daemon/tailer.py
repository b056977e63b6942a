"""Per-file reading state: what changed since the last read, and the complete lines after an offset.

Contract: `classify` compares a file on disk with its stored state and says whether to skip it, read on
from the stored offset, or re-read it from byte 0 (truncated, rewritten in place, replaced, inode reused).
`read_lines` yields batches of complete lines only: a last line without `\\n` is held back until it is
finished. Memory is bounded: a line longer than `max_line` is skipped without being held in memory.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from enum import Enum
from typing import BinaryIO, Iterator, Protocol

FINGERPRINT_BYTES = 4096
READ_CHUNK = 1 << 20               # 1 MiB reads
DEFAULT_BATCH_BYTES = 8 << 20      # commit about every 8 MiB of complete lines
DEFAULT_MAX_LINE = 64 << 20        # lines longer than this are skipped (counted), never buffered


class Change(Enum):
    UNCHANGED = "unchanged"
    APPENDED = "appended"          # read on from the stored offset
    RESET = "reset"                # read again from 0 (dedup keys make that safe)
    NEW = "new"
    GONE = "gone"


class Stored(Protocol):
    """What `classify` needs of a file's stored state (store.FileState has it; so has Snapshot)."""

    dev: int
    inode: int
    size: int
    offset: int
    mtime_ns: int
    head_hash: str
    tail_hash: str


@dataclass(slots=True)
class Snapshot:
    """The stored facts about a file that decide how to read it next time."""

    dev: int = 0
    inode: int = 0
    size: int = 0
    offset: int = 0
    mtime_ns: int = 0
    head_hash: str = ""
    tail_hash: str = ""


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=12).hexdigest()


def fingerprints(f: BinaryIO, offset: int) -> tuple[str, str]:
    """(head, tail) hashes: the first min(offset, 4 KiB) bytes and the 4 KiB just before `offset`."""
    if offset <= 0:
        return "", ""
    f.seek(0)
    head = f.read(min(offset, FINGERPRINT_BYTES))
    start = max(0, offset - FINGERPRINT_BYTES)
    if start == 0:
        tail = head if len(head) == offset else head[:offset]
    else:
        f.seek(start)
        tail = f.read(offset - start)
    return _digest(head), _digest(tail)


def classify(path: str, known: Stored | None) -> tuple[Change, os.stat_result | None]:
    """How to read `path` given what was stored about it (None: never seen)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return Change.GONE, None
    except OSError:
        return Change.GONE, None
    if known is None:
        return Change.NEW, st
    if st.st_ino != known.inode or st.st_dev != known.dev:
        return Change.RESET, st
    if st.st_size < known.offset:
        return Change.RESET, st
    if st.st_size == known.size and st.st_mtime_ns == known.mtime_ns:
        return Change.UNCHANGED, st
    try:
        with open(path, "rb") as f:
            head, tail = fingerprints(f, known.offset)
    except OSError:
        return Change.GONE, None
    if head != known.head_hash or tail != known.tail_hash:
        return Change.RESET, st
    return Change.APPENDED, st


@dataclass(slots=True)
class LineBatch:
    """Complete lines read from `start` to `end` (the byte after the last `\\n`)."""

    lines: list[bytes]
    first_line_no: int             # 1-based number of lines[0] in the file
    end: int
    oversized: int                 # lines skipped for length inside this span
    read_to: int                   # bytes read, including a held-back partial line


def read_lines(f: BinaryIO, offset: int, first_line_no: int = 1, batch_bytes: int = DEFAULT_BATCH_BYTES,
               max_line: int = DEFAULT_MAX_LINE) -> Iterator[LineBatch]:
    """Yield batches of complete lines from `offset` to the last `\\n` in the file.

    Each batch ends on a line boundary as soon as it holds `batch_bytes` (so at least one line, and
    at most one line past `batch_bytes`); callers commit `batch.end` as the new offset together with
    what they derived from `batch.lines`. A final line without a newline is not yielded. Between
    batches the caller may read or seek `f` (ingest hashes the bytes before `batch.end`): reading
    resumes from where this generator left off, not from the file position.
    """
    f.seek(offset)
    pos = offset                       # file position of pending[0]
    pending = b""
    lines: list[bytes] = []
    line_no = first_line_no
    batch_first = first_line_no
    batch_size = 0
    oversized = 0
    while True:
        f.seek(pos + len(pending))     # the caller may have used `f` while a batch was out (fingerprints)
        chunk = f.read(READ_CHUNK)
        if not chunk:
            break
        data = pending + chunk if pending else chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            if len(data) > max_line:
                skipped_to = _skip_line(f, pos + len(data))
                if skipped_to is None:           # unterminated giant line at EOF: wait for more
                    break
                oversized += 1
                line_no += 1
                pos = skipped_to
                pending = b""
                f.seek(pos)
                if lines or oversized:
                    yield LineBatch(lines, batch_first, pos, oversized, pos)
                    lines, batch_size, oversized, batch_first = [], 0, 0, line_no
                continue
            pending = data
            continue
        complete, pending = data[:cut], data[cut + 1:]
        parts = complete.split(b"\n")
        if batch_size + cut + 1 < batch_bytes:     # the whole chunk fits in the current batch
            for part in parts:
                if len(part) > max_line:
                    oversized += 1
                    lines.append(b"")      # keeps line numbering; an empty line is harmless
                else:
                    lines.append(part)
            line_no += len(parts)
            pos += cut + 1
            batch_size += cut + 1
            continue
        last = len(parts) - 1
        for i, part in enumerate(parts):   # cut batches inside the chunk (batch_bytes below READ_CHUNK)
            if len(part) > max_line:
                oversized += 1
                lines.append(b"")
            else:
                lines.append(part)
            line_no += 1
            pos += len(part) + 1
            batch_size += len(part) + 1
            if batch_size >= batch_bytes:
                yield LineBatch(lines, batch_first, pos, oversized, pos + (len(pending) if i == last else 0))
                lines, batch_size, oversized, batch_first = [], 0, 0, line_no
    if lines or oversized:
        yield LineBatch(lines, batch_first, pos, oversized, pos + len(pending))


def _skip_line(f: BinaryIO, from_pos: int) -> int | None:
    """Position just after the next `\\n` at or after `from_pos`, reading without buffering; None at EOF."""
    f.seek(from_pos)
    pos = from_pos
    while True:
        chunk = f.read(READ_CHUNK)
        if not chunk:
            return None
        i = chunk.find(b"\n")
        if i >= 0:
            return pos + i + 1
        pos += len(chunk)
