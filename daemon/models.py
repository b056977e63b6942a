"""The ledger's tables at the head of the migration list (see `migrations` for how they got there).

`Request` is one row per API request (the key of FORMAT-NOTES 5.4); `SourceFile` is one row per transcript
file per host, with the offset of the last complete line read and the fingerprints that detect rewrites.
Models bind to `database_proxy`, which `store.open_store` initialises with SQLite or PostgreSQL.
"""
from __future__ import annotations

from peewee import (AutoField, BigIntegerField, BooleanField, DatabaseProxy, DoubleField, IntegerField,
                    Model, TextField)

database_proxy = DatabaseProxy()


class BaseModel(Model):
    class Meta:
        database = database_proxy
        legacy_table_names = False


class SourceFile(BaseModel):
    """A transcript file as last read on one host. Rows outlive the file: requests keep pointing here."""

    id = AutoField()
    host = TextField()
    path = TextField()                    # canonical (realpath)
    root = TextField()                    # the Claude config dir it was found under
    dev = BigIntegerField(default=0)
    inode = BigIntegerField(default=0)
    size = BigIntegerField(default=0)     # bytes read up to (offset + a held-back partial line)
    offset = BigIntegerField(default=0)   # end of the last complete line consumed
    mtime_ns = BigIntegerField(default=0)
    head_hash = TextField(default="")     # hash of bytes [0, min(offset, FINGERPRINT_BYTES))
    tail_hash = TextField(default="")     # hash of bytes [max(0, offset - FINGERPRINT_BYTES), offset)
    lines = BigIntegerField(default=0)    # complete lines consumed since the last full re-read
    skipped_lines = IntegerField(default=0)
    requests_seen = IntegerField(default=0)
    resets = IntegerField(default=0)      # full re-reads after truncation, rewrite or replacement
    first_seen_ms = BigIntegerField(default=0)
    last_ingest_ms = BigIntegerField(default=0)
    missing = BooleanField(default=False)  # deleted from disk; its requests stay

    class Meta:
        table_name = "files"
        indexes = ((("host", "path"), True),)


class Request(BaseModel):
    """One API request, counted once whatever file or copy it came from. No prompt or response text."""

    id = AutoField()
    key = TextField(unique=True)
    message_id = TextField(null=True, index=True)
    request_id = TextField(null=True)
    session_id = TextField()                      # indexed with ts_ms (m002)
    agent_id = TextField(null=True)
    is_sidechain = BooleanField(default=False)
    embedded = BooleanField(default=False)
    project = TextField()
    git_branch = TextField(null=True)
    model = TextField()
    ts_ms = BigIntegerField(index=True)   # earliest sighting, UTC epoch ms
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
    cost_usd = DoubleField(default=0.0)           # priced from tokens (genai-prices)
    logged_cost_usd = DoubleField(null=True)      # legacy `costUSD` from the line (Claude Code <= 1.0.8)
    priced = BooleanField(default=True)           # False: unknown model, cost_usd is 0
    copy_rank = BigIntegerField(default=0)
    file_id = IntegerField(null=True)
    host = TextField(default="")
    os_user = TextField(default="")
    ingested_ms = BigIntegerField(default=0)
    latency_ms = IntegerField(null=True)          # prompt/tool-result line -> first response line

    class Meta:
        table_name = "requests"


class Meta_(BaseModel):
    """Small key/value facts: last ingest summary, price snapshot version, daemon heartbeat."""

    key = TextField(primary_key=True)
    value = TextField()

    class Meta:
        table_name = "meta"


class ProcessSample(BaseModel):
    """One observation of one running Claude Code process (raw; kept for days)."""

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


class ProcessMinute(BaseModel):
    """Per-minute rollup of one process's samples (kept for a year)."""

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


ALL_MODELS = (SourceFile, Request, Meta_, ProcessSample, ProcessMinute)
