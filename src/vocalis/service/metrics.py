"""Prometheus metrics: one registry per app (so several apps can live in one process)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Metrics:
    """The service's counters and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "vocalis_http_requests", "HTTP requests by method, route template and status.",
            ["method", "route", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "vocalis_http_request_duration_seconds", "HTTP request latency by route template.",
            ["method", "route"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.predictions = Counter(
            "vocalis_predictions", "Predictions served, by label.", ["label"], registry=self.registry
        )
        self.alerts = Counter("vocalis_alerts_created", "Alerts created, by source.", ["source"],
                              registry=self.registry)
        self.deliveries = Counter(
            "vocalis_delivery_attempts", "Delivery attempts by channel and outcome (sent/retry/failed).",
            ["channel", "outcome"], registry=self.registry,
        )

        self.stream_latency = Histogram(
            "vocalis_stream_window_latency_seconds",
            "Live stream: arrival of a window's audio -> its result on the event loop (server side).",
            registry=self.registry, buckets=(0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5),
        )
        self._engine_watched = False

    def watch_stream_engine(self, engine: Callable[[], Any]) -> None:
        """Gauges and counters of the live-stream engine (``engine()`` returns it or ``None``), once per app."""
        if not self._engine_watched:
            self._engine_watched = True
            self.registry.register(_EngineCollector(engine))

    def add_db_gauges(self, counts: Callable[[], dict[str, dict[str, int]]]) -> None:
        """Gauges read from the database at scrape time (e.g. deliveries by status)."""
        self.registry.register(_DbCollector(counts))


class _DbCollector(Collector):
    def __init__(self, counts: Callable[[], dict[str, dict[str, int]]]) -> None:
        self.counts = counts

    def collect(self) -> Iterable[Metric]:
        try:
            data = self.counts()
        except Exception:
            return []
        out = []
        for name, by_status in data.items():
            g = GaugeMetricFamily(f"vocalis_{name}", f"{name.capitalize()} by status (from the database).",
                                  labels=["status"])
            for status, n in sorted(by_status.items()):
                g.add_metric([status], n)
            out.append(g)
        return out

    def describe(self) -> Iterable[Metric]:
        return []


class _EngineCollector(Collector):
    """``vocalis_stream_engine_*``: the stream engine's counters (windows, batches, emotion, drops) at scrape time."""

    GAUGES = ("sessions", "queued_samples", "queued_s_max", "emotion_rate", "emotion_ms", "scream_batch_mean",
              "scream_batch_max", "loop_lag_s")
    COUNTERS = ("windows", "cycles", "scream_batches", "emotion_runs", "emotion_deferred", "emotion_forced",
                "emotion_late", "vad_shed", "asr_runs", "asr_skipped", "asr_failed", "dropped_samples",
                "throttled")

    def __init__(self, engine: Callable[[], Any]) -> None:
        self.engine = engine

    def collect(self) -> Iterable[Metric]:
        e = self.engine()
        if e is None:
            return []
        st = e.stats()
        out: list[Metric] = []
        for k in self.GAUGES:
            g = GaugeMetricFamily(f"vocalis_stream_engine_{k}", f"Stream engine: {k.replace('_', ' ')}.")
            g.add_metric([], float(st.get(k) or 0))
            out.append(g)
        for k in self.COUNTERS:
            c = CounterMetricFamily(f"vocalis_stream_engine_{k}", f"Stream engine: {k.replace('_', ' ')}.")
            c.add_metric([], float(st.get(k) or 0))
            out.append(c)
        return out

    def describe(self) -> Iterable[Metric]:
        return []


class MetricsMiddleware:
    """Pure ASGI middleware counting HTTP requests by route *template* (bounded label values)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "GET")
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - start)
