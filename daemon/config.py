"""Where things live: Claude roots, the data dir and the database URL.

One function decides each location, in this order: explicit argument, environment variable,
platform default. Nothing here touches the file system except to test whether a root exists.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

import platformdirs

APP_NAME = "cctally"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5176


class NoClaudeRootsError(Exception):
    """No directory holding Claude Code transcripts (`projects/`) was found."""


def data_dir() -> Path:
    """The directory for the database and state: `CCTALLY_HOME`, else the platform data dir."""
    home = os.environ.get("CCTALLY_HOME")
    if home:
        return Path(home).expanduser()
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def database_url(explicit: str | None = None) -> str:
    """The database to use: `--db`, else `CCTALLY_DB`, else `<data dir>/cctally.db`.

    Returns a URL (`sqlite:///abs/path` or `postgresql://…`). A bare path is turned into a SQLite URL.
    """
    value = explicit or os.environ.get("CCTALLY_DB") or str(data_dir() / "cctally.db")
    if "://" in value:
        return value
    return "sqlite:///" + str(Path(value).expanduser().resolve())


def host_id(explicit: str | None = None) -> str:
    """The name this machine's rows carry: `--host-id`, else `CCTALLY_HOST_ID`, else the hostname."""
    return explicit or os.environ.get("CCTALLY_HOST_ID") or socket.gethostname() or "localhost"


def _as_root(entry: str) -> Path | None:
    """A config dir (or its `projects/` child) as the canonical config dir, or None if it holds no projects."""
    path = Path(entry.strip()).expanduser()
    if path.name == "projects" and path.is_dir():
        path = path.parent
    if (path / "projects").is_dir():
        return path.resolve()
    return None


def candidate_roots(explicit: list[str] | None = None) -> list[str]:
    """The places looked at, in order, before checking which exist (for messages)."""
    if explicit:
        return list(explicit)
    env = os.environ.get("CLAUDE_CONFIG_DIR")
    if env is not None and env.strip():
        return [e for e in (p.strip() for p in env.split(",")) if e]
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return [str(Path(xdg) / "claude"), str(Path.home() / ".claude")]


def claude_roots(explicit: list[str] | None = None) -> list[Path]:
    """Claude config dirs to read, canonical and de-duplicated, each containing `projects/`.

    `explicit` (from `--claude-dir`) wins; else `CLAUDE_CONFIG_DIR` (comma-separated, no fallback when
    set); else `~/.config/claude` and `~/.claude`. Raises NoClaudeRootsError naming what was looked for.
    """
    looked = candidate_roots(explicit)
    roots: list[Path] = []
    for entry in looked:
        root = _as_root(entry)
        if root is not None and root not in roots:
            roots.append(root)
    if not roots:
        where = ", ".join(f"{p}/projects" for p in looked)
        raise NoClaudeRootsError(
            f"no Claude transcripts found (looked in {where}); "
            "set CLAUDE_CONFIG_DIR or pass --claude-dir DIR")
    return roots
