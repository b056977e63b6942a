"""What the numbers were measured on: cores, CPU model, memory, Python, cctally's git commit."""
from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
from pathlib import Path


def _cpuinfo_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _git(repo: Path, *args: str) -> str:
    try:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def git_state(repo: Path) -> dict:
    """HEAD of the checkout being measured, and whether the code under test (daemon/, web/) is modified."""
    sha = _git(repo, "rev-parse", "HEAD")
    dirty = bool(_git(repo, "status", "--porcelain", "--", "daemon", "web", "pyproject.toml"))
    return {"sha": sha or "unknown", "short": sha[:10] if sha else "unknown", "dirty": dirty}


def machine_info(repo: Path) -> dict:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    git = git_state(repo)
    return {
        "nproc": usable,
        "cpu_model": _cpuinfo_model(),
        "mem_total_gib": _mem_total_gib(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "cctally_repo": str(repo),
        "cctally_git_sha": git["sha"],
        "cctally_dirty": git["dirty"],
        "when_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def describe(info: dict) -> str:
    sha = info["cctally_git_sha"][:10] + (" (+uncommitted changes in daemon/web)" if info["cctally_dirty"] else "")
    lines = [f"machine: {info['nproc']} cores, {info['cpu_model']}, {info['mem_total_gib']} GiB RAM, "
             f"Linux {info['kernel']}",
             f"python {info['python']}; cctally {sha} at {info['cctally_repo']}"]
    if info.get("ccusage_version"):
        lines.append(f"ccusage {info['ccusage_version']} ({info.get('ccusage_runner', '')})")
    lines.append(f"measured {info['when_utc']}; peak RSS via {info.get('rss_via', '?')}")
    return "\n".join(lines)
