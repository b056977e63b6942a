"""FORMAT-NOTES section 6, case by case: bad input is counted and skipped, never losing the next line;
files that shrink, change, move or vanish keep what was already counted."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from fixtures_lines import (HOST, append, assistant, cli, dumps, epoch_ms, files, fresh_store, ingest, key, msg_id,
                            report_json, req_id, rows, session_path, set_mtime, summary_line, ts, usage, user,
                            write)


@pytest.fixture(autouse=True)
def same_host(monkeypatch):
    """`cctally status` reports the files of its own host: make it the host these tests ingest as."""
    monkeypatch.setenv("CCTALLY_HOST_ID", HOST)


@pytest.fixture
def root(isolated_env) -> Path:
    return isolated_env["claude"]


@pytest.fixture
def db(isolated_env) -> Path:
    return isolated_env["db"]


def req(n, **kw):
    kw.setdefault("at", ts(1, 10, n % 60))
    kw.setdefault("u", usage(input=n, output=10 * n))
    return assistant(msg_id(n), req_id(n), **kw)


def the_file(db: Path) -> dict:
    (f,) = files(db).values()
    return f


# ------------------------------------------------------------------ partial lines

def test_partial_last_line_is_held_back_then_counted_once(root, db):
    path = session_path(root)
    full = dumps(req(2))
    write(path, [req(1)], partial=full[:57])
    s = ingest([root], db)
    assert set(rows(db)) == {key(msg_id(1), req_id(1))}
    assert the_file(db)["offset"] == len(dumps(req(1))) + 1 and s.skipped_lines == 0
    assert ingest([root], db).new_requests == 0            # nothing changed, nothing read
    with open(path, "ab") as f:                            # the writer finishes the line, in two steps
        f.write(full[57:100])
    assert ingest([root], db).new_requests == 0
    with open(path, "ab") as f:
        f.write(full[100:] + b"\n")
    s = ingest([root], db)
    assert s.new_requests == 1 and s.skipped_lines == 0
    assert set(rows(db)) == {key(msg_id(1), req_id(1)), key(msg_id(2), req_id(2))}
    assert ingest([root], db).new_requests == 0
    assert the_file(db)["skipped_lines"] == 0 and the_file(db)["offset"] == path.stat().st_size


def test_file_holding_only_a_partial_line(root, db):
    path = session_path(root)
    write(path, [], partial=dumps(req(1))[:30])
    ingest([root], db)
    assert rows(db) == {} and the_file(db)["offset"] == 0
    with open(path, "ab") as f:
        f.write(dumps(req(1))[30:] + b"\n")
    assert ingest([root], db).new_requests == 1


# ------------------------------------------------------------------ bad lines, one file

BAD_LINES = [
    b"{not json",                                             # malformed
    b"[1,2,3]",                                               # malformed (not an object)
    b'"just a string"',                                       # malformed
    b"null",                                                  # malformed
    b'{"type":"assistant","message":{"id":"msg_x","usage":"zero"}}',      # malformed usage
    b'{"type":"assistant","requestId":"req_cut","message":{"id":"msg_cut","usage":{"input_tokens":99999,"output_to',
]                                                             # an unclean-shutdown line cut mid-file: malformed
HARMLESS_LINES = [
    b"", b"   ", b"\t",                                      # blank
    b'{"type":"mystery-future-type","payload":{"a":1}}',     # unknown type
    b'{"type":"user","message":{"content":"bad \xff\xfe utf8"}}',   # invalid UTF-8, not a request
    dumps(user("x" * 5_000_000)),                            # a 5 MB line
    dumps(summary_line()),
    dumps({"type": "cost-state", "totalCostUSD": 1.0, "modelUsage": {}}),
]


def test_every_bad_line_is_skipped_counted_and_the_next_line_kept(root, db):
    lines: list[bytes] = []
    n = 0
    for bad in BAD_LINES + HARMLESS_LINES:
        lines.append(bad)
        n += 1
        lines.append(dumps(req(n)))                           # the line right after must count
    write(session_path(root), lines)
    s = ingest([root], db)
    assert s.skipped_lines == len(BAD_LINES)
    assert set(rows(db)) == {key(msg_id(i), req_id(i)) for i in range(1, n + 1)}
    f = the_file(db)
    assert f["skipped_lines"] == len(BAD_LINES) and f["requests_seen"] == n
    assert f["offset"] == session_path(root).stat().st_size
    # skipped lines are counted once, not again on the next pass
    append(session_path(root), [req(99)])
    s = ingest([root], db)
    assert (s.new_requests, s.skipped_lines) == (1, 0) and the_file(db)["skipped_lines"] == len(BAD_LINES)
    code, out, _ = cli("status", "--json")
    assert code == 0 and '"skipped_lines": %d' % len(BAD_LINES) in out


def test_skipped_lines_are_counted_per_file(root, db):
    write(session_path(root, "s1"), [b"{garbage", dumps(req(1)), b"[]"])
    write(session_path(root, "s2"), [dumps(req(2))])
    write(session_path(root, "s3"), [b"nope", dumps(req(3))])
    assert ingest([root], db).skipped_lines == 3
    got = {Path(p).stem: f["skipped_lines"] for p, f in files(db).items()}
    assert got == {"s1": 2, "s2": 0, "s3": 1}


def test_invalid_utf8_inside_a_request_line_is_decoded_leniently(root, db):
    raw = dumps(req(1, text="MARK")).replace(b"MARK", b"\xed\xa0\x80 lone surrogate \xff")
    write(session_path(root), [raw, dumps(req(2))])
    s = ingest([root], db)
    assert s.new_requests == 2 and s.skipped_lines == 0
    assert rows(db)[key(msg_id(1), req_id(1))]["output_tokens"] == 10


def test_crlf_file(root, db):
    write(session_path(root), [req(1), user(), req(2, u=usage(output=3)), req(2, u=usage(output=30))],
          newline=b"\r\n")
    s = ingest([root], db)
    assert s.skipped_lines == 0 and s.new_requests == 2
    assert rows(db)[key(msg_id(2), req_id(2))]["output_tokens"] == 30


def test_null_fields_are_treated_as_absent(root, db):
    u = usage(input=5, output=50, cache_read=7, speed=None, inference_geo=None, iterations=None)
    u["service_tier"] = None
    line = assistant(msg_id(1), req_id(1), at=ts(), u=u, stop_reason=None, gitBranch=None, costUSD=None)
    # the final copy has nulls; ccusage would drop it and keep the placeholder
    write(session_path(root), [assistant(msg_id(1), req_id(1), at=ts(), u=usage(input=5, output=2, cache_read=7)), line])
    ingest([root], db)
    (r,) = rows(db).values()
    assert (r["output_tokens"], r["speed"], r["service_tier"], r["logged_cost_usd"]) == (50, None, None, None)


def test_unknown_model_is_kept_unpriced_and_flagged(root, db):
    write(session_path(root), [req(1, model="kimi-for-coding", u=usage(input=1000, output=2000)),
                               req(2, model="claude-sonnet-4-5-20250929")])
    ingest([root], db)
    r = rows(db)[key(msg_id(1), req_id(1))]
    assert (r["model"], r["priced"], r["cost_usd"]) == ("kimi-for-coding", 0, 0.0)
    models = report_json("models")
    by = {m["model"]: m for m in models["models"]}
    assert by["kimi-for-coding"]["priced"] is False and by["kimi-for-coding"]["cost_usd"] == 0
    assert by["kimi-for-coding"]["output_tokens"] == 2000 and by["kimi-for-coding"]["requests"] == 1
    assert by["claude-sonnet-4-5-20250929"]["priced"] is True and by["claude-sonnet-4-5-20250929"]["cost_usd"] > 0
    assert models["unpriced_models"] == ["kimi-for-coding"]
    assert report_json("daily")["unpriced_models"] == ["kimi-for-coding"]
    code, out, _ = cli("report", "models", "--tz", "UTC", "--no-ingest")
    assert code == 0 and "kimi-for-coding (not priced)" in out and "not priced" in out.splitlines()[-1]


def test_missing_timestamp_falls_back_without_crashing(root, db):
    path = session_path(root)
    first = req(1)
    del first["timestamp"]
    later = req(3)
    del later["timestamp"]
    write(path, [first, req(2, at=ts(5, 12)), later, req(4, at="not a time")])
    mtime_ns = epoch_ms(ts(7, 8)) * 1_000_000
    set_mtime(path, mtime_ns)
    s = ingest([root], db)
    assert s.new_requests == 4 and s.skipped_lines == 0
    got = rows(db)
    assert got[key(msg_id(1), req_id(1))]["ts_ms"] == epoch_ms(ts(7, 8))     # no earlier line: file mtime
    assert got[key(msg_id(3), req_id(3))]["ts_ms"] == epoch_ms(ts(5, 12))    # the previous line's time
    assert got[key(msg_id(4), req_id(4))]["ts_ms"] == epoch_ms(ts(5, 12))


# ------------------------------------------------------------------ files that change

def test_truncation_keeps_counted_rows_and_reads_on(root, db):
    path = session_path(root)
    write(path, [req(1), req(2), req(3)])
    ingest([root], db)
    with open(path, "r+b") as f:                              # CL-2.1.69: truncated in place
        f.truncate(len(dumps(req(1))) + 1)
    s = ingest([root], db)
    assert s.files_reset == 1 and s.new_requests == 0
    assert len(rows(db)) == 3                                 # the ledger keeps what it counted
    f = the_file(db)
    assert f["resets"] == 1 and f["offset"] == path.stat().st_size
    append(path, [req(4)])
    assert ingest([root], db).new_requests == 1
    assert len(rows(db)) == 4


def test_truncation_then_regrowth_past_the_old_offset(root, db):
    path = session_path(root)
    write(path, [req(1), req(2)])
    ingest([root], db)
    old_offset = the_file(db)["offset"]
    write(path, [req(1), req(5, u=usage(input=5, output=12345)), req(6), req(7)])   # longer, other bytes
    assert path.stat().st_size > old_offset
    s = ingest([root], db)
    assert s.files_reset == 1 and s.new_requests == 3
    assert len(rows(db)) == 5


def test_rewrite_in_place_same_size(root, db):
    path = session_path(root)
    write(path, [req(1), req(2, u=usage(input=2, output=20))])
    ingest([root], db)
    size, ino = path.stat().st_size, path.stat().st_ino
    before = the_file(db)
    replacement = dumps(req(1)) + b"\n" + dumps(req(8, u=usage(input=2, output=20))) + b"\n"
    assert len(replacement) == size
    with open(path, "r+b") as f:
        f.write(replacement)
    st = path.stat()
    set_mtime(path, st.st_mtime_ns + 5_000_000)              # time passes between two writes
    assert (path.stat().st_size, path.stat().st_ino) == (size, ino)
    s = ingest([root], db)
    assert s.files_reset == 1 and (s.new_requests, s.updated_requests) == (1, 0)
    assert set(rows(db)) == {key(msg_id(i), req_id(i)) for i in (1, 2, 8)}
    assert the_file(db)["resets"] == before["resets"] + 1


def test_replacement_with_a_new_inode(root, db):
    path = session_path(root)
    write(path, [req(1), req(2)])
    ingest([root], db)
    tmp = path.with_suffix(".tmp")
    write(tmp, [req(2), req(3)])                              # a rewrite that dropped line 1
    keep = path.with_suffix(".old")
    os.link(path, keep)                                      # the old inode stays allocated
    os.replace(tmp, path)
    keep.unlink()
    s = ingest([root], db)
    assert s.files_reset == 1 and s.new_requests == 1
    assert set(rows(db)) == {key(msg_id(i), req_id(i)) for i in (1, 2, 3)}
    assert the_file(db)["inode"] == path.stat().st_ino


def test_deletion_keeps_rows_forever_and_marks_the_file_missing(root, db):
    path = session_path(root)
    write(path, [req(1), req(2)])
    ingest([root], db)
    path.unlink()
    s = ingest([root], db)
    assert s.files_missing == 1 and len(rows(db)) == 2 and the_file(db)["missing"]
    assert ingest([root], db).files_missing == 0              # reported once
    fresh_store(db)                                           # a restart changes nothing
    ingest([root], db)
    assert len(rows(db)) == 2 and report_json("daily")["totals"]["requests"] == 2
    code, out, _ = cli("status")
    assert code == 0 and "1 deleted from disk" in out
    write(path, [req(3)])                                     # a new file at the same path
    s = ingest([root], db)
    assert s.new_requests == 1 and not the_file(db)["missing"]
    assert len(rows(db)) == 3


def test_whole_session_dir_removed_by_cleanup(root, db):
    sess = session_path(root)
    sub = sess.parent / "sess-1" / "subagents" / "agent-a1.jsonl"
    write(sess, [req(1)])
    write(sub, [req(2, sidechain=True, agent="a1")])
    ingest([root], db)
    sess.unlink()
    shutil.rmtree(sess.parent / "sess-1")                     # CL-2.1.110 removes the whole <sessionId>/ dir
    assert ingest([root], db).files_missing == 2
    assert len(rows(db)) == 2


def test_file_that_comes_back_unchanged_is_no_longer_missing(root, db):
    proj = session_path(root).parent
    write(session_path(root), [req(1)])
    ingest([root], db)
    away = root.parent / "moved-away"
    os.rename(proj, away)                                    # e.g. a project dir moved out and back
    assert ingest([root], db).files_missing == 1
    os.rename(away, proj)
    s = ingest([root], db)
    assert s.new_requests == 0
    assert not the_file(db)["missing"]
    code, out, _ = cli("status")
    assert "0 deleted from disk" in out


# ------------------------------------------------------------------ layout

def test_nested_subagents_workflows_and_flat_agent_files(root, db):
    proj = session_path(root).parent
    write(session_path(root), [req(1)])
    write(proj / "agent-a0f.jsonl", [req(2, sidechain=True, agent="a0f")])                 # 2.0.x flat
    write(proj / "sess-1" / "subagents" / "agent-a1.jsonl", [req(3, sidechain=True)])        # 2.1.2+
    write(proj / "sess-1" / "subagents" / "agent-acompact-9f.jsonl", [req(4, sidechain=True)])
    write(proj / "sess-1" / "subagents" / "workflows" / "wf_1" / "agent-a2.jsonl", [req(5, sidechain=True)])
    write(proj / "orphan-sess" / "subagents" / "agent-zz.jsonl", [req(6, session="orphan-sess")])   # no parent
    ingest([root], db)
    assert set(rows(db)) == {key(msg_id(i), req_id(i)) for i in range(1, 7)}
    assert rows(db)[key(msg_id(6), req_id(6))]["session_id"] == "orphan-sess"


def test_journal_meta_json_tool_results_and_files_outside_projects_are_not_read(root, db):
    proj = session_path(root).parent
    write(session_path(root), [req(1)])
    bait = [req(90)]
    write(proj / "sess-1" / "subagents" / "journal.jsonl", bait)
    write(proj / "sess-1" / "subagents" / "agent-a1.meta.json", bait)
    write(proj / "sess-1" / "tool-results" / "toolu_1.txt", bait)
    write(proj / "sess-1" / "tool-results" / "spill.jsonl", bait)
    write(proj / "sessions-index.json", bait)
    write(root / "history.jsonl", bait)
    write(root / "transcripts" / "t.jsonl", bait)
    s = ingest([root], db)
    assert s.files_seen == 1
    assert set(rows(db)) == {key(msg_id(1), req_id(1))}


def test_pointer_session_file_with_no_messages(root, db):
    write(session_path(root), [summary_line(), {"type": "file-history-snapshot", "messageId": "x",
                                                "snapshot": {"trackedFileBackups": {}}, "isSnapshotUpdate": False}])
    s = ingest([root], db)
    assert (s.files_seen, s.new_requests, s.skipped_lines) == (1, 0, 0)


def test_symlink_loop_does_not_hang(root, db):
    write(session_path(root), [req(1)])
    os.symlink(root / "projects", root / "projects" / "loop")
    os.symlink(session_path(root).parent, session_path(root).parent / "self")
    s = ingest([root], db)
    assert s.files_seen == 1 and len(rows(db)) == 1


def test_cwd_changes_inside_a_file(root, db):
    write(session_path(root), [req(1, cwd="/home/dev/site"), req(2, cwd="/home/dev/site/assets"),
                               req(3, cwd="/home/dev/site")])
    ingest([root], db)
    got = rows(db)
    assert [got[key(msg_id(i), req_id(i))]["project"] for i in (1, 2, 3)] == \
        ["/home/dev/site", "/home/dev/site/assets", "/home/dev/site"]
    projects = {p["project"]: p["requests"] for p in report_json("projects")["projects"]}
    assert projects == {"/home/dev/site": 2, "/home/dev/site/assets": 1}


def test_project_comes_from_cwd_not_the_dir_name(root, db):
    # CLAUDE_CODE_PROJECT_DIR_NAME: the directory name can be anything; a lossy name collides
    odd = root / "projects" / "my-custom-name" / "s1.jsonl"
    write(odd, [req(1, cwd="/a/b-c", session="s1"), req(2, cwd="C:\\Users\\x\\proj", session="s1")])
    write(root / "projects" / "-a-b-c" / "s2.jsonl", [req(3, cwd="/a/b/c", session="s2")])
    no_cwd = req(4, session="s3", cwd=None)
    write(root / "projects" / "-fallback-dir" / "s3.jsonl", [no_cwd])
    ingest([root], db)
    got = {r["key"]: r["project"] for r in rows(db).values()}
    assert got == {key(msg_id(1), req_id(1)): "/a/b-c", key(msg_id(2), req_id(2)): "C:\\Users\\x\\proj",
                   key(msg_id(3), req_id(3)): "/a/b/c", key(msg_id(4), req_id(4)): "-fallback-dir"}


def test_very_long_lines_between_requests_in_batches(root, db):
    big = dumps(user("y" * 3_000_000))
    write(session_path(root), [req(1), big, req(2), big, big, req(3)])
    s = ingest([root], db, batch_bytes=1000)
    assert s.new_requests == 3 and s.skipped_lines == 0


def test_lone_surrogate_escape_and_absurd_counts_never_stop_ingestion(root, db):
    cut = dumps(req(1, text="MARK")).replace(b"MARK", b"emoji cut in half \\ud83d")
    absurd = dumps(req(2)).replace(b'"output_tokens":20', b'"output_tokens":123456789012345678901234567890')
    assert absurd != dumps(req(2))
    write(session_path(root), [cut, absurd, dumps(req(3))])
    write(session_path(root, "sess-z"), [req(4, session="sess-z")])   # a file read after the bad one
    s = ingest([root], db)
    assert s.skipped_lines == 1
    assert set(rows(db)) == {key(msg_id(i), req_id(i)) for i in (1, 3, 4)}


# ------------------------------------------------------------------ days in the user's zone

DST_CASES = [
    ("America/Santiago", "2026-09-06T04:00:00Z"),     # 24:00 -> 01:00: Sep 6 has no midnight
    ("America/Los_Angeles", "2026-11-01T09:00:00Z"),  # 02:00 -> 01:00: a 25-hour day
    ("Europe/Berlin", "2026-10-25T01:00:00Z"),        # 03:00 -> 02:00
    ("Australia/Lord_Howe", "2026-10-03T15:30:00Z"),  # a 30-minute shift
    ("Asia/Kathmandu", "2026-10-03T15:30:00Z"),       # +05:45, no DST
]


@pytest.mark.parametrize("zone, instant", DST_CASES)
def test_days_are_cut_in_the_zone_across_dst_changes(root, db, zone, instant):
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo
    tz = ZoneInfo(zone)
    t0 = datetime.fromisoformat(instant.replace("Z", "+00:00"))
    offsets = [-26, -24.5, -1, -0.25, 0, 0.25, 1, 5, 20, 23.75, 24, 25.5]
    lines, expected = [], {}
    for n, h in enumerate(offsets, start=1):
        t = t0 + timedelta(hours=h)
        lines.append(req(n, at=t.strftime("%Y-%m-%dT%H:%M:%S.000Z"), u=usage(input=n, output=1000 + n)))
        day = t.astimezone(tz).date().isoformat()
        e = expected.setdefault(day, [0, 0])
        e[0] += 1
        e[1] += 1000 + n
    write(session_path(root), lines)
    ingest([root], db)
    code, out, err = cli("report", "daily", "--json", "--tz", zone, "--no-ingest")
    assert code == 0, err
    got = {d["date"]: [d["requests"], d["output_tokens"]] for d in json.loads(out)["daily"]}
    assert got == expected
    for day in expected:                                     # each local day alone, through --since/--until
        code, out, err = cli("report", "daily", "--json", "--tz", zone, "--no-ingest", "--since", day, "--until", day)
        assert {d["date"]: [d["requests"], d["output_tokens"]] for d in json.loads(out)["daily"]} == {day: expected[day]}
