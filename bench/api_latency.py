"""HTTP latency of the real `cctally run` server on a large ledger (the bench's API section).

`serve()` starts `cctally run --no-sample --host 127.0.0.1 --port P` (werkzeug's threaded server, exactly
what a user runs) on a given store with an empty `projects/` dir, and waits until it answers.
`sequential()` times N GETs of one path over one keep-alive connection (http.client, plain Python);
`concurrent()` runs K reader threads, each with its own keep-alive connection, for a fixed time. Both
also read the server's CPU seconds (psutil, all its threads) before and after, the steadier figure on
a shared machine.

Keep-alive: the client asks for it, but werkzeug 3's server answers every request with
`Connection: close` (its handler cannot drain a request body before the next request line), so each
GET is a new TCP connection, a new server thread and — Peewee connections being per thread — a new
SQLite connection with a cold page cache. http.client reopens transparently; the time to connect is
inside every figure, as it is for a browser polling the page. The `reconnects` count shows it.
"""
from __future__ import annotations

import http.client
import json
import signal
import statistics
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return float("nan")
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


@dataclass
class Timing:
    path: str
    n: int
    latencies_ms: list[float] = field(default_factory=list)
    server_cpu_s: float = 0.0
    elapsed_s: float = 0.0
    bytes: int = 0                     # size of the last response body
    reconnects: int = 0                # timed responses that closed the connection (werkzeug 3 closes every one)
    threads: int = 1

    @property
    def p50(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p95(self) -> float:
        return percentile(self.latencies_ms, 95)

    @property
    def max(self) -> float:
        return max(self.latencies_ms) if self.latencies_ms else float("nan")

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.elapsed_s if self.elapsed_s else float("nan")

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.server_cpu_s / len(self.latencies_ms) if self.latencies_ms else float("nan")

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(p50_ms=self.p50, p95_ms=self.p95, max_ms=self.max, rate_per_s=self.rate,
                 server_cpu_ms_per_request=self.cpu_ms_per_request, mean_ms=statistics.fmean(self.latencies_ms))
        return d


class Client:
    """One keep-alive HTTP/1.1 connection (http.client reopens it if the server closed it)."""

    def __init__(self, port: int, timeout: float = 60.0) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.reconnects = 0

    def get(self, path: str) -> tuple[int, bytes, float]:
        started = time.perf_counter()
        self.conn.request("GET", path, headers={"Accept": "*/*"})
        resp = self.conn.getresponse()
        body = resp.read()
        elapsed = time.perf_counter() - started
        if resp.will_close:
            self.reconnects += 1
            self.conn.close()
        return resp.status, body, elapsed

    def close(self) -> None:
        self.conn.close()


class Server:
    """A running `cctally run` (see serve())."""

    def __init__(self, proc: subprocess.Popen, port: int, log_path: Path) -> None:
        self.proc = proc
        self.port = port
        self.log_path = log_path
        self.ps = psutil.Process(proc.pid)

    def cpu_s(self) -> float:
        t = self.ps.cpu_times()
        return t.user + t.system

    def rss_mb(self) -> float:
        return self.ps.memory_info().rss / 2**20

    def peak_rss_mb(self) -> float | None:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return None

    def stop(self, timeout: float = 15.0) -> tuple[float, int | None]:
        """SIGTERM; returns (seconds to exit, exit code or None if it had to be killed)."""
        sent = time.perf_counter()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            code = None
        return time.perf_counter() - sent, code


def serve(cctally: list[str], env: dict[str, str], cwd: str, port: int, log_path: Path,
          ready_timeout: float = 120.0) -> Server:
    """Start `cctally run --no-sample` serving on 127.0.0.1:port and wait until /api/health answers and the
    start-up catch-up has finished (the health's last_ingest_at is set)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as err:
        proc = subprocess.Popen(cctally + ["--log-level", "info", "run", "--no-sample", "--host", "127.0.0.1",
                                           "--port", str(port)],
                                env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    server = Server(proc, port, log_path)
    deadline = time.monotonic() + ready_timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"cctally run exited {proc.returncode}:\n"
                               + log_path.read_text(errors="replace")[-2000:])
        try:
            c = Client(port, timeout=10)
            status, body, _ = c.get("/api/health")
            c.close()
            if status == 200 and json.loads(body).get("last_ingest_at"):
                return server
        except (OSError, http.client.HTTPException, ValueError):
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError("cctally run did not answer /api/health in time:\n"
                               + log_path.read_text(errors="replace")[-2000:])
        time.sleep(0.1)


def sequential(server: Server, path: str, n: int = 200, warmup: int = 5, budget_s: float = 30.0,
               min_n: int = 20) -> Timing:
    """Up to `n` timed GETs (fewer for a slow path: it stops after `budget_s` once `min_n` are done)."""
    c = Client(server.port)
    try:
        for _ in range(warmup):
            status, body, _ = c.get(path)
            if status != 200:
                raise RuntimeError(f"GET {path}: HTTP {status}: {body[:300]!r}")
        t = Timing(path=path, n=n)
        c.reconnects = 0
        cpu0, t0 = server.cpu_s(), time.perf_counter()
        for i in range(n):
            status, body, s = c.get(path)
            if status != 200:
                raise RuntimeError(f"GET {path}: HTTP {status}: {body[:300]!r}")
            t.latencies_ms.append(s * 1000)
            if i + 1 >= min_n and time.perf_counter() - t0 > budget_s:
                break
        t.n = len(t.latencies_ms)
        t.elapsed_s = time.perf_counter() - t0
        t.server_cpu_s = server.cpu_s() - cpu0
        t.bytes = len(body)
        t.reconnects = c.reconnects
        return t
    finally:
        c.close()


def concurrent(server: Server, path: str, threads: int = 8, seconds: float = 10.0) -> Timing:
    """`threads` readers, each GETting `path` back to back on its own connection for `seconds`."""
    results: list[list[float]] = [[] for _ in range(threads)]
    errors: list[str] = []
    reconnects = [0] * threads
    sizes = [0] * threads
    start = threading.Barrier(threads + 1)
    stop_at = [0.0]

    def reader(i: int) -> None:
        c = Client(server.port)
        try:
            c.get(path)                      # connect and warm up
            start.wait()
            c.reconnects = 0
            while time.perf_counter() < stop_at[0]:
                status, body, s = c.get(path)
                if status != 200:
                    errors.append(f"HTTP {status}: {body[:200]!r}")
                    return
                results[i].append(s * 1000)
                sizes[i] = len(body)
            reconnects[i] = c.reconnects
        except Exception as exc:            # noqa: BLE001 - reported below
            errors.append(f"{type(exc).__name__}: {exc}")
            try:
                start.abort()
            except threading.BrokenBarrierError:
                pass
        finally:
            c.close()

    workers = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(threads)]
    for w in workers:
        w.start()
    stop_at[0] = time.perf_counter() + 3600             # provisional, set for real at the barrier
    try:
        start.wait(timeout=60)
    except threading.BrokenBarrierError:
        pass
    cpu0, t0 = server.cpu_s(), time.perf_counter()
    stop_at[0] = t0 + seconds
    for w in workers:
        w.join(timeout=seconds + 120)
    t = Timing(path=path, n=0, threads=threads)
    t.elapsed_s = time.perf_counter() - t0
    t.server_cpu_s = server.cpu_s() - cpu0
    t.latencies_ms = [x for r in results for x in r]
    t.n = len(t.latencies_ms)
    t.reconnects = sum(reconnects)
    t.bytes = max(sizes)
    if errors:
        raise RuntimeError(f"concurrent GET {path}: {errors[0]}")
    return t
