"""Pure parsing: the bytes of one transcript line -> one usage record, or the reason there is none.

The counting rules are FORMAT-NOTES.md section 5. This module decides what a line *is*; merging copies of
one request across lines and files is `ingest`'s job, using the `key` and `copy_rank` computed here.
Nothing here reads files, and no prompt or response text leaves this module.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

import orjson

USAGE_MARKER = b'"usage"'
"""Every line that can carry usage contains this; others are never JSON-parsed (the cheap pre-filter)."""

_MAX_INT31 = (1 << 31) - 1
_MAX_INT30 = (1 << 30) - 1


class LineKind(Enum):
    """What a line turned out to be."""

    REQUEST = "request"          # an assistant line (or embedded agent_progress copy) with usage
    OTHER = "other"              # a valid line that is not a request (user, summary, synthetic, zero usage…)
    BLANK = "blank"              # empty or whitespace only
    MALFORMED = "malformed"      # not JSON, not an object, or a usage field of the wrong shape


@dataclass(slots=True)
class UsageRecord:
    """One copy of one API request's usage, as read from one line. Never holds message text."""

    key: str
    message_id: str | None
    request_id: str | None
    session_id: str
    agent_id: str | None
    is_sidechain: bool
    embedded: bool               # read from a progress/agent_progress line, not a transcript line of its own
    project: str | None          # the line's `cwd`
    git_branch: str | None
    model: str
    ts_ms: int | None            # UTC epoch milliseconds; None when the line had no parseable timestamp
    version: str | None
    input_tokens: int
    output_tokens: int
    cache_write_5m: int
    cache_write_1h: int
    cache_read: int
    web_search: int
    web_fetch: int
    speed: str | None
    service_tier: str | None
    logged_cost_usd: float | None
    copy_rank: int
    parent_uuid: str | None = None
    latency_ms: int | None = None    # set by ingest when the line this response answers was seen
    source: str | None = None        # the file it was read from (set by ingest)

    @property
    def total_tokens(self) -> int:
        return (self.input_tokens + self.output_tokens + self.cache_write_5m + self.cache_write_1h
                + self.cache_read)


@dataclass(slots=True)
class ParsedLine:
    kind: LineKind
    record: UsageRecord | None = None
    invalid_utf8: bool = False


_BLANK = ParsedLine(LineKind.BLANK)
_OTHER = ParsedLine(LineKind.OTHER)
_MALFORMED = ParsedLine(LineKind.MALFORMED)


MAX_COUNT = 1 << 53
"""No API response counts this many; a larger or non-finite count makes the line MALFORMED (it would not
even fit a database integer)."""


class _Absurd(ValueError):
    """A count of MAX_COUNT or more, or NaN/infinity."""


def _count(value: object) -> int:
    """A token count: non-negative int from an int/float; anything else (null, string, bool) is 0.
    Raises _Absurd beyond MAX_COUNT (NaN fails every comparison)."""
    if type(value) is int and 0 <= value < MAX_COUNT:      # the common case, checked cheaply
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    if not value < MAX_COUNT:
        raise _Absurd(value)
    return int(value) if value > 0 else 0


def _text(value: object) -> str | None:
    return value if type(value) is str and value else (value if isinstance(value, str) and value else None)


def parse_timestamp(value: object) -> int | None:
    """ISO-8601 (with `Z` or an offset) -> UTC epoch milliseconds; None if absent or unparseable."""
    if not isinstance(value, str) or not value:
        return None
    # Claude Code's own form, `YYYY-MM-DDTHH:MM:SS.mmmZ`: the hour's epoch is cached, the rest is digits
    if len(value) == 24 and value[23] == "Z" and value[19] == "." and value[16] == ":" and value[13] == ":":
        base = _HOURS.get(value[:13])
        if base is None:
            parsed = _parse_iso(value)
            if parsed is None:
                return None
            base = _HOURS[value[:13]] = parsed - parsed % 3_600_000
            if len(_HOURS) > 100_000:
                _HOURS.clear()
        rest = value[14:16] + value[17:19] + value[20:23]
        if rest.isascii() and rest.isdigit() and rest[0] < "6" and rest[2] < "6":
            return base + int(rest[:2]) * 60_000 + int(rest[2:4]) * 1000 + int(rest[4:])
    return _parse_iso(value)


_HOURS: dict[str, int] = {}


def _parse_iso(value: str) -> int | None:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:          # naive: Claude Code writes UTC
        return int((parsed - _EPOCH_NAIVE).total_seconds() * 1000)
    return int(parsed.timestamp() * 1000)


_EPOCH_NAIVE = datetime(1970, 1, 1)


def copy_rank(embedded: bool, output_tokens: int, total_tokens: int, has_speed: bool) -> int:
    """Orders copies of one request; the highest wins (FORMAT-NOTES 5.5 step 4).

    A direct transcript copy beats an embedded agent_progress copy; then larger output_tokens (streamed
    placeholders lose to the final count); then larger total; then the copy with `speed` set.
    """
    return ((0 if embedded else 1) << 62 | min(output_tokens, _MAX_INT31) << 31
            | min(total_tokens, _MAX_INT30) << 1 | (1 if has_speed else 0))


def request_key(message_id: str | None, request_id: str | None, session_id: str,
                uuid: str | None, raw: bytes) -> str:
    """The dedup key of FORMAT-NOTES 5.4: (message.id, requestId), else (sessionId, message.id),
    else the line's uuid, else a hash of the line's bytes (so re-reading the same line is idempotent)."""
    if message_id and request_id:
        return f"m:{message_id}|r:{request_id}"
    if message_id:
        return f"s:{session_id}|m:{message_id}"
    if uuid:
        return f"u:{uuid}"
    return "h:" + hashlib.blake2b(raw, digest_size=16).hexdigest()


def _record(line: dict, envelope: dict, raw: bytes, embedded: bool) -> ParsedLine:
    """Build the record of an assistant-shaped `line`; `envelope` supplies cwd/session when the line lacks them."""
    message = line.get("message")
    if not isinstance(message, dict):
        return _MALFORMED
    usage = message.get("usage")
    if usage is None:
        return _OTHER
    if not isinstance(usage, dict):
        return _MALFORMED
    raw_in, raw_out = usage.get("input_tokens"), usage.get("output_tokens")
    if isinstance(raw_in, bool) or isinstance(raw_out, bool) or not isinstance(raw_in, (int, float)) \
            or not isinstance(raw_out, (int, float)):
        return _MALFORMED
    model = _text(message.get("model")) or "unknown"
    if model == "<synthetic>":
        return _OTHER
    input_tokens, output_tokens = _count(raw_in), _count(raw_out)
    cache_read = _count(usage.get("cache_read_input_tokens"))
    breakdown = usage.get("cache_creation")
    c5m = c1h = 0
    if isinstance(breakdown, dict):
        c5m = _count(breakdown.get("ephemeral_5m_input_tokens"))
        c1h = _count(breakdown.get("ephemeral_1h_input_tokens"))
    creation = _count(usage.get("cache_creation_input_tokens"))
    if creation > c5m + c1h:            # no breakdown, or a breakdown short of the total: 5m is the default TTL
        c5m += creation - c5m - c1h
    if input_tokens == output_tokens == cache_read == c5m == c1h == 0:
        return _OTHER
    tools = usage.get("server_tool_use")
    web_search = web_fetch = 0
    if isinstance(tools, dict):
        web_search = _count(tools.get("web_search_requests"))
        web_fetch = _count(tools.get("web_fetch_requests"))
    message_id = _text(message.get("id"))
    request_id = _text(line.get("requestId"))
    session_id = _text(line.get("sessionId")) or _text(envelope.get("sessionId")) or ""
    speed = _text(usage.get("speed"))
    total = input_tokens + output_tokens + cache_read + c5m + c1h
    agent_id = _text(line.get("agentId")) or (_text(envelope.get("agentId")) if embedded else None)
    cost = line.get("costUSD")
    get = line.get
    # positional: this runs for every streamed copy, and keyword construction costs twice as much
    return ParsedLine(LineKind.REQUEST, UsageRecord(
        request_key(message_id, request_id, session_id, _text(get("uuid")), raw),
        message_id, request_id, session_id, agent_id,
        bool(get("isSidechain")) or embedded,
        embedded,
        _text(get("cwd")) or _text(envelope.get("cwd")),
        _text(get("gitBranch")) or _text(envelope.get("gitBranch")),
        model,
        parse_timestamp(get("timestamp")),
        _text(get("version")) or _text(envelope.get("version")),
        input_tokens, output_tokens, c5m, c1h, cache_read, web_search, web_fetch, speed,
        _text(usage.get("service_tier")),
        float(cost) if cost is not None and isinstance(cost, (int, float)) and not isinstance(cost, bool)
        and math.isfinite(cost) else None,
        copy_rank(embedded, output_tokens, total, speed is not None),
        _text(get("parentUuid")),
    ))


_PROMPT_MARKS = (b'"type":"user"', b'"type":"attachment"')
_UUID_RE = re.compile(rb'"uuid":"([^"]{1,80})"')
_TS_RE = re.compile(rb'"timestamp":"([^"]{1,40})"')


def user_line_stamp(raw: bytes) -> tuple[str, int] | None:
    """(uuid, UTC ms) of a `user` line (a prompt or tool result) or an `attachment` line (context sent
    with a prompt, which a response may name as its parent), without JSON-parsing it; else None.

    Only for response latency, which is a measurement, not a count: the first top-level-looking
    `"uuid"` and `"timestamp"` keys are taken (inside JSON strings quotes are escaped, so text cannot match).
    """
    if _PROMPT_MARKS[0] not in raw and _PROMPT_MARKS[1] not in raw:
        return None
    u = _UUID_RE.search(raw)
    t = _TS_RE.search(raw)
    if u is None or t is None:
        return None
    ts = parse_timestamp(t.group(1).decode("ascii", "replace"))
    return (u.group(1).decode("ascii", "replace"), ts) if ts is not None else None


def _loads(raw: bytes) -> tuple[object, bool]:
    """orjson first; else decode leniently and flag invalid UTF-8 (usage fields are ASCII), then parse with
    the stdlib, which accepts the escaped lone surrogates orjson rejects (an emoji cut in half, CL-2.1.132).
    Raises ValueError (or RecursionError) when the line is not JSON at all."""
    try:
        return orjson.loads(raw), False
    except orjson.JSONDecodeError:
        pass
    try:
        text, invalid_utf8 = raw.decode("utf-8"), False
    except UnicodeDecodeError:
        text, invalid_utf8 = raw.decode("utf-8", "replace"), True
    return json.loads(text), invalid_utf8


def parse_line(raw: bytes) -> ParsedLine:
    """Classify one line (without its newline; a trailing CR is tolerated).

    Lines without the usage marker are checked only for shape (a `{…}` object), never JSON-parsed:
    they cannot carry a request. Candidates become a REQUEST when they are an assistant line (or a line
    with no `type` but a top-level `message.usage`) with numeric input/output tokens, not `<synthetic>` and
    not all-zero; or a `progress` line whose `data.type` is `agent_progress` (its `data.message`, embedded).
    `cost-state`, `result`, `toolUseResult` and other progress payloads are never read.
    """
    line = raw.strip()
    if not line:
        return _BLANK
    if USAGE_MARKER not in line:
        return _OTHER if line[:1] == b"{" and line[-1:] == b"}" else _MALFORMED
    try:
        obj, invalid_utf8 = _loads(line)
    except (ValueError, RecursionError):
        return _MALFORMED
    if not isinstance(obj, dict):
        return _MALFORMED
    kind = obj.get("type")
    try:
        if kind == "assistant" or (kind is None and isinstance(obj.get("message"), dict)):
            parsed = _record(obj, obj, line, embedded=False)
        elif kind == "progress":
            data = obj.get("data")
            if not isinstance(data, dict) or data.get("type") != "agent_progress":
                return _OTHER
            inner = data.get("message")
            if not isinstance(inner, dict) or inner.get("type", "assistant") != "assistant":
                return _OTHER
            envelope = dict(obj, agentId=data.get("agentId") or obj.get("agentId"))
            parsed = _record(inner, envelope, line, embedded=True)
        else:
            return _OTHER
    except _Absurd:
        return _MALFORMED
    if kind == "progress":
        if parsed.record is not None and parsed.record.ts_ms is not None:
            outer_ts = parse_timestamp(obj.get("timestamp"))
            if outer_ts is not None and outer_ts < parsed.record.ts_ms:
                parsed.record.ts_ms = outer_ts      # first-seen: the progress line may predate the copy
    if invalid_utf8:
        parsed = ParsedLine(parsed.kind, parsed.record, invalid_utf8=True)
    return parsed
