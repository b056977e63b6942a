"""Team scale on the page: `stats.hosts` counts the machines in the ledger, `/api/usage/hosts` splits the
numbers per machine, and the page's "Machines" panel appears only when there are two or more.

Two hosts are made the way two daemons on one team database make them: `Ingester(store, roots, host=…)`
over different transcript trees, into one ledger.
"""
from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest

import fixtures_lines as fl
from daemon.config import database_url
from daemon.ingest import Ingester
from daemon.store import open_store
from test_page_browser import (CHROMIUM, browser, fmt_cost, fmt_int, fmt_tokens, iso,  # noqa: F401 (fixture)
                               serving, watch_console)
from truth import as_truth, generate, truth_fields
from web import create_app


def ingest_as(host: str, root: Path) -> None:
    assert Ingester(open_store(database_url()), [root], host=host).catch_up() is not None


def get(client, url: str) -> dict[str, Any]:
    response = client.get(url)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


# ---------------------------------------------------------------- the API

@pytest.fixture(scope="module")
def two_trees(tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    base = tmp_path_factory.mktemp("hosts")
    trees = {}
    for host, seed in (("alpha", 31), ("beta", 32)):
        trees[host] = (base / host, generate(base / host, 0.5, seed=seed, days=6, start="2026-09-01"))
    keys = [{tuple(r["key"]) for r in truth["by_request"]} for _, truth in trees.values()]
    assert not keys[0] & keys[1]         # different machines, different requests
    return trees


def test_hosts_report_splits_the_ledger_per_machine(two_trees):
    client = create_app({"TESTING": True}).test_client()
    assert get(client, "/api/usage/stats")["hosts"] == 0

    ingest_as("alpha", two_trees["alpha"][0])
    stats = get(client, "/api/usage/stats")
    assert stats["hosts"] == 1
    [only] = get(client, "/api/usage/hosts")["hosts"]
    assert only["host"] == "alpha"

    ingest_as("beta", two_trees["beta"][0])
    stats = get(client, "/api/usage/stats?tz=UTC")
    assert stats["hosts"] == 2
    data = get(client, "/api/usage/hosts?tz=UTC")
    by_host = {h["host"]: h for h in data["hosts"]}
    assert set(by_host) == {"alpha", "beta"}
    for host, (_, truth) in two_trees.items():
        row = by_host[host]
        assert as_truth(row) == truth_fields(truth["totals"]), host
        assert row["sessions"] == truth["sessions"]
        assert row["os_users"] and all(isinstance(u, str) for u in row["os_users"])
        stamps = sorted(r["ts"] for r in truth["by_request"])
        assert row["first_at"][:19] == stamps[0][:19] and row["last_at"][:19] == stamps[-1][:19]
        alone = get(client, f"/api/usage/stats?tz=UTC&host={host}")["totals"]
        assert row["cost_usd"] == pytest.approx(alone["cost_usd"], abs=1e-6) and row["cost_usd"] > 0
    assert data["totals"] == stats["totals"]
    assert sum(h["requests"] for h in data["hosts"]) == stats["totals"]["requests"]
    assert sum(h["cost_usd"] for h in data["hosts"]) == pytest.approx(stats["totals"]["cost_usd"], abs=1e-5)
    assert [h["cost_usd"] for h in data["hosts"]] == sorted((h["cost_usd"] for h in data["hosts"]), reverse=True)

    # the page's filters apply per machine; the machine count does not depend on them
    day = "2026-09-03"
    cut = get(client, f"/api/usage/hosts?tz=UTC&since={day}&until={day}")
    assert {h["host"]: as_truth(h) for h in cut["hosts"]} == \
        {host: truth_fields(truth["by_day_utc"][day]) for host, (_, truth) in two_trees.items()
         if day in truth["by_day_utc"]}
    assert get(client, f"/api/usage/stats?since={day}&until={day}&host=alpha")["hosts"] == 2
    assert get(client, "/api/usage/hosts?host=beta")["hosts"][0]["host"] == "beta"


# ---------------------------------------------------------------- the page

def write_tree(root: Path, name: str, stamps: list[dt.datetime], output: int) -> None:
    (root / "projects").mkdir(parents=True, exist_ok=True)
    lines = [fl.assistant(f"msg_{name}_{i}", f"req_{name}_{i}", session=f"sess-{name}", model="claude-sonnet-4-5",
                          at=iso(t), cwd=f"/src/{name}", u=fl.usage(input=100, output=output, cache_read=20_000))
             for i, t in enumerate(stamps)]
    fl.write(fl.session_path(root, f"sess-{name}", f"/src/{name}"), lines)


@pytest.mark.skipif(not CHROMIUM.exists(),
                    reason="needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium)")
def test_machines_panel_appears_with_a_second_host(isolated_env, tmp_path, browser):  # noqa: F811
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    alpha = "alpha-workstation.build.corp.example.com"          # long names must not widen the page
    write_tree(tmp_path / "alpha", "alpha", [now - dt.timedelta(hours=h) for h in (30, 5, 2)], output=700)
    ingest_as(alpha, tmp_path / "alpha")
    app = create_app({"DEFAULT_TZ": "UTC", "POLL_MS": 300})
    client = app.test_client()
    started = time.monotonic()
    with serving(app) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors = watch_console(page)
        page.goto(url + "/")
        page.wait_for_selector('#card-requests .value[data-value="3"]', timeout=10_000)
        page.wait_for_selector("#models tbody tr")
        assert get(client, "/api/usage/stats")["hosts"] == 1
        assert page.locator("#hosts-panel").is_hidden()          # one machine: nothing to split

        # a second machine writes to the same ledger: the panel appears without a reload
        page.evaluate("window.__marker = 1")
        write_tree(tmp_path / "beta", "beta", [now - dt.timedelta(days=45), now - dt.timedelta(hours=1),
                                                now - dt.timedelta(minutes=10)], output=4_000)
        ingest_as("beta", tmp_path / "beta")
        page.wait_for_selector("#hosts-panel", state="visible", timeout=10_000)
        assert page.evaluate("window.__marker") == 1

        def check_rows(query: str, count: str) -> None:
            api = get(client, "/api/usage/hosts" + query)["hosts"]
            assert [h["host"] for h in api] == ["beta", alpha]                 # by cost
            page.wait_for_function("c => document.getElementById('hosts-count').textContent.startsWith(c)",
                                   arg=count, timeout=10_000)
            rows = page.locator("#hosts tbody tr")
            assert rows.count() == 2
            for i, h in enumerate(api):
                cells = rows.nth(i).locator("td").all_inner_texts()
                assert rows.nth(i).get_attribute("data-host") == h["host"]
                assert cells[0] == h["host"] and cells[1] == ", ".join(h["os_users"])
                assert cells[2:6] == [fmt_int(h["sessions"]), fmt_int(h["requests"]), fmt_tokens(h["total_tokens"]),
                                      fmt_cost(h["cost_usd"])]
                assert cells[7].endswith("ago")
            assert rows.nth(0).locator(".sharebar span").count() == 1

        # the default 30-day range leaves out beta's 45-day-old request; "All" brings it in
        since = (dt.datetime.fromisoformat(get(client, "/api/usage/stats")["today"]["date"])
                 - dt.timedelta(days=29)).date().isoformat()
        check_rows(f"?since={since}", "2 machines · last 30 days")
        assert page.locator('#hosts tbody tr[data-host="beta"] td').nth(3).inner_text() == "2"
        page.locator('.seg button[data-range="all"]').click()
        check_rows("", "2 machines · all time")
        page.wait_for_function("() => document.querySelector('#hosts tbody tr[data-host=beta] td:nth-child(4)')"
                               ".textContent === '3'", timeout=10_000)

        # phone width, dark: the panel fits (secondary columns drop out)
        phone = browser.new_page(viewport={"width": 390, "height": 844}, color_scheme="dark")
        phone_errors = watch_console(phone)
        phone.goto(url + "/")
        phone.wait_for_selector("#hosts-panel", state="visible", timeout=10_000)
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390
        wrap = phone.locator("#hosts-panel .table-wrap")
        assert wrap.evaluate("w => w.scrollWidth <= w.clientWidth")        # no sideways scrolling in the panel
        assert phone.locator("#hosts tbody tr").first.locator("td:visible").count() == 3     # host, cost, last active
        assert errors == [] and phone_errors == []
    assert time.monotonic() - started < 10
