"""The daemon's heartbeat file in the data dir: what `status` shows even while the database is down, and
how `report` knows a running `cctally run` already keeps the ledger current. Cheap to import."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from .config import data_dir

STALE_MS = 75_000
"""A daemon whose newest heartbeat is older than this is not running (it writes its file every ~5 s and the
database copy every 30 s)."""


def state_file() -> Path:
    """The daemon's heartbeat file in the data dir."""
    return data_dir() / "daemon.json"


def write_state_file(text: str) -> None:
    path = state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def live_daemon(url: str, roots: list[Path], fresh_ms: int = 15_000) -> dict[str, Any] | None:
    """The heartbeat of a `cctally run` on this machine that keeps `url` current for (at least) `roots`,
    if its heartbeat is fresh and its process alive; else None."""
    try:
        info = json.loads(state_file().read_text())
    except (OSError, ValueError):
        return None
    if info.get("stopped") or info.get("db") != url or info.get("last_error"):
        return None
    if time.time() * 1000 - (info.get("heartbeat_ms") or 0) > fresh_ms:
        return None
    if not set(map(str, roots)) <= set(info.get("roots") or ()):
        return None
    try:
        os.kill(int(info["pid"]), 0)
    except (OSError, KeyError, ValueError):
        return None
    return info
