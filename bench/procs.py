"""Run one child process and measure it: wall seconds, CPU seconds, peak RSS, exit code.

Peak RSS is the child's `ru_maxrss` as reported by a SMALL wrapper process that starts it: GNU
`/usr/bin/time` when present, else `python -S -I rusage_child.py`. Never wait4() the child from this process
directly: on Linux a child's ru_maxrss starts at its parent's RSS at fork/vfork time (exec records the old
mm's high-water mark), so a bench holding a big truth.json would inflate every figure (a /bin/true child of a
300 MB parent reports 313 MB). Standard output goes to a file (a JSON report can be large).
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping, Sequence


@dataclass
class Sample:
    """One measured run."""

    wall_s: float
    user_s: float
    sys_s: float
    max_rss_mb: float          # peak resident set size of the child, MiB (1 MiB = 1024 KiB)
    returncode: int
    stdout_path: str
    stderr_tail: str

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s

    def as_dict(self) -> dict:
        d = asdict(self)
        d["cpu_s"] = round(self.cpu_s, 4)
        return d


class ChildFailed(RuntimeError):
    pass


def run_measured(argv: Sequence[str], env: Mapping[str, str], stdout_path: Path, *, cwd: str | None = None,
                 timeout_s: float = 3600.0, check: bool = True) -> Sample:
    """Start `argv`, wait for it with wait4, and return what it cost. Raises ChildFailed on a non-zero exit
    when `check` (with the tail of its stderr, which goes to `<stdout_path>.err`)."""
    stdout_path = Path(stdout_path)
    stdout_path.parent.mkdir(parents=True, exist_ok=True)
    err_path = stdout_path.with_name(stdout_path.name + ".err")
    usage_path = stdout_path.with_name(stdout_path.name + ".rusage")
    usage_path.unlink(missing_ok=True)
    with open(stdout_path, "wb") as out, open(err_path, "wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(wrapper(usage_path) + list(argv), env=dict(env), cwd=cwd, stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        wall = time.perf_counter() - started
    tail = err_path.read_bytes()[-2000:].decode("utf-8", "replace")
    try:                                    # "wall user sys maxrss_kib exit" on the last line
        fields = usage_path.read_text().strip().splitlines()[-1].split()
        user, sys_, rss_kib, code = float(fields[1]), float(fields[2]), int(fields[3]), int(fields[4])
    except (OSError, IndexError, ValueError):
        user = sys_ = 0.0
        rss_kib, code = 0, proc.returncode if proc.returncode else -1
    sample = Sample(wall_s=wall, user_s=user, sys_s=sys_, max_rss_mb=rss_kib / 1024.0, returncode=code,
                    stdout_path=str(stdout_path), stderr_tail=tail)
    if check and code != 0:
        raise ChildFailed(f"{' '.join(argv)} exited {code}:\n{tail}")
    return sample


_GNU_TIME = "/usr/bin/time"
_CHILD = Path(__file__).resolve().parent / "rusage_child.py"


def _gnu_time_ok() -> bool:
    try:
        out = subprocess.run([_GNU_TIME, "--version"], capture_output=True, text=True, timeout=10)
        return "GNU" in (out.stdout + out.stderr)
    except (OSError, subprocess.SubprocessError):
        return False


_USE_GNU_TIME = os.path.exists(_GNU_TIME) and _gnu_time_ok()


def wrapper(usage_path: Path) -> list[str]:
    """argv prefix that runs a command and writes 'wall user sys maxrss_kib exit' to usage_path."""
    if _USE_GNU_TIME:
        return [_GNU_TIME, "-o", str(usage_path), "-f", "%e %U %S %M %x"]
    return [sys.executable, "-S", "-I", str(_CHILD), str(usage_path)]


def wrapper_name() -> str:
    return "GNU time" if _USE_GNU_TIME else "python rusage_child.py"


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def warm_page_cache(root: Path) -> int:
    """Read every file under `root` once so every timed run starts with the same (warm) page cache.
    Returns the bytes read."""
    total = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(dirpath, name), "rb") as f:
                while True:
                    chunk = f.read(1 << 20)
                    if not chunk:
                        break
                    total += len(chunk)
    return total
