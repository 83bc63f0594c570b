"""``GET /metrics``: the server's counters in Prometheus text format (``prometheus-client``).

Each app has a registry of its own (two apps in one process do not mix their counts):
requests by endpoint and status, tokens generated, generation latency and time to first token,
rows waiting to join the batch and rows in it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from weft.serving.limits import ASGIApp, Message, Receive, Scope, Send

SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120)


class ServerMetrics:
    """What ``/metrics`` reports; the gauges read their values when scraped."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, waiting_rows: Callable[[], float], batch_rows: Callable[[], float]
                 ) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("weft_requests", "HTTP requests by endpoint and status.",
                                ["endpoint", "status"], registry=self.registry)
        self.tokens = Counter("weft_generated_tokens", "Tokens generated.", ["model"],
                              registry=self.registry)
        self.latency = Histogram("weft_generation_seconds",
                                 "Time from a generation request's arrival to its last token.",
                                 buckets=SECONDS, registry=self.registry)
        self.first_token = Histogram("weft_time_to_first_token_seconds",
                                     "Time from a generation request's arrival to its first "
                                     "token.", buckets=SECONDS, registry=self.registry)
        Gauge("weft_queue_rows", "Rows of requests waiting to join the batch.",
              registry=self.registry).set_function(waiting_rows)
        Gauge("weft_batch_rows", "Rows in the running batches (one per sequence).",
              registry=self.registry).set_function(batch_rows)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class CountRequests:
    """ASGI middleware: counts every HTTP request by its route's path template (``other`` when
    no route matched, so unknown paths cannot grow the label set) and response status."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            route: Any = scope.get("route")
            endpoint = getattr(route, "path", None) or "other"
            self.metrics.requests.labels(endpoint=endpoint, status=str(status)).inc()
