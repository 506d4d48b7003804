"""The Litestar application: one registry of every route, dependency and error handler."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.plugins.prometheus import PrometheusConfig
from litestar.types import ControllerRouterHandler

from convoy_api import edge, errors, web
from convoy_api.auth.controllers import (
    AuthController,
    FacilitatorController,
    InvitationController,
    MeController,
)
from convoy_api.calendar.controllers import CalendarController, FeedController
from convoy_api.check.controllers import CheckController, PoolController
from convoy_api.conditional import Versions
from convoy_api.convoys.controllers import ConvoyController, OpenConvoyController
from convoy_api.deps import Backend, ClientLimiter, daily_limiter, provide_backend
from convoy_api.flags.controllers import CharterController, FlagController
from convoy_api.health import ops
from convoy_api.health.controllers import api_metrics, health, service_metrics
from convoy_api.metrics import LeanPrometheusMiddleware
from convoy_api.notifications.controllers import PreferencesController, UnsubscribeController
from convoy_api.privacy.controllers import PrivacyController
from convoy_api.projects.controllers import MilestoneController, ProjectController
from convoy_api.reports.controllers import CommentController, ConvoyReportsController, ReportController
from convoy_api.schedule.controllers import ScheduleController
from schemas.subjects import Subjects
from services.runtime import bus, claims, correlation, lifecycle, tracing
from services.runtime.rpc import RpcClient
from services.runtime.settings import Settings, refuse_open_edge

ROUTES: list[ControllerRouterHandler] = [
    health,
    service_metrics,
    api_metrics,
    AuthController,
    InvitationController,
    MeController,
    FacilitatorController,
    ConvoyController,
    OpenConvoyController,
    ConvoyReportsController,
    ReportController,
    CommentController,
    ProjectController,
    MilestoneController,
    ScheduleController,
    PreferencesController,
    UnsubscribeController,
    PrivacyController,
    # --- calendar subscriptions
    CalendarController,
    FeedController,
    # --- flags and charter
    FlagController,
    CharterController,
    # --- digitalisation check, formation pool, programme figures
    CheckController,
    PoolController,
]


def create_app(settings: Settings, *, own_process: bool = False) -> Litestar:
    """The API's app. ``own_process``: the process serves only it (:func:`serve`): once started, its start-up
    heap is set aside from the garbage collector (services/runtime/lifecycle.py ``freeze_startup_heap``)."""
    refuse_open_edge(settings)  # before anything listens: the refused setting is named, the start stops
    tracing.configure(settings, "api")

    @asynccontextmanager
    async def nats_connection(app: Litestar) -> AsyncIterator[None]:
        # The edge signs the actor of every request it makes for a person (services/runtime/claims.py).
        signer = claims.Signer.from_settings(settings)
        versions = Versions(settings)
        nc = await bus.connect(settings, "convoy-api", on_reconnect=versions.on_reconnect)
        versions.nc = nc
        # Convoy versions from services/milestones: conditional GETs answer 304 from them (convoy_api/conditional.py).
        await nc.subscribe(Subjects(settings.namespace).convoy_versions, cb=versions.on_notice)
        app.state.backend = Backend(
            settings=settings,
            rpc=RpcClient(nc, settings.nats_request_timeout, Subjects(settings.namespace), signer=signer),
            subjects=Subjects(settings.namespace),
            limiter=ClientLimiter(settings.client_requests_per_minute),
            daily=daily_limiter(settings.anonymous_requests_per_client_per_day),
            versions=versions,
        )
        stop_ops = None
        try:
            if settings.ops_port:
                stop_ops = await ops.start(settings.http_host, settings.ops_port)
            if own_process:  # the app, its routes and templates: out of the collector's way
                lifecycle.freeze_startup_heap()
            yield
        finally:
            if stop_ops is not None:
                await stop_ops()
            await nc.drain()

    prometheus = PrometheusConfig(
        app_name="convoy_api", prefix="convoy_api", group_path=True, middleware_class=LeanPrometheusMiddleware
    )
    return Litestar(
        route_handlers=[*ROUTES, *web.routes(settings)],
        template_config=web.template_config(),
        dependencies={"backend": Provide(provide_backend, sync_to_thread=False)},
        lifespan=[nats_connection],
        exception_handlers=errors.HANDLERS,  # type: ignore[arg-type]
        middleware=[tracing.asgi_middleware, correlation.asgi_middleware, prometheus.middleware],
        before_send=[edge.add_security_headers(settings)],
        openapi_config=OpenAPIConfig(title="Convoy API", version="0.1.0", path="/schema"),
        request_max_body_size=1_000_000,
    )


def serve(settings: Settings) -> None:
    """Process entry point: uvicorn, which drains open requests on SIGTERM."""
    import uvicorn

    from services.runtime import logging as convoy_logging

    convoy_logging.configure(settings, "api")
    uvicorn.Server(
        uvicorn.Config(
            create_app(settings, own_process=True),
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=int(settings.shutdown_timeout),
            lifespan="on",
            loop=settings.event_loop,
            http="httptools",
        )
    ).run()
    tracing.shutdown()  # export the spans still batched
