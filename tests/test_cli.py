"""The `cctally` command: exit codes and messages a user can act on, the ingest line, report formats,
status, and a private database file."""
from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from daemon import __version__
from daemon.reports import TOKEN_FIELDS
from fixtures_lines import (HOST, assistant, cli, msg_id, report_json, req_id, session_path, ts, usage, user,
                            write)

SUMMARY_RE = re.compile(r"^ingested (\d+) files \((\d+) read\), (\d+) new requests, (\d+) updated, "
                        r"(\d+) skipped lines, [\d.]+ MB in [\d.]+ s$")


@pytest.fixture(autouse=True)
def same_host(monkeypatch):
    monkeypatch.setenv("CCTALLY_HOST_ID", HOST)


def small_tree(root: Path) -> None:
    write(session_path(root, "s1", "/home/dev/alpha"), [
        user(session="s1", cwd="/home/dev/alpha", at=ts(1, 9)),
        assistant(msg_id(1), req_id(1), session="s1", cwd="/home/dev/alpha", at=ts(1, 10), u=usage(output=2)),
        assistant(msg_id(1), req_id(1), session="s1", cwd="/home/dev/alpha", at=ts(1, 10, 0, 1),
                  u=usage(input=10, output=1200, cache_read=5000, cache_5m=100)),
        b"{broken",
        assistant(msg_id(2), req_id(2), session="s1", cwd="/home/dev/alpha", at=ts(2, 11), model="claude-opus-4-6",
                  u=usage(input=20, output=300, cache_1h=50)),
    ])
    write(session_path(root, "s2", "/home/dev/beta"), [
        assistant(msg_id(3), req_id(3), session="s2", cwd="/home/dev/beta", at=ts(2, 12), u=usage(input=1, output=7)),
    ])


# ------------------------------------------------------------------ no roots

def test_no_roots_exits_2_naming_what_was_looked_for(isolated_env, monkeypatch, tmp_path):
    empty = tmp_path / "no-claude-here"
    empty.mkdir()
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", f"{empty},{tmp_path / 'missing'}")
    code, out, err = cli("ingest")
    assert code == 2 and out == ""
    assert f"{empty}/projects" in err and f"{tmp_path / 'missing'}/projects" in err
    assert "CLAUDE_CONFIG_DIR" in err and "--claude-dir" in err


def test_no_roots_without_the_env_var_names_the_defaults(isolated_env, monkeypatch, tmp_path):
    monkeypatch.delenv("CLAUDE_CONFIG_DIR")
    code, _, err = cli("ingest")
    assert code == 2
    home = Path(os.environ["HOME"])
    assert f"{home / '.claude'}/projects" in err
    assert f"{Path(os.environ['XDG_CONFIG_HOME']) / 'claude'}/projects" in err
    assert "CLAUDE_CONFIG_DIR" in err and "--claude-dir" in err


def test_no_roots_as_a_real_process(isolated_env, tmp_path):
    env = dict(os.environ, CLAUDE_CONFIG_DIR=str(tmp_path / "nowhere"))
    proc = subprocess.run([sys.executable, "-m", "daemon.cli", "ingest"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert "no Claude transcripts found" in proc.stderr and "--claude-dir" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_explicit_claude_dir_wins_and_accepts_the_projects_child(isolated_env, monkeypatch, tmp_path):
    other = tmp_path / "other-config"
    small_tree(other)
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "nowhere"))
    code, out, _ = cli("ingest", "--claude-dir", str(other / "projects"))
    assert code == 0 and SUMMARY_RE.match(out.strip())
    assert report_json("daily")["totals"]["requests"] == 3


def test_report_without_roots_reports_from_the_ledger(isolated_env, monkeypatch, caplog):
    small_tree(isolated_env["claude"])
    assert cli("ingest")[0] == 0
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(isolated_env["home"] / "gone"))
    code, out, err = cli("report", "daily", "--json", "--tz", "UTC")
    assert code == 0 and json.loads(out)["totals"]["requests"] == 3
    assert "reporting from the ledger only" in caplog.text


# ------------------------------------------------------------------ ingest

def test_ingest_prints_one_summary_line(isolated_env):
    small_tree(isolated_env["claude"])
    code, out, _ = cli("ingest")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 1
    files, read, new, updated, skipped = map(int, SUMMARY_RE.match(lines[0]).groups())
    assert (files, read, new, updated, skipped) == (2, 2, 3, 0, 1)
    code, out, _ = cli("ingest")
    assert SUMMARY_RE.match(out.strip()).groups() == ("2", "0", "0", "0", "0")


def test_ingest_records_its_summary_for_status(isolated_env):
    small_tree(isolated_env["claude"])
    cli("ingest")
    code, out, _ = cli("status", "--json")
    info = json.loads(out)
    assert code == 0
    assert info["roots"] == [str(isolated_env["claude"].resolve())]
    assert (info["files_tracked"], info["files_missing"], info["requests"], info["skipped_lines"]) == (2, 0, 3, 1)
    assert info["last_ingest"]["new_requests"] == 3 and info["host"] == HOST
    assert info["database"].endswith(str(isolated_env["db"]))


def test_status_text(isolated_env):
    small_tree(isolated_env["claude"])
    cli("ingest")
    code, out, _ = cli("status")
    assert code == 0
    assert f"claude dirs:    {isolated_env['claude'].resolve()}" in out
    assert "files tracked:  2 (0 deleted from disk" in out
    assert "requests:       3" in out
    assert "history:        2026-09-01 .. 2026-09-02" in out
    assert "skipped lines:  1" in out
    assert re.search(r"last ingest:    \d+ s ago — 2 files \(2 read\), 3 new requests", out)
    assert "daemon:         not running" in out


def test_status_without_roots_still_answers(isolated_env, monkeypatch):
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(isolated_env["home"] / "gone"))
    code, out, _ = cli("status")
    assert code == 0 and "claude dirs:    none (no Claude transcripts found" in out
    assert "last ingest:    never" in out


# ------------------------------------------------------------------ report formats

def test_report_json_csv_and_table_agree(isolated_env):
    small_tree(isolated_env["claude"])
    cli("ingest")
    data = report_json("daily")
    assert [d["date"] for d in data["daily"]] == ["2026-09-01", "2026-09-02"]
    day1, day2 = data["daily"]
    assert (day1["requests"], day1["output_tokens"], day1["cache_read_tokens"]) == (1, 1200, 5000)
    assert (day2["requests"], day2["input_tokens"], day2["output_tokens"]) == (2, 21, 307)
    assert set(TOKEN_FIELDS) <= set(data["totals"])

    code, out, _ = cli("report", "daily", "--csv", "--tz", "UTC", "--no-ingest")
    assert code == 0
    table = list(csv.DictReader(io.StringIO(out)))
    assert list(table[0])[-len(TOKEN_FIELDS):] == list(TOKEN_FIELDS)
    assert [r["date"] for r in table] == ["2026-09-01", "2026-09-02"]
    for row, want in zip(table, data["daily"]):
        for f in TOKEN_FIELDS:
            assert float(row[f]) == pytest.approx(want[f])
    assert table[1]["models"] == "claude-opus-4-6;claude-sonnet-4-5-20250929"

    code, out, _ = cli("report", "daily", "--tz", "UTC", "--no-ingest")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["Date", "Models"] and "Total tokens" in lines[0] and "Cost" in lines[0]
    assert lines[2].startswith("2026-09-01") and lines[3].startswith("2026-09-02")
    total = lines[-1]
    assert total.startswith("Total") and f"{data['totals']['total_tokens']:,}" in total
    assert f"${data['totals']['cost_usd']:,.2f}" in total


@pytest.mark.parametrize("kind, label", [("sessions", "session_id"), ("projects", "project"), ("models", "model"),
                                         ("weekly", "week"), ("monthly", "month"), ("blocks", "start")])
def test_every_report_kind_in_every_format(isolated_env, kind, label):
    small_tree(isolated_env["claude"])
    cli("ingest")
    data = report_json(kind)
    assert data["totals"]["requests"] == 3
    assert sum(r["requests"] for r in data[kind]) == 3
    code, out, _ = cli("report", kind, "--csv", "--tz", "UTC", "--no-ingest")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert sorted(str(r[label]) for r in rows) == sorted(str(r[label]) for r in data[kind])
    code, out, _ = cli("report", kind, "--tz", "UTC", "--no-ingest")
    assert code == 0 and out.splitlines()[-1].startswith("Total")


def test_report_filters(isolated_env):
    small_tree(isolated_env["claude"])
    cli("ingest")
    assert report_json("daily", "--project", "beta")["totals"]["requests"] == 1
    assert report_json("daily", "--project", "/home/dev/alpha")["totals"]["requests"] == 2
    assert report_json("daily", "--model", "opus")["totals"]["requests"] == 1
    assert report_json("daily", "--since", "2026-09-02")["totals"]["requests"] == 2
    assert report_json("daily", "--until", "20260901")["totals"]["requests"] == 1


def test_empty_report(isolated_env):
    code, out, _ = cli("report", "daily", "--tz", "UTC")
    assert code == 0 and "no usage recorded" in out
    assert report_json("daily") == {"daily": [], "totals": {f: 0 for f in TOKEN_FIELDS}}


@pytest.mark.parametrize("args, word", [(["--tz", "Mars/Olympus"], "time zone"), (["--since", "yesterday"], "since"),
                                        (["--since", "2026-09-05", "--until", "2026-09-01"], "since")])
def test_bad_report_parameters_exit_2(isolated_env, args, word):
    code, out, err = cli("report", "daily", "--no-ingest", *args)
    assert code == 2 and out == "" and word in err and "Traceback" not in err


def test_version_and_help():
    with pytest.raises(SystemExit) as e:
        cli("--version")
    assert e.value.code == 0
    code, out, _ = cli()
    assert code == 2 and "ingest" in out and "report" in out


# ------------------------------------------------------------------ database file

def test_database_file_is_private(isolated_env):
    small_tree(isolated_env["claude"])
    assert cli("ingest")[0] == 0
    db = isolated_env["db"]
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    for extra in (db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        if extra.exists():
            assert stat.S_IMODE(extra.stat().st_mode) & 0o077 == 0, extra


def test_database_file_mode_is_tightened_and_its_dir_created(isolated_env, tmp_path):
    loose = tmp_path / "loose.db"
    loose.touch()
    os.chmod(loose, 0o644)
    small_tree(isolated_env["claude"])
    assert cli("ingest", "--db", str(loose))[0] == 0
    assert stat.S_IMODE(loose.stat().st_mode) == 0o600
    nested = tmp_path / "new-dir" / "deeper" / "ledger.db"
    assert cli("ingest", "--db", f"sqlite:///{nested}")[0] == 0
    assert stat.S_IMODE(nested.stat().st_mode) == 0o600
    assert stat.S_IMODE(nested.parent.stat().st_mode) & 0o077 == 0


def test_default_database_lives_in_cctally_home(isolated_env, monkeypatch):
    monkeypatch.delenv("CCTALLY_DB")
    small_tree(isolated_env["claude"])
    assert cli("ingest")[0] == 0
    default = isolated_env["home"] / "cctally.db"
    assert default.exists() and stat.S_IMODE(default.stat().st_mode) == 0o600


def test_version_string():
    proc = subprocess.run([sys.executable, "-m", "daemon.cli", "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == f"cctally {__version__}"
