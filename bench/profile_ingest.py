#!/usr/bin/env python3
"""Profile one cold `cctally ingest` (or any cctally command) on a cached bench corpus, isolated like run.py.

    python bench/profile_ingest.py [--size-mb 100] [--seed 1] [--repo DIR] [--top 30] [--py-spy] [-- report daily --json]

cProfile by default (its per-call overhead inflates Peewee's many small calls: read the ranking, not the
seconds); `--py-spy` samples instead (`pip install py-spy`) and prints inclusive/self percentages per
function. Also prints the process's CPU seconds and bytes written (/proc/self/io), which are steady on a busy
machine. The corpus is the one run.py caches (generated if missing).
"""
from __future__ import annotations

import argparse
import collections
import os
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import corpus as corpora  # noqa: E402

_RUNNER = """
import cProfile, os, sys, time
sys.argv = ["cctally"] + sys.argv[2:]
from daemon.cli import main
prof = cProfile.Profile() if os.environ.get("BENCH_CPROFILE") else None
t0 = time.process_time()
if prof: prof.enable()
rc = main(sys.argv[1:])
if prof:
    prof.disable(); prof.dump_stats(os.environ["BENCH_CPROFILE"])
io = dict(l.split(": ") for l in open("/proc/self/io").read().split("\\n") if ": " in l)
print(f"main(): {time.process_time() - t0:.2f} s CPU; wrote {int(io['write_bytes']) / 1e6:.0f} MB in "
      f"{io['syscw']} write calls; read {int(io['rchar']) / 1e6:.0f} MB", file=sys.stderr)
sys.exit(rc)
"""


def _py_spy_summary(raw: Path, top: int) -> str:
    incl: collections.Counter = collections.Counter()
    self_: collections.Counter = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        stack, n = line.rsplit(" ", 1)
        total += int(n)
        frames = [re.sub(r" \((.*?)\)", lambda m: " (" + m.group(1).split("/")[-1] + ")", f) for f in stack.split(";")]
        for f in set(frames):
            incl[f] += int(n)
        self_[frames[-1]] += int(n)
    lines = [f"{total} samples", "-- inclusive"]
    lines += [f"{n / total * 100:5.1f}%  {f}" for f, n in incl.most_common(top)]
    lines += ["-- self"] + [f"{n / total * 100:5.1f}%  {f}" for f, n in self_.most_common(top)]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-mb", type=float, default=100.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--repo", type=Path, default=HERE.parent)
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--py-spy", action="store_true")
    p.add_argument("--cache-dir", type=Path, default=HERE / ".cache")
    p.add_argument("command", nargs="*", default=["ingest"], help="cctally arguments (default: ingest)")
    a = p.parse_args()
    repo = a.repo.resolve()
    c = corpora.ensure_corpus(a.cache_dir.resolve() / "corpora", corpora.find_generator(repo), a.size_mb, a.seed,
                              log=lambda m: print(m, file=sys.stderr))
    scratch = Path(tempfile.mkdtemp(prefix="cctally-profile-"))
    try:
        (scratch / "home").mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAUDE_", "CCTALLY_"))}
        env.update(CLAUDE_CONFIG_DIR=str(c.path), CCTALLY_HOME=str(scratch), CCTALLY_DB=str(scratch / "cctally.db"),
                   CCTALLY_HOST_ID="bench", HOME=str(scratch / "home"), PYTHONPATH=str(repo), TZ="UTC")
        if a.command != ["ingest"]:        # other commands profile against a populated ledger
            subprocess.run([sys.executable, "-m", "daemon.cli", "ingest"], env=env, cwd=repo, check=True,
                           stdout=subprocess.DEVNULL)
        runner = [sys.executable, "-c", _RUNNER, "-", *a.command]
        if a.py_spy:
            spy = shutil.which("py-spy")
            if not spy:
                print("py-spy not found: pip install py-spy", file=sys.stderr)
                return 2
            raw = scratch / "spy.txt"
            subprocess.run([spy, "record", "-r", "1000", "-f", "raw", "-o", str(raw), "--", *runner], env=env,
                           cwd=repo, check=True, stdout=subprocess.DEVNULL)
            print(_py_spy_summary(raw, a.top))
        else:
            out = scratch / "profile.out"
            env["BENCH_CPROFILE"] = str(out)
            subprocess.run(runner, env=env, cwd=repo, check=True, stdout=subprocess.DEVNULL)
            stats = pstats.Stats(str(out))
            stats.sort_stats("tottime").print_stats(a.top)
            stats.sort_stats("cumulative").print_stats(a.top)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
