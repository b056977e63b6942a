"""The bench's sections. Each is `def name(ctx: Context) -> list[Row]`, listed in SECTIONS in run order.

To add a section (live latency, API latency, idle CPU, …): write a function that measures with
`ctx.run_cctally` / `ctx.run_ccusage` (or anything else), keeps raw numbers in `ctx.samples[...]` for the
JSON, appends any detail tables to `ctx.notes`, returns its rows, and add it to SECTIONS. Sections run in
order and may read what earlier ones left in `ctx.state` (the populated store, ccusage's timings).
"""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import ccusage_tool
from corpus import EXPECTED_FIELDS, Appender, Corpus
from procs import Sample, median, run_measured

MB = 1e6            # corpus sizes are decimal MB, as gen_corpus.py counts them
PYTHON_ENV_NOT_PASSED = ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PYTHONDEVMODE", "PYTHONPROFILEIMPORTTIME",
                         "PYTHONTRACEMALLOC", "PYTHONMALLOC", "PYTHONMALLOCSTATS", "PYTHONASYNCIODEBUG",
                         "PYTHONWARNINGS", "PYTHONVERBOSE", "PYTHONINSPECT")
"""Not passed to cctally: a user's shell has none of these, and some cost time (no .pyc cache: every module
compiled at every start; unbuffered stdout: one write() per JSON token)."""


@dataclass
class Row:
    """One line of the table. `ratio` is `ratio_kind` (e.g. "cctally/ccusage"); `met` None = no goal."""

    section: str
    metric: str
    cctally: Any = None
    ccusage: Any = None
    ratio: float | None = None
    ratio_kind: str = ""
    goal: str = ""
    met: bool | None = None
    unit: str = ""


@dataclass
class Context:
    size_mb: float
    runs: int
    corpus: Corpus
    config_dir: Path                   # the private (hard-linked) copy of the corpus: config_dir/projects
    scratch: Path                      # stores, homes, outputs of this size's runs
    cctally: list[str]                 # argv prefix that runs `cctally`
    cctally_cwd: str
    cctally_pythonpath: str
    ccusage: list[str] | None          # argv prefix that runs ccusage, None with --skip-ccusage
    append_bytes: int
    appender: Appender | None
    base_env: dict[str, str]
    log: Callable[[str], None] = print
    options: dict[str, Any] = field(default_factory=dict)      # run.py's options for the live and API sections
    state: dict[str, Any] = field(default_factory=dict)
    samples: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    _n: int = 0

    # ---- running the two tools
    def new_store(self, name: str) -> Path:
        store = self.scratch / "stores" / name
        shutil.rmtree(store, ignore_errors=True)
        store.mkdir(parents=True)
        return store

    def cctally_env(self, store: Path, config_dir: Path | None = None) -> dict[str, str]:
        home = self.scratch / "home"
        home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in self.base_env.items()
               if not k.startswith(("CLAUDE_", "CCTALLY_")) and k not in PYTHON_ENV_NOT_PASSED}
        pp = self.cctally_pythonpath + ((":" + env["PYTHONPATH"]) if env.get("PYTHONPATH") else "")
        env.update(CLAUDE_CONFIG_DIR=str(config_dir or self.config_dir), CCTALLY_HOME=str(store),
                   CCTALLY_DB=str(store / "cctally.db"), CCTALLY_HOST_ID="bench", HOME=str(home),
                   PYTHONPATH=pp, TZ="UTC")
        return env

    def run_cctally(self, args: list[str], store: Path) -> Sample:
        self._n += 1
        out = self.scratch / "out" / f"{self._n:03d}-cctally-{args[0]}.out"
        return run_measured(self.cctally + args, self.cctally_env(store), out, cwd=self.cctally_cwd)

    def run_ccusage(self) -> Sample:
        assert self.ccusage is not None
        self._n += 1
        out = self.scratch / "out" / f"{self._n:03d}-ccusage-daily.json"
        env = ccusage_tool.env(self.config_dir, self.scratch / "ccusage-home")
        return run_measured(self.ccusage + ccusage_tool.daily_args("UTC"), env, out)

    def ccusage_wall(self) -> float | None:
        s = self.state.get("ccusage_samples")
        return median([x.wall_s for x in s]) if s else None

    def ccusage_cpu(self) -> float | None:
        s = self.state.get("ccusage_samples")
        return median([x.cpu_s for x in s]) if s else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _record(ctx: Context, name: str, samples: list[Sample]) -> None:
    ctx.samples[name] = [s.as_dict() for s in samples]


# ------------------------------------------------------------------ 1. cold ingest
def warm_up(ctx: Context) -> None:
    """Import everything the timed commands import once, untimed, so the .pyc cache exists (as after any
    install) and the first timed run does not pay for compiling."""
    run_measured([ctx.cctally[0], "-c", "import daemon.cli, daemon.ingest, daemon.reports, daemon.render"],
                 ctx.cctally_env(ctx.new_store("warm-up")), ctx.scratch / "out" / "warm-up.out", cwd=ctx.cctally_cwd)


def cold_ingest(ctx: Context) -> list[Row]:
    """`cctally ingest` into a fresh store, next to a full `ccusage daily` run on the same tree (interleaved)."""
    warm_up(ctx)
    cct: list[Sample] = []
    ccu: list[Sample] = []
    store = None
    for i in range(ctx.runs):
        if ctx.ccusage:
            ccu.append(ctx.run_ccusage())
        store = ctx.new_store(f"cold-{i}")
        s = ctx.run_cctally(["ingest"], store)
        cct.append(s)
        ctx.log(f"  cold ingest run {i + 1}/{ctx.runs}: cctally {s.wall_s:.2f} s, {s.max_rss_mb:.0f} MB"
                + (f"; ccusage {ccu[-1].wall_s:.2f} s, {ccu[-1].max_rss_mb:.0f} MB" if ccu else ""))
        if i < ctx.runs - 1:
            shutil.rmtree(store, ignore_errors=True)
    ctx.state.update(store=store, cold_samples=cct, ccusage_samples=ccu)
    _record(ctx, "cold_ingest_cctally", cct)
    _record(ctx, "ccusage_daily_full_run", ccu)
    ingest_line = Path(cct[-1].stdout_path).read_text().strip()
    ctx.samples["cold_ingest_summary"] = ingest_line

    mb = ctx.corpus.bytes / MB
    w1 = median([s.wall_s for s in cct])
    w2 = median([s.wall_s for s in ccu]) if ccu else None
    c1 = median([s.cpu_s for s in cct])
    c2 = median([s.cpu_s for s in ccu]) if ccu else None
    r = _ratio(w1, w2)
    rows = [
        Row("cold ingest", "wall (s)", w1, w2, r, "cctally/ccusage", "<= 1.0", None if r is None else r <= 1.0, "s"),
        Row("cold ingest", "throughput (MB/s)", mb / w1, mb / w2 if w2 else None, unit="MB/s"),
        Row("cold ingest", "requests/s", ctx.corpus.requests / w1,
            ctx.corpus.requests / w2 if w2 else None, unit="req/s"),
        Row("cold ingest", "lines/s", ctx.corpus.lines / w1, ctx.corpus.lines / w2 if w2 else None, unit="lines/s"),
        Row("cold ingest", "CPU user+sys (s)", c1, c2, _ratio(c1, c2), "cctally/ccusage", unit="s"),
    ]
    return rows


# ------------------------------------------------------------------ 2. report latency
def report_latency(ctx: Context) -> list[Row]:
    """`cctally report daily --json` as a whole process (its catch-up included) on the populated store."""
    store = ctx.state["store"]
    samples = [ctx.run_cctally(["report", "daily", "--json", "--tz", "UTC"], store) for _ in range(ctx.runs)]
    # what no report can beat: the interpreter starting and importing the CLI module (sys.executable -c)
    floor = [run_measured([ctx.cctally[0], "-c", "import daemon.cli"], ctx.cctally_env(store),
                          ctx.scratch / "out" / "floor.out", cwd=ctx.cctally_cwd).wall_s for _ in range(ctx.runs)]
    ctx.samples["python_import_cli_floor_s"] = floor
    _record(ctx, "report_daily_cctally", samples)
    ctx.state["report_json"] = json.loads(Path(samples[-1].stdout_path).read_text())
    w1 = median([s.wall_s for s in samples])
    w2 = ctx.ccusage_wall()
    r = _ratio(w1, w2)
    goal = 30.0 if ctx.size_mb >= 1000 else 10.0       # ccusage's full run is the time to beat, this many times
    return [Row("report", "report daily --json, whole process (s)", w1, w2, r, "cctally/ccusage",
                f"<= {1 / goal:.3g} ({goal:g}x faster)", None if r is None else r <= 1 / goal, "s"),
            Row("report", "CPU user+sys (s)", median([s.cpu_s for s in samples]), ctx.ccusage_cpu(),
                _ratio(median([s.cpu_s for s in samples]), ctx.ccusage_cpu()), "cctally/ccusage", unit="s"),
            Row("report", "report peak RSS (MB)", median([s.max_rss_mb for s in samples]), None, unit="MB"),
            Row("report", "floor: python start + import daemon.cli (s)", median(floor), None, unit="s")]


# ------------------------------------------------------------------ 3. correctness
_CCTALLY_FIELDS = {"requests": "requests", "input": "input_tokens", "output": "output_tokens",
                   "cache_write_5m": "cache_creation_5m_tokens", "cache_write_1h": "cache_creation_1h_tokens",
                   "cache_read": "cache_read_tokens"}


def _cctally_by_day(report: dict) -> dict[str, dict[str, int]]:
    return {row["date"]: {k: int(row[v]) for k, v in _CCTALLY_FIELDS.items()} for row in report.get("daily", [])}


def _compare_days(expected: dict[str, dict[str, int]], got: dict[str, dict[str, int]],
                  fields: tuple[str, ...]) -> list[str]:
    """Differences, as 'day field: got X, expected Y' strings (empty: equal)."""
    diffs = []
    for day in sorted(set(expected) | set(got)):
        e, g = expected.get(day, {}), got.get(day, {})
        for f in fields:
            if int(e.get(f, 0)) != int(g.get(f, 0)):
                diffs.append(f"{day} {f}: got {g.get(f, 0)}, expected {e.get(f, 0)}")
    return diffs


def _pct(a: int, b: int) -> str:
    return f"{(a - b) / b * 100:+.2f}%" if b else ("0" if a == b else "inf")


def correctness(ctx: Context) -> list[Row]:
    """cctally's daily (UTC) rows against truth.json, every day and field; ccusage's totals beside them."""
    truth = ctx.corpus.truth
    truth_days = truth["by_day_utc"]
    report = ctx.state["report_json"]
    diffs = _compare_days(truth_days, _cctally_by_day(report), tuple(_CCTALLY_FIELDS))
    ok = not diffs
    ctx.samples["correctness_cctally_diffs"] = diffs[:50]

    t = dict(truth["totals"])
    t["cache_write"] = t["cache_write_5m"] + t["cache_write_1h"]
    c = {k: int(report["totals"][v]) for k, v in _CCTALLY_FIELDS.items()}
    c["cache_write"] = c["cache_write_5m"] + c["cache_write_1h"]
    u: dict[str, int] | None = None
    u_days_off = None
    ccu = ctx.state.get("ccusage_samples")
    if ccu:
        cc_report = json.loads(Path(ccu[-1].stdout_path).read_text())
        u = ccusage_tool.totals(cc_report)
        cc_days = ccusage_tool.by_day(cc_report)
        truth_cw = {d: dict(v, cache_write=v["cache_write_5m"] + v["cache_write_1h"]) for d, v in truth_days.items()}
        u_days_off = len({line.split()[0] for line in
                          _compare_days(truth_cw, cc_days, ("input", "output", "cache_write", "cache_read"))})
        ctx.samples["ccusage_totals"] = u

    lines = [f"correctness, {len(truth_days)} UTC days (truth.json vs `report daily --json --tz UTC` vs "
             f"`ccusage daily --offline --json --timezone UTC`):",
             f"  {'field':<16}{'truth':>16}{'cctally':>16}{'ccusage':>16}{'ccusage-truth':>15}"]
    for f in ("requests", "input", "output", "cache_write", "cache_write_5m", "cache_write_1h", "cache_read"):
        uv = u.get(f) if u else None
        lines.append(f"  {f:<16}{t[f]:>16,}{c[f]:>16,}{(f'{uv:,}' if uv is not None else 'n/a'):>16}"
                     f"{(_pct(uv, t[f]) if uv is not None else ''):>15}")
    lines.append(f"  cctally: {'every day and field equals truth' if ok else f'{len(diffs)} day/field cells differ'}"
                 + (f"; e.g. {diffs[0]}" if diffs else ""))
    if u is not None:
        lines.append(f"  ccusage: {u_days_off} of {len(truth_days)} days differ from truth (expected: FORMAT-NOTES "
                     "section 10 -- requestId-less streamed lines counted per line, null-field lines dropped; "
                     "ccusage reports no request count)")
    ctx.notes.append("\n".join(lines))
    return [Row("correctness", "daily rows == truth.json (every day, 6 fields)",
                "exact" if ok else f"{len(diffs)} cells off",
                None if u is None else ("exact" if not u_days_off else f"{u_days_off}/{len(truth_days)} days off [2]"),
                goal="exact", met=ok)]


# ------------------------------------------------------------------ 4. catch-up
_NEW = re.compile(r"(\d+) new requests")


def catch_up(ctx: Context) -> list[Row]:
    """Append ~1 MB of fresh lines to a few session files, time `cctally ingest` on the up-to-date store."""
    if ctx.appender is None:
        return []
    store = ctx.state["store"]
    samples, appended, counted = [], [], []
    for i in range(ctx.runs):
        a = ctx.appender.append(ctx.append_bytes)
        s = ctx.run_cctally(["ingest"], store)
        m = _NEW.search(Path(s.stdout_path).read_text())
        counted.append(int(m.group(1)) if m else -1)
        samples.append(s)
        appended.append(a)
        ctx.log(f"  catch-up run {i + 1}/{ctx.runs}: +{a.bytes / MB:.2f} MB ({a.lines} lines, "
                f"{a.expected['requests']} requests) -> {s.wall_s:.3f} s")
    _record(ctx, "catch_up_cctally", samples)
    ctx.samples["catch_up_appended"] = [{"bytes": a.bytes, "lines": a.lines, "files": a.files,
                                         "expected_new_requests": a.expected["requests"], "counted": n}
                                        for a, n in zip(appended, counted)]
    # the ledger after all appends must equal truth + what was appended, day by day
    final = ctx.run_cctally(["report", "daily", "--json", "--tz", "UTC", "--no-ingest"], store)
    got = _cctally_by_day(json.loads(Path(final.stdout_path).read_text()))
    expected = {d: dict(v) for d, v in ctx.corpus.truth["by_day_utc"].items()}
    for a in appended:
        for day, add in a.expected_by_day.items():
            acc = expected.setdefault(day, {k: 0 for k in EXPECTED_FIELDS})
            for k in EXPECTED_FIELDS:
                acc[k] = acc.get(k, 0) + add[k]
    diffs = _compare_days(expected, got, EXPECTED_FIELDS)
    ctx.samples["catch_up_diffs"] = diffs[:50]

    w1 = median([s.wall_s for s in samples])
    w2 = ctx.ccusage_wall()
    mb = median([a.bytes for a in appended]) / MB
    want = sum(a.expected["requests"] for a in appended)
    got_n = sum(counted)
    return [
        Row("catch-up", f"ingest after +{mb:.1f} MB append (s) [1]", w1, w2, _ratio(w1, w2),
            "cctally/ccusage", "< 0.25 s", w1 < 0.25, "s"),
        Row("catch-up", "CPU user+sys (s)", median([s.cpu_s for s in samples]), ctx.ccusage_cpu(),
            _ratio(median([s.cpu_s for s in samples]), ctx.ccusage_cpu()), "cctally/ccusage", unit="s"),
        Row("catch-up", "new requests == appended; ledger == truth+appended",
            f"{got_n}/{want}, " + ("exact" if not diffs else f"{len(diffs)} cells off"), None,
            goal="exact", met=(got_n == want and not diffs)),
    ]


# ------------------------------------------------------------------ 5. memory
def memory(ctx: Context) -> list[Row]:
    """Peak RSS of the cold ingest (the largest a run of cctally gets), beside ccusage's full run."""
    cct = ctx.state["cold_samples"]
    ccu = ctx.state.get("ccusage_samples")
    m1 = median([s.max_rss_mb for s in cct])
    m2 = median([s.max_rss_mb for s in ccu]) if ccu else None
    return [Row("memory", "peak RSS, cold ingest (MB)", m1, m2, _ratio(m1, m2), "cctally/ccusage", "< 150 MB",
                m1 < 150, "MB")]


# ------------------------------------------------------------------ 6. live daemon
def live(ctx: Context) -> list[Row]:
    """`cctally run` (web on, sampling on) on the populated ledger: append -> visible latency, idle CPU, RSS.

    One run (not --runs): the 50 appends are the latency sample, and a minute of idle is long enough."""
    import live as live_mod
    if ctx.appender is None or not ctx.appender.targets:
        raise KeyError("live: no private session file to append to")
    store = ctx.state.get("store") or ctx.new_store("live")      # after catch_up: current, nothing to ingest
    scratch = ctx.scratch / "live"
    res = live_mod.measure(ctx.config_dir, ctx.appender.targets[0], scratch, size_mb=ctx.size_mb,
                           appends=int(ctx.options.get("live_appends", 50)), spacing=0.2,
                           idle_seconds=float(ctx.options.get("idle_seconds", 60.0)), repo=Path(ctx.cctally_cwd),
                           log=ctx.log, env=ctx.cctally_env(store), store=store)
    ctx.samples["live"] = res.as_dict()
    ctx.notes.append(live_mod.table(res) + f"\n(1-min load average {', '.join(f'{x:.2f}' for x in res.load_avg)} "
                     "at the start and end of the idle period)")
    lat = [x * 1000 for x in res.latency_s]
    p95 = res.p95_s * 1000
    return [
        Row("live", f"append -> visible, median (ms) [{res.appends} appends, 1 run]", res.median_s * 1000, unit="ms"),
        Row("live", "append -> visible, p95 (ms)", p95, goal="< 1000 ms", met=p95 < 1000, unit="ms"),
        Row("live", "append -> visible, max (ms)", max(lat) if lat else None, unit="ms"),
        Row("live", f"idle CPU over {res.idle_seconds:.0f} s, sampling on (% of a core)", res.idle_cpu_pct,
            goal="< 0.5 %", met=res.idle_cpu_pct < 0.5, unit="%"),
        Row("live", f"idle CPU over {res.idle_seconds:.0f} s (CPU s)", res.idle_cpu_s, unit="s"),
        Row("live", "RSS after idle (MB)", res.rss_mb, goal="< 80 MB", met=res.rss_mb < 80, unit="MB"),
        Row("live", "peak RSS, VmHWM (MB)", res.peak_rss_mb, unit="MB"),
        Row("live", "SIGTERM -> exit (s)", res.shutdown_s, goal="< 5 s, exit 0",
            met=res.shutdown_s < 5 and res.exit_code == 0, unit="s"),
    ]


# ------------------------------------------------------------------ 7. API on a 1M-request ledger
API_SEQUENTIAL = 200
API_THREADS = 8
API_SECONDS = 10.0


def api(ctx: Context) -> list[Row]:
    """The real `cctally run` server on a ~1M-request store (bench/api_store.py): per-endpoint latency over
    sequential keep-alive GETs, /api/usage/stats under concurrent readers, and whole-process reports.
    Independent of the corpus size being benched: run.py runs it once per invocation."""
    import datetime as dt
    import os

    import api_latency
    import api_store
    import corpus as corpora
    from live import free_port

    o = ctx.options
    base_mb = float(o.get("api_base_mb", 100.0))
    seed = int(o.get("seed", 1))
    cache = Path(o["cache_dir"])
    base = ctx.corpus if base_mb == ctx.size_mb else corpora.ensure_corpus(
        cache / "corpora", Path(o["generator"]), base_mb, seed, log=ctx.log)

    def ingest(config_dir: Path, store: Path) -> None:
        run_measured(ctx.cctally + ["ingest"], ctx.cctally_env(store, config_dir),
                     ctx.scratch / "out" / "api-base-ingest.out", cwd=ctx.cctally_cwd)

    cached_db, info = api_store.ensure_store(
        cache, Path(ctx.cctally_cwd), base, int(o.get("api_requests", 1_000_000)), ingest,
        lambda work: corpora.make_workdir(base, work, 0, seed)[0], log=ctx.log)
    ctx.samples["api_store"] = info
    work = ctx.scratch / "api"
    store = work / "store"
    shutil.rmtree(work, ignore_errors=True)
    store.mkdir(parents=True)
    (work / "claude" / "projects").mkdir(parents=True)       # the server watches an empty tree
    shutil.copyfile(cached_db, store / "cctally.db")          # the server writes meta; the cache stays as built
    env = ctx.cctally_env(store, work / "claude")
    env["CCTALLY_HOST_ID"] = "bench-api"

    last_day = dt.datetime.fromtimestamp(info["last_ms"] / 1000, dt.timezone.utc).date()
    paths = ["/api/usage/stats", f"/api/usage/daily?since={(last_day - dt.timedelta(days=90)).isoformat()}",
             "/api/usage/sessions?limit=15", "/api/usage/models", "/metrics"]
    port = free_port()
    ctx.log(f"  serving {info['requests']:,} requests on 127.0.0.1:{port} ...")
    server = api_latency.serve(ctx.cctally, env, ctx.cctally_cwd, port, work / "server.log")
    seq: list[api_latency.Timing] = []
    try:
        c = api_latency.Client(port)
        status, body, _ = c.get("/api/usage/stats")
        c.close()
        stats = json.loads(body)
        if status != 200 or stats["totals"]["requests"] != info["requests"]:
            raise KeyError(f"api: /api/usage/stats says {stats.get('totals', {}).get('requests')} requests, "
                           f"the store holds {info['requests']}")
        newest_min = (stats["now_ms"] - stats["last_request_ms"]) / 60_000
        load0 = os.getloadavg()[0]
        for path in paths:
            t = api_latency.sequential(server, path, API_SEQUENTIAL)
            seq.append(t)
            ctx.log(f"  GET {path}: p50 {t.p50:.1f} ms, p95 {t.p95:.1f} ms, max {t.max:.1f} ms, "
                    f"server CPU {t.cpu_ms_per_request:.1f} ms/request")
        conc = api_latency.concurrent(server, paths[0], API_THREADS, API_SECONDS)
        ctx.log(f"  {API_THREADS} readers of {paths[0]}: {conc.rate:.0f} req/s, p95 {conc.p95:.1f} ms")
        load1 = os.getloadavg()[0]
        rss, peak = server.rss_mb(), server.peak_rss_mb()
    finally:
        stop_s, code = server.stop()
    ctx.samples["api_sequential"] = [t.as_dict() for t in seq]
    ctx.samples["api_concurrent"] = conc.as_dict()

    reports = {}
    for kind in ("daily", "sessions"):
        reports[kind] = [ctx.run_cctally(["report", kind, "--json", "--no-ingest"], store) for _ in range(ctx.runs)]
        _record(ctx, f"api_report_{kind}", reports[kind])

    span_days = info["span_days"]
    lines = [f"API: `cctally run --no-sample` on a built store (bench/api_store.py): {info['requests']:,} requests "
             f"({info['copies']} week-shifted copies of the {info['source_requests']:,} of {base.path.name}), "
             f"{info['sessions']:,} sessions, {info['files']:,} files, {info['usage_buckets']:,} usage_buckets rows, "
             f"{span_days:.0f} days of history, {info['db_mb']:.0f} MB; newest request {newest_min:.0f} min before "
             f"the measurement. Built in {info.get('built_total_s', 0):.0f} s (insert {info['insert_s']:.0f} s, "
             f"rollups.rebuild {info['rebuild_s']:.0f} s).",
             f"Up to {API_SEQUENTIAL} sequential GETs per path (fewer when a path takes > 30 s: n column) with "
             "http.client, after 5 untimed; werkzeug closes every connection (Connection: close), so each GET "
             "connects anew (new conns column) -- included in the times, as for a browser. "
             f"1-min load average {load0:.2f} before, {load1:.2f} after.",
             f"  {'path':<42}{'n':>6}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'mean ms':>9}{'server CPU ms/req':>19}"
             f"{'bytes':>10}{'new conns':>10}"]
    for t in seq + [conc]:
        name = t.path if t.threads == 1 else f"{t.path} x{t.threads} threads"
        d = t.as_dict()
        lines.append(f"  {name:<42}{t.n:>6}{t.p50:>9.1f}{t.p95:>9.1f}{t.max:>9.1f}{d['mean_ms']:>9.1f}"
                     f"{t.cpu_ms_per_request:>19.2f}{t.bytes:>10,}{t.reconnects:>10}")
    lines.append(f"  {API_THREADS} threads for {conc.elapsed_s:.1f} s: {conc.n:,} requests, {conc.rate:.0f} req/s, "
                 f"server CPU {conc.server_cpu_s:.1f} s ({100 * conc.server_cpu_s / conc.elapsed_s:.0f} % of a core)")
    lines.append(f"  server RSS after the load {rss:.1f} MB (peak {peak or 0:.1f} MB); SIGTERM -> exit {stop_s:.2f} s "
                 f"(exit {code})")
    ctx.notes.append("\n".join(lines))

    rows = []
    for t in seq:
        is_stats = t.path == paths[0]
        rows.append(Row("api", f"GET {t.path.split('?')[0]}{'?since=-90d' if 'since=' in t.path else ''}"
                        f"{'?limit=15' if 'limit=' in t.path else ''} p50/p95/max (ms)",
                        f"{t.p50:.1f} / {t.p95:.1f} / {t.max:.1f}", goal="p95 < 50 ms" if is_stats else "",
                        met=(t.p95 < 50) if is_stats else None))
    rows += [Row("api", f"GET /api/usage/stats, {API_THREADS} readers: req/s", conc.rate, unit="req/s"),
             Row("api", f"GET /api/usage/stats, {API_THREADS} readers: p50/p95 (ms)", f"{conc.p50:.1f} / {conc.p95:.1f}"),
             Row("api", "server RSS after the load (MB)", rss, unit="MB")]
    for kind, samples in reports.items():
        rows.append(Row("api", f"report {kind} --json --no-ingest, whole process (s)",
                        median([s.wall_s for s in samples]), unit="s"))
        rows.append(Row("api", f"report {kind}: CPU user+sys (s) / peak RSS (MB)",
                        f"{median([s.cpu_s for s in samples]):.2f} / {median([s.max_rss_mb for s in samples]):.0f}"))
    return rows


SECTIONS: list[tuple[str, Callable[[Context], list[Row]]]] = [
    ("cold_ingest", cold_ingest),
    ("report_latency", report_latency),
    ("correctness", correctness),
    ("catch_up", catch_up),
    ("memory", memory),
    ("live", live),
    ("api", api),
]
ONCE = {"api"}
"""Sections that do not depend on the corpus size: run for the first --size-mb only."""


def row_dict(row: Row) -> dict:
    return asdict(row)
