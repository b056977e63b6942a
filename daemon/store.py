"""Opening the ledger and the few bulk writes ingest needs, behind Peewee's database abstraction.

`open_store(url)` returns a `Store` bound to SQLite (WAL, busy timeout, BEGIN IMMEDIATE writes, file mode
0600) or PostgreSQL, with migrations applied. Bulk row writes go straight to the DB-API cursor: building a
Peewee query per row would cost more than parsing the line it came from.
"""
from __future__ import annotations

import logging
import os
import time
from collections import namedtuple
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence
from urllib.parse import unquote, urlparse

from peewee import Database, OperationalError, PostgresqlDatabase, SqliteDatabase, chunked

from . import migrations
from .models import Meta_, database_proxy

log = logging.getLogger(__name__)

REQUEST_COLUMNS: tuple[str, ...] = (
    "key", "message_id", "request_id", "session_id", "agent_id", "is_sidechain", "embedded", "project",
    "git_branch", "model", "ts_ms", "version", "input_tokens", "output_tokens", "cache_write_5m",
    "cache_write_1h", "cache_read", "web_search", "web_fetch", "speed", "service_tier", "cost_usd",
    "logged_cost_usd", "priced", "copy_rank", "file_id", "host", "os_user", "ingested_ms",
    "latency_ms",
)
"""Column order of the row tuples `insert_requests`, `update_requests` and `requests_by_key` exchange."""

FILE_COLUMNS: tuple[str, ...] = (
    "id", "host", "path", "root", "dev", "inode", "size", "offset", "mtime_ns", "head_hash", "tail_hash",
    "lines", "skipped_lines", "requests_seen", "resets", "first_seen_ms", "last_ingest_ms", "missing",
)


@dataclass(slots=True)
class FileState:
    """A row of `files` (see models.SourceFile for what each field means)."""

    id: int | None
    host: str
    path: str
    root: str
    dev: int = 0
    inode: int = 0
    size: int = 0
    offset: int = 0
    mtime_ns: int = 0
    head_hash: str = ""
    tail_hash: str = ""
    lines: int = 0
    skipped_lines: int = 0
    requests_seen: int = 0
    resets: int = 0
    first_seen_ms: int = 0
    last_ingest_ms: int = 0
    missing: bool = False

    def values(self) -> tuple:
        return tuple(getattr(self, c) for c in FILE_COLUMNS)


FileRow = namedtuple("FileRow", FILE_COLUMNS)
"""A stored file state as a plain tuple (same fields as FileState; `missing` may be 0/1)."""

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "busy_timeout": 30_000,
    "synchronous": "normal",
    "cache_size": -32_000,      # 32 MB page cache
    "temp_store": "memory",
}

_LOOKUP_CHUNK = 500
_OPEN_RETRIES = 10


class StoreError(Exception):
    """The database could not be opened or is not a cctally ledger."""


def _sqlite_path(url: str) -> str:
    parsed = urlparse(url)
    path = unquote(parsed.path)
    if parsed.netloc and parsed.netloc not in ("", "localhost"):
        path = "//" + parsed.netloc + path
    return path


def _ensure_private_file(path: Path) -> None:
    """Create the SQLite file (and its dir) readable by the owner only; tighten an existing file."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    if (path.stat().st_mode & 0o777) != 0o600:
        os.chmod(path, 0o600)


def connect(url: str) -> Database:
    """A Peewee database for `url` (sqlite:///path or postgresql://…), not yet connected."""
    scheme = url.split("://", 1)[0].lower()
    if scheme == "sqlite":
        path = _sqlite_path(url)
        if path != ":memory:":
            _ensure_private_file(Path(path))
        return SqliteDatabase(path, pragmas=SQLITE_PRAGMAS, lock_type="IMMEDIATE", check_same_thread=False)
    if scheme in ("postgres", "postgresql", "postgresql+psycopg2"):
        try:
            from playhouse.db_url import connect as url_connect
            import psycopg2  # noqa: F401
        except ImportError as exc:
            raise StoreError("PostgreSQL needs its driver: pip install 'cctally[postgres]'") from exc
        return url_connect(url.replace("postgresql+psycopg2://", "postgresql://"))
    raise StoreError(f"unsupported database URL {url!r}: use a file path, sqlite:///PATH or postgresql://…")


class Store:
    """An open ledger. One instance per process; bulk helpers must run inside `write()`."""

    def __init__(self, db: Database, url: str) -> None:
        self.db = db
        self.url = url
        self.is_sqlite = isinstance(db, SqliteDatabase)
        self.is_postgres = isinstance(db, PostgresqlDatabase)

    # ---- transactions
    @contextmanager
    def write(self) -> Iterator[None]:
        """One write transaction (BEGIN IMMEDIATE on SQLite): everything inside commits or nothing does."""
        with self.db.atomic():
            yield

    def close(self) -> None:
        """Close this thread's connection (others close with their threads)."""
        if not self.db.is_closed():
            self.db.close()

    # ---- requests
    def _ph(self, n: int) -> str:
        return ", ".join([self.db.param] * n)

    def requests_by_key(self, keys: Iterable[str]) -> dict[str, tuple]:
        """Existing rows (REQUEST_COLUMNS order) for these keys. On PostgreSQL the rows are locked until
        the transaction ends, so two hosts merging copies of one request cannot both win."""
        found: dict[str, tuple] = {}
        cols = ", ".join(REQUEST_COLUMNS)
        lock = " FOR UPDATE" if self.is_postgres else ""
        for chunk in chunked(sorted(keys), _LOOKUP_CHUNK):
            sql = f"SELECT {cols} FROM requests WHERE key IN ({self._ph(len(chunk))}){lock}"
            for row in self.db.execute_sql(sql, chunk):
                found[row[0]] = row
        return found

    def main_chain_request_ids(self, message_ids: Iterable[str]) -> dict[str, set[str | None]]:
        """For each message id: the request ids of its non-sidechain rows (for the `/btw` replay rule)."""
        out: dict[str, set[str | None]] = {}
        for chunk in chunked(list(message_ids), _LOOKUP_CHUNK):
            sql = (f"SELECT message_id, request_id FROM requests WHERE message_id IN ({self._ph(len(chunk))})"
                   f" AND is_sidechain = {self.db.param}")
            for mid, rid in self.db.execute_sql(sql, list(chunk) + [False]):
                out.setdefault(mid, set()).add(rid)
        return out

    def sidechain_rows_for_messages(self, message_ids: Iterable[str]) -> list[tuple]:
        """Sidechain rows (REQUEST_COLUMNS order) whose message id is one of these."""
        rows: list[tuple] = []
        cols = ", ".join(REQUEST_COLUMNS)
        for chunk in chunked(list(message_ids), _LOOKUP_CHUNK):
            sql = (f"SELECT {cols} FROM requests WHERE message_id IN ({self._ph(len(chunk))})"
                   f" AND is_sidechain = {self.db.param}")
            rows.extend(self.db.execute_sql(sql, list(chunk) + [True]))
        return rows

    def insert_requests(self, rows: Sequence[tuple]) -> None:
        """Insert new rows (REQUEST_COLUMNS order); the caller guarantees the keys are new."""
        if not rows:
            return
        cols = ", ".join(REQUEST_COLUMNS)
        cursor = self.db.cursor()
        if self.is_postgres:
            from psycopg2.extras import execute_values
            execute_values(cursor, f"INSERT INTO requests ({cols}) VALUES %s", rows, page_size=1000)
        else:
            cursor.executemany(f"INSERT INTO requests ({cols}) VALUES ({self._ph(len(REQUEST_COLUMNS))})", rows)

    def update_requests(self, rows: Sequence[tuple]) -> None:
        """Overwrite existing rows, matched by key, with these full rows (REQUEST_COLUMNS order)."""
        if not rows:
            return
        sets = ", ".join(f"{c} = {self.db.param}" for c in REQUEST_COLUMNS[1:])
        sql = f"UPDATE requests SET {sets} WHERE key = {self.db.param}"
        self.db.cursor().executemany(sql, [tuple(r[1:]) + (r[0],) for r in rows])

    def delete_requests(self, keys: Sequence[str]) -> None:
        for chunk in chunked(list(keys), _LOOKUP_CHUNK):
            self.db.execute_sql(f"DELETE FROM requests WHERE key IN ({self._ph(len(chunk))})", chunk)

    # ---- files
    def file_state(self, host: str, path: str) -> FileState | None:
        return self.file_states(host, [path]).get(path)

    def files(self, host: str) -> list[FileState]:
        return list(self.file_states(host).values())

    def file_states(self, host: str, paths: Sequence[str] | None = None) -> dict[str, FileState]:
        """Stored states of this host's files (all, or these paths), by path. Plain SQL: a catch-up loads
        every file's state, and Peewee model instances cost ~50x more to build."""
        cols = ", ".join(f'"{c}"' for c in FILE_COLUMNS)
        p = self.db.param
        if paths is None:
            rows = list(self.db.execute_sql(f"SELECT {cols} FROM files WHERE host = {p}", (host,)))
        else:
            rows = []
            for chunk in chunked(list(paths), _LOOKUP_CHUNK):
                rows.extend(self.db.execute_sql(
                    f"SELECT {cols} FROM files WHERE host = {p} AND path IN ({self._ph(len(chunk))})",
                    [host] + list(chunk)))
        return {row[2]: FileState(*row[:-1], missing=bool(row[-1])) for row in rows}

    def save_file_states(self, states: Iterable[FileState]) -> None:
        """Insert new states (id None; their ids are filled in) and overwrite existing ones."""
        p = self.db.param
        new = [s for s in states if s.id is None]
        old = [s for s in states if s.id is not None]
        if old:
            sets = ", ".join(f'"{c}" = {p}' for c in FILE_COLUMNS[1:])
            self.db.cursor().executemany(f"UPDATE files SET {sets} WHERE id = {p}",
                                         [s.values()[1:] + (s.id,) for s in old])
        if new:
            cols = ", ".join(f'"{c}"' for c in FILE_COLUMNS[1:])
            self.db.cursor().executemany(f"INSERT INTO files ({cols}) VALUES ({self._ph(len(FILE_COLUMNS) - 1)})",
                                         [s.values()[1:] for s in new])
            ids = self.file_states(new[0].host, [s.path for s in new])
            for s in new:
                s.id = ids[s.path].id

    def file_rows(self, host: str) -> dict[str, "FileRow"]:
        """Every stored file of this host as a light read-only row (a catch-up compares each with a stat)."""
        cols = ", ".join(f'"{c}"' for c in FILE_COLUMNS)
        rows = self.db.execute_sql(f"SELECT {cols} FROM files WHERE host = {self.db.param}", (host,))
        make = FileRow._make
        return {row[2]: make(row) for row in rows}

    def set_missing(self, file_ids: Sequence[int], missing: bool) -> None:
        for chunk in chunked(list(file_ids), _LOOKUP_CHUNK):
            self.db.execute_sql(f"UPDATE files SET missing = {self.db.param} WHERE id IN ({self._ph(len(chunk))})",
                                [missing] + list(chunk))

    # ---- meta
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = Meta_.get_or_none(Meta_.key == key)
        return row.value if row else default

    def set_meta(self, key: str, value: str) -> None:
        Meta_.insert(key=key, value=value).on_conflict(conflict_target=[Meta_.key],
                                                       update={Meta_.value: value}).execute()


_OPEN: dict[str, Store] = {}


def open_store(url: str, migrate: bool = True) -> Store:
    """Open (creating if needed) the ledger at `url`, bind the models to it and apply migrations.

    One Store per URL per process: the models are bound to one global proxy, so the daemon, its jobs and
    the web app must share the same Database object (its connections are per thread), or a model write
    could run on a connection outside the caller's transaction.
    """
    cached = _OPEN.get(url)
    if cached is not None and database_proxy.obj is cached.db:
        return cached
    db = connect(url)
    for attempt in range(_OPEN_RETRIES):
        try:
            db.connect(reuse_if_open=True)
            break
        except OperationalError as exc:
            # a brand-new SQLite file being switched to WAL by another process answers "locked" for a moment
            if "locked" not in str(exc) or attempt == _OPEN_RETRIES - 1:
                raise StoreError(f"cannot open database {url}: {exc}") from exc
            db.close()
            time.sleep(0.05 * (attempt + 1))
        except Exception as exc:  # driver-specific errors: say which database
            raise StoreError(f"cannot open database {url}: {exc}") from exc
    database_proxy.initialize(db)
    if migrate:
        migrations.run_migrations(db)
    store = _OPEN[url] = Store(db, url)
    return store


_M_RANK, _M_TS, _M_LAT, _M_ING = (REQUEST_COLUMNS.index(c) for c in ("copy_rank", "ts_ms", "latency_ms", "ingested_ms"))


def merge_request_rows(old: Sequence[Any], new: Sequence[Any], new_wins_tie: bool) -> tuple | None:
    """The stored row `old` after meeting another copy `new` of the same request (REQUEST_COLUMNS order):
    every field from the copy with the higher copy_rank (a tie: `new` when `new_wins_tie`), the earliest
    ts_ms, the smallest known latency and the first ingested_ms. None when that is `old` unchanged."""
    take_new = new[_M_RANK] > old[_M_RANK] or (new_wins_tie and new[_M_RANK] == old[_M_RANK])
    row = list(new if take_new else old)
    row[_M_TS] = min(old[_M_TS], new[_M_TS])
    known = [v for v in (old[_M_LAT], new[_M_LAT]) if v is not None]
    row[_M_LAT] = min(known) if known else None
    row[_M_ING] = old[_M_ING]
    merged = tuple(row)
    return None if merged == tuple(old) else merged
