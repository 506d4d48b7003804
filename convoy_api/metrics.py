"""The API's HTTP metrics: Litestar's Prometheus middleware, cheaper per request.

The same four metrics with the same names and labels (``<prefix>_requests_total``,
``_request_duration_seconds``, ``_requests_in_progress``, ``_requests_error_total``; ``method``,
``path`` (the route template), ``status_code``, ``app_name``), registered by Litestar's class (so
its registry of metrics is shared). What it leaves out per request: a ``Request`` object, the
label dictionaries and four label look-ups (each a lock and a tuple of strings): the children of
each (method, route, status) are looked up once and kept.
"""

from __future__ import annotations

import time
from typing import Any, cast

from litestar.plugins.prometheus import PrometheusConfig, PrometheusMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send


class LeanPrometheusMiddleware(PrometheusMiddleware):
    def __init__(self, app: ASGIApp, config: PrometheusConfig) -> None:
        super().__init__(app, config)
        self._progress: dict[tuple[str, str], Any] = {}
        self._done: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}
        self._plain = not (config.labels or config.exemplars or config.excluded_http_methods)

    def _labels(self, method: str, path: str, status: int) -> dict[str, str | int | float]:
        return {"method": method, "path": path, "status_code": status, "app_name": self._config.app_name}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._plain:  # what only Litestar's own handles
            await super().__call__(scope, receive, send)
            return
        raw = cast("dict[str, Any]", scope)
        method = str(raw.get("method") or raw["type"])  # websockets are counted by their type, as Litestar does
        path = raw["path_template"] if self._config.group_path else raw["path"]
        progress = self._progress.get((method, path))
        if progress is None:
            labels = self._labels(method, path, 200)
            progress = self._progress[(method, path)] = self.requests_in_progress(labels).labels(*labels.values())
        started = time.perf_counter()
        status = 200
        duration = 0.0

        async def wrapped_send(message: Message) -> None:
            nonlocal status, duration
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                duration = time.perf_counter() - started
            await send(message)

        progress.inc()
        try:
            await self.app(scope, receive, wrapped_send)
        finally:
            progress.dec()
            children = self._done.get((method, path, status))
            if children is None:
                labels = self._labels(method, path, status)
                values = [*labels.values()]
                children = self._done[(method, path, status)] = (
                    self.request_count(labels).labels(*values),
                    self.request_time(labels).labels(*values),
                    self.requests_error_count(labels).labels(*values) if status >= 500 else None,
                )
            count, timing, errors = children
            if errors is not None:
                errors.inc()
            count.inc()
            timing.observe(duration)
