"""Terminal tables and CSV for reports. Input: the dicts `reports` returns; output: text only."""
from __future__ import annotations

import csv
import datetime as dt
from typing import Any, Callable, TextIO

from .reports import TOKEN_FIELDS

Column = tuple[str, Callable[[dict[str, Any]], str], bool]   # header, cell, right-aligned


def _n(value: Any) -> str:
    return f"{int(value):,}"


def _usd(value: Any) -> str:
    return f"${float(value):,.2f}"


def _local(ms: int, tz: dt.tzinfo) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz).strftime("%Y-%m-%d %H:%M")


_TOKENS: list[Column] = [
    ("Input", lambda r: _n(r["input_tokens"]), True),
    ("Output", lambda r: _n(r["output_tokens"]), True),
    ("Cache write", lambda r: _n(r["cache_creation_tokens"]), True),
    ("Cache read", lambda r: _n(r["cache_read_tokens"]), True),
    ("Total tokens", lambda r: _n(r["total_tokens"]), True),
    ("Requests", lambda r: _n(r["requests"]), True),
    ("Cost", lambda r: _usd(r["cost_usd"]), True),
]


def _short_models(models: list[str]) -> str:
    return ", ".join(m.removeprefix("claude-") for m in models)


def _columns(kind: str, tz: dt.tzinfo) -> tuple[str, list[Column]]:
    if kind in ("daily", "weekly", "monthly"):
        label = {"daily": "date", "weekly": "week", "monthly": "month"}[kind]
        return kind, [(label.capitalize(), lambda r: r[label], False),
                      ("Models", lambda r: _short_models(r["models"]), False)] + _TOKENS
    if kind == "sessions":
        return kind, [("Session", lambda r: r["session_id"][:8], False),
                      ("Project", lambda r: r["project"].rsplit("/", 1)[-1], False),
                      ("Last activity", lambda r: _local(r["last_ms"], tz), False),
                      ("Duration", lambda r: _duration(r["duration_s"]), True),
                      ("Models", lambda r: _short_models(r["models"]), False)] + _TOKENS
    if kind == "projects":
        return kind, [("Project", lambda r: r["project"], False),
                      ("Sessions", lambda r: _n(r["sessions"]), True)] + _TOKENS
    if kind == "models":
        return kind, [("Model", lambda r: r["model"] + ("" if r["priced"] else " (not priced)"), False)] + _TOKENS
    if kind == "hosts":
        return kind, [("Host", lambda r: r["host"], False),
                      ("Users", lambda r: ", ".join(r["os_users"]), False),
                      ("Sessions", lambda r: _n(r["sessions"]), True)] + _TOKENS
    if kind == "blocks":
        return kind, [("Block start", lambda r: _local(r["start_ms"], tz), False),
                      ("State", lambda r: _block_state(r), False)] + _TOKENS
    raise ValueError(kind)


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def _block_state(r: dict[str, Any]) -> str:
    if not r["is_active"]:
        return ""
    burn, proj = r["burn_rate"], r["projection"]
    return (f"ACTIVE {burn['tokens_per_minute']:,.0f} tok/min, ${burn['cost_per_hour']:.2f}/h, "
            f"projected ${proj['cost_usd']:.2f} ({proj['remaining_minutes']:.0f} min left)")


def render_table(kind: str, data: dict[str, Any], out: TextIO, tz: dt.tzinfo = dt.timezone.utc) -> None:
    key, columns = _columns(kind, tz)
    rows = data[key]
    if not rows:
        out.write("no usage recorded for this selection\n")
        return
    cells = [[cell(r) for _, cell, _ in columns] for r in rows]
    totals = data["totals"]
    total_row = ["Total"] + [""] * (len(columns) - len(_TOKENS) - 1) + [cell(totals) for _, cell, _ in _TOKENS]
    widths = [max(len(h), *(len(c[i]) for c in cells + [total_row])) for i, (h, _, _) in enumerate(columns)]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if columns[i][2] else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths)))

    out.write(line([h for h, _, _ in columns]).rstrip() + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for c in cells:
        out.write(line(c).rstrip() + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    out.write(line(total_row).rstrip() + "\n")


def render_csv(kind: str, data: dict[str, Any], out: TextIO) -> None:
    """One row per report row: its label columns, then the token fields; lists joined with ';', small dicts
    (latency_ms) spread over `<name>_<key>` columns."""
    rows = data[kind]
    if not rows:
        writer = csv.writer(out)
        writer.writerow(TOKEN_FIELDS)
        return
    skip = {"model_breakdowns", "burn_rate", "projection"}
    labels: list[tuple[str, str | None]] = []
    for k, v in rows[0].items():
        if k not in TOKEN_FIELDS and k not in skip:
            labels += [(k, sub) for sub in v] if isinstance(v, dict) else [(k, None)]

    def cell(r: dict[str, Any], k: str, sub: str | None) -> Any:
        v = r[k] if sub is None else r[k][sub]
        return ";".join(v) if isinstance(v, list) else v

    writer = csv.writer(out)
    writer.writerow([k if sub is None else f"{k}_{sub}" for k, sub in labels] + list(TOKEN_FIELDS))
    for r in rows:
        writer.writerow([cell(r, k, sub) for k, sub in labels] + [r[k] for k in TOKEN_FIELDS])
