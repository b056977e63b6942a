"""FORMAT-NOTES section 5, rule by rule, through the real Ingester on real files and a real SQLite ledger."""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest
from genai_prices import Usage, calc_price

from daemon.cli import main
from fixtures_lines import (agent_progress, append, assistant, cost_state, epoch_ms, files, ingest, key, msg_id,
                            req_id, result_line, rows, session_path, synthetic_error, task_result_user, tokens,
                            ts, usage, user, write)

CWD = "/home/dev/src/api-server"


@pytest.fixture
def root(isolated_env) -> Path:
    return isolated_env["claude"]


@pytest.fixture
def db(isolated_env) -> Path:
    return isolated_env["db"]


def report(kind: str, *extra: str) -> dict:
    """`cctally report KIND --json --tz UTC --no-ingest` through the real CLI."""
    import io
    import contextlib
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["report", kind, "--json", "--tz", "UTC", "--no-ingest", *extra]) == 0
    return json.loads(out.getvalue())


# ------------------------------------------------------------------ 5.1 streamed copies

def streamed(mid="m1", rid="r1", outputs=(3, 3, 219), **kw):
    """One response written as len(outputs) lines, 300 ms apart; the last has `speed` and iterations."""
    lines = []
    for i, out in enumerate(outputs):
        last = i == len(outputs) - 1
        extra = {"speed": "standard", "iterations": []} if last else {}
        lines.append(assistant(msg_id(mid), req_id(rid) if rid else None, at=ts(1, 10, 0, 0, 300 * i),
                               stop_reason="tool_use" if last else None,
                               u=usage(input=5, output=out, cache_read=1000, cache_5m=40, **extra), **kw))
    return lines


SPLITS = ["one_batch", "line_per_batch", "ingest_per_line"]


def write_and_ingest(root, db, path, lines, split):
    """Write `lines` to `path` and ingest: all at once, one commit per line, or one catch-up per line."""
    if split == "ingest_per_line":
        for ln in lines:
            append(path, [ln])
            ingest([root], db)
        return
    write(path, lines)
    ingest([root], db, batch_bytes=1 if split == "line_per_batch" else None)


@pytest.mark.parametrize("split", SPLITS)
def test_placeholder_copies_then_final_count_once_with_the_final_output(root, db, split):
    write_and_ingest(root, db, session_path(root), streamed(outputs=(3, 3, 219)), split)
    got = rows(db)
    assert list(got) == [key(msg_id("m1"), req_id("r1"))]
    r = got[key(msg_id("m1"), req_id("r1"))]
    assert tokens(r) == (5, 219, 40, 0, 1000)
    assert r["speed"] == "standard"
    assert r["ts_ms"] == epoch_ms(ts(1, 10, 0, 0, 0))          # earliest copy's timestamp


@pytest.mark.parametrize("split", SPLITS)
def test_max_output_copy_supplies_all_fields_even_if_not_last(root, db, split):
    # mid-stream model fallback: the copies differ in model and cache figures; the max-output copy wins whole
    lines = [
        assistant(msg_id(1), req_id(1), at=ts(1, 10), model="claude-opus-4-6",
                  u=usage(input=5, output=3, cache_read=1000, cache_5m=40)),
        assistant(msg_id(1), req_id(1), at=ts(1, 10, 0, 1), model="claude-sonnet-4-6",
                  u=usage(input=6, output=500, cache_read=2000, cache_1h=70, speed="fast")),
        assistant(msg_id(1), req_id(1), at=ts(1, 10, 0, 2), model="claude-opus-4-6",
                  u=usage(input=5, output=4, cache_read=1000, cache_5m=40)),
    ]
    write_and_ingest(root, db, session_path(root), lines, split)
    (r,) = rows(db).values()
    assert (r["model"], r["speed"]) == ("claude-sonnet-4-6", "fast")
    assert tokens(r) == (6, 500, 0, 70, 2000)                  # not a per-field max
    assert r["ts_ms"] == epoch_ms(ts(1, 10))


@pytest.mark.parametrize("split", SPLITS)
def test_tie_on_output_goes_to_the_later_line(root, db, split):
    # equal output, equal total, both without speed: the later line wins with all its fields
    lines = [
        assistant(msg_id(1), req_id(1), at=ts(1, 10), model="claude-opus-4-6",
                  u=usage(input=100, output=50, cache_read=900)),
        assistant(msg_id(1), req_id(1), at=ts(1, 10, 0, 1), model="claude-sonnet-4-6",
                  u=usage(input=200, output=50, cache_read=800)),
    ]
    write_and_ingest(root, db, session_path(root), lines, split)
    (r,) = rows(db).values()
    assert r["model"] == "claude-sonnet-4-6"
    assert tokens(r) == (200, 50, 0, 0, 800)
    assert r["ts_ms"] == epoch_ms(ts(1, 10))


def test_earliest_timestamp_decides_the_day(root, db):
    lines = [assistant(msg_id(1), req_id(1), at="2026-09-01T23:59:59.900Z", u=usage(output=2)),
             assistant(msg_id(1), req_id(1), at="2026-09-02T00:00:00.400Z", u=usage(output=900))]
    write(session_path(root), lines)
    ingest([root], db)
    daily = report("daily")["daily"]
    assert [(d["date"], d["output_tokens"], d["requests"]) for d in daily] == [("2026-09-01", 900, 1)]


def test_final_copy_in_a_later_file_still_keeps_the_earliest_time(root, db):
    write(session_path(root, "sess-1"), [assistant(msg_id(1), req_id(1), at=ts(2, 10), u=usage(output=900))])
    ingest([root], db)
    # a resumed copy (other file) carries an earlier timestamp but a placeholder count
    write(session_path(root, "sess-2"), [assistant(msg_id(1), req_id(1), at=ts(1, 9), u=usage(output=2))])
    s = ingest([root], db)
    (r,) = rows(db).values()
    assert r["output_tokens"] == 900 and r["ts_ms"] == epoch_ms(ts(1, 9))
    assert (s.new_requests, s.updated_requests) == (0, 1)


# ------------------------------------------------------------------ 5.4 keys

def test_key_message_and_request_id(root, db):
    # same message id under two request ids (main chain) are two requests; same pair twice is one
    write(session_path(root), [assistant(msg_id(1), req_id(1), at=ts()), assistant(msg_id(1), req_id(2), at=ts()),
                               assistant(msg_id(1), req_id(2), at=ts())])
    ingest([root], db)
    assert set(rows(db)) == {key(msg_id(1), req_id(1)), key(msg_id(1), req_id(2))}


def test_key_without_request_id_is_scoped_by_session(root, db):
    # gateways omit requestId and may reuse one message id ("ocgo") in every session
    write(session_path(root, "sess-a"), [assistant("ocgo", None, session="sess-a", at=ts(), u=usage(output=2)),
                                         assistant("ocgo", None, session="sess-a", at=ts(), u=usage(output=40))])
    write(session_path(root, "sess-b"), [assistant("ocgo", None, session="sess-b", at=ts(), u=usage(output=7))])
    ingest([root], db)
    got = rows(db)
    assert set(got) == {key("ocgo", None, "sess-a"), key("ocgo", None, "sess-b")}
    assert got[key("ocgo", None, "sess-a")]["output_tokens"] == 40


def test_lines_without_message_id_are_keyed_by_uuid(root, db):
    a = assistant(None, None, at=ts(), uid="uuid-a", u=usage(output=11))
    b = assistant(None, None, at=ts(), uid="uuid-b", u=usage(output=12))
    write(session_path(root, "sess-1"), [a, b])
    write(session_path(root, "sess-2"), [a])                   # the same line copied into another file
    ingest([root], db)
    assert set(rows(db)) == {"u:uuid-a", "u:uuid-b"}


# ------------------------------------------------------------------ 5.3 global keys

def test_resumed_session_copies_in_another_file_count_once(root, db):
    original = [user(at=ts(1, 9)), *streamed("m1", "r1"), user(at=ts(1, 11)), *streamed("m2", "r2", (1, 80))]
    write(session_path(root, "sess-1"), original)
    # the resumed session starts with the prior conversation (original ids and timestamps), then goes on
    resumed = original + [assistant(msg_id(3), req_id(3), session="sess-1b", at=ts(2, 9), u=usage(output=33))]
    write(session_path(root, "sess-1b"), resumed)
    s = ingest([root], db)
    got = rows(db)
    assert set(got) == {key(msg_id("m1"), req_id("r1")), key(msg_id("m2"), req_id("r2")), key(msg_id(3), req_id(3))}
    assert s.new_requests == 3
    assert got[key(msg_id("m2"), req_id("r2"))]["output_tokens"] == 80


def test_two_roots_with_copied_content_count_once(root, db, tmp_path):
    second = tmp_path / "config-copy"
    lines = [*streamed("m1", "r1"), assistant(msg_id(2), req_id(2), at=ts(), u=usage(output=5))]
    write(session_path(root), lines)
    write(session_path(second), lines)
    s = ingest([root, second], db)
    assert s.files_seen == 2 and s.new_requests == 2
    assert len(rows(db)) == 2
    assert report("daily", "--claude-dir", str(root), "--claude-dir", str(second))["totals"]["requests"] == 2


def test_same_file_through_a_symlinked_dir_and_a_second_root_counts_once(root, db, tmp_path):
    real_dir = tmp_path / "elsewhere" / "proj"
    write(real_dir / "sess-1.jsonl", [*streamed("m1", "r1")])
    os.symlink(real_dir, root / "projects" / "-home-dev-src-api-server")
    os.symlink(real_dir, root / "projects" / "alias-of-the-same-project")
    second = tmp_path / "second-root"
    (second / "projects").mkdir(parents=True)
    os.symlink(real_dir, second / "projects" / "proj")
    s = ingest([root, second], db)
    assert s.files_seen == 1
    assert list(files(db)) == [os.path.realpath(real_dir / "sess-1.jsonl")]
    (r,) = rows(db).values()
    assert r["output_tokens"] == 219


def test_symlinked_projects_dir_and_ingest_path(root, db, tmp_path):
    """`projects/` itself may be a symlink (FORMAT-NOTES 6): catch-up and watcher hints both read it."""
    from daemon.ingest import Ingester
    from fixtures_lines import HOST, db_url
    from daemon.store import open_store
    alt = tmp_path / "alt-claude"
    target = tmp_path / "real-projects"
    write(target / "p" / "sess-1.jsonl", [*streamed("m1", "r1")])
    alt.mkdir()
    os.symlink(target, alt / "projects")
    ing = Ingester(open_store(db_url(db)), [alt], host=HOST)
    s = ing.ingest_path(str(alt / "projects" / "p" / "sess-1.jsonl"))
    assert s.new_requests == 1
    append(target / "p" / "sess-1.jsonl", [assistant(msg_id(2), req_id(2), at=ts())])
    assert ing.ingest_path(str(target / "p" / "sess-1.jsonl")).new_requests == 1
    assert ing.catch_up().new_requests == 0
    assert len(rows(db)) == 2


# ------------------------------------------------------------------ 5.2 /btw replays

def main_copy(**kw):
    return assistant(msg_id("M"), req_id("R1"), at=ts(1, 10), u=usage(input=5, output=300, cache_read=50_000), **kw)


def replay_copy(**kw):
    return assistant(msg_id("M"), req_id("R2"), at=ts(1, 12), sidechain=True,
                     u=usage(input=5, output=300, cache_read=50_000), **kw)


def btw_file(root):
    return root / "projects" / "-home-dev-src-api-server" / "sess-1" / "subagents" / "agent-aside1.jsonl"


@pytest.mark.parametrize("order", ["main_first", "replay_first"])
def test_btw_replay_dropped_across_ingests(root, db, order):
    if order == "main_first":
        write(session_path(root), [main_copy()])
        ingest([root], db)
        write(btw_file(root), [user(), replay_copy()])
        ingest([root], db)
    else:
        write(btw_file(root), [user(), replay_copy()])
        ingest([root], db)
        assert len(rows(db)) == 1                       # alone, it looks like a request
        write(session_path(root), [main_copy()])
        s = ingest([root], db)
        assert s.new_requests == 0                      # one inserted, the replay deleted
    got = rows(db)
    assert list(got) == [key(msg_id("M"), req_id("R1"))]
    assert not got[key(msg_id("M"), req_id("R1"))]["is_sidechain"]
    assert report("daily")["totals"]["requests"] == 1


def test_btw_replay_read_first_in_one_catch_up(root, db):
    # the replay's file sorts before the main file, and inside it the replay precedes its own main copy
    early = root / "projects" / "-home-dev-src-api-server" / "aaa-side" / "subagents" / "agent-x.jsonl"
    write(early, [replay_copy(session="sess-1")])
    write(session_path(root, "zzz-main"), [replay_copy(), main_copy()])
    assert str(early) < str(session_path(root, "zzz-main"))
    ingest([root], db, batch_bytes=1)
    assert list(rows(db)) == [key(msg_id("M"), req_id("R1"))]


def test_sidechain_with_other_message_ids_always_counts(root, db):
    write(session_path(root), [main_copy()])
    sub = [assistant(msg_id(f"S{i}"), req_id(f"S{i}"), sidechain=True, agent="a1", at=ts(1, 11, i), u=usage(output=10 + i))
           for i in range(3)]
    write(btw_file(root), sub)
    ingest([root], db)
    assert len(rows(db)) == 4


def test_replay_with_the_same_request_id_is_the_same_request(root, db):
    write(session_path(root), [main_copy()])
    write(btw_file(root), [assistant(msg_id("M"), req_id("R1"), at=ts(1, 12), sidechain=True,
                                     u=usage(input=5, output=300, cache_read=50_000))])
    ingest([root], db)
    assert list(rows(db)) == [key(msg_id("M"), req_id("R1"))]


# ------------------------------------------------------------------ not requests

def test_synthetic_zero_and_non_request_lines_store_nothing(root, db):
    inner = assistant(msg_id("B"), req_id("B"), at=ts(), u=usage(output=99))
    write(session_path(root), [
        synthetic_error(), assistant(msg_id(1), req_id(1), at=ts(), u=usage(input=0, output=0)),
        cost_state(), cost_state(20.0), result_line(), task_result_user(),
        agent_progress(inner, data_type="bash_progress"), agent_progress(inner, data_type="hook_progress"),
        {"type": "system", "subtype": "compact_boundary", "compactMetadata": {"trigger": "auto", "preTokens": 150000}},
        {"type": "file-history-snapshot", "messageId": "x", "snapshot": {}, "isSnapshotUpdate": False},
    ])
    s = ingest([root], db)
    assert rows(db) == {} and s.new_requests == 0 and s.skipped_lines == 0
    models = report("models")
    assert models["models"] == [] and "<synthetic>" not in json.dumps(models)


# ------------------------------------------------------------------ 5.2 agent_progress

SUB_CWD = "/home/dev/src/api-server"


def sub_lines():
    """A subagent's own file: two responses, the first streamed (placeholder then final)."""
    return [
        user(at=ts(1, 10, 1), isSidechain=True, agentId="a1b2c3d"),
        assistant(msg_id("A1"), req_id("A1"), at=ts(1, 10, 1, 2), sidechain=True, agent="a1b2c3d",
                  model="claude-haiku-4-5-20251001", u=usage(input=3, output=1, cache_read=500), stop_reason=None),
        assistant(msg_id("A1"), req_id("A1"), at=ts(1, 10, 1, 3), sidechain=True, agent="a1b2c3d",
                  model="claude-haiku-4-5-20251001", u=usage(input=3, output=120, cache_read=500)),
        assistant(msg_id("A2"), req_id("A2"), at=ts(1, 10, 2, 0), sidechain=True, agent="a1b2c3d",
                  model="claude-haiku-4-5-20251001", u=usage(input=4, output=60, cache_1h=77)),
    ]


def parent_lines():
    """The parent file: a prompt, its own response, and agent_progress lines embedding the subagent's finals."""
    sub = sub_lines()
    return [user(at=ts(1, 10)),
            assistant(msg_id("P1"), req_id("P1"), at=ts(1, 10, 0, 5), u=usage(output=40)),
            agent_progress(sub[2], at=ts(1, 10, 1, 1)),    # the progress line predates the copy
            agent_progress(sub[3], at=ts(1, 10, 2, 0))]


def sub_path(root):
    return root / "projects" / "-home-dev-src-api-server" / "sess-1" / "subagents" / "agent-a1b2c3d.jsonl"


def test_agent_progress_counts_when_the_subagent_file_is_missing(root, db):
    write(session_path(root), parent_lines())
    ingest([root], db)
    got = rows(db)
    assert set(got) == {key(msg_id(x), req_id(x)) for x in ("P1", "A1", "A2")}
    a1 = got[key(msg_id("A1"), req_id("A1"))]
    assert a1["embedded"] and a1["is_sidechain"] and a1["agent_id"] == "a1b2c3d"
    assert tokens(a1) == (3, 120, 0, 0, 500) and a1["model"] == "claude-haiku-4-5-20251001"
    assert a1["ts_ms"] == epoch_ms(ts(1, 10, 1, 1))


@pytest.mark.parametrize("order", ["parent_first", "subagent_first", "one_catch_up"])
def test_agent_progress_merges_with_the_subagent_file(root, db, order):
    if order == "subagent_first":
        write(sub_path(root), sub_lines())
        ingest([root], db)
        write(session_path(root), parent_lines())
        s = ingest([root], db)
    elif order == "parent_first":
        write(session_path(root), parent_lines())
        ingest([root], db)
        write(sub_path(root), sub_lines())
        s = ingest([root], db)
    else:
        write(session_path(root), parent_lines())
        write(sub_path(root), sub_lines())
        s = ingest([root], db, batch_bytes=1)
    got = rows(db)
    assert set(got) == {key(msg_id(x), req_id(x)) for x in ("P1", "A1", "A2")}
    if order != "one_catch_up":
        assert s.new_requests == (1 if order == "subagent_first" else 0)
    for x, want in (("A1", (3, 120, 0, 0, 500)), ("A2", (4, 60, 0, 77, 0))):
        r = got[key(msg_id(x), req_id(x))]
        assert tokens(r) == want
        assert not r["embedded"], "the direct copy supplies the fields"
        assert r["is_sidechain"] and r["agent_id"] == "a1b2c3d"
    # the earliest sighting (the progress line) stays the request's time whichever file came first
    assert got[key(msg_id("A1"), req_id("A1"))]["ts_ms"] == epoch_ms(ts(1, 10, 1, 1))
    totals = report("daily")["totals"]
    assert (totals["requests"], totals["output_tokens"]) == (3, 40 + 120 + 60)


def test_direct_copy_supplies_fields_even_with_a_smaller_output(root, db):
    # the subagent file only ever got a placeholder; the embedded copy has the final count.
    # Project rule (FORMAT-NOTES 5.2 + cctally's copy_rank): the direct copy's fields are stored.
    inner = assistant(msg_id("A1"), req_id("A1"), at=ts(1, 10, 1), sidechain=True, agent="a1",
                      u=usage(input=3, output=120, cache_read=500))
    direct = assistant(msg_id("A1"), req_id("A1"), at=ts(1, 10, 1), sidechain=True, agent="a1",
                       u=usage(input=3, output=2, cache_read=500), cwd="/home/dev/src/sub-cwd")
    write(session_path(root), [agent_progress(inner, agent="a1")])
    write(sub_path(root), [direct])
    ingest([root], db)
    (r,) = rows(db).values()
    assert not r["embedded"] and r["project"] == "/home/dev/src/sub-cwd" and r["output_tokens"] == 2


# ------------------------------------------------------------------ cache_creation and legacy costUSD

def test_cache_creation_max_reaches_the_reports(root, db):
    write(session_path(root), [
        assistant(msg_id(1), req_id(1), at=ts(), u=usage(input=1, output=1, cache_5m=200, cache_1h=300, cache_creation=0)),
        assistant(msg_id(2), req_id(2), at=ts(), u=usage(input=1, output=1, cache_creation=400, breakdown=False)),
        assistant(msg_id(3), req_id(3), at=ts(), u=usage(input=1, output=1, cache_5m=10, cache_1h=20, cache_creation=100)),
    ])
    ingest([root], db)
    t = report("daily")["totals"]
    assert t["cache_creation_tokens"] == 500 + 400 + 100
    assert (t["cache_creation_5m_tokens"], t["cache_creation_1h_tokens"]) == (200 + 400 + 80, 300 + 20)
    assert t["total_tokens"] == 3 + 3 + 1000


def priced(model: str, i: int, o: int, w5: int, w1: int, r: int, at: str) -> float:
    """genai-prices' own figure for one request (the oracle; genai-prices' input includes cache tokens)."""
    u = Usage(input_tokens=i + w5 + w1 + r, cache_write_tokens=w5 + w1, cache_write_5m_tokens=w5,
              cache_write_1h_tokens=w1, cache_read_tokens=r, output_tokens=o)
    when = datetime.fromisoformat(at.replace("Z", "+00:00")).astimezone(timezone.utc)
    return float(calc_price(u, model, provider_id="anthropic", genai_request_timestamp=when).total_price)


def test_legacy_cost_usd_and_report_modes(root, db):
    model = "claude-opus-4-20250514"
    legacy = assistant(msg_id(1), req_id(1), at=ts(1, 10), model=model, version="1.0.8", costUSD=0.4321,
                       u=usage(input=1000, output=2000, cache_read=3000, breakdown=False))
    modern = assistant(msg_id(2), req_id(2), at=ts(1, 11), model=model, version="1.0.9",
                       u=usage(input=500, output=700, cache_read=0, breakdown=False))
    write(session_path(root), [legacy, modern])
    ingest([root], db)
    p1 = priced(model, 1000, 2000, 0, 0, 3000, ts(1, 10))
    p2 = priced(model, 500, 700, 0, 0, 0, ts(1, 11))
    assert p1 > 0 and p2 > 0 and abs(p1 - 0.4321) > 1e-3
    cost = {m: report("daily", "--mode", m)["totals"]["cost_usd"] for m in ("auto", "calculate", "display")}
    assert cost["auto"] == pytest.approx(0.4321 + p2, abs=2e-6)
    assert cost["calculate"] == pytest.approx(p1 + p2, abs=2e-6)
    assert cost["display"] == pytest.approx(0.4321, abs=2e-6)
