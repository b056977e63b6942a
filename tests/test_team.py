"""Team scale: the same store and reports on SQLite and a real PostgreSQL; several hosts, one database."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from daemon.cli import main
from daemon.copydb import copy_ledger
from daemon.ingest import Ingester
from daemon.reports import Filters, Reports
from daemon.store import open_store
from truth import as_truth, assert_daily_matches, generate, truth_fields


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("corpora")
    out = {}
    for name, seed in (("a", 11), ("b", 12)):
        generate(base / name, 1.5, seed, nasty=(name == "b"))
        out[name] = base / name
    return out


def _unique(truths: list[dict]) -> dict[str, int]:
    """Totals over the union of several truths' requests (keys are global)."""
    seen: dict[tuple, dict] = {}
    for truth in truths:
        for req in truth["by_request"]:
            seen[tuple(req["key"])] = req
    totals = {k: 0 for k in ("requests", "input", "output", "cache_write_5m", "cache_write_1h", "cache_read")}
    for req in seen.values():
        totals["requests"] += 1
        for k in ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read"):
            totals[k] += req[k]
    return totals


def test_store_and_reports_on_both_backends(db_url, corpora):
    truth = json.loads((corpora["b"] / "truth.json").read_text())
    store = open_store(db_url)
    first = Ingester(store, [corpora["b"]], host="h1").catch_up()
    assert first.new_requests == truth["totals"]["requests"]
    again = Ingester(store, [corpora["b"]], host="h1").catch_up()
    assert (again.new_requests, again.updated_requests, again.files_read) == (0, 0, 0)
    reports = Reports(store)
    assert_daily_matches(reports.period("daily", Filters()), truth)
    models = {m["model"]: as_truth(m) for m in reports.by_model(Filters())["models"]}
    assert models == {m: truth_fields(v) for m, v in truth["by_model"].items()}
    projects = {p["project"]: as_truth(p) for p in reports.by_project(Filters())["projects"]}
    assert projects == {p: truth_fields(v) for p, v in truth["by_project"].items()}
    hosts = reports.by_host(Filters())["hosts"]
    assert [h["host"] for h in hosts] == ["h1"] and hosts[0]["requests"] == truth["totals"]["requests"]


def test_two_hosts_one_database_with_a_shared_file(postgres_server, corpora, tmp_path):
    """Two daemons (threads with their own connections) ingest different trees plus one file both can see
    (a synced home dir): every request counts once, each host keeps its own offsets."""
    url = postgres_server.new_database()
    shared = corpora["a"] / "projects"
    one_file = next(shared.rglob("*.jsonl"))
    tree_b = tmp_path / "b"
    shutil.copytree(corpora["b"], tree_b)
    target = tree_b / "projects" / "-shared" / one_file.name
    target.parent.mkdir(parents=True)
    shutil.copy(one_file, target)
    store = open_store(url)
    errors: list[BaseException] = []

    def run(root: Path, host: str) -> None:
        try:
            for _ in range(2):
                Ingester(store, [root], host=host, batch_bytes=64 << 10).catch_up()
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=run, args=(corpora["a"], "alpha")),
               threading.Thread(target=run, args=(tree_b, "beta"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    truths = [json.loads((corpora[n] / "truth.json").read_text()) for n in ("a", "b")]
    want = _unique(truths)
    got = as_truth(Reports(store).totals(Filters()))
    assert got == want
    rows = store.db.execute_sql("SELECT COUNT(*), COUNT(DISTINCT key) FROM requests").fetchone()
    assert rows[0] == rows[1] == want["requests"]
    hosts = {r[0]: r[1] for r in store.db.execute_sql("SELECT host, COUNT(*) FROM files GROUP BY host")}
    assert set(hosts) == {"alpha", "beta"}
    # the shared file is tracked once per host, with each host's own offset
    tracked = store.db.execute_sql(
        f"SELECT host, \"offset\" FROM files WHERE path LIKE {store.db.param}", ("%" + one_file.name,)).fetchall()
    assert sorted(h for h, _ in tracked) == ["alpha", "beta"]


def test_migrate_db_copies_sqlite_into_postgres_idempotently(postgres_server, corpora, tmp_path, capsys):
    truth = json.loads((corpora["a"] / "truth.json").read_text())
    local = "sqlite:///" + str(tmp_path / "local.db")
    assert main(["ingest", "--db", local, "--claude-dir", str(corpora["a"])]) == 0
    team = postgres_server.new_database()
    assert main(["migrate-db", "--from", local, "--to", team]) == 0
    assert f"{truth['totals']['requests']} requests inserted" in capsys.readouterr().out
    assert main(["migrate-db", "--from", local, "--to", team]) == 0
    out = capsys.readouterr().out
    assert "0 requests inserted, 0 updated" in out
    store = open_store(team)
    assert as_truth(Reports(store).totals(Filters())) == truth_fields(truth["totals"])
    # the copied file offsets let this host carry on incrementally against the team database
    assert main(["ingest", "--db", team, "--claude-dir", str(corpora["a"])]) == 0
    assert "0 new requests" in capsys.readouterr().out


def test_cli_against_postgres_url(postgres_server, corpora, capsys):
    truth = json.loads((corpora["a"] / "truth.json").read_text())
    url = postgres_server.new_database()
    assert main(["report", "daily", "--json", "--tz", "UTC", "--db", url, "--claude-dir", str(corpora["a"])]) == 0
    assert_daily_matches(json.loads(capsys.readouterr().out), truth)
    assert main(["report", "hosts", "--json", "--db", url, "--no-ingest"]) == 0
    hosts = json.loads(capsys.readouterr().out)["hosts"]
    assert len(hosts) == 1 and hosts[0]["requests"] == truth["totals"]["requests"]


def test_unreachable_database_is_a_clear_error(capsys):
    code = main(["ingest", "--db", "postgresql://nobody@127.0.0.1:1/none"])
    assert code == 1
    assert "cannot open database postgresql://nobody@127.0.0.1:1/none" in capsys.readouterr().err


def test_postgres_driver_is_an_optional_extra():
    """The base install does not need psycopg2; only the postgres extra pulls it in."""
    meta = subprocess.run([sys.executable, "-c", "import tomllib;d=tomllib.load(open('pyproject.toml','rb'));"
                           "print(d['project']['dependencies']);print(d['project']['optional-dependencies']['postgres'])"],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], check=True)
    base, extra = meta.stdout.splitlines()
    assert "psycopg" not in base and "psycopg2" in extra


def test_lost_connection_is_retried_and_nothing_is_lost(corpora, tmp_path, capsys):
    """The team database goes away mid-run: the worker reports the error, backs off, and once the
    database is back it catches up to exact totals (offsets only advanced for committed batches)."""
    from pg import PostgresServer, find_bin
    from daemon.jobs import IngestWorker
    import time
    if not find_bin("initdb"):
        pytest.skip("PostgreSQL is not installed")
    server = PostgresServer().start()
    try:
        url = server.new_database()
        store = open_store(url)
        tree = tmp_path / "tree"
        shutil.copytree(corpora["a"], tree)
        beats: list[dict] = []
        ingester = Ingester(store, [tree], host="h")
        worker = IngestWorker(ingester, store, beats.append)
        worker.start()
        worker.request_scan()
        assert worker.idle.wait(30) and worker.scans == 1
        server._run(server.pg_ctl, "-D", str(server.data), "-m", "fast", "stop")
        extra = tmp_path / "extra"
        generate(extra, 0.5, 99)
        shutil.copytree(extra / "projects", tree / "projects", dirs_exist_ok=True)
        worker.request_scan()
        deadline = time.monotonic() + 20
        while not any(b.get("last_error") for b in beats) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert worker.last_error and any(b.get("last_error") for b in beats)
        assert main(["status", "--db", url]) == 0
        assert "UNREACHABLE" in capsys.readouterr().out
        store.close()             # this thread's connection died with the server
        server.start_again()
        deadline = time.monotonic() + 30
        while (worker.last_error is not None or worker.scans < 2) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert worker.last_error is None
        worker.stop()
        worker.join(10)
        truths = [json.loads((corpora["a"] / "truth.json").read_text()), json.loads((extra / "truth.json").read_text())]
        assert as_truth(Reports(store).totals(Filters())) == _unique(truths)
    finally:
        server.stop()
