"""A small builder of realistic Claude Code transcript lines, and helpers to ingest them for real.

Lines are dicts shaped like Claude Code 2.0.x-2.1.x writes them (FORMAT-NOTES.md sections 3-4) and are
serialised compactly, as Claude Code does (`"usage":{`). Nothing here fakes our own code: `ingest()` runs
the real `Ingester` on real files into a real SQLite file.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import uuid as uuidlib
from pathlib import Path
from typing import Any, Iterable, Sequence

from daemon import store as store_mod
from daemon.ingest import Ingester, IngestSummary
from daemon.store import REQUEST_COLUMNS, Store, open_store

HOST = "test-host"
"""The host id tests ingest as (set CCTALLY_HOST_ID to it when the CLI must see the same rows)."""
DEFAULT_MODEL = "claude-sonnet-4-5-20250929"
DEFAULT_CWD = "/home/dev/src/api-server"
_counter = itertools.count(1)


def new_uuid() -> str:
    return str(uuidlib.UUID(int=next(_counter) * 7919 + 1, version=4))


def msg_id(n: int | str) -> str:
    return f"msg_01TEST{n}"


def req_id(n: int | str) -> str:
    return f"req_011CTEST{n}"


def ts(day: int = 1, hour: int = 10, minute: int = 0, second: int = 0, ms: int = 0, month: int = 9) -> str:
    return f"2026-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.{ms:03d}Z"


def usage(input: int = 10, output: int = 100, cache_read: int = 0, cache_5m: int = 0, cache_1h: int = 0,
          cache_creation: int | None = None, breakdown: bool = True, **extra: Any) -> dict[str, Any]:
    """A `message.usage` object. `cache_creation` overrides `cache_creation_input_tokens` (default 5m+1h)."""
    u: dict[str, Any] = {
        "input_tokens": input,
        "cache_creation_input_tokens": cache_5m + cache_1h if cache_creation is None else cache_creation,
        "cache_read_input_tokens": cache_read,
        "output_tokens": output,
        "service_tier": "standard",
    }
    if breakdown:
        u["cache_creation"] = {"ephemeral_5m_input_tokens": cache_5m, "ephemeral_1h_input_tokens": cache_1h}
    u.update(extra)
    return u


def assistant(mid: str | None, rid: str | None = None, *, session: str = "sess-1",
              model: str = DEFAULT_MODEL, at: str | None = None, cwd: str | None = DEFAULT_CWD,
              sidechain: bool = False, agent: str | None = None, uid: str | None = None,
              parent: str | None = None, version: str = "2.1.39", text: str = "some answer text",
              stop_reason: str | None = "end_turn", u: dict[str, Any] | None = None,
              **top: Any) -> dict[str, Any]:
    """One assistant line (one streamed copy of a response). `u` is the usage (default: `usage()`)."""
    message: dict[str, Any] = {"type": "message", "role": "assistant", "model": model,
                               "content": [{"type": "text", "text": text}],
                               "stop_reason": stop_reason, "stop_sequence": None,
                               "usage": usage() if u is None else u}
    if mid is not None:
        message = {"id": mid, **message}
    line: dict[str, Any] = {"parentUuid": parent, "isSidechain": sidechain, "userType": "external"}
    if cwd is not None:
        line["cwd"] = cwd
    line.update({"sessionId": session, "version": version, "gitBranch": "main"})
    if agent:
        line["agentId"] = agent
    line.update({"type": "assistant", "uuid": uid or new_uuid(), "message": message})
    if at is not None:
        line["timestamp"] = at
    if rid is not None:
        line["requestId"] = rid
    line.update(top)
    return line


def user(text: str = "hello", *, session: str = "sess-1", at: str | None = None, cwd: str = DEFAULT_CWD,
         **top: Any) -> dict[str, Any]:
    line = {"parentUuid": None, "isSidechain": False, "userType": "external", "cwd": cwd, "sessionId": session,
            "version": "2.1.39", "gitBranch": "main", "type": "user",
            "message": {"role": "user", "content": text}, "uuid": new_uuid(), "timestamp": at or ts()}
    line.update(top)
    return line


def agent_progress(inner: dict[str, Any], *, session: str = "sess-1", at: str | None = None,
                   cwd: str = DEFAULT_CWD, agent: str = "a1b2c3d", data_type: str = "agent_progress") -> dict[str, Any]:
    """A parent-file `progress` line embedding a subagent's assistant line (2.1.2-2.1.96)."""
    return {"parentUuid": None, "isSidechain": False, "userType": "external", "cwd": cwd, "sessionId": session,
            "version": "2.1.39", "gitBranch": "main", "type": "progress", "uuid": new_uuid(),
            "timestamp": at or inner.get("timestamp") or ts(),
            "data": {"type": data_type, "agentId": agent, "message": inner}}


def summary_line() -> dict[str, Any]:
    return {"type": "summary", "summary": "Fixing the build", "leafUuid": new_uuid()}


def cost_state(total: float = 12.5) -> dict[str, Any]:
    """2.1.280 `cost-state`: cumulative per-process usage. Never a request."""
    return {"type": "cost-state", "totalCostUSD": total, "totalAPIDuration": 1000,
            "modelUsage": {DEFAULT_MODEL: {"inputTokens": 5000, "outputTokens": 7000, "cacheReadInputTokens": 9000,
                                           "cacheCreationInputTokens": 100, "costUSD": total}},
            "usage": {"input_tokens": 5000, "output_tokens": 7000}}


def result_line() -> dict[str, Any]:
    """`claude -p --output-format json` final event (not written by Claude Code to projects/)."""
    return {"type": "result", "subtype": "success", "session_id": "sess-1", "total_cost_usd": 3.0,
            "usage": {"input_tokens": 4000, "output_tokens": 6000, "cache_read_input_tokens": 100,
                      "cache_creation_input_tokens": 0}}


def task_result_user(session: str = "sess-1") -> dict[str, Any]:
    """A user line carrying the Task tool result with the subagent's aggregate usage (never counted)."""
    line = user("tool result", session=session)
    line["toolUseResult"] = {"status": "completed", "totalTokens": 50000, "totalDurationMs": 1000,
                             "usage": {"input_tokens": 3000, "output_tokens": 2000,
                                       "cache_read_input_tokens": 45000, "cache_creation_input_tokens": 0}}
    return line


def synthetic_error(session: str = "sess-1", at: str | None = None) -> dict[str, Any]:
    """A `<synthetic>` API-error line: uuid message id, zero usage, nulls."""
    return assistant(str(uuidlib.uuid4()), req_id("err"), session=session, model="<synthetic>", at=at or ts(),
                     text="API Error: 500", stop_reason="stop_sequence", isApiErrorMessage=True,
                     u={"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0, "service_tier": None, "inference_geo": None,
                        "iterations": None, "speed": None})


# ---- bytes and files

def dumps(line: dict[str, Any] | bytes) -> bytes:
    """Compact JSON, as Claude Code writes it; bytes pass through unchanged."""
    if isinstance(line, bytes):
        return line
    return json.dumps(line, separators=(",", ":"), ensure_ascii=False).encode()


def write(path: Path, lines: Iterable[dict[str, Any] | bytes], newline: bytes = b"\n",
          partial: bytes | None = None, mode: str = "wb") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, mode) as f:
        for line in lines:
            f.write(dumps(line) + newline)
        if partial is not None:
            f.write(partial)
    return path


def append(path: Path, lines: Iterable[dict[str, Any] | bytes], newline: bytes = b"\n") -> Path:
    return write(path, lines, newline, mode="ab")


def encode_dir(cwd: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "-", cwd)


def session_path(root: Path, session: str = "sess-1", cwd: str = DEFAULT_CWD) -> Path:
    return root / "projects" / encode_dir(cwd) / f"{session}.jsonl"


# ---- the real pipeline

def db_url(db: Path) -> str:
    return "sqlite:///" + str(db)


def fresh_store(db: Path) -> Store:
    """A new Store on `db`, as a restarted process would open it (drops open_store's per-process cache)."""
    url = db_url(db)
    cached = store_mod._OPEN.pop(url, None)
    if cached is not None:
        cached.close()
    return open_store(url)


def ingest(roots: Sequence[Path], db: Path, *, batch_bytes: int | None = None,
           store: Store | None = None) -> IngestSummary:
    """One real catch-up of `roots` into the SQLite file `db`."""
    st = store or open_store(db_url(db))
    kwargs = {} if batch_bytes is None else {"batch_bytes": batch_bytes}
    return Ingester(st, [Path(r) for r in roots], host=HOST, **kwargs).catch_up()


def rows(db: Path) -> dict[str, dict[str, Any]]:
    """Every stored request, by key, as a dict of REQUEST_COLUMNS."""
    st = open_store(db_url(db))
    cols = ", ".join(REQUEST_COLUMNS)
    return {r[0]: dict(zip(REQUEST_COLUMNS, r)) for r in st.db.execute_sql(f"SELECT {cols} FROM requests")}


def files(db: Path) -> dict[str, dict[str, Any]]:
    """The `files` table by path."""
    st = open_store(db_url(db))
    cur = st.db.execute_sql("SELECT path, offset, size, lines, skipped_lines, requests_seen, resets, missing, inode "
                            "FROM files")
    names = ("path", "offset", "size", "lines", "skipped_lines", "requests_seen", "resets", "missing", "inode")
    return {r[0]: dict(zip(names, r)) for r in cur}


def key(mid: str, rid: str | None = None, session: str = "sess-1") -> str:
    """The stored key of FORMAT-NOTES 5.4."""
    return f"m:{mid}|r:{rid}" if rid else f"s:{session}|m:{mid}"


TOKENS = ("input_tokens", "output_tokens", "cache_write_5m", "cache_write_1h", "cache_read")


def tokens(row: dict[str, Any]) -> tuple[int, ...]:
    return tuple(int(row[c]) for c in TOKENS)


def epoch_ms(iso: str) -> int:
    from datetime import datetime
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def set_mtime(path: Path, ns: int) -> None:
    os.utime(path, ns=(ns, ns))


def cli(*args: str) -> tuple[int, str, str]:
    """Run `cctally ARGS` in-process through the real entry point; (exit code, stdout, stderr)."""
    import contextlib
    import io
    from daemon.cli import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def report_json(kind: str, *extra: str) -> dict[str, Any]:
    """`cctally report KIND --json --tz UTC --no-ingest EXTRA…` as parsed JSON."""
    code, out, err = cli("report", kind, "--json", "--tz", "UTC", "--no-ingest", *extra)
    assert code == 0, err
    return json.loads(out)
