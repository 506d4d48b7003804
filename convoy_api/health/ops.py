"""The API's operations port (``CONVOY_OPS_PORT``): ``/live`` and ``/metrics`` for probes and Prometheus.

On the public port ``/metrics`` needs the admin token; this port is meant to stay inside the cluster
(not published by the Service or Ingress), like the back-end services' ops listeners.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

log = structlog.get_logger(__name__)


async def start(host: str, port: int) -> Callable[[], Awaitable[None]]:
    """Listen on ``host:port``; returns the coroutine function that stops it."""
    from aiohttp import web

    async def live(_: web.Request) -> web.Response:
        return web.json_response({"service": "api", "live": True})

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/live", live)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("ops listener", host=host, port=port, paths=["/live", "/metrics"])
    return runner.cleanup
