"""`cctally migrate-db`: copy a ledger into another database (typically a local SQLite file into the team
PostgreSQL). Idempotent: requests merge by key with the same rule as ingest (the higher copy_rank
supplies the fields, the earliest timestamp is kept), file states upsert per (host, path), process
rollups per (host, minute, pid, start). Raw process samples are not copied (they expire in days).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterator

from peewee import Database

from . import migrations, rollups
from .store import REQUEST_COLUMNS, Store, connect, merge_request_rows

log = logging.getLogger(__name__)

BATCH = 2000
FILE_COLUMNS = ("host", "path", "root", "dev", "inode", "size", "offset", "mtime_ns", "head_hash", "tail_hash",
                "lines", "skipped_lines", "requests_seen", "resets", "first_seen_ms", "last_ingest_ms", "missing")
MINUTE_COLUMNS = ("host", "minute_ms", "pid", "started_ms", "name", "project", "session_id", "samples",
                  "cpu_avg", "cpu_max", "rss_avg", "rss_max")
_I_FILE = REQUEST_COLUMNS.index("file_id")


_BOOLEAN = {"is_sidechain", "embedded", "priced", "missing"}


def _typed(columns: tuple[str, ...], row: tuple) -> tuple:
    """Booleans as bool (SQLite hands back 0/1; PostgreSQL will not take an integer for a boolean)."""
    return tuple(bool(v) if c in _BOOLEAN and v is not None else v for c, v in zip(columns, row))


def _q(columns: tuple[str, ...]) -> list[str]:
    """Quoted column names (`offset` is a reserved word in PostgreSQL)."""
    return [f'"{c}"' for c in columns]


@dataclass
class CopyResult:
    requests_inserted: int = 0
    requests_updated: int = 0
    requests_unchanged: int = 0
    files: int = 0
    process_minutes: int = 0

    def __str__(self) -> str:
        return (f"copied ledger: {self.requests_inserted} requests inserted, {self.requests_updated} updated, "
                f"{self.requests_unchanged} already present; {self.files} file states; "
                f"{self.process_minutes} process minutes")


def _open(url: str) -> Database:
    db = connect(url)
    db.connect(reuse_if_open=True)
    migrations.run_migrations(db)
    return db


def _select(db: Database, table: str, columns: tuple[str, ...], order: str) -> Iterator[list[tuple]]:
    """Rows of `table` in batches, keyset-paginated on the integer column `order` where given."""
    cols = ", ".join(_q(columns))
    cursor = db.execute_sql(f"SELECT {cols} FROM {table} ORDER BY {order}")
    while True:
        rows = cursor.fetchmany(BATCH)
        if not rows:
            return
        yield [_typed(columns, r) for r in rows]


def copy_ledger(source_url: str, target_url: str) -> CopyResult:
    """Copy everything from `source_url` into `target_url` (both migrated to head first)."""
    if source_url == target_url:
        raise ValueError("source and target are the same database")
    src, dst = _open(source_url), _open(target_url)
    target = Store(dst, target_url)
    result = CopyResult()
    file_ids: dict[int, int] = {}
    p = dst.param
    with dst.atomic():
        for rows in _select(src, "files", ("id",) + FILE_COLUMNS, "id"):
            for row in rows:
                old_id, values = row[0], row[1:]
                sets = ", ".join(f"{c} = {p}" for c in _q(FILE_COLUMNS[2:]))
                cur = dst.execute_sql(f"UPDATE files SET {sets} WHERE host = {p} AND path = {p}",
                                      tuple(values[2:]) + (values[0], values[1]))
                if cur.rowcount == 0:
                    dst.execute_sql(f"INSERT INTO files ({', '.join(_q(FILE_COLUMNS))}) VALUES "
                                    f"({', '.join([p] * len(FILE_COLUMNS))})", values)
                new_id = dst.execute_sql(f"SELECT id FROM files WHERE host = {p} AND path = {p}",
                                         (values[0], values[1])).fetchone()[0]
                file_ids[old_id] = new_id
                result.files += 1
    for rows in _select(src, "requests", REQUEST_COLUMNS, "id"):
        with dst.atomic():
            existing = target.requests_by_key(r[0] for r in rows)
            inserts, updates, replaced = [], [], []
            for row in rows:
                row = list(row)
                if row[_I_FILE] is not None:
                    row[_I_FILE] = file_ids.get(row[_I_FILE])
                old = existing.get(row[0])
                if old is None:
                    inserts.append(tuple(row))
                    continue
                merged = merge_request_rows(old, row, new_wins_tie=False)
                if merged is not None:
                    updates.append(merged)
                    replaced.append(old)
                else:
                    result.requests_unchanged += 1
            target.insert_requests(inserts)
            target.update_requests(updates)
            rollups.apply(target, inserts + updates, replaced)
            result.requests_inserted += len(inserts)
            result.requests_updated += len(updates)
    for rows in _select(src, "process_minutes", MINUTE_COLUMNS, "minute_ms"):
        with dst.atomic():
            for values in rows:
                sets = ", ".join(f"{c} = {p}" for c in MINUTE_COLUMNS[4:])
                cur = dst.execute_sql(
                    f"UPDATE process_minutes SET {sets} WHERE host = {p} AND minute_ms = {p} AND pid = {p} "
                    f"AND started_ms = {p}", tuple(values[4:]) + tuple(values[:4]))
                if cur.rowcount == 0:
                    dst.execute_sql(f"INSERT INTO process_minutes ({', '.join(MINUTE_COLUMNS)}) VALUES "
                                    f"({', '.join([p] * len(MINUTE_COLUMNS))})", values)
                result.process_minutes += 1
    src.close()
    dst.close()
    return result
