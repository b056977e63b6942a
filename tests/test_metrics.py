"""Prometheus /metrics: parsed with prometheus_client's own parser, summed, and compared with truth.json."""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import fixtures_lines as fl
from daemon.cli import main
from daemon.config import database_url
from daemon.store import open_store
from truth import generate, ingest_corpus
from web import create_app

TYPES = {"input": "input", "output": "output", "cache_creation_5m": "cache_write_5m",
         "cache_creation_1h": "cache_write_1h", "cache_read": "cache_read"}


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("metrics-corpus") / "claude"
    generate(out, 1.5, seed=33, days=10, start="2026-09-01", nasty=True)
    return out


@pytest.fixture
def truth(corpus_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    return ingest_corpus(corpus_dir, monkeypatch)


@pytest.fixture
def client(truth):
    return create_app({"TESTING": True}).test_client()


def scrape(client) -> dict[str, list]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: dict[str, list] = defaultdict(list)
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for s in family.samples:
            samples[s.name].append(s)
    return samples


def test_token_and_request_counters_match_truth(client, truth):
    m = scrape(client)
    by_type: dict[str, int] = defaultdict(int)
    by_model: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    by_project: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for s in m["cctally_tokens_total"]:
        kind = TYPES[s.labels["type"]]
        by_type[kind] += int(s.value)
        by_model[s.labels["model"]][kind] += int(s.value)
        by_project[s.labels["project"]][kind] += int(s.value)
    for s in m["cctally_requests_total"]:
        by_type["requests"] += int(s.value)
        by_model[s.labels["model"]]["requests"] += int(s.value)
        by_project[s.labels["project"]]["requests"] += int(s.value)
    fields = ("requests", *TYPES.values())
    assert dict(by_type) == {k: truth["totals"][k] for k in fields}
    assert {k: dict(v) for k, v in by_model.items()} == \
        {model: {k: v[k] for k in fields} for model, v in truth["by_model"].items()}
    assert {k: dict(v) for k, v in by_project.items()} == \
        {p: {k: v[k] for k in fields} for p, v in truth["by_project"].items()}


def test_cost_counter_matches_the_api(client, truth):
    m = scrape(client)
    cost = sum(s.value for s in m["cctally_cost_usd_total"])
    stats = client.get("/api/usage/stats").get_json()
    assert cost == pytest.approx(stats["totals"]["cost_usd"], abs=1e-4) and cost > 0
    per_model = client.get("/api/usage/models").get_json()["models"]
    for row in per_model:
        got = sum(s.value for s in m["cctally_cost_usd_total"] if s.labels["model"] == row["model"])
        assert got == pytest.approx(row["cost_usd"], abs=1e-4)


def test_ingest_state_and_skipped_lines(client, truth):
    store = open_store(database_url())
    last = json.loads(store.get_meta("last_ingest"))
    skipped = sum(r[0] for r in store.db.execute_sql("SELECT skipped_lines FROM files"))
    assert skipped > 0                        # the nasty corpus has unreadable lines
    m = scrape(client)
    assert m["cctally_last_ingest_timestamp_seconds"][0].value == pytest.approx(last["at_ms"] / 1000)
    assert sum(s.value for s in m["cctally_skipped_lines_total"]) == skipped
    assert not m["cctally_ingest_lag_seconds"]

    # the daemon's heartbeat, when one runs
    with store.write():
        store.set_meta("daemon:box-1", json.dumps({"heartbeat_ms": 1_790_000_000_500, "lag_ms": 1250, "pid": 7}))
    m = scrape(client)
    [beat] = m["cctally_daemon_heartbeat_timestamp_seconds"]
    assert beat.labels == {"host": "box-1"} and beat.value == pytest.approx(1_790_000_000.5)
    [lag] = m["cctally_ingest_lag_seconds"]
    assert lag.value == pytest.approx(1.25)


def test_counters_move_on_the_next_scrape(client, truth, tmp_path, corpus_dir, monkeypatch):
    before = sum(s.value for s in scrape(client)["cctally_requests_total"])
    extra = tmp_path / "extra"
    fl.write(fl.session_path(extra, "sess-m"), [fl.assistant(
        "msg_m1", "req_m1", session="sess-m", at="2026-09-20T10:00:00.000Z", u=fl.usage(input=7, output=11))])
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", f"{corpus_dir},{extra}")
    assert main(["ingest"]) == 0
    m = scrape(client)
    assert sum(s.value for s in m["cctally_requests_total"]) == before + 1
    outputs = [s for s in m["cctally_tokens_total"]
               if s.labels["project"] == fl.DEFAULT_CWD and s.labels["type"] == "output"
               and s.labels["model"] == fl.DEFAULT_MODEL]
    assert sum(s.value for s in outputs) >= 11


def test_process_gauges(client):
    api = client.application.extensions["cctally"]
    now_ms = 1_790_000_000_000
    api.clock = lambda: now_ms / 1000
    store = open_store(database_url())
    with store.write():
        store.db.cursor().executemany(
            "INSERT INTO process_samples (host, ts_ms, pid, started_ms, name, cwd, project, session_id, "
            "cpu_percent, rss_bytes, threads, children) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            [("h1", now_ms - 5000, 11, 1, "claude", "/w/a", "/w/a", None, 3.0, 100, 5, 0),
             ("h1", now_ms, 11, 1, "claude", "/w/a", "/w/a", None, 12.5, 200_000_000, 5, 0),
             ("h1", now_ms, 12, 1, "claude", "/w/b", "/w/b", "s2", 1.5, 50_000_000, 4, 1)])
    m = scrape(client)
    cpu = {s.labels["pid"]: s.value for s in m["cctally_process_cpu_percent"]}
    rss = {s.labels["pid"]: s.value for s in m["cctally_process_rss_bytes"]}
    assert cpu == {"11": 12.5, "12": 1.5}
    assert rss == {"11": 200_000_000, "12": 50_000_000}
    assert m["cctally_processes_live"][0].value == 2


def test_empty_ledger_scrapes(isolated_env):
    m = scrape(create_app().test_client())
    assert m["cctally_info"][0].value == 1
    assert not m["cctally_tokens_total"]


def test_openmetrics_when_asked(client):
    response = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.get_data(as_text=True).rstrip().endswith("# EOF")
