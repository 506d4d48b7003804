"""The life of a service process: start everything in order, serve, drain on SIGTERM.

A service module provides ``NAME``, ``MIGRATIONS`` and ``async def setup(rt: Runtime)``, which
registers its endpoints and consumers. :func:`serve` does the rest: migrations, pool, NATS,
streams, nats.micro service (with ``health`` and ``metrics``), outbox relay, consumers; and on
SIGTERM stops taking requests, finishes in-flight work, drains NATS, closes the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import signal
import typing
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol, TypeVar

import msgspec
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import EndpointConfig, Service, ServiceConfig
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from schemas import api
from schemas import events as ev
from schemas.contract import HANDLER_ATTRIBUTE, Contract, Op
from schemas.subjects import Subjects
from services.runtime import bus, claims, db, lifecycle, outbox, sealing, tracing
from services.runtime import metrics as service_metrics
from services.runtime.consumer import Consumer, ConsumerSpec, Handler, Quiet, StatementHandler, by_convoy
from services.runtime.errors import ConvoyError
from services.runtime.rpc import RpcClient, endpoint
from services.runtime.settings import Settings

log = structlog.get_logger(__name__)
Req = TypeVar("Req", bound=msgspec.Struct)
T = TypeVar("T")

VERSION = "0.1.0"


class ServiceModule(Protocol):
    NAME: str
    MIGRATIONS: Path

    async def setup(self, rt: Runtime) -> None: ...


class Runtime:
    """What a service's code is handed: settings, database, NATS, and ways to register work."""

    def __init__(self, settings: Settings, name: str) -> None:
        self.settings = settings
        self.name = name
        self.subjects = Subjects(settings.namespace)
        self.db: db.Database
        self.nc: Client
        self.js: JetStreamContext
        self.rpc: RpcClient
        self._endpoints: list[EndpointConfig] = []
        self._consumers: list[Consumer] = []
        self._background: list[Callable[[asyncio.Event], Coroutine[Any, Any, None]]] = []
        self._checks: dict[str, Callable[[], Awaitable[None]]] = {}
        self._reconnect_hooks: list[Callable[[], Awaitable[None]]] = []
        self.relay: outbox.Relay | None = None
        self.contract: type[Contract] | None = None
        # Each handler in flight holds a connection (its transaction) and may take a second one
        # (a delivery record): at most half the pool goes to handlers, the rest answers requests.
        self._handler_slots = asyncio.Semaphore(max(1, settings.db_pool_max // 2))
        self.verifier = claims.Verifier.from_settings(settings)
        """Checks the signed actor claim of every request made on a person's behalf (services/runtime/claims.py)."""

    # --- registration (called from a module's setup) ---------------------------------------
    def endpoint(
        self, operation: str, request_type: type[Req], handler: Callable[[Req], Awaitable[msgspec.Struct]]
    ) -> None:
        self._endpoints.append(
            EndpointConfig(
                name=operation,
                subject=self.subjects.rpc(self.name, operation),
                handler=endpoint(self.name, operation, request_type, handler, self.verifier),
            )
        )

    def serve(self, contract: type[Contract], *handlers: object) -> None:
        """Answer every operation of ``contract`` with the handler marked for it (``@Contract.OP``).

        ``handlers`` are objects whose methods, modules whose functions, or functions that carry the
        marks. A service whose contract names an operation without a handler does not start, nor
        does one with a handler for an operation of another contract, or one whose handler's
        request or reply type differs from the declaration.
        """
        found: dict[str, tuple[Op[Any, Any], Callable[[Any], Awaitable[msgspec.Struct]]]] = {}
        for op, handler in (pair for h in handlers for pair in _marked(h)):
            if op.service != contract.SERVICE or op not in contract.OPS:
                raise RuntimeError(f"{self.name}: {handler.__qualname__} answers {op!r}, not part of this contract")
            if op.name in found:
                raise RuntimeError(
                    f"{self.name}: two handlers for {op.name}: {found[op.name][1].__qualname__}, {handler.__qualname__}"
                )
            _check_signature(op, handler)
            found[op.name] = (op, handler)
        missing = [op.name for op in contract.OPS if op.name not in found]
        if missing:
            raise RuntimeError(
                f"{self.name}: no handler for {', '.join(sorted(missing))} (contract {contract.__name__})"
            )
        for op, handler in found.values():
            self.endpoint(op.name, op.request, handler)
        self.contract = contract

    def check_consumes(self) -> None:
        """The consumers are exactly those the contract declares in ``CONSUMERS`` (the admin declares
        them on JetStream and the NATS permissions are derived from them): else the service does not start."""
        if self.contract is None:
            return
        registered = {c.spec.purpose: set(c.spec.event_types) for c in self._consumers}
        declared = {purpose: set(types) for purpose, types in self.contract.CONSUMERS.items()}
        if registered != declared:

            def show(consumers: dict[str, set[type]]) -> str:
                return "; ".join(f"{p}: {sorted(t.__name__ for t in ts)}" for p, ts in sorted(consumers.items()))

            raise RuntimeError(
                f"{self.name}: consumers differ from {self.contract.__name__}.CONSUMERS"
                f" (registered {show(registered)} | declared {show(declared)})"
            )

    def consumer(
        self,
        purpose: str,
        event_types: tuple[type[ev.Event], ...],
        handler: Handler | StatementHandler,
        *,
        concurrency: int = 1,
        ordered_by: Callable[[ev.Event], object] = by_convoy,
        one_statement: bool = False,
        quiet: Quiet | None = None,
    ) -> None:
        """Handle ``event_types`` with ``handler``; ``concurrency`` > 1 handles several events at
        once (still in order per ``ordered_by`` key, by default the convoy). ``one_statement``: the
        handler is a ``StatementHandler`` (services/runtime/consumer.py ``ConsumerSpec.one_statement``). ``quiet``:
        whether an event needs only its record (``ConsumerSpec.quiet``)."""
        spec = ConsumerSpec(
            purpose=purpose,
            event_types=event_types,
            handler=handler,
            concurrency=concurrency,
            ordered_by=ordered_by,
            one_statement=one_statement,
            quiet=quiet,
        )
        self._consumers.append(
            Consumer(
                service=self.name,
                spec=spec,
                db=self.db,
                js=self.js,
                subjects=self.subjects,
                settings=self.settings,
                slots=self._handler_slots,
            )
        )

    def background(self, task: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
        self._background.append(task)

    def on_reconnect(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Call ``hook`` after every NATS reconnect (core NATS messages sent meanwhile are lost)."""
        self._reconnect_hooks.append(hook)

    def readiness_check(self, name: str, check: Callable[[], Awaitable[None]]) -> None:
        self._checks[name] = check

    # --- helpers -------------------------------------------------------------------------------
    async def emit(self, conn: object, event: ev.Event, **kw: object) -> None:
        import asyncpg

        assert isinstance(conn, asyncpg.Connection)
        if isinstance(event, ev.EmailRequested):  # recipient and links travel sealed for the notifier
            kw["subject"], event = sealing.addressed(self.subjects, event, self.box_public_key)
        await outbox.add(conn, self.subjects, event, producer=self.name, **kw)  # type: ignore[arg-type]

    def outbox_row(self, event: ev.Event) -> tuple[uuid.UUID, str, bytes]:
        """The outbox row (event id, subject, data) :meth:`emit` would write, for a handler that writes it
        inside a statement of its own, together with ``pg_notify(self.wake_channel, '')``."""
        assert not isinstance(event, ev.EmailRequested)  # sealed on the way: emit() those
        return outbox.entry(self.subjects, event, producer=self.name)[1]

    @property
    def wake_channel(self) -> str:
        """The NOTIFY channel that wakes this service's outbox relay (see :func:`outbox.wake_channel`)."""
        return outbox.wake_channel(self.name)

    @property
    def box_public_key(self) -> str:
        """The notifier's public key, that email requests are sealed with (docs/architecture.md)."""
        s = self.settings
        if s.notifier_box_public_key:
            return s.notifier_box_public_key
        if s.notifier_box_key:
            return sealing.public_of(s.notifier_box_key)
        raise sealing.SealingError(
            f"{self.name} emits an email request but CONVOY_NOTIFIER_BOX_PUBLIC_KEY is not set: its recipient and "
            "links would cross the bus in clear (`convoy up` generates the key pair into the data folder)"
        )

    async def health(self, _: api.Empty | None = None) -> api.Health:
        checks: dict[str, str] = {}
        try:
            await self.db.ping()
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"failed: {exc}"
        checks["nats"] = "ok" if self.nc.is_connected else "disconnected"
        for consumer in self._consumers:
            checks[f"consumer:{consumer.spec.purpose}"] = "ok" if consumer.running else "not running"
        for name, check in self._checks.items():
            try:
                await check()
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = f"failed: {exc}"
        return api.Health(service=self.name, ready=all(v == "ok" for v in checks.values()), checks=checks)


def _marked(holder: object) -> list[tuple[Op[Any, Any], Callable[[Any], Awaitable[msgspec.Struct]]]]:
    """The (operation, handler) pairs marked in a function, a module or an object's class."""
    if inspect.isfunction(holder) or inspect.ismethod(holder):
        op = getattr(holder, HANDLER_ATTRIBUTE, None)
        return [(op, holder)] if isinstance(op, Op) else []
    if inspect.ismodule(holder):
        members = inspect.getmembers(holder, inspect.isfunction)
        return [(fn.__dict__[HANDLER_ATTRIBUTE], fn) for _, fn in members if HANDLER_ATTRIBUTE in fn.__dict__]
    pairs = []
    for name, fn in inspect.getmembers(type(holder), inspect.isfunction):
        op = fn.__dict__.get(HANDLER_ATTRIBUTE)
        if isinstance(op, Op):
            pairs.append((op, getattr(holder, name)))
    return pairs


def _check_signature(op: Op[Any, Any], handler: Callable[..., Any]) -> None:
    """The handler takes the operation's request and returns its reply (as annotated)."""
    hints = typing.get_type_hints(handler)
    params = [p for p in inspect.signature(handler).parameters if p != "self"]
    if not params:
        raise RuntimeError(f"{handler.__qualname__} answers {op.name} but takes no request")
    takes, gives = hints.get(params[0]), hints.get("return")
    if takes is not op.request and op.request not in typing.get_args(takes):
        raise RuntimeError(f"{handler.__qualname__} takes {takes}, but {op.name} sends {op.request.__name__}")
    if gives is not op.reply:
        raise RuntimeError(f"{handler.__qualname__} returns {gives}, but {op.name} answers {op.reply.__name__}")


async def serve(module: ServiceModule, settings: Settings, stop: asyncio.Event, *, own_process: bool = False) -> None:
    """Run ``module`` until ``stop`` is set; everything started is torn down in reverse order.

    ``own_process``: the process is this service's alone (:func:`run`): once ready, its start-up heap is set
    aside from the garbage collector (lifecycle.freeze_startup_heap). Not in a process that serves several
    in turn, as the tests do: what one of them leaves would never be collected."""
    rt = Runtime(settings, module.NAME)
    tracing.configure(settings, module.NAME)
    async with contextlib.AsyncExitStack() as stack:
        await db.migrate(settings.database_url, module.NAME, module.MIGRATIONS)
        rt.db = await db.connect(settings, module.NAME)
        stack.push_async_callback(rt.db.close, settings.shutdown_timeout)

        async def on_reconnect() -> None:
            for c in rt._consumers:
                c.on_reconnect()
            for hook in rt._reconnect_hooks:
                await hook()

        rt.nc = await bus.connect(settings, f"convoy-{module.NAME}", on_reconnect=on_reconnect, role=module.NAME)
        stack.push_async_callback(_drain, rt.nc, settings.shutdown_timeout)
        rt.js = rt.nc.jetstream(timeout=settings.nats_request_timeout)
        rt.rpc = RpcClient(rt.nc, settings.nats_request_timeout, rt.subjects)
        await bus.ensure_streams(
            rt.js,
            rt.subjects,
            settings.stream_replicas,
            dead_letter_max_age_s=settings.dead_letter_days * 86400,
            update=bus.manages_streams(settings),
        )

        if rt.verifier.key is None:
            log.error("no CONVOY_ACTOR_PUBLIC_KEY: every request on a person's behalf will be refused")
        await module.setup(rt)
        rt.check_consumes()

        async def health(req: Request) -> None:
            await req.respond(msgspec.json.encode(await rt.health()))

        async def metrics(req: Request) -> None:
            await req.respond(generate_latest(REGISTRY))

        micro: Service = await add_service(
            rt.nc,
            ServiceConfig(
                name=rt.subjects.micro_name(module.NAME),
                version=VERSION,
                description=f"Convoy {module.NAME} service",
                queue_group=f"{settings.namespace}-{module.NAME}",
            ),
        )
        await micro.add_endpoint(EndpointConfig(name="health", subject=rt.subjects.health(module.NAME), handler=health))
        await micro.add_endpoint(
            EndpointConfig(name="metrics", subject=rt.subjects.metrics(module.NAME), handler=metrics)
        )
        for config in rt._endpoints:
            await micro.add_endpoint(config)
        stack.push_async_callback(micro.stop)

        work_stop = asyncio.Event()
        rt.relay = outbox.Relay(service=module.NAME, nc=rt.nc, settings=settings)
        relay = rt.relay
        service_metrics.leader_gauge(module.NAME, "outbox_relay", lambda: relay.leader)
        tasks = [asyncio.create_task(rt.relay.run(work_stop), name=f"{module.NAME}-relay")]
        sampler = service_metrics.sample_forever(
            module.NAME,
            rt.db,
            rt.js,
            rt._consumers,
            every=settings.metrics_sample_seconds,
            timeout=settings.nats_request_timeout,
            stop=work_stop,
        )
        tasks.append(asyncio.create_task(sampler, name=f"{module.NAME}-metrics"))
        tasks += [asyncio.create_task(c.run(work_stop), name=c.name) for c in rt._consumers]
        tasks += [asyncio.create_task(b(work_stop)) for b in rt._background]

        async def finish_work() -> None:
            work_stop.set()
            done, pending = await asyncio.wait(tasks, timeout=settings.shutdown_timeout)
            for t in pending:
                t.cancel()
            for t in done:
                if not t.cancelled() and t.exception():
                    log.error("task ended with an error", task=t.get_name(), error=repr(t.exception()))

        stack.push_async_callback(finish_work)
        if settings.ops_port:
            stack.push_async_callback(await _ops_listener(rt, settings.http_host, settings.ops_port))
        frozen = lifecycle.freeze_startup_heap() if own_process else None
        log.info("service ready", subjects=rt.subjects.rpc(module.NAME, "*"), startup_objects=frozen)
        crashed = asyncio.create_task(_first_crash(tasks))
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({crashed, stopper}, return_when=asyncio.FIRST_COMPLETED)
        crashed.cancel()
        stopper.cancel()
        if crashed in done and not crashed.cancelled() and crashed.exception() is None:
            raise RuntimeError(f"background task {crashed.result()} ended unexpectedly")
        log.info("service stopping")


async def _ops_listener(rt: Runtime, host: str, port: int) -> Callable[[], Awaitable[None]]:
    """HTTP for probes and Prometheus: /live (the loop runs), /health (ready: 200, else 503), /metrics.

    Per process, unlike the NATS ``health``/``metrics`` endpoints, which any replica of the
    queue group may answer. Returns the coroutine function that stops it.
    """
    from aiohttp import web

    async def live(_: web.Request) -> web.Response:
        return web.json_response({"service": rt.name, "live": True})

    async def health(_: web.Request) -> web.Response:
        answer = await rt.health()
        return web.Response(
            body=msgspec.json.encode(answer), status=200 if answer.ready else 503, content_type="application/json"
        )

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/live", live)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("ops listener", host=host, port=port, paths=["/live", "/health", "/metrics"])
    return runner.cleanup


async def _first_crash(tasks: list[asyncio.Task[None]]) -> str:
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    return next(iter(done)).get_name()


async def _drain(nc: Client, timeout: float) -> None:
    try:
        await asyncio.wait_for(nc.drain(), timeout)
    except Exception:
        await nc.close()


def run_loop(main: Coroutine[Any, Any, T], settings: Settings) -> T:
    """Run ``main`` to completion on the configured event loop (CONVOY_EVENT_LOOP).

    uvloop does the same work as asyncio's own loop with less Python per socket operation; every
    process of Convoy is mostly socket operations (PostgreSQL, NATS, HTTP, SMTP).
    """
    if settings.event_loop == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


def run(module: ServiceModule, settings: Settings) -> None:
    """Process entry point: serve until SIGTERM/SIGINT."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(module, settings, stop, own_process=True)

    try:
        run_loop(main(), settings)
    except ConvoyError as exc:
        log.error("service failed", error=exc.message)
        raise SystemExit(1) from exc
    except db.MigrationChanged as exc:
        log.error("service cannot start", error=str(exc))
        raise SystemExit(1) from exc
    finally:
        tracing.shutdown()  # export the spans still batched
    log.info("service stopped")
