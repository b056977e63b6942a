"""Shared fixtures. Every test runs with CLAUDE_CONFIG_DIR, CCTALLY_HOME and the database inside tmp_path."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

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


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL started for this test run (skipped, with the reason, where none is installed)."""
    from pg import PostgresServer, find_bin
    if not find_bin("initdb"):
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql); team-backend tests need it")
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, isolated_env) -> str:
    """A fresh, empty ledger URL on each backend: a SQLite file in tmp_path, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return "sqlite:///" + str(isolated_env["home"] / "param.db")
    server = request.getfixturevalue("postgres_server")
    return server.new_database()
