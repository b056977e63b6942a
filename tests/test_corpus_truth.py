"""gen_corpus.py corpora (several seeds, with and without --nasty): cctally's reports equal truth.json exactly.

Each corpus is generated once per test session; every test ingests it into its own fresh ledger through the
real CLI (`cctally ingest`, `cctally report … --json`).
"""
from __future__ import annotations

import datetime as dt
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from fixtures_lines import cli, report_json
from truth import FIELD_MAP, as_truth, assert_daily_matches, generate, truth_fields

CORPORA = {
    # name: (size_mb, seed, nasty, start)
    "clean-s1": (3.0, 1, False, "2026-09-01"),
    "nasty-s2": (4.0, 2, True, "2026-09-01"),        # one file ends in a partial line
    "nasty-s8-dst": (3.0, 8, True, "2026-10-10"),    # spans the European and US DST ends; 3 partial lines
    "nasty-s7-bigline": (3.0, 7, True, "2026-10-10"),  # holds a 5 MB line
    "clean-s4": (2.0, 4, False, "2026-03-20"),       # spans the Lord Howe / Europe DST changes
}


@pytest.fixture(scope="session")
def corpora(tmp_path_factory) -> dict[str, tuple[Path, dict[str, Any]]]:
    return {}


@pytest.fixture(params=sorted(CORPORA))
def corpus(request, corpora, tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    """(claude dir, truth) for one corpus, generated on first use."""
    name = request.param
    if name not in corpora:
        size, seed, nasty, start = CORPORA[name]
        out = tmp_path_factory.mktemp(name)
        corpora[name] = (out, generate(out, size, seed, nasty=nasty, start=start))
    return corpora[name]


@pytest.fixture(scope="session")
def ledgers(tmp_path_factory) -> dict[str, Path]:
    return {}


@pytest.fixture
def ingested(corpus, ledgers, tmp_path_factory) -> tuple[Path, dict[str, Any], str]:
    """(claude dir, truth, --db path) with the corpus ingested once per session into its own ledger."""
    claude, truth = corpus
    name = claude.name
    if name not in ledgers:
        db = tmp_path_factory.mktemp("ledger") / "corpus.db"
        ingest_corpus(claude, "--db", str(db))
        ledgers[name] = db
    return claude, truth, str(ledgers[name])


def ingest_corpus(claude: Path, *extra: str) -> str:
    code, out, err = cli("ingest", "--claude-dir", str(claude), *extra)
    assert code == 0, err
    return out


def parse_summary(line: str) -> dict[str, int]:
    m = re.search(r"(\d+) files \((\d+) read\), (-?\d+) new requests, (\d+) updated, (\d+) skipped lines", line)
    assert m, line
    return dict(zip(("files", "read", "new", "updated", "skipped"), map(int, m.groups())))


def grouped(report: dict[str, Any], kind: str, label: str) -> dict[str, dict[str, int]]:
    return {row[label]: as_truth(row) for row in report[kind]}


def want(truth_group: dict[str, Any]) -> dict[str, dict[str, int]]:
    return {name: truth_fields(v) for name, v in truth_group.items()}


def test_daily_utc_equals_truth(corpus):
    claude, truth = corpus
    summary = parse_summary(ingest_corpus(claude))
    assert summary["new"] == truth["totals"]["requests"]
    nasty = claude.name.startswith("nasty")
    assert (summary["skipped"] > 0) == nasty        # garbage lines are counted, clean corpora have none
    report = report_json("daily", "--claude-dir", str(claude))
    assert_daily_matches(report, truth)
    for row in report["daily"]:                         # per-model breakdowns add up to the day
        for f in FIELD_MAP.values():
            assert sum(m[f] for m in row["model_breakdowns"]) == row[f]


def test_models_projects_sessions_equal_truth(ingested):
    claude, truth, db = ingested
    models = report_json("models", "--db", db)
    assert grouped(models, "models", "model") == want(truth["by_model"])
    assert as_truth(models["totals"]) == truth_fields(truth["totals"])
    assert all(m["priced"] for m in models["models"]) and "unpriced_models" not in models
    projects = report_json("projects", "--db", db)
    assert grouped(projects, "projects", "project") == want(truth["by_project"])
    sessions = report_json("sessions", "--db", db)
    assert grouped(sessions, "sessions", "session_id") == want(truth["by_session"])
    assert len(sessions["sessions"]) == truth["sessions"]


def test_second_ingest_changes_nothing(corpus):
    claude, truth = corpus
    first = parse_summary(ingest_corpus(claude))
    before = report_json("daily", "--claude-dir", str(claude))
    second = parse_summary(ingest_corpus(claude))
    assert (second["new"], second["updated"], second["skipped"], second["read"]) == (0, 0, 0, 0)
    assert second["files"] == first["files"]
    # a report without --no-ingest catches up first: still nothing new
    code, out, err = cli("report", "daily", "--json", "--tz", "UTC", "--claude-dir", str(claude))
    assert code == 0, err
    assert json.loads(out) == before
    assert_daily_matches(before, truth)


def local_periods(truth: dict[str, Any], tz: dt.tzinfo, kind: str) -> dict[str, dict[str, int]]:
    """Expected per-period sums, computed from truth's per-request list (not from cctally's buckets)."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: {k: 0 for k in FIELD_MAP})
    for r in truth["by_request"]:
        t = dt.datetime.fromisoformat(r["ts"].replace("Z", "+00:00")).astimezone(tz)
        day = t.date()
        name = {"daily": day.isoformat(),
                "weekly": (day - dt.timedelta(days=day.weekday())).isoformat(),
                "monthly": f"{day.year:04d}-{day.month:02d}"}[kind]
        acc = out[name]
        acc["requests"] += 1
        for k in FIELD_MAP:
            if k != "requests":
                acc[k] += r[k]
    return dict(out)


@pytest.mark.parametrize("zone", ["America/Los_Angeles", "Asia/Kathmandu", "Australia/Lord_Howe", "Pacific/Kiritimati",
                                  "America/Santiago"])   # Santiago: DST starts at local midnight (Sep 6 2026)
def test_other_time_zones_rebucket_days(ingested, zone):
    claude, truth, db = ingested
    tz = ZoneInfo(zone)
    code, out, err = cli("report", "daily", "--json", "--tz", zone, "--no-ingest", "--db", db)
    assert code == 0, err
    report = json.loads(out)
    assert grouped(report, "daily", "date") == local_periods(truth, tz, "daily")
    assert as_truth(report["totals"]) == truth_fields(truth["totals"])
    if zone in ("Pacific/Kiritimati", "Australia/Lord_Howe"):   # +14 / +10:30: most requests change day
        assert grouped(report, "daily", "date") != want(truth["by_day_utc"])


@pytest.mark.parametrize("kind, label", [("weekly", "week"), ("monthly", "month")])
def test_weeks_and_months_in_a_zone(ingested, kind, label):
    claude, truth, db = ingested
    zone = "Europe/Berlin"
    code, out, err = cli("report", kind, "--json", "--tz", zone, "--no-ingest", "--db", db)
    assert code == 0, err
    report = json.loads(out)
    assert grouped(report, kind, label) == local_periods(truth, ZoneInfo(zone), kind)


def test_since_until_select_local_days(ingested):
    claude, truth, db = ingested
    zone = "America/Los_Angeles"
    days = sorted(local_periods(truth, ZoneInfo(zone), "daily"))
    since, until = days[len(days) // 3], days[2 * len(days) // 3]
    code, out, err = cli("report", "daily", "--json", "--tz", zone, "--no-ingest", "--since", since, "--until", until, "--db", db)
    assert code == 0, err
    report = json.loads(out)
    expected = {d: v for d, v in local_periods(truth, ZoneInfo(zone), "daily").items() if since <= d <= until}
    assert grouped(report, "daily", "date") == expected

