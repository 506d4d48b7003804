"""Correlation ids: one id per HTTP request, followed through NATS into every service's logs and email.

The API takes ``X-Correlation-ID`` from the request (a UUID; anything else is replaced) or makes
one, answers with it, and binds it for the request. From there it travels by itself:

- request/reply: :class:`~services.runtime.rpc.RpcClient` sends it as the ``Convoy-Correlation-Id``
  NATS header; the service's endpoint binds it while it handles the request;
- events: :func:`~services.runtime.outbox.add` writes it into the envelope's ``correlation_id``
  (the current event's id becomes ``causation_id``); a consumer binds both while it handles it,
  so whatever it emits or asks next carries the same id;
- logs: bound with structlog's context variables, so every line logged meanwhile has
  ``correlation_id``; the notifier puts it on each email it sends (``X-Correlation-ID``).

Each asyncio task has its own copy of the context: binding in one request never leaks into another.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from typing import Any

import structlog

HTTP_HEADER = "X-Correlation-ID"
"""The HTTP request and response header, and the email header."""
NATS_HEADER = "Convoy-Correlation-Id"
"""The NATS message header on requests."""

_correlation: ContextVar[uuid.UUID | None] = ContextVar("convoy_correlation_id", default=None)
_causation: ContextVar[uuid.UUID | None] = ContextVar("convoy_causation_id", default=None)


def current() -> uuid.UUID | None:
    """The correlation id bound in this task, if any."""
    return _correlation.get()


def causation() -> uuid.UUID | None:
    """The id of the event being handled in this task, if any."""
    return _causation.get()


def parse(value: str | bytes | None) -> uuid.UUID | None:
    """A correlation id from a header; None for anything that is not a UUID (never trust a caller's text)."""
    if not value:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    try:
        return uuid.UUID(value.strip()[:64])
    except ValueError:
        return None


def nats_headers() -> dict[str, str] | None:
    """Headers for an outgoing NATS request: the bound correlation id, if any."""
    bound_id = _correlation.get()
    return {NATS_HEADER: str(bound_id)} if bound_id is not None else None


@contextlib.contextmanager
def bound(correlation_id: uuid.UUID | None, *, causation_id: uuid.UUID | None = None) -> Iterator[None]:
    """Bind ``correlation_id`` (and the event being handled) for the duration of the block."""
    if correlation_id is None:
        yield
        return
    token = _correlation.set(correlation_id)
    cause = _causation.set(causation_id)
    try:
        with structlog.contextvars.bound_contextvars(correlation_id=str(correlation_id)):
            yield
    finally:
        _causation.reset(cause)
        _correlation.reset(token)


Scope = Any  # ASGI's dicts; Any so that any framework's typed ASGI app fits
Message = Any
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_HEADER_BYTES = HTTP_HEADER.lower().encode()


def asgi_middleware(app: ASGIApp) -> ASGIApp:
    """ASGI middleware for the API: read or make the request's correlation id, bind it, answer with it."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        given = next((v for k, v in scope.get("headers", ()) if k == _HEADER_BYTES), None)
        correlation_id = parse(given) or uuid.uuid4()
        echoed = (_HEADER_BYTES, str(correlation_id).encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), echoed]}
            await send(message)

        with bound(correlation_id):
            await app(scope, receive, send_with_id)

    return middleware
