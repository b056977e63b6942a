"""Helpers that build gen_corpus corpora and compare cctally's numbers with their truth.json."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

_SHARED = Path(__file__).resolve().parents[2] / "shared" / "bench" / "gen_corpus.py"
GEN_CORPUS = Path(os.environ.get("CCTALLY_GEN_CORPUS")
                  or (_SHARED if _SHARED.is_file() else Path(__file__).resolve().parent / "gen_corpus.py"))
"""The corpus generator: `$CCTALLY_GEN_CORPUS`, else `../shared/bench/gen_corpus.py` beside the checkout,
else the copy vendored in tests/ (so a clone of this repository alone runs its tests)."""

FIELD_MAP = {"requests": "requests", "input": "input_tokens", "output": "output_tokens",
             "cache_write_5m": "cache_creation_5m_tokens", "cache_write_1h": "cache_creation_1h_tokens",
             "cache_read": "cache_read_tokens"}
"""truth.json field -> cctally JSON field."""


def generate(out: Path, size_mb: float, seed: int, nasty: bool = False, days: int = 45,
             start: str = "2026-09-01") -> dict[str, Any]:
    """Write a corpus with gen_corpus.py into `out` (a Claude config dir) and return its truth."""
    if not GEN_CORPUS.is_file():
        raise FileNotFoundError(f"gen_corpus.py not found at {GEN_CORPUS}: set CCTALLY_GEN_CORPUS to its path")
    cmd = [sys.executable, str(GEN_CORPUS), str(out), "--size-mb", str(size_mb), "--seed", str(seed),
           "--days", str(days), "--start", start]
    if nasty:
        cmd.append("--nasty")
    subprocess.run(cmd, check=True, capture_output=True)
    return json.loads((out / "truth.json").read_text())


def as_truth(fields: dict[str, Any]) -> dict[str, int]:
    """A cctally fields dict in truth.json's vocabulary."""
    return {t: int(fields[c]) for t, c in FIELD_MAP.items()}


def truth_fields(entry: dict[str, Any]) -> dict[str, int]:
    return {t: int(entry[t]) for t in FIELD_MAP}


def assert_daily_matches(report: dict[str, Any], truth: dict[str, Any]) -> None:
    """Per-day rows and totals of `report daily --json --tz UTC` equal truth exactly."""
    got = {row["date"]: as_truth(row) for row in report["daily"]}
    want = {day: truth_fields(v) for day, v in truth["by_day_utc"].items()}
    assert got == want
    assert as_truth(report["totals"]) == truth_fields(truth["totals"])


def ingest_corpus(corpus_dir: Path, monkeypatch: Any) -> dict[str, Any]:
    """Point CLAUDE_CONFIG_DIR at `corpus_dir`, run the real `cctally ingest` into the test's database,
    and return the corpus truth."""
    from daemon.cli import main
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(corpus_dir))
    assert main(["ingest"]) == 0
    return json.loads((corpus_dir / "truth.json").read_text())
