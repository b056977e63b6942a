"""Schema migrations: an ordered list of small named functions, each applied once in its own transaction
and recorded in the `_migrations` table (the llm/sqlite-utils pattern).

Rules: never edit a migration that has shipped; append a new one. A migration declares the tables it
creates with frozen model classes of its own, so it builds the same schema whatever `models.py` says later.
The same list runs on SQLite and PostgreSQL (playhouse.migrate picks the dialect).
"""
from __future__ import annotations

import logging
import time
from typing import Callable

from peewee import (AutoField, BigIntegerField, BooleanField, Database, DoubleField, Field, IntegerField,
                    Model, TextField)
from playhouse.migrate import PostgresqlMigrator, SchemaMigrator, SqliteMigrator, migrate

log = logging.getLogger(__name__)

Migration = Callable[[Database, SchemaMigrator], None]
MIGRATIONS: list[tuple[str, Migration]] = []


def migration(func: Migration) -> Migration:
    """Register `func` as the next migration, under its function name."""
    MIGRATIONS.append((func.__name__, func))
    return func


@migration
def m001_initial(db: Database, migrator: SchemaMigrator) -> None:
    class Frozen(Model):
        class Meta:
            database = db

    class SourceFile(Frozen):
        id = AutoField()
        host = TextField()
        path = TextField()
        root = TextField()
        dev = BigIntegerField(default=0)
        inode = BigIntegerField(default=0)
        size = BigIntegerField(default=0)
        offset = BigIntegerField(default=0)
        mtime_ns = BigIntegerField(default=0)
        head_hash = TextField(default="")
        tail_hash = TextField(default="")
        lines = BigIntegerField(default=0)
        skipped_lines = IntegerField(default=0)
        requests_seen = IntegerField(default=0)
        resets = IntegerField(default=0)
        first_seen_ms = BigIntegerField(default=0)
        last_ingest_ms = BigIntegerField(default=0)
        missing = BooleanField(default=False)

        class Meta:
            table_name = "files"
            indexes = ((("host", "path"), True),)

    class Request(Frozen):
        id = AutoField()
        key = TextField(unique=True)
        message_id = TextField(null=True, index=True)
        request_id = TextField(null=True)
        session_id = TextField(index=True)
        agent_id = TextField(null=True)
        is_sidechain = BooleanField(default=False)
        embedded = BooleanField(default=False)
        project = TextField(index=True)
        git_branch = TextField(null=True)
        model = TextField(index=True)
        ts_ms = BigIntegerField(index=True)
        version = TextField(null=True)
        input_tokens = BigIntegerField(default=0)
        output_tokens = BigIntegerField(default=0)
        cache_write_5m = BigIntegerField(default=0)
        cache_write_1h = BigIntegerField(default=0)
        cache_read = BigIntegerField(default=0)
        web_search = IntegerField(default=0)
        web_fetch = IntegerField(default=0)
        speed = TextField(null=True)
        service_tier = TextField(null=True)
        cost_usd = DoubleField(default=0.0)
        logged_cost_usd = DoubleField(null=True)
        priced = BooleanField(default=True)
        copy_rank = BigIntegerField(default=0)
        file_id = IntegerField(null=True)
        host = TextField(default="")
        os_user = TextField(default="")
        ingested_ms = BigIntegerField(default=0)

        class Meta:
            table_name = "requests"

    class Meta_(Frozen):
        key = TextField(primary_key=True)
        value = TextField()

        class Meta:
            table_name = "meta"

    db.create_tables([SourceFile, Request, Meta_])


@migration
def m002_report_indexes(db: Database, migrator: SchemaMigrator) -> None:
    """Reports filter by time and group by session/model: cover the common scans."""
    migrate(
        migrator.add_index("requests", ("session_id", "ts_ms"), False),
        migrator.add_index("requests", ("file_id",), False),
    )


@migration
def m003_latency_and_processes(db: Database, migrator: SchemaMigrator) -> None:
    """Per-request response latency; process samples (raw, kept days) and per-minute rollups (kept a year)."""
    migrate(migrator.add_column("requests", "latency_ms", IntegerField(null=True)))

    class Frozen(Model):
        class Meta:
            database = db

    class ProcessSample(Frozen):
        id = AutoField()
        host = TextField()
        ts_ms = BigIntegerField(index=True)
        pid = IntegerField()
        started_ms = BigIntegerField()
        name = TextField()
        cwd = TextField(null=True)
        project = TextField(null=True)
        session_id = TextField(null=True)
        cpu_percent = DoubleField(default=0.0)
        rss_bytes = BigIntegerField(default=0)
        threads = IntegerField(default=0)
        children = IntegerField(default=0)

        class Meta:
            table_name = "process_samples"
            indexes = ((("host", "pid", "started_ms", "ts_ms"), False),)

    class ProcessMinute(Frozen):
        host = TextField()
        minute_ms = BigIntegerField()
        pid = IntegerField()
        started_ms = BigIntegerField()
        name = TextField()
        project = TextField(null=True)
        session_id = TextField(null=True)
        samples = IntegerField(default=0)
        cpu_avg = DoubleField(default=0.0)
        cpu_max = DoubleField(default=0.0)
        rss_avg = DoubleField(default=0.0)
        rss_max = BigIntegerField(default=0)

        class Meta:
            table_name = "process_minutes"
            primary_key = False
            indexes = ((("host", "minute_ms", "pid", "started_ms"), True),)

    db.create_tables([ProcessSample, ProcessMinute])


def _rollup_sum_fields() -> list[tuple[str, Field]]:
    """The sum columns every rollup table carries (fresh Field objects on each call). Frozen: a later
    change to the rollups adds a migration, it never edits this list."""
    return [("requests", BigIntegerField(default=0)), ("input_tokens", BigIntegerField(default=0)),
            ("output_tokens", BigIntegerField(default=0)), ("cache_write_5m", BigIntegerField(default=0)),
            ("cache_write_1h", BigIntegerField(default=0)), ("cache_read", BigIntegerField(default=0)),
            ("cost_calc", DoubleField(default=0.0)), ("cost_auto", DoubleField(default=0.0)),
            ("cost_display", DoubleField(default=0.0)), ("unpriced", BigIntegerField(default=0))]


@migration
def m004_rollups(db: Database, migrator: SchemaMigrator) -> None:
    """Rollups for fast reports (see daemon/rollups.py), backfilled from the requests already stored."""

    class Frozen(Model):
        class Meta:
            database = db

    RollupSums = type("RollupSums", (Frozen,), {"__module__": __name__, **dict(_rollup_sum_fields())})

    class UsageBucket(RollupSums):
        bucket_ms = BigIntegerField()
        host = TextField()
        project = TextField()
        model = TextField()

        class Meta:
            table_name = "usage_buckets"
            primary_key = False
            indexes = ((("bucket_ms", "host", "project", "model"), True),)

    class UsageTotal(RollupSums):
        host = TextField()
        project = TextField()
        model = TextField()

        class Meta:
            table_name = "usage_totals"
            primary_key = False
            indexes = ((("host", "project", "model"), True),)

    class SessionStat(Frozen):
        session_id = TextField(primary_key=True)
        requests = BigIntegerField(default=0)
        first_ms = BigIntegerField()
        last_ms = BigIntegerField(index=True)

        class Meta:
            table_name = "session_stats"

    db.create_tables([UsageBucket, UsageTotal, SessionStat])


m004_rollups.rebuilds_rollups = True  # type: ignore[attr-defined]


@migration
def m005_drop_redundant_indexes(db: Database, migrator: SchemaMigrator) -> None:
    """Reports read the rollups now; these request indexes only slowed every insert. `session_id` alone is
    covered by (session_id, ts_ms)."""
    for name in ("request_session_id", "request_project", "request_model", "requests_file_id"):
        db.execute_sql(f"DROP INDEX IF EXISTS {name}")


@migration
def m006_session_sums(db: Database, migrator: SchemaMigrator) -> None:
    """Token and cost sums per session, so the sessions list is a read of one small table."""
    migrate(*[migrator.add_column("session_stats", name, field) for name, field in _rollup_sum_fields()
              if name != "requests"])


m006_session_sums.rebuilds_rollups = True  # type: ignore[attr-defined]


@migration
def m007_stats_indexes_and_latency_counts(db: Database, migrator: SchemaMigrator) -> None:
    """A partial index for the skipped-lines total (most files have none), and latency counts per model
    (percentiles from cumulative counts instead of sorting every request)."""
    db.execute_sql("CREATE INDEX IF NOT EXISTS files_skipped ON files (host, skipped_lines) WHERE skipped_lines > 0")

    class Frozen(Model):
        class Meta:
            database = db

    class LatencyCount(Frozen):
        model = TextField()
        latency_ms = BigIntegerField()
        n = BigIntegerField(default=0)

        class Meta:
            table_name = "latency_counts"
            primary_key = False
            indexes = ((("model", "latency_ms"), True),)

    db.create_tables([LatencyCount])


m007_stats_indexes_and_latency_counts.rebuilds_rollups = True  # type: ignore[attr-defined]


def _migrator(db: Database) -> SchemaMigrator:
    from peewee import PostgresqlDatabase
    if isinstance(db, PostgresqlDatabase):
        return PostgresqlMigrator(db)
    return SqliteMigrator(db)


def applied(db: Database) -> list[str]:
    """Names of the migrations already applied, in order of application."""
    if "_migrations" not in db.get_tables():
        return []
    return [row[0] for row in db.execute_sql("SELECT name FROM _migrations ORDER BY applied_ms, name")]


def run_migrations(db: Database, upto: str | None = None) -> list[str]:
    """Apply every migration not yet recorded, in list order (stop after `upto` if given).

    Returns the names applied now. Each runs in one transaction with its `_migrations` row, so a crash
    leaves the schema at a migration boundary.
    """
    from peewee import PostgresqlDatabase
    if isinstance(db, PostgresqlDatabase):     # several daemons may start at once against one team DB
        with db.atomic():
            db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK_ID,))
            return _run(db, upto)
    return _run(db, upto)


_PG_LOCK_ID = 0x6363_7461_6C6C_79   # "cctally"


def _run(db: Database, upto: str | None) -> list[str]:
    db.execute_sql("CREATE TABLE IF NOT EXISTS _migrations (name VARCHAR(255) PRIMARY KEY, applied_ms BIGINT NOT NULL)")
    done = set(applied(db))
    migrator = _migrator(db)
    ran: list[str] = []
    for name, func in MIGRATIONS:
        if name not in done:
            with _write(db):
                # another process (the daemon and a CLI started together, or after an upgrade) may have
                # applied it since `done` was read; inside the write lock the answer is final
                if name not in applied(db):
                    func(db, migrator)
                    db.execute_sql(f"INSERT INTO _migrations (name, applied_ms) VALUES ({db.param}, {db.param})",
                                   (name, int(time.time() * 1000)))
                    if getattr(func, "rebuilds_rollups", False):
                        _mark_rollups_stale(db)
                    log.info("applied migration %s", name)
                    ran.append(name)
        if name == upto:
            return ran
    _rebuild_stale_rollups(db)
    return ran


_STALE = "rollups_stale"


def _mark_rollups_stale(db: Database) -> None:
    """Recorded in the migration's own transaction, so a crash before the rebuild cannot lose it."""
    db.execute_sql(f"DELETE FROM meta WHERE key = {db.param}", (_STALE,))
    db.execute_sql(f"INSERT INTO meta (key, value) VALUES ({db.param}, {db.param})", (_STALE, "1"))


def _rebuild_stale_rollups(db: Database) -> None:
    """Refill the rollups from `requests` once the schema is at head (rebuild() writes the head schema)."""
    if not db.execute_sql(f"SELECT 1 FROM meta WHERE key = {db.param}", (_STALE,)).fetchone():
        return
    from .rollups import rebuild
    with _write(db):
        if db.execute_sql(f"SELECT 1 FROM meta WHERE key = {db.param}", (_STALE,)).fetchone():
            rebuild(db)
            db.execute_sql(f"DELETE FROM meta WHERE key = {db.param}", (_STALE,))
            log.info("rebuilt the report rollups from the stored requests")


def _write(db: Database):
    """A write transaction; on SQLite BEGIN IMMEDIATE, so the check-then-apply above cannot interleave."""
    from peewee import SqliteDatabase
    return db.atomic(lock_type="IMMEDIATE") if isinstance(db, SqliteDatabase) else db.atomic()
