"""OpenTelemetry tracing across HTTP → NATS → services → notifier; off unless configured.

``CONVOY_OTEL_EXPORTER`` picks where spans go: empty (the default) turns tracing off, ``console``
prints them, ``otlp`` sends them over OTLP/HTTP to ``CONVOY_OTEL_ENDPOINT``. Off, every helper
here returns at its first line: no tracer, no context lookups, no headers, and the SDK is not
even imported.

The W3C trace context (``traceparent``, ``tracestate``) travels the way the correlation id does
(see correlation.py):

- HTTP: :func:`asgi_middleware` continues a caller's ``traceparent`` or starts a trace, one
  SERVER span per request named by its route template (never by its ids);
- request/reply: :class:`~services.runtime.rpc.RpcClient` opens a CLIENT span and sends the
  context as NATS headers; the endpoint continues it in a SERVER span;
- events: :func:`~services.runtime.outbox.add` stores the context with the outbox row; the relay
  publishes each row in a PRODUCER span that continues it and puts its own context on the
  JetStream message's headers; a consumer continues that in a CONSUMER span, so what a handler
  asks, emits or sends (email, Slack) belongs to the same trace.

One tracer provider per process, kept here rather than installed as OpenTelemetry's global one,
so that tests (every service in one process) can configure it again; ``service`` is the
``service.name`` resource of the process and spans name their service in ``convoy.service``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from services.runtime.correlation import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from services.runtime.settings import Settings

__all__ = [
    "SpanKind",
    "asgi_middleware",
    "carried",
    "configure",
    "enabled",
    "headers",
    "headers_of",
    "note_status",
    "record_error",
    "shutdown",
    "span",
    "start",
]

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

_propagator = TraceContextTextMapPropagator()
_tracer: trace.Tracer | None = None
_provider: TracerProvider | None = None
_memory: InMemorySpanExporter | None = None
_configured: tuple[str, str, float] | None = None


def configure(settings: Settings, service: str) -> None:
    """Set up tracing for this process from the settings (again with the same settings: nothing changes)."""
    global _tracer, _provider, _memory, _configured
    wanted = (settings.otel_exporter, settings.otel_endpoint, settings.otel_sample_ratio)
    if wanted == _configured:
        return
    shutdown()
    _configured = wanted
    if not settings.otel_exporter:
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    provider = TracerProvider(
        resource=Resource.create({"service.name": f"convoy-{service}", "service.namespace": settings.namespace}),
        sampler=ParentBased(TraceIdRatioBased(settings.otel_sample_ratio)),
        shutdown_on_exit=False,
    )
    exporter: SpanExporter
    if settings.otel_exporter == "memory":
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        _memory = exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exporter))  # at once: tests read them right away
    else:
        if settings.otel_exporter == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=settings.otel_endpoint or None)
        else:
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporter = ConsoleSpanExporter(service_name=f"convoy-{service}")
        provider.add_span_processor(BatchSpanProcessor(exporter))  # exported off the event loop, in batches
    _provider = provider
    _tracer = provider.get_tracer("convoy")


def shutdown() -> None:
    """Export what is pending and turn tracing off (process exit, or before configuring again)."""
    global _tracer, _provider, _memory, _configured
    provider = _provider
    _tracer, _provider, _memory, _configured = None, None, None, None
    if provider is not None:
        provider.shutdown()


def enabled() -> bool:
    return _tracer is not None


def memory_exporter() -> InMemorySpanExporter:
    """The spans kept in this process (``CONVOY_OTEL_EXPORTER=memory``, tests only)."""
    if _memory is None:
        raise RuntimeError("tracing is not configured with the memory exporter")
    return _memory


@contextlib.contextmanager
def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    carrier: Mapping[str, str] | None = None,
    attributes: Mapping[str, str | int | bool] | None = None,
) -> Iterator[Span | None]:
    """A span around the block, current while it runs; None (and nothing done) when tracing is off.

    ``carrier``: headers from another process (``traceparent``/``tracestate``) to continue;
    without a ``traceparent`` in them the span starts a new trace. Without ``carrier`` the span is a
    child of the current one. An exception ends the span with an error status and goes on.
    """
    tracer = _tracer
    if tracer is None:
        yield None
        return
    parent = _propagator.extract(carrier) if carrier is not None else None
    with tracer.start_as_current_span(name, context=parent, kind=kind, attributes=attributes) as current:
        yield current


def start(
    name: str,
    *,
    kind: SpanKind,
    carrier: Mapping[str, str] | None = None,
    attributes: Mapping[str, str | int | bool] | None = None,
) -> Span | None:
    """A span that is not made current (the caller ends it), e.g. one per message of a batch; None when off."""
    tracer = _tracer
    if tracer is None:
        return None
    parent = _propagator.extract(carrier) if carrier is not None else None
    return tracer.start_span(name, context=parent, kind=kind, attributes=attributes)


def headers_of(started: Span | None) -> dict[str, str]:
    """``traceparent``/``tracestate`` naming ``started`` as the parent (for the message it sends); {} for None."""
    if started is None:
        return {}
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=trace.set_span_in_context(started))
    return carrier


def record_error(exc: BaseException, started: Span | None = None) -> None:
    """Mark ``started`` (default: the current span) as failed with ``exc``; nothing when off."""
    if _tracer is None:
        return
    target = started if started is not None else trace.get_current_span()
    target.record_exception(exc)
    target.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}"))


def note_status(status: int) -> None:
    """Record an HTTP-like status on the current span (5xx marks it failed); nothing when off."""
    if _tracer is None:
        return
    current = trace.get_current_span()
    current.set_attribute("convoy.status", status)
    if status >= 500:
        current.set_status(Status(StatusCode.ERROR))


def headers() -> dict[str, str]:
    """``traceparent`` (and ``tracestate``) of the current span for an outgoing message; {} when off or none."""
    if _tracer is None:
        return {}
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier


def carried(headers: Mapping[str, Any] | None) -> dict[str, str] | None:
    """The trace context among a message's headers (None if there is none)."""
    if not headers or TRACEPARENT not in headers:
        return None
    found = {TRACEPARENT: str(headers[TRACEPARENT])}
    if TRACESTATE in headers:
        found[TRACESTATE] = str(headers[TRACESTATE])
    return found


def asgi_middleware(app: ASGIApp) -> ASGIApp:
    """ASGI middleware for the API: one SERVER span per HTTP request, continuing a caller's ``traceparent``."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if _tracer is None or scope["type"] != "http":
            await app(scope, receive, send)
            return
        incoming = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ()) if k in _HEADERS}
        method = scope.get("method", "GET")
        route = scope.get("path_template") or ""  # Litestar routes before app middleware runs: no ids here
        status = 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        with span(
            f"{method} {route}".strip(),
            kind=SpanKind.SERVER,
            carrier=incoming,
            attributes={"http.request.method": method, "http.route": route, "convoy.service": "api"},
        ) as current:
            await app(scope, receive, send_noting_status)
            if current is not None:
                current.set_attribute("http.response.status_code", status)
                if status >= 500:
                    current.set_status(Status(StatusCode.ERROR))

    return middleware


_HEADERS = {TRACEPARENT.encode(), TRACESTATE.encode()}
