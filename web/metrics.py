"""Prometheus `/metrics`: a custom collector that reads the ledger on every scrape (nothing is kept in
memory between scrapes, so the numbers are exactly the store's, also after a restart).

    cctally_tokens_total{model,project,type}   type: input, output, cache_creation_5m, cache_creation_1h, cache_read
    cctally_cost_usd_total{model,project}      logged costUSD where present, else priced (mode auto)
    cctally_requests_total{model,project}
    cctally_last_ingest_timestamp_seconds      from meta `last_ingest`
    cctally_daemon_heartbeat_timestamp_seconds{host}, cctally_ingest_lag_seconds{host}   from meta `daemon:<host>`
    cctally_skipped_lines_total{host}          unreadable transcript lines (sum of files.skipped_lines)
    cctally_process_cpu_percent{host,pid,name,project}, cctally_process_rss_bytes{...}, cctally_processes_live
"""
from __future__ import annotations

from typing import Iterator

from flask import Blueprint, Response, current_app, request
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from daemon import __version__
from daemon.reports import Filters

from .api import UsageAPI, load_process_overview

TOKEN_TYPES = (("input", "input_tokens"), ("output", "output_tokens"),
               ("cache_creation_5m", "cache_creation_5m_tokens"), ("cache_creation_1h", "cache_creation_1h_tokens"),
               ("cache_read", "cache_read_tokens"))

bp = Blueprint("metrics", __name__)


class LedgerCollector(Collector):
    """Yields the ledger's counters and the daemon's gauges, read from the store at scrape time."""

    def __init__(self, api: UsageAPI) -> None:
        self.api = api

    def collect(self) -> Iterator[Metric]:
        reports = self.api.reports
        info = GaugeMetricFamily("cctally_info", "cctally build", labels=["version"])
        info.add_metric([__version__], 1)
        yield info

        tokens = CounterMetricFamily("cctally_tokens", "Tokens in the ledger by model, project and type",
                                     labels=["model", "project", "type"])
        cost = CounterMetricFamily("cctally_cost_usd", "Cost in USD by model and project",
                                   labels=["model", "project"])
        requests = CounterMetricFamily("cctally_requests", "API requests by model and project",
                                       labels=["model", "project"])
        for row in reports.by_model_project(Filters()):
            labels = [row["model"], row["project"]]
            for kind, field in TOKEN_TYPES:
                tokens.add_metric(labels + [kind], row[field])
            cost.add_metric(labels, row["cost_usd"])
            requests.add_metric(labels, row["requests"])
        yield tokens
        yield cost
        yield requests

        state = reports.ingest_state()
        last = state["last_ingest"] or {}
        last_at = GaugeMetricFamily("cctally_last_ingest_timestamp_seconds",
                                    "When the last catch-up ingest finished (Unix time)")
        if isinstance(last.get("at_ms"), (int, float)):
            last_at.add_metric([], last["at_ms"] / 1000)
        yield last_at
        beat = GaugeMetricFamily("cctally_daemon_heartbeat_timestamp_seconds",
                                 "Last heartbeat of the daemon on each host (Unix time)", labels=["host"])
        lag = GaugeMetricFamily("cctally_ingest_lag_seconds",
                                "How far the daemon's ingest trails the transcripts", labels=["host"])
        for host, daemon in sorted(state["daemons"].items()):
            if isinstance(daemon.get("heartbeat_ms"), (int, float)):
                beat.add_metric([host], daemon["heartbeat_ms"] / 1000)
            if isinstance(daemon.get("lag_ms"), (int, float)):
                lag.add_metric([host], daemon["lag_ms"] / 1000)
        yield beat
        yield lag
        skipped = CounterMetricFamily("cctally_skipped_lines", "Transcript lines skipped as unreadable",
                                      labels=["host"])
        for host, n in sorted(state["skipped_lines"].items()):
            skipped.add_metric([host], n)
        yield skipped

        yield from self._processes()

    def _processes(self) -> Iterator[Metric]:
        overview = load_process_overview()
        if overview is None:
            return
        data = overview(self.api.store, now_ms=self.api.now_ms())
        labels = ["host", "pid", "name", "project"]
        cpu = GaugeMetricFamily("cctally_process_cpu_percent", "CPU of a live Claude process (last sample)",
                                labels=labels)
        rss = GaugeMetricFamily("cctally_process_rss_bytes", "Resident memory of a live Claude process",
                                labels=labels)
        for p in data.get("live", []):
            values = [str(p.get("host") or ""), str(p["pid"]), str(p.get("name") or ""), str(p.get("project") or "")]
            cpu.add_metric(values, p.get("cpu_percent") or 0.0)
            rss.add_metric(values, p.get("rss_bytes") or 0)
        live = GaugeMetricFamily("cctally_processes_live", "Claude processes seen in the latest sample")
        live.add_metric([], len(data.get("live", [])))
        yield cpu
        yield rss
        yield live
        if data.get("sampled_at"):
            sampled = GaugeMetricFamily("cctally_process_sampled_timestamp_seconds",
                                        "Time of the latest process sample (Unix time)")
            sampled.add_metric([], data["sampled_at"] / 1000)
            yield sampled


def make_registry(api: UsageAPI) -> CollectorRegistry:
    """A registry of its own per app (the global one would collide across create_app calls)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LedgerCollector(api))
    return registry


@bp.get("/metrics")
def metrics() -> Response:
    """Text exposition format (or OpenMetrics when the scraper asks for it in Accept)."""
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(encoder(current_app.extensions["cctally.metrics"]), content_type=content_type)
