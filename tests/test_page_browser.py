"""The stats page in a real headless Chromium, against a real server on a loopback port, over a ledger
built by the real ingest: formatted totals, the chart, live updates without reload, no console errors.

`CCTALLY_SCREENSHOT=docs/screenshot.png pytest tests/test_page_browser.py -k screenshot` also renders the
page over a realistic corpus (100 days, ~9k requests) and saves the picture.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import random
import threading
import time
from contextlib import contextmanager
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Iterator

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from werkzeug.serving import make_server

import fixtures_lines as fl
from daemon.cli import main
from daemon.config import database_url
from daemon.store import open_store
from truth import generate
from web import create_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium)")


# ---------------------------------------------------------------- the page's number formats, mirrored
# JS `x.toFixed(n)` rounds the exact binary value half up; Decimal(float) + ROUND_HALF_UP does the same.

def fmt_int(n: int) -> str:
    return f"{n:,}"


def fmt_cost(v: float) -> str:
    return "$" + format(Decimal(v).quantize(Decimal("0.01"), ROUND_HALF_UP), ",")


def fmt_tokens(n: int) -> str:
    if n < 10_000:
        return fmt_int(n)
    for limit, div, unit in ((999_950, 1e3, "K"), (999_950_000, 1e6, "M"), (999_950_000_000, 1e9, "B")):
        if n < limit:
            return f"{Decimal(n / div).quantize(Decimal('0.1'), ROUND_HALF_UP)}{unit}"
    return f"{Decimal(n / 1e12).quantize(Decimal('0.1'), ROUND_HALF_UP)}T"


def test_format_mirror():
    assert fmt_cost(1234.5) == "$1,234.50" and fmt_cost(0.125) == "$0.13" and fmt_cost(0) == "$0.00"
    assert fmt_tokens(9999) == "9,999" and fmt_tokens(12_250) == "12.3K" and fmt_tokens(999_949) == "999.9K"
    assert fmt_tokens(999_950) == "1.0M" and fmt_tokens(126_000_000) == "126.0M"


# ---------------------------------------------------------------- a real server and a real browser

@contextmanager
def serving(app) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="test-web", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def watch_console(page: Page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    return errors


def iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def card(page: Page, name: str) -> tuple[str, str]:
    value = page.locator(f"#card-{name} .value")
    return value.get_attribute("data-value") or "", value.inner_text()


# ---------------------------------------------------------------- the test

@pytest.fixture
def ledger(isolated_env, monkeypatch) -> dict:
    """~1 MB of transcripts over the last 20 days plus one 45-day-old request, ingested for real."""
    today = dt.datetime.now(dt.timezone.utc).date()
    claude = isolated_env["claude"]
    truth = generate(claude, 1.0, seed=44, days=20, start=(today - dt.timedelta(days=21)).isoformat())
    old = dt.datetime.combine(today - dt.timedelta(days=45), dt.time(12), dt.timezone.utc)
    fl.write(fl.session_path(claude, "sess-old"), [fl.assistant("msg_old", "req_old", session="sess-old", at=iso(old))])
    assert main(["ingest"]) == 0
    return {"truth": truth, "claude": claude, "old_day": old.date()}


def test_page_shows_the_ledger_and_updates_live(ledger, browser):
    app = create_app({"DEFAULT_TZ": "UTC", "POLL_MS": 400})
    stats = app.test_client().get("/api/usage/stats").get_json()
    totals = stats["totals"]
    assert totals["requests"] == ledger["truth"]["totals"]["requests"] + 1
    with serving(app) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors = watch_console(page)
        started = time.monotonic()
        page.goto(url + "/")
        page.wait_for_selector(f'#card-requests .value[data-value="{totals["requests"]}"]', timeout=10_000)

        # totals cards, formatted
        assert card(page, "requests") == (str(totals["requests"]), fmt_int(totals["requests"]))
        assert card(page, "tokens") == (str(totals["total_tokens"]), fmt_tokens(totals["total_tokens"]))
        assert card(page, "cost")[1] == fmt_cost(totals["cost_usd"])
        assert card(page, "sessions") == (str(stats["sessions"]), fmt_int(stats["sessions"]))

        # the chart has bars (and a legend), the breakdowns and sessions have rows
        page.wait_for_selector("#chart svg rect.bar", timeout=10_000)
        assert page.locator("#chart svg rect.bar").count() > 5
        assert page.locator("#legend li").count() >= 1
        assert page.locator("#models tbody tr").count() >= 1
        assert page.locator("#projects tbody tr").count() >= 1
        assert page.locator("#sessions tbody tr").count() >= 1

        # how far back the ledger goes
        note = page.locator("#history-note")
        assert note.is_visible()
        beyond = (dt.datetime.now(dt.timezone.utc).date() - ledger["old_day"]).days - 30
        assert f"{beyond} days beyond Claude Code's 30-day cleanup" in note.inner_text()

        # sessions sort by a column (server side)
        page.locator('#sessions th[data-sort="cost_usd"]').click()
        page.wait_for_selector('#sessions th.sorted[data-sort="cost_usd"]')
        top = app.test_client().get("/api/usage/sessions?sort=cost_usd&since="
                                    + (dt.date.fromisoformat(stats["today"]["date"]) - dt.timedelta(days=29)).isoformat()
                                    ).get_json()["sessions"][0]
        page.wait_for_selector(f'#sessions tbody tr:first-child[data-session="{top["session_id"]}"]')

        # no process data in this ledger: said plainly
        assert "no process data" in page.locator("#processes").inner_text()

        # a new line in a transcript shows up without a reload
        page.evaluate("window.__marker = 1")
        request = ledger["truth"]["by_request"][0]
        path = fl.session_path(ledger["claude"], request["session"], request["project"])
        assert path.exists()
        fl.append(path, [fl.assistant("msg_live_1", "req_live_1", session=request["session"], cwd=request["project"],
                                      model="claude-opus-4-6", at=iso(dt.datetime.now(dt.timezone.utc)),
                                      u=fl.usage(input=5, output=4321, cache_read=100_000))])
        assert main(["ingest"]) == 0
        want = totals["requests"] + 1
        page.wait_for_selector(f'#card-requests .value[data-value="{want}"]', timeout=10_000)
        assert card(page, "requests")[1] == fmt_int(want)
        # a function, not a bare expression: the page's CSP forbids eval, which Playwright's retries of a
        # string predicate would need
        page.wait_for_function("() => document.querySelector('#recent tbody tr td:nth-child(3)')"
                               "?.textContent === '104.3K'", timeout=10_000)
        assert page.evaluate("window.__marker") == 1            # same document: no reload happened
        assert page.locator("#block .big").inner_text().startswith("$")   # the new request opened a block
        assert page.locator("#status").inner_text() == "live"

        # the sampler records a Claude process: it appears with CPU and memory sparklines
        now_ms = int(time.time() * 1000)
        store = open_store(database_url())
        with store.write():
            store.db.cursor().executemany(
                "INSERT INTO process_samples (host, ts_ms, pid, started_ms, name, cwd, project, session_id, "
                "cpu_percent, rss_bytes, threads, children) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [("h", now_ms - (5 - k) * 1000, 4321, now_ms - 60_000, "claude", request["project"],
                  request["project"], request["session"], 5.0 + k, 200_000_000 + k * 10_000_000, 12, 1)
                 for k in range(6)])
        page.wait_for_selector("#processes tbody tr", timeout=10_000)
        row = page.locator("#processes tbody tr").first
        assert "4321" in row.inner_text() and "10.0%" in row.inner_text()
        assert row.locator("svg.spark polyline").count() == 2

        # phone width: nothing spills sideways; dark scheme applies
        phone = browser.new_page(viewport={"width": 390, "height": 844}, color_scheme="dark")
        phone_errors = watch_console(phone)
        phone.goto(url + "/")
        phone.wait_for_selector("#chart svg rect.bar", timeout=10_000)
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390
        dark_bg = phone.evaluate("getComputedStyle(document.body).backgroundColor")
        light_bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert dark_bg != light_bg
        assert errors == [] and phone_errors == []
        assert time.monotonic() - started < 20


@pytest.mark.skipif(not os.environ.get("CCTALLY_SCREENSHOT"),
                    reason="set CCTALLY_SCREENSHOT=docs/screenshot.png to render the screenshot")
def test_screenshot(isolated_env, browser):
    """Render docs/screenshot.png over a realistic corpus: only when CCTALLY_SCREENSHOT names the file.

    No Claude process runs where this is made, so the process panel shows synthetic samples.
    """
    out = str(Path(os.environ["CCTALLY_SCREENSHOT"]).resolve())
    claude = isolated_env["claude"]
    now = dt.datetime.now(dt.timezone.utc)
    today = now.date()
    generate(claude, 60, seed=3, days=100, start=(today - dt.timedelta(days=100)).isoformat())
    rnd = random.Random(5)
    lines, t, i = [], now - dt.timedelta(minutes=150), 0
    cwd = "/home/dev/src/api-server"
    while t < now - dt.timedelta(seconds=30):                  # a session running right now
        lines.append(fl.user("x", session="live-session", at=iso(t), cwd=cwd))
        t += dt.timedelta(seconds=rnd.uniform(3, 20))
        lines.append(fl.assistant(f"msg_live{i}", f"req_live{i}", session="live-session", model="claude-opus-4-6",
                                  at=iso(t), cwd=cwd, u=fl.usage(input=rnd.randint(1, 9), output=rnd.randint(50, 900),
                                                                 cache_read=rnd.randint(20_000, 90_000),
                                                                 cache_5m=rnd.randint(0, 4000))))
        t += dt.timedelta(seconds=rnd.uniform(20, 200))
        i += 1
    fl.write(fl.session_path(claude, "live-session", cwd), lines)
    assert main(["ingest"]) == 0
    store = open_store(database_url())
    now_ms = int(time.time() * 1000)
    samples = []
    for pid, proj, sid, cpu0, rss0 in ((48211, cwd, "live-session", 9, 420e6), (50377, "/home/dev/src/web_app", None, 2, 310e6)):
        rss = rss0
        for k in range(360):
            cpu = max(0.3, cpu0 + rnd.uniform(-3, 3) + (rnd.uniform(10, 35) if rnd.random() < 0.06 else 0))
            rss = max(1e8, rss + rnd.uniform(-4e6, 5e6))
            samples.append(("host", now_ms - (359 - k) * 5000, pid, now_ms - 3_600_000, "claude", proj, proj, sid,
                            round(cpu, 1), int(rss), 14, 2))
    with store.write():
        store.db.cursor().executemany(
            "INSERT INTO process_samples (host, ts_ms, pid, started_ms, name, cwd, project, session_id, "
            "cpu_percent, rss_bytes, threads, children) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", samples)
    scheme = os.environ.get("CCTALLY_SCREENSHOT_SCHEME", "dark")
    with serving(create_app({"POLL_MS": 1000})) as url:
        page = browser.new_page(viewport={"width": 1360, "height": 900}, color_scheme=scheme)
        errors = watch_console(page)
        page.goto(url + "/")
        page.wait_for_selector("#chart svg rect.bar")
        page.wait_for_selector("#processes table")
        page.wait_for_timeout(500)
        page.screenshot(path=out, full_page=True)
        assert errors == []
