"""The JSON API over a real ledger: gen_corpus transcripts -> the real `cctally ingest` -> the Flask test
client. Every number is checked against the corpus's truth.json (days cut in UTC)."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

import fixtures_lines as fl
from daemon.cli import main
from daemon.config import database_url
from daemon.store import open_store
from truth import as_truth, assert_daily_matches, generate, truth_fields, ingest_corpus
from web import create_app

TOKEN_KEYS = ("input_tokens", "output_tokens", "cache_creation_tokens", "cache_creation_5m_tokens",
              "cache_creation_1h_tokens", "cache_read_tokens", "total_tokens", "requests", "cost_usd")


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small gen_corpus Claude config dir (12 days from 2026-09-01), generated once for the module."""
    out = tmp_path_factory.mktemp("corpus") / "claude"
    generate(out, 2.0, seed=21, days=12, start="2026-09-01")
    return out


@pytest.fixture
def truth(corpus_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The corpus ingested for real into this test's (tmp) database; returns its truth."""
    return ingest_corpus(corpus_dir, monkeypatch)


@pytest.fixture
def client(truth):
    return create_app({"TESTING": True}).test_client()


def get(client, url: str, status: int = 200) -> dict[str, Any]:
    response = client.get(url)
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    return response.get_json()


def ms(iso: str) -> int:
    return int(dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


# ---------------------------------------------------------------- reports vs truth

def test_daily_matches_truth_per_utc_day(client, truth):
    data = get(client, "/api/usage/daily?tz=UTC")
    assert_daily_matches(data, truth)
    for row in data["daily"]:
        assert set(TOKEN_KEYS) <= set(row)
        assert {b["model"] for b in row["model_breakdowns"]} == set(row["models"])
        assert sum(b["requests"] for b in row["model_breakdowns"]) == row["requests"]


def test_api_and_cli_share_one_query_layer(client, truth, capsys):
    capsys.readouterr()
    assert main(["report", "daily", "--json", "--tz", "UTC", "--no-ingest"]) == 0
    cli = json.loads(capsys.readouterr().out)
    api = get(client, "/api/usage/daily?tz=UTC")
    api.pop("unpriced_models", None)
    cli.pop("unpriced_models", None)
    assert api == cli


def test_models_projects_sessions_match_truth(client, truth):
    models = get(client, "/api/usage/models")
    assert {m["model"]: as_truth(m) for m in models["models"]} == \
        {m: truth_fields(v) for m, v in truth["by_model"].items()}
    projects = get(client, "/api/usage/projects")
    assert {p["project"]: as_truth(p) for p in projects["projects"]} == \
        {p: truth_fields(v) for p, v in truth["by_project"].items()}
    sessions = get(client, "/api/usage/sessions")
    assert {s["session_id"]: as_truth(s) for s in sessions["sessions"]} == \
        {s: truth_fields(v) for s, v in truth["by_session"].items()}
    assert sessions["count"] == truth["sessions"]
    for data in (models, projects, sessions):
        assert as_truth(data["totals"]) == truth_fields(truth["totals"])


def test_weekly_monthly_blocks_total_the_truth(client, truth):
    for kind in ("weekly", "monthly", "blocks"):
        data = get(client, f"/api/usage/{kind}?tz=UTC")
        assert as_truth(data["totals"]) == truth_fields(truth["totals"]), kind
        assert sum(r["requests"] for r in data[kind]) == truth["totals"]["requests"]


def test_stats(client, truth):
    app_api = client.application.extensions["cctally"]
    now = dt.datetime(2026, 9, 5, 13, 0, tzinfo=dt.timezone.utc)
    app_api.clock = lambda: now.timestamp()
    stats = get(client, "/api/usage/stats?tz=UTC")
    assert as_truth(stats["totals"]) == truth_fields(truth["totals"])
    assert stats["sessions"] == truth["sessions"]
    stamps = sorted(ms(r["ts"]) for r in truth["by_request"])
    assert (stats["first_request_ms"], stats["last_request_ms"]) == (stamps[0], stamps[-1])
    assert stats["first_request_at"].startswith("2026-09-")
    today = stats["today"]
    assert today["date"] == "2026-09-05"
    assert as_truth(today) == truth_fields(truth["by_day_utc"].get("2026-09-05", {k: 0 for k in truth["totals"]}))
    month = {k: 0 for k in truth_fields(truth["totals"])}
    for day, v in truth["by_day_utc"].items():
        if day <= "2026-09-05":
            for k in month:
                month[k] += v[k]
    assert stats["this_month"]["month"] == "2026-09"
    assert as_truth(stats["this_month"]) == month
    first_day = dt.date.fromisoformat(min(truth["by_day_utc"]))
    assert stats["history_days"] == (dt.date(2026, 9, 5) - first_day).days
    assert stats["days_beyond_cleanup"] == 0
    assert stats["tz"] == "UTC"
    assert stats["unpriced_models"] == []
    assert stats["hosts"] == 1                   # one machine wrote this ledger
    daily = get(client, "/api/usage/daily?tz=UTC")
    assert stats["totals"]["cost_usd"] == pytest.approx(sum(d["cost_usd"] for d in daily["daily"]), abs=1e-4)
    assert stats["totals"]["cost_usd"] > 0

    # months later: the ledger still has it all, and says how far back beyond Claude Code's cleanup
    app_api.clock = lambda: dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc).timestamp()
    later = get(client, "/api/usage/stats?tz=UTC")
    assert later["history_days"] == (dt.date(2026, 12, 1) - first_day).days
    assert later["days_beyond_cleanup"] == later["history_days"] - 30 > 0
    assert later["today"]["requests"] == 0 and later["active_block"] is None
    assert later["totals"] == stats["totals"]


def test_stats_active_block(client, truth):
    last = max(ms(r["ts"]) for r in truth["by_request"])
    client.application.extensions["cctally"].clock = lambda: (last + 60_000) / 1000
    block = get(client, "/api/usage/stats?tz=UTC")["active_block"]
    assert block["is_active"] and block["start_ms"] <= last < block["end_ms"]
    assert block["requests"] >= 1
    assert block["burn_rate"]["cost_per_hour"] >= 0 and block["projection"]["cost_usd"] >= block["cost_usd"]


def test_filters(client, truth):
    days = sorted(truth["by_day_utc"])
    since, until = days[1], days[3]
    data = get(client, f"/api/usage/daily?tz=UTC&since={since}&until={until}")
    assert [r["date"] for r in data["daily"]] == [d for d in days if since <= d <= until]
    compact = get(client, f"/api/usage/daily?tz=UTC&since={since.replace('-', '')}&until={until.replace('-', '')}")
    assert compact == data

    for path, want in truth["by_project"].items():       # by full path, or by its last component
        name = quote(path.rsplit("/", 1)[1])
        assert as_truth(get(client, f"/api/usage/daily?project={name}")["totals"]) == truth_fields(want)
        assert as_truth(get(client, f"/api/usage/stats?project={quote(path)}")["totals"]) == truth_fields(want)

    haiku = {k: 0 for k in truth_fields(truth["totals"])}
    for model, v in truth["by_model"].items():
        if "haiku" in model:
            for k in haiku:
                haiku[k] += v[k]
    assert as_truth(get(client, "/api/usage/stats?model=haiku")["totals"]) == haiku
    assert get(client, "/api/usage/models?host=no-such-host")["models"] == []
    display = get(client, "/api/usage/stats?mode=display")["totals"]
    assert display["cost_usd"] == 0 and display["requests"] == truth["totals"]["requests"]


def test_sessions_sort_and_limit(client, truth):
    data = get(client, "/api/usage/sessions?sort=cost_usd&order=desc&limit=3")
    costs = [s["cost_usd"] for s in data["sessions"]]
    assert len(costs) == min(3, truth["sessions"]) and costs == sorted(costs, reverse=True)
    assert data["count"] == truth["sessions"]
    every = get(client, "/api/usage/sessions?sort=cost_usd&order=desc")["sessions"]
    assert costs == [s["cost_usd"] for s in every[:3]]
    oldest_first = get(client, "/api/usage/sessions?sort=last_ms&order=asc")["sessions"]
    assert [s["last_ms"] for s in oldest_first] == sorted(s["last_ms"] for s in every)
    if "latency_ms" in every[0]:                 # a number or {"median", "p95"}: sorts by the median
        fast = get(client, "/api/usage/sessions?sort=latency_ms&order=asc")["sessions"]
        medians = [s["latency_ms"]["median"] if isinstance(s["latency_ms"], dict) else s["latency_ms"] for s in fast]
        known = [m for m in medians if m is not None]
        assert known == sorted(known) and medians[:len(known)] == known


def test_session_detail_has_requests_but_no_text(client, truth):
    sid, want = max(truth["by_session"].items(), key=lambda kv: kv[1]["requests"])
    data = get(client, f"/api/usage/sessions/{sid}")
    assert data["session"]["session_id"] == sid and as_truth(data["session"]) == truth_fields(want)
    reqs = data["requests"]
    assert len(reqs) == want["requests"]
    assert [r["ts_ms"] for r in reqs] == sorted(r["ts_ms"] for r in reqs)
    assert sum(r["output_tokens"] for r in reqs) == want["output"]
    assert sum(r["cost_usd"] for r in reqs) == pytest.approx(data["session"]["cost_usd"], abs=1e-5)
    allowed = {"id", "ts", "ts_ms", "session_id", "agent_id", "is_sidechain", "project", "model", "host",
               "latency_ms", *TOKEN_KEYS}
    for r in reqs:
        assert set(r) == allowed
    truth_times = sorted(ms(r["ts"]) for r in truth["by_request"] if r["session"] == sid)
    assert [r["ts_ms"] for r in reqs] == truth_times

    missing = get(client, "/api/usage/sessions/no-such-session", status=404)
    assert missing["param"] == "session_id"


def page_through(client, limit: int, first: dict | None = None) -> list[dict]:
    rows: list[dict] = []
    data = first or get(client, f"/api/usage/events?limit={limit}")
    while True:
        assert len(data["events"]) <= limit
        rows += data["events"]
        if not data["next_cursor"]:
            return rows
        data = get(client, f"/api/usage/events?limit={limit}&cursor={data['next_cursor']}")


def test_events_pagination_no_dupes_no_gaps(client, truth):
    rows = page_through(client, 37)
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) == truth["totals"]["requests"]
    order = [(r["ts_ms"], r["id"]) for r in rows]
    assert order == sorted(order, reverse=True)
    assert sum(r["input_tokens"] for r in rows) == truth["totals"]["input"]
    single = page_through(client, 1000)
    assert [r["id"] for r in single] == ids
    assert get(client, "/api/usage/events")["limit"] == 100


def test_events_pages_are_stable_under_inserts(client, truth, isolated_env, corpus_dir, tmp_path, monkeypatch):
    before = page_through(client, 25)
    first = get(client, "/api/usage/events?limit=25")
    # a new request arrives (newer than everything) while the client is between pages
    extra = tmp_path / "extra"
    (extra / "projects").mkdir(parents=True)
    fl.write(fl.session_path(extra, "sess-new"),
             [fl.assistant("msg_new", "req_new", session="sess-new", at="2026-12-01T10:00:00.000Z")])
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", f"{corpus_dir},{extra}")
    assert main(["ingest"]) == 0
    after = page_through(client, 25, first=first)
    assert [r["id"] for r in after] == [r["id"] for r in before]
    fresh = page_through(client, 25)
    assert fresh[0]["session_id"] == "sess-new" and len(fresh) == len(before) + 1


@pytest.mark.parametrize("url, param", [
    ("/api/usage/stats?since=yesterday", "since"),
    ("/api/usage/daily?until=2026-13-01", "until"),
    ("/api/usage/daily?since=2026-09-05&until=2026-09-01", "since"),
    ("/api/usage/monthly?tz=Mars/Olympus_Mons", "tz"),
    ("/api/usage/models?mode=cheap", "mode"),
    ("/api/usage/events?limit=0", "limit"),
    ("/api/usage/events?limit=many", "limit"),
    ("/api/usage/events?limit=100000", "limit"),
    ("/api/usage/events?cursor=abc", "cursor"),
    ("/api/usage/sessions?sort=password", "sort"),
    ("/api/usage/sessions?order=sideways", "order"),
    ("/api/usage/sessions?limit=-1", "limit"),
    ("/api/usage/blocks?since=2026-02-30", "since"),
])
def test_bad_parameters_are_400_naming_the_parameter(client, url, param):
    data = get(client, url, status=400)
    assert data["param"] == param
    assert isinstance(data["error"], str) and data["error"]


def test_unknown_api_path_is_json_404(client):
    data = get(client, "/api/usage/yearly", status=404)
    assert "error" in data


def test_health(client, truth):
    data = get(client, "/api/health")
    assert data["status"] == "ok" and data["database"] == "sqlite"
    assert data["last_ingest_at"] and data["skipped_lines"] == 0
    assert isinstance(data["process_sampling"], bool)


def test_processes_503_without_the_sampler(client, monkeypatch):
    monkeypatch.setitem(sys.modules, "daemon.processes", None)     # import fails as if not installed
    data = get(client, "/api/processes", status=503)
    assert data == {"error": "process sampling not available"}
    assert get(client, "/api/health")["process_sampling"] is False


def test_processes_overview_from_samples(client):
    store = open_store(database_url())
    api = client.application.extensions["cctally"]
    now_ms = 1_790_000_000_000
    api.clock = lambda: now_ms / 1000
    rows = [("h1", now_ms - (9 - k) * 5000, 4242, now_ms - 600_000, "claude", "/w/api-server", "/w/api-server",
             "sess-9", 10.0 + k, 300_000_000 + k * 1000, 12, 1) for k in range(10)]
    with store.write():
        store.db.cursor().executemany(
            "INSERT INTO process_samples (host, ts_ms, pid, started_ms, name, cwd, project, session_id, "
            "cpu_percent, rss_bytes, threads, children) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    data = get(client, "/api/processes")
    assert data["sampled_at"] == now_ms
    [proc] = data["live"]
    assert proc["pid"] == 4242 and proc["session_id"] == "sess-9" and proc["cpu_percent"] == 19.0
    assert [p["t"] for p in proc["series"]] == [r[1] for r in rows]
    api.clock = lambda: (now_ms + 3_600_000) / 1000      # an hour later nothing is live any more
    assert get(client, "/api/processes")["live"] == []


def test_api_never_writes(client, truth):
    db = Path(database_url().split("://", 1)[1])

    def fingerprint() -> list[str]:
        return [hashlib.sha256(p.read_bytes()).hexdigest() for p in (db, Path(f"{db}-wal")) if p.exists()]

    before = fingerprint()
    sid = next(iter(truth["by_session"]))
    for url in ("/", "/api/usage/stats", "/api/usage/daily", "/api/usage/weekly", "/api/usage/monthly",
                "/api/usage/sessions", f"/api/usage/sessions/{sid}", "/api/usage/projects", "/api/usage/models",
                "/api/usage/blocks", "/api/usage/hosts", "/api/usage/events", "/api/health", "/metrics"):
        assert client.get(url).status_code == 200, url
    client.get("/api/processes")
    assert fingerprint() == before


def test_empty_ledger(isolated_env):
    client = create_app().test_client()      # nothing ingested yet: zeros, not errors
    stats = get(client, "/api/usage/stats")
    assert stats["totals"]["requests"] == 0 and stats["sessions"] == 0
    assert stats["first_request_at"] is None and stats["history_days"] == 0 and stats["active_block"] is None
    assert stats["hosts"] == 0 and get(client, "/api/usage/hosts")["hosts"] == []
    assert get(client, "/api/usage/events") == {"events": [], "next_cursor": None, "limit": 100}
    assert get(client, "/api/usage/daily")["daily"] == []
    assert client.get("/").status_code == 200
