"""A large, realistic ledger for the API section: a gen_corpus corpus ingested once, its requests replicated.

    python bench/api_store.py SOURCE_DB OUT_DB --requests 1000000 --anchor-ms MS     (PYTHONPATH = the repo)

`ensure_store()` (called by the bench) ingests the base corpus with the measured checkout's `cctally
ingest`, then runs this file as a script under that checkout (so the schema, `Store.insert_requests` and
`rollups.rebuild` are the measured code's) and caches the result under `bench/.cache/api-stores/`.

How the ledger is made from the ~15k requests of the 100 MB corpus (realistic clustering into sessions,
projects and models, response latencies, subagents):
- `round(N / source rows)` copies of every request row. Copy k gets `#c<k>` appended to its key, message
  id, request id and agent id, and `-c<k>` to its session id (so sessions stay sessions, just more of
  them), and its timestamps shifted back by k whole weeks (weekday and hour of day unchanged). With
  ~67 copies of a 45-day corpus the history spans ~16 months; about 6 copies overlap in any week, so a
  day has ~2,000 requests — a heavy user's year, not a synthetic uniform spread. Projects and models are
  the corpus's: a user keeps working on the same projects.
- The whole ledger is then moved by whole 15-minute buckets so that its newest request is less than 15
  minutes before `--anchor-ms` (the build time): "today", "this month" and the active 5-hour block of
  /api/usage/stats see real rows, as on a machine in use. A build is reused for `MAX_AGE_H` hours.
- The `files` rows are replicated the same way (a 1M-request ledger tracks ~70k transcript files; the
  stats and metrics endpoints read that table), each copy's requests pointing at its copy's files.
- Rows go in with `Store.insert_requests` in batches (oldest copy first, so ids grow with time like a
  ledger that grew over the months), then `rollups.rebuild(db)` fills usage_buckets / usage_totals /
  session_stats in one transaction, and the WAL is checkpointed so the single file is the whole store.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
BUCKET_MS = 15 * 60 * 1000
MAX_AGE_H = 6.0
BATCH = 20_000
CODE_FILES = ("daemon/migrations.py", "daemon/models.py", "daemon/store.py", "daemon/rollups.py")
"""The measured checkout's files whose content decides the schema and the rollups (part of the cache key)."""


# ---------------------------------------------------------------- the bench side (no cctally imports)
def cache_key(repo: Path, corpus_name: str, requests: int) -> str:
    h = hashlib.sha256()
    for rel in CODE_FILES:
        p = repo / rel
        h.update(rel.encode() + b"\0" + (p.read_bytes() if p.exists() else b"") + b"\0")
    h.update(Path(__file__).read_bytes())
    return f"req{requests}-{corpus_name}-code{h.hexdigest()[:10]}"


def ensure_store(cache: Path, repo: Path, corpus, requests: int, run_cctally_ingest: Callable[[Path, Path], None],
                 make_config_dir: Callable[[Path], Path], log=print, anchor_ms: int | None = None) -> tuple[Path, dict]:
    """The cached built store (path of its cctally.db) and its build facts, building it on first use.

    The key holds the target size, the base corpus and a hash of the checkout's schema/rollup code and of
    this file; a build older than MAX_AGE_H hours is redone (its newest request would be that old). Older
    builds are removed (each is several hundred MB)."""
    anchor_ms = anchor_ms if anchor_ms is not None else int(time.time() * 1000)
    root = cache / "api-stores"
    key = cache_key(repo, corpus.path.name, requests)
    final = root / key
    db = final / "cctally.db"
    info_path = final / "build.json"
    if info_path.exists() and db.exists():
        info = json.loads(info_path.read_text())
        if anchor_ms - info["anchor_ms"] < MAX_AGE_H * 3_600_000:
            return db, info
    root.mkdir(parents=True, exist_ok=True)
    for old in root.iterdir():             # one build kept: they are large
        if old.name != key:
            shutil.rmtree(old, ignore_errors=True)
    tmp = root / (key + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        log(f"  building a {requests:,}-request store from {corpus.path.name} (cached as {key}) ...")
        started = time.monotonic()
        config_dir = make_config_dir(tmp / "claude")
        base = tmp / "base"
        base.mkdir()
        run_cctally_ingest(config_dir, base)
        ingest_s = time.monotonic() - started
        shutil.rmtree(tmp / "claude", ignore_errors=True)
        out = tmp / "out"
        out.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAUDE_", "CCTALLY_"))}
        env.update(PYTHONPATH=str(repo), CCTALLY_HOME=str(out), CCTALLY_DB=str(out / "cctally.db"), TZ="UTC",
                   HOME=str(tmp))
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), str(base / "cctally.db"),
                               str(out / "cctally.db"), "--requests", str(requests), "--anchor-ms", str(anchor_ms)],
                              cwd=str(repo), env=env, stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"api_store build failed (exit {proc.returncode})")
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        info.update(base_ingest_s=round(ingest_s, 2), built_total_s=round(time.monotonic() - started, 1),
                    key=key, corpus=corpus.path.name)
        shutil.rmtree(base, ignore_errors=True)
        (out / "build.json").write_text(json.dumps(info, indent=1))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(out, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"  built in {info['built_total_s']:.0f} s: {info['requests']:,} requests, {info['sessions']:,} sessions, "
        f"{info['db_mb']:.0f} MB")
    return db, info


# ---------------------------------------------------------------- the build (runs under the measured checkout)
def build(source: Path, out: Path, target: int, anchor_ms: int) -> dict:
    from daemon import rollups
    from daemon.store import FILE_COLUMNS, REQUEST_COLUMNS, open_store

    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    rows = src.execute(f"SELECT {', '.join(REQUEST_COLUMNS)} FROM requests ORDER BY ts_ms").fetchall()
    files = src.execute(f"SELECT {', '.join(chr(34) + c + chr(34) for c in FILE_COLUMNS)} FROM files").fetchall()
    meta = src.execute("SELECT key, value FROM meta WHERE key = 'last_ingest'").fetchall()
    src.close()
    if not rows:
        raise SystemExit("the source store has no requests")
    copies = max(1, round(target / len(rows)))
    c = {name: i for i, name in enumerate(REQUEST_COLUMNS)}
    i_key, i_mid, i_rid, i_sid, i_agent, i_ts, i_file = (c[n] for n in ("key", "message_id", "request_id", "session_id",
                                                                       "agent_id", "ts_ms", "file_id"))
    last = rows[-1][i_ts]
    base_shift = (anchor_ms - last) // BUCKET_MS * BUCKET_MS   # newest request: < 15 min before the anchor
    stride = max((f[0] for f in files), default=0) + 1
    fc = {name: i for i, name in enumerate(FILE_COLUMNS)}

    t0 = time.monotonic()
    store = open_store(f"sqlite:///{out}")
    db = store.db
    cols = ", ".join(f'"{x}"' for x in FILE_COLUMNS)
    file_sql = f"INSERT INTO files ({cols}) VALUES ({', '.join(['?'] * len(FILE_COLUMNS))})"
    inserted = 0
    pending: list[tuple] = []
    for k in range(copies - 1, -1, -1):                  # oldest copy first: ids grow with time
        shift = base_shift - k * WEEK_MS
        tag = f"#c{k}" if k else ""
        stag = f"-c{k}" if k else ""
        with store.write():
            fcopies = []
            for f in files:
                f = list(f)
                f[fc["id"]] += k * stride
                if k:
                    p = f[fc["path"]]
                    f[fc["path"]] = (p[:-6] + f"-c{k}.jsonl") if p.endswith(".jsonl") else p + f"-c{k}"
                fcopies.append(tuple(f))
            db.cursor().executemany(file_sql, fcopies)
            for r in rows:
                r = list(r)
                r[i_key] += tag
                if r[i_mid] is not None:
                    r[i_mid] += tag
                if r[i_rid] is not None:
                    r[i_rid] += tag
                if r[i_agent] is not None:
                    r[i_agent] += tag
                r[i_sid] += stag
                r[i_ts] += shift
                if r[i_file] is not None:
                    r[i_file] += k * stride
                pending.append(tuple(r))
                if len(pending) >= BATCH:
                    store.insert_requests(pending)
                    inserted += len(pending)
                    pending = []
            store.insert_requests(pending)
            inserted += len(pending)
            pending = []
    insert_s = time.monotonic() - t0
    t1 = time.monotonic()
    with store.write():
        rollups.rebuild(db)
        for key, value in meta:
            store.set_meta(key, value)
    rebuild_s = time.monotonic() - t1
    db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    q = lambda sql: db.execute_sql(sql).fetchone()[0]   # noqa: E731
    info = {"source_requests": len(rows), "copies": copies, "requests": q("SELECT COUNT(*) FROM requests"),
            "sessions": q("SELECT COUNT(*) FROM session_stats"), "files": q("SELECT COUNT(*) FROM files"),
            "usage_buckets": q("SELECT COUNT(*) FROM usage_buckets"), "usage_totals": q("SELECT COUNT(*) FROM usage_totals"),
            "with_latency": q("SELECT COUNT(*) FROM requests WHERE latency_ms IS NOT NULL"),
            "first_ms": q("SELECT MIN(ts_ms) FROM requests"), "last_ms": q("SELECT MAX(ts_ms) FROM requests"),
            "anchor_ms": anchor_ms, "insert_s": round(insert_s, 1), "rebuild_s": round(rebuild_s, 1)}
    store.close()
    info["db_mb"] = round(out.stat().st_size / 1e6, 1)
    info["span_days"] = round((info["last_ms"] - info["first_ms"]) / DAY_MS, 1)
    return info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="replicate a ledger's requests into a large store (see the docstring)")
    p.add_argument("source", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--requests", type=int, default=1_000_000)
    p.add_argument("--anchor-ms", type=int, default=None, help="the newest request lands within the day before")
    a = p.parse_args(argv)
    info = build(a.source, a.out, a.requests, a.anchor_ms or int(time.time() * 1000))
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
