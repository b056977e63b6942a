"""ccusage, the reference: installed once into bench/.cache/npm, run offline with JSON output.

ccusage 20 ships a native executable in a per-platform npm package (`@ccusage/ccusage-linux-x64`, …); its
`src/cli.js` only locates and spawns that binary. We install both packages at one pinned version and run the
binary directly (no node start-up in the timings). Without a native package for this platform we fall back
to `node node_modules/ccusage/dist/index.js` (older, pure-JS releases) or the `src/cli.js` launcher.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import stat
import subprocess
import sys
from pathlib import Path

CCUSAGE_VERSION = "20.0.24"
"""Pinned. `npm view ccusage version` said 20.0.26 when this was written, but the registry has no
`@ccusage/ccusage-linux-x64@20.0.26` (404; its newest is 20.0.24), so we pin the newest version whose native
Linux package exists. Bump both together: `npm view @ccusage/ccusage-linux-x64 versions`."""

_PLATFORMS = {("linux", "x86_64"): "linux-x64", ("linux", "amd64"): "linux-x64",
              ("linux", "aarch64"): "linux-arm64", ("linux", "arm64"): "linux-arm64",
              ("darwin", "x86_64"): "darwin-x64", ("darwin", "arm64"): "darwin-arm64",
              ("win32", "amd64"): "win32-x64", ("win32", "arm64"): "win32-arm64"}


def native_package() -> str | None:
    key = (sys.platform, platform.machine().lower())
    suffix = _PLATFORMS.get(key)
    return f"@ccusage/ccusage-{suffix}" if suffix else None


def _installed_version(prefix: Path) -> str | None:
    try:
        return json.loads((prefix / "node_modules" / "ccusage" / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def ensure_installed(prefix: Path, version: str = CCUSAGE_VERSION, log=print) -> None:
    """`npm install --prefix PREFIX ccusage@V @ccusage/ccusage-<platform>@V` unless already there."""
    native = native_package()
    have = _installed_version(prefix)
    native_ok = native is None or (prefix / "node_modules" / native / "package.json").exists()
    if have == version and native_ok:
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm not found: install Node.js (apt-get install nodejs npm) or pass --skip-ccusage")
    prefix.mkdir(parents=True, exist_ok=True)
    cmd = [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--loglevel=error",
           f"ccusage@{version}"] + ([f"{native}@{version}"] if native else [])
    log(f"installing ccusage: {' '.join(cmd)}")
    subprocess.run(cmd, check=True, stdout=sys.stderr)      # keep stdout for the tables


def command(prefix: Path) -> tuple[list[str], str]:
    """(argv prefix to run ccusage, a description of how)."""
    native = native_package()
    if native:
        binary = prefix / "node_modules" / native / "bin" / ("ccusage.exe" if sys.platform == "win32" else "ccusage")
        if binary.exists():
            mode = binary.stat().st_mode
            if not mode & stat.S_IXUSR:       # npm unpacks it without the execute bit; cli.js chmods it too
                binary.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            return [str(binary)], f"native binary node_modules/{native}/bin/{binary.name}"
    node = shutil.which("node") or "node"
    dist = prefix / "node_modules" / "ccusage" / "dist" / "index.js"
    if dist.exists():
        return [node, str(dist)], "node ccusage/dist/index.js"
    return [node, str(prefix / "node_modules" / "ccusage" / "src" / "cli.js")], "node ccusage/src/cli.js"


def daily_args(tz: str = "UTC") -> list[str]:
    """`ccusage daily --offline --json`, with days cut in UTC like truth.json."""
    return ["daily", "--offline", "--json", "--timezone", tz]


def env(claude_dir: Path, home: Path) -> dict[str, str]:
    """An environment that shows ccusage only the corpus: an empty HOME (ccusage 20 also looks for Codex,
    OpenCode, … under it), CLAUDE_CONFIG_DIR = the corpus."""
    home.mkdir(parents=True, exist_ok=True)
    e = {k: v for k, v in os.environ.items() if not k.startswith(("CLAUDE_", "CCTALLY_", "XDG_"))}
    e.update(HOME=str(home), CLAUDE_CONFIG_DIR=str(claude_dir), XDG_CONFIG_HOME=str(home / ".config"),
             XDG_DATA_HOME=str(home / ".local" / "share"), XDG_CACHE_HOME=str(home / ".cache"),
             NO_COLOR="1", TZ="UTC")
    return e


def version(argv: list[str], env_: dict[str, str]) -> str:
    try:
        out = subprocess.run(argv + ["--version"], capture_output=True, text=True, env=env_, timeout=60)
        return (out.stdout.strip() or out.stderr.strip()).splitlines()[-1]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def totals(report: dict) -> dict[str, int]:
    """ccusage daily JSON totals in truth.json's field names (ccusage has no request count)."""
    t = report.get("totals", {})
    return {"input": int(t.get("inputTokens", 0)), "output": int(t.get("outputTokens", 0)),
            "cache_write": int(t.get("cacheCreationTokens", 0)), "cache_read": int(t.get("cacheReadTokens", 0))}


def by_day(report: dict) -> dict[str, dict[str, int]]:
    out = {}
    for row in report.get("daily", []):
        day = row.get("period") or row.get("date")
        out[day] = {"input": int(row.get("inputTokens", 0)), "output": int(row.get("outputTokens", 0)),
                    "cache_write": int(row.get("cacheCreationTokens", 0)),
                    "cache_read": int(row.get("cacheReadTokens", 0))}
    return out
