"""Baseline (c) of the ingest bench: the same ``POST /reports`` served by ONE Litestar process.

What a monolith would run for a posted report, built from Convoy's own code rather than a toy:

- the same Litestar controller (``convoy_api.reports.controllers.ConvoyReportsController``), the
  same request type (msgspec validation of ``NewReportFull``), the same dependency that turns the
  bearer token into the actor (``provide_actor`` with ``Backend``'s token cache), the same error
  handlers, middlewares and security-headers hook as ``convoy_api.app``;
- the same service code: ``services.convoys`` and ``services.milestones`` are set up in this
  process by their own ``setup(rt)``, and ``backend.call(op, request)`` calls the marked handler
  directly (no NATS, no encoding, no signed actor claim). The token lookup runs
  ``Sessions.resolve`` against ``convoys.sessions``/``people``; the report runs
  ``MilestonesService.submit_report``: the membership read with its share lock, the charter check
  (from milestones' projection of charters; ``MEMBERSHIP_GET`` against ``convoys.memberships`` only
  when it does not say "accepted"), the round lock, the report and commitment rows and the outbox
  row, in one transaction.

The milestones half writes into the schema ``monolith``: a copy of milestones' tables made with its
own migrations, holding the same projection rows (bench/data.py ``copy_to_monolith``). So the
measured representatives can report again here (one report per company and cycle), and no relay
publishes these outbox rows (as with (b): the baseline is the commit, not the fan-out).

Started by the ingest scenario as a process of its own (``python -m bench.baseline_app PORT``, the
stack's ``CONVOY_*`` environment); its CPU time is reported as ``monolith``, and
``BENCH_PROFILE=monolith`` runs it under pyinstrument like the services.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import msgspec
from litestar import Litestar, get
from litestar.di import Provide
from litestar.plugins.prometheus import PrometheusConfig

from convoy_api import edge, errors
from convoy_api.conditional import Versions
from convoy_api.deps import Backend, ClientLimiter, daily_limiter, provide_backend
from convoy_api.reports.controllers import ConvoyReportsController
from schemas.contract import Contract, Op
from schemas.subjects import Subjects
from services import convoys, milestones
from services.runtime import correlation, db, tracing
from services.runtime import settings as settings_mod
from services.runtime.service import Runtime, _marked
from services.runtime.settings import Settings

SCHEMA = "monolith"
"""Where the one process keeps milestones' tables (a copy; see the module's docstring)."""

Handler = Callable[[Any], Awaitable[msgspec.Struct]]


class LocalRpc:
    """``rpc.call(op, request)`` as a function call to the handler marked for ``op`` in this process."""

    def __init__(self) -> None:
        self.handlers: dict[Op[Any, Any], Handler] = {}

    async def call(self, op: Op[Any, Any], request: msgspec.Struct, *, timeout: float | None = None) -> Any:
        return await self.handlers[op](request)


class LocalRuntime(Runtime):
    """A service's ``Runtime`` in this process: handlers are called directly, ``emit`` is Runtime's own
    (the outbox row in the caller's transaction). Consumers and background loops are not started: the
    baseline measures the request."""

    def __init__(self, settings: Settings, name: str, database: db.Database, rpc: LocalRpc) -> None:
        super().__init__(settings, name)
        self.db = database
        self.rpc = rpc  # type: ignore[assignment]
        self.local = rpc

    def serve(self, contract: type[Contract], *handlers: object) -> None:
        for holder in handlers:
            for op, handler in _marked(holder):
                self.local.handlers[op] = handler

    def consumer(self, *args: Any, **kwargs: Any) -> None:
        pass

    def background(self, loop: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
        pass


async def _connect(settings: Settings, schema: str) -> db.Database:
    """As ``db.connect``, but idle connections close after a second: the ingest scenario's own
    baselines open 64 connections after this one's run, beside the services' pools."""
    pool = await asyncpg.create_pool(
        settings.database_url,
        min_size=0,
        max_size=settings.db_pool_max,
        command_timeout=settings.db_command_timeout,
        timeout=settings.db_acquire_timeout,
        server_settings={"search_path": schema, "application_name": f"convoy-bench-{schema}"},
        connection_class=db.PoolConnection,
        max_inactive_connection_lifetime=1.0,
    )
    assert pool is not None
    return db.Database(pool, settings.db_acquire_timeout)


@get("/health", sync_to_thread=False)
def health() -> dict[str, str]:
    return {"status": "ok"}


def create_app(settings: Settings) -> Litestar:
    @asynccontextmanager
    async def services(app: Litestar) -> AsyncIterator[None]:
        rpc = LocalRpc()
        convoys_db = await _connect(settings, convoys.NAME)
        monolith_db = await _connect(settings, SCHEMA)
        try:
            await convoys.setup(LocalRuntime(settings, convoys.NAME, convoys_db, rpc))
            await milestones.setup(LocalRuntime(settings, SCHEMA, monolith_db, rpc))
            app.state.backend = Backend(
                settings=settings,
                rpc=rpc,  # type: ignore[arg-type]
                subjects=Subjects(settings.namespace),
                limiter=ClientLimiter(settings.client_requests_per_minute),
                daily=daily_limiter(settings.anonymous_requests_per_client_per_day),
                versions=Versions(settings),  # the edge's conditional-GET state (unused by POST /reports)
            )
            yield
        finally:
            await monolith_db.close(5)
            await convoys_db.close(5)

    prometheus = PrometheusConfig(app_name="convoy_monolith", prefix="convoy_monolith", group_path=True)
    return Litestar(
        route_handlers=[health, ConvoyReportsController],
        dependencies={"backend": Provide(provide_backend, sync_to_thread=False)},
        lifespan=[services],
        exception_handlers=errors.HANDLERS,  # type: ignore[arg-type]
        middleware=[tracing.asgi_middleware, correlation.asgi_middleware, prometheus.middleware],
        before_send=[edge.add_security_headers(settings)],
        request_max_body_size=1_000_000,
    )


def main(port: int) -> None:
    import uvicorn

    settings = settings_mod.load()
    uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
            loop=settings.event_loop,
            http="httptools",
        )
    ).run()


if __name__ == "__main__":
    main(int(sys.argv[1]))
