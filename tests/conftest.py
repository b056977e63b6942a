"""Shared fixtures. Every test runs with CLAUDE_CONFIG_DIR, CCTALLY_HOME and the database inside tmp_path."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

SHARED_BENCH = Path(__file__).resolve().parents[1].parent / "shared" / "bench"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Point every location cctally reads or writes into tmp_path; never the user's real dirs."""
    claude = tmp_path / "claude"
    (claude / "projects").mkdir(parents=True)
    home = tmp_path / "cctally-home"
    home.mkdir()
    db = home / "test.db"
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(claude))
    monkeypatch.setenv("CCTALLY_HOME", str(home))
    monkeypatch.setenv("CCTALLY_DB", str(db))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "home" / ".local" / "share"))
    monkeypatch.delenv("CCTALLY_HOST_ID", raising=False)
    return {"claude": claude, "home": home, "db": db}
