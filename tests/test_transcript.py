"""daemon.transcript: one line's bytes -> a usage record, or why there is none (FORMAT-NOTES 4-5)."""
from __future__ import annotations

import dataclasses

import pytest

from daemon.transcript import (LineKind, copy_rank, parse_line, parse_timestamp, request_key)
from fixtures_lines import (agent_progress, assistant, cost_state, dumps, epoch_ms, msg_id, req_id, result_line,
                            summary_line, synthetic_error, task_result_user, ts, usage, user)


def parse(line):
    return parse_line(dumps(line))


def test_assistant_line_becomes_a_request_with_every_field():
    line = assistant(msg_id(1), req_id(1), session="s-1", model="claude-opus-4-6", at=ts(3, 14, 5, 6, 789),
                     cwd="/home/dev/p", agent=None, version="2.1.178",
                     u=usage(input=7, output=321, cache_read=4000, cache_5m=300, cache_1h=200,
                             server_tool_use={"web_search_requests": 2, "web_fetch_requests": 1}, speed="fast"))
    p = parse(line)
    assert p.kind is LineKind.REQUEST
    r = p.record
    assert r.key == f"m:{msg_id(1)}|r:{req_id(1)}"
    assert (r.message_id, r.request_id, r.session_id) == (msg_id(1), req_id(1), "s-1")
    assert (r.model, r.project, r.git_branch, r.version) == ("claude-opus-4-6", "/home/dev/p", "main", "2.1.178")
    assert r.ts_ms == epoch_ms("2026-09-03T14:05:06.789Z")
    assert (r.input_tokens, r.output_tokens, r.cache_read, r.cache_write_5m, r.cache_write_1h) == (7, 321, 4000, 300, 200)
    assert (r.web_search, r.web_fetch, r.speed, r.service_tier) == (2, 1, "fast", "standard")
    assert r.total_tokens == 7 + 321 + 4000 + 300 + 200
    assert not r.is_sidechain and not r.embedded and r.logged_cost_usd is None


def test_no_message_text_leaves_the_parser():
    secret = "TOP-SECRET-PROMPT-TEXT"
    r = parse(assistant(msg_id(1), req_id(1), at=ts(), text=secret)).record
    values = [getattr(r, f.name) for f in dataclasses.fields(r)]
    assert not any(isinstance(v, str) and secret in v for v in values)


@pytest.mark.parametrize("mid, rid, expected", [
    (msg_id(1), req_id(1), f"m:{msg_id(1)}|r:{req_id(1)}"),     # (message.id, requestId)
    (msg_id(1), None, f"s:sess-9|m:{msg_id(1)}"),              # no requestId: scoped by session
])
def test_keys(mid, rid, expected):
    assert parse(assistant(mid, rid, session="sess-9", at=ts())).record.key == expected


def test_key_without_message_id_is_the_line_uuid():
    line = assistant(None, req_id(1), uid="u-123", at=ts())
    assert parse(line).record.key == "u:u-123"
    del line["uuid"]
    k1 = parse(line).record.key
    assert k1.startswith("h:") and k1 == parse(line).record.key     # idempotent for the same bytes
    line["message"]["usage"]["output_tokens"] += 1
    assert parse(line).record.key != k1


def test_request_key_and_msg_id_shape():
    assert request_key("msg_a", "req_b", "s", "u", b"x") == "m:msg_a|r:req_b"
    assert request_key("msg_a", None, "s", "u", b"x") == "s:s|m:msg_a"
    assert request_key(None, None, "s", "u", b"x") == "u:u"


@pytest.mark.parametrize("field_value, b5m, b1h, breakdown, want_5m, want_1h", [
    (500, 0, 0, False, 500, 0),        # no breakdown: the field, as 5m (the default TTL)
    (500, 200, 300, True, 200, 300),   # equal: the breakdown
    (0, 200, 300, True, 200, 300),     # CL-2.1.152: field 0, breakdown filled -> 5m+1h
    (900, 200, 300, True, 600, 300),   # field larger than the breakdown -> field total, rest as 5m
    (100, 200, 300, True, 200, 300),   # field smaller -> the breakdown sum
])
def test_cache_creation_is_max_of_field_and_breakdown(field_value, b5m, b1h, breakdown, want_5m, want_1h):
    u = usage(input=1, output=1, cache_5m=b5m, cache_1h=b1h, cache_creation=field_value, breakdown=breakdown)
    r = parse(assistant(msg_id(1), req_id(1), at=ts(), u=u)).record
    assert (r.cache_write_5m, r.cache_write_1h) == (want_5m, want_1h)
    assert r.cache_write_5m + r.cache_write_1h == max(field_value, b5m + b1h)


def test_synthetic_and_all_zero_lines_are_not_requests():
    assert parse(synthetic_error()).kind is LineKind.OTHER
    zero = assistant(msg_id(1), req_id(1), at=ts(), u=usage(input=0, output=0))
    assert parse(zero).kind is LineKind.OTHER
    # <synthetic> with nonzero numbers is still not a request
    synth = assistant("0b1c2d3e-uuid", req_id(2), model="<synthetic>", at=ts(), u=usage(input=5, output=5))
    assert parse(synth).kind is LineKind.OTHER


@pytest.mark.parametrize("line", [
    cost_state(), result_line(), task_result_user(), user(), summary_line(),
    {"type": "system", "subtype": "api_error", "usage": {"input_tokens": 5, "output_tokens": 5}},
    {"type": "mystery-future-type", "message": {"usage": {"input_tokens": 5, "output_tokens": 5}}},
    {"type": "attachment", "attachment": {"type": "model", "usage": {"input_tokens": 5, "output_tokens": 5}}},
])
def test_lines_that_never_count(line):
    assert parse(line).kind is LineKind.OTHER


@pytest.mark.parametrize("data_type", ["bash_progress", "hook_progress", "mcp_progress", "waiting_for_task",
                                       "query_update", "search_results_received"])
def test_other_progress_payloads_are_never_read(data_type):
    inner = assistant(msg_id(1), req_id(1), at=ts())
    assert parse(agent_progress(inner, data_type=data_type)).kind is LineKind.OTHER


def test_agent_progress_embedded_copy():
    inner = assistant(msg_id(1), req_id(1), session="s-2", agent=None, at=ts(1, 10, 0, 5), cwd=None,
                      u=usage(input=3, output=77, cache_read=10))
    line = agent_progress(inner, session="s-2", at=ts(1, 10, 0, 9), cwd="/home/dev/parent", agent="a77")
    p = parse(line)
    assert p.kind is LineKind.REQUEST
    r = p.record
    assert r.key == f"m:{msg_id(1)}|r:{req_id(1)}"              # same key as the subagent file's copy
    assert r.embedded and r.is_sidechain
    assert (r.agent_id, r.project, r.session_id) == ("a77", "/home/dev/parent", "s-2")
    assert (r.input_tokens, r.output_tokens, r.cache_read) == (3, 77, 10)
    assert r.ts_ms == epoch_ms(ts(1, 10, 0, 5))                # the inner timestamp (earlier)
    # an earlier progress line than the embedded copy: first seen wins
    line2 = agent_progress(inner, at=ts(1, 10, 0, 1))
    assert parse(line2).record.ts_ms == epoch_ms(ts(1, 10, 0, 1))


def test_agent_progress_with_non_assistant_payload_is_other():
    inner = user("sub prompt")
    inner["message"]["usage"] = {"input_tokens": 5, "output_tokens": 5}
    assert parse(agent_progress(inner)).kind is LineKind.OTHER


def test_old_line_without_type_but_with_message_usage_counts():
    line = assistant(msg_id(1), req_id(1), at=ts())
    del line["type"]
    assert parse(line).kind is LineKind.REQUEST


@pytest.mark.parametrize("raw", [b"", b"   ", b"\t\r", b"\r"])
def test_blank(raw):
    assert parse_line(raw).kind is LineKind.BLANK


@pytest.mark.parametrize("raw", [
    b"{not json", b'[1,2,{"usage":{}}]', b'"usage"', b"null", b"42",
    b'{"type":"assistant","message":"not an object","usage":1}',
    b'{"type":"assistant","message":{"id":"msg_x","usage":"zero"}}',
    b'{"type":"assistant","message":{"id":"msg_x","usage":{"input_tokens":"5","output_tokens":1}}}',
    b'{"type":"assistant","message":{"id":"msg_x","usage":{"input_tokens":true,"output_tokens":1}}}',
    b'{"type":"assistant","message":{"id":"msg_x","usage":{"input_tokens":5}}}',
    b'{"type":"assistant","message":{"id":"msg_x","usage":{"input_tokens":5,"output_tokens":2}',   # cut off
    b"[1,2,3]", b'"just a string"',
])
def test_malformed(raw):
    assert parse_line(raw).kind is LineKind.MALFORMED


def test_crlf_is_tolerated():
    raw = dumps(assistant(msg_id(1), req_id(1), at=ts())) + b"\r"
    assert parse_line(raw).kind is LineKind.REQUEST


def test_invalid_utf8_is_decoded_leniently_and_flagged():
    raw = dumps(assistant(msg_id(1), req_id(1), at=ts(), text="XXXX")).replace(b"XXXX", b"bad \xff\xfe utf8")
    p = parse_line(raw)
    assert p.kind is LineKind.REQUEST and p.invalid_utf8
    assert p.record.output_tokens == 100


def test_null_fields_are_absent():
    u = usage(input=5, output=50, speed=None, inference_geo=None, iterations=None)
    u["service_tier"] = None
    u["cache_read_input_tokens"] = None
    u["cache_creation_input_tokens"] = None
    u["cache_creation"] = None
    line = assistant(msg_id(1), None, at=ts(), u=u, stop_reason=None, costUSD=None, cwd=None)
    line["requestId"] = None
    line["cwd"] = None
    line["gitBranch"] = None
    r = parse(line).record
    assert r is not None
    assert (r.speed, r.service_tier, r.request_id, r.project, r.git_branch, r.logged_cost_usd) == (None,) * 6
    assert (r.input_tokens, r.output_tokens, r.cache_read, r.cache_write_5m, r.cache_write_1h) == (5, 50, 0, 0, 0)
    assert r.key == f"s:sess-1|m:{msg_id(1)}"


def test_partial_usage_defaults_to_zero_and_floats_negatives_are_sane():
    u = {"input_tokens": 12.0, "output_tokens": 30}
    r = parse(assistant(msg_id(1), req_id(1), at=ts(), u=u)).record
    assert (r.input_tokens, r.output_tokens, r.cache_read, r.cache_write_5m) == (12, 30, 0, 0)
    u = {"input_tokens": -5, "output_tokens": 30, "cache_read_input_tokens": -1}
    r = parse(assistant(msg_id(1), req_id(1), at=ts(), u=u)).record
    assert (r.input_tokens, r.cache_read) == (0, 0)


def test_unknown_model_is_kept_and_missing_model_is_unknown():
    assert parse(assistant(msg_id(1), req_id(1), at=ts(), model="kimi-for-coding")).record.model == "kimi-for-coding"
    line = assistant(msg_id(1), req_id(1), at=ts())
    del line["message"]["model"]
    assert parse(line).record.model == "unknown"


def test_missing_or_bad_timestamp_is_none_not_a_crash():
    assert parse(assistant(msg_id(1), req_id(1))).record.ts_ms is None
    assert parse(assistant(msg_id(1), req_id(1), at="yesterday")).record.ts_ms is None
    assert parse(assistant(msg_id(1), req_id(1), at=12345)).record.ts_ms is None


def test_parse_timestamp():
    assert parse_timestamp("2026-09-01T00:00:00.000Z") == epoch_ms("2026-09-01T00:00:00.000Z")
    assert parse_timestamp("2026-09-01T02:00:00+02:00") == epoch_ms("2026-09-01T00:00:00.000Z")
    assert parse_timestamp("2026-09-01T00:00:00") == epoch_ms("2026-09-01T00:00:00.000Z")  # naive = UTC
    assert parse_timestamp("") is None and parse_timestamp(None) is None and parse_timestamp("2026-13-01") is None


def test_legacy_cost_usd_is_read():
    r = parse(assistant(msg_id(1), req_id(1), at=ts(), version="1.0.8", costUSD=0.0123)).record
    assert r.logged_cost_usd == pytest.approx(0.0123)
    r = parse(assistant(msg_id(1), req_id(1), at=ts(), costUSD="0.5")).record
    assert r.logged_cost_usd is None


def test_copy_rank_order():
    # direct beats embedded whatever the numbers
    assert copy_rank(False, 1, 1, False) > copy_rank(True, 10_000, 10_000_000, True)
    # then output tokens
    assert copy_rank(False, 101, 0, False) > copy_rank(False, 100, 10_000_000, True)
    # then the total
    assert copy_rank(False, 100, 501, False) > copy_rank(False, 100, 500, True)
    # then speed set
    assert copy_rank(False, 100, 500, True) > copy_rank(False, 100, 500, False)
    # huge values stay ordered by output first
    assert copy_rank(False, 2**40, 2**40, False) > copy_rank(False, 2**31 - 2, 2**40, True)


def test_placeholder_copy_ranks_below_final_copy():
    early = parse(assistant(msg_id(1), req_id(1), at=ts(), u=usage(output=3))).record
    final = parse(assistant(msg_id(1), req_id(1), at=ts(), u=usage(output=219, speed="standard"))).record
    assert final.copy_rank > early.copy_rank
    assert early.key == final.key


def test_sidechain_flag_and_agent_id():
    r = parse(assistant(msg_id(1), req_id(1), at=ts(), sidechain=True, agent="a9f")).record
    assert r.is_sidechain and r.agent_id == "a9f" and not r.embedded


def test_escaped_lone_surrogates_are_decoded_leniently():
    """JSON.stringify writes a lone surrogate (an emoji cut by a truncation, CL-2.1.132) as an escape;
    orjson rejects it. The line must still count (FORMAT-NOTES 6: decode leniently)."""
    raw = dumps(assistant(msg_id(1), req_id(1), at=ts(), text="MARK")).replace(b"MARK", b"cut emoji \\ud83d here")
    p = parse_line(raw)
    assert p.kind is LineKind.REQUEST and p.record.output_tokens == 100
    both = raw.replace(b"here", b"\\udc00 and \xff invalid utf8")
    p = parse_line(both)
    assert p.kind is LineKind.REQUEST and p.invalid_utf8


@pytest.mark.parametrize("bad", [b"123456789012345678901234567890", b"1e400", b"9.3e18", b"NaN", b"Infinity",
                                 b"-Infinity"])
def test_absurd_or_non_finite_counts_make_the_line_malformed(bad):
    """A count no API returns (beyond 2**53, or not finite) is bad input: skip the line, don't crash later."""
    good = dumps(assistant(msg_id(1), req_id(1), at=ts(), u=usage(output=777)))
    for field in (b'"output_tokens":777', b'"cache_read_input_tokens":0'):
        name = field.split(b":")[0]
        raw = good.replace(field, name + b":" + bad)
        assert parse_line(raw).kind in (LineKind.MALFORMED, LineKind.REQUEST)
        p = parse_line(raw)
        if p.kind is LineKind.REQUEST:      # -Infinity is a negative count: 0, like any negative
            assert bad == b"-Infinity" and min(p.record.output_tokens, p.record.cache_read) == 0
        assert p.record is None or all(abs(v) < 2 ** 53 for v in (p.record.output_tokens, p.record.cache_read))


def test_deeply_nested_json_is_malformed_not_a_crash():
    raw = b'{"type":"assistant","message":{"usage":{"input_tokens":1,"output_tokens":1}},"x":' + b"[" * 5000 + b"]" * 5000 + b"}"
    assert parse_line(raw).kind is LineKind.MALFORMED
