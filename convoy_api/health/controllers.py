"""Health and metrics: readiness of every service (asked over NATS), Prometheus text."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import MediaType, Response, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from convoy_api.deps import Backend, admin_token_only
from schemas import api
from schemas.subjects import SERVICES
from services.runtime.errors import ConvoyError, Unavailable

HEALTH_TIMEOUT_S = 2.0


async def _ask(backend: Backend, service: str) -> dict[str, Any]:
    try:
        health = await backend.rpc.call(
            backend.subjects.health(service), api.Empty(), api.Health, timeout=HEALTH_TIMEOUT_S
        )
    except ConvoyError as exc:
        return {"ready": False, "detail": exc.message}
    return {"ready": health.ready, "checks": health.checks}


@get("/health", summary="Readiness of the API and every service", tags=["operations"])
async def health(backend: NamedDependency[Backend]) -> Response[dict[str, Any]]:
    answers = await asyncio.gather(*(_ask(backend, s) for s in SERVICES))
    services = dict(zip(SERVICES, answers, strict=True))
    services["api"] = {
        "ready": backend.rpc.nc.is_connected,
        "checks": {"nats": "ok" if backend.rpc.nc.is_connected else "disconnected"},
    }
    not_ready = sorted(name for name, s in services.items() if not s["ready"])
    body = {
        "status": "ok" if not not_ready else "unavailable",
        "not_ready": not_ready,
        "services": services,
    }
    return Response(body, status_code=200 if not not_ready else 503, media_type=MediaType.JSON)


@get(
    "/metrics",
    summary="Prometheus metrics of the API (admin token)",
    tags=["operations"],
    media_type=CONTENT_TYPE_LATEST,
    guards=[admin_token_only],
)
async def api_metrics() -> Response[bytes]:
    """Litestar's PrometheusController, but documented as what it answers (Prometheus text, not JSON)."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


@get(
    "/metrics/{service:str}",
    summary="Prometheus metrics of one back-end service (admin token)",
    tags=["operations"],
    media_type=CONTENT_TYPE_LATEST,
    guards=[admin_token_only],
)
async def service_metrics(service: FromPath[str], backend: NamedDependency[Backend]) -> Response[bytes]:
    if service not in SERVICES:
        raise NotFoundException(f"no service {service!r}; one of {', '.join(SERVICES)}")
    try:
        msg = await backend.rpc.nc.request(backend.subjects.metrics(service), b"", timeout=HEALTH_TIMEOUT_S)
    except Exception as exc:
        raise Unavailable(f"{service} did not answer") from exc
    return Response(msg.data, media_type="text/plain; version=0.0.4")
