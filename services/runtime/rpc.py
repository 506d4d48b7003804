"""Request/reply over NATS with nats.micro: typed endpoints on the service side, a typed client.

Errors cross the wire as nats.micro service errors (``Nats-Service-Error-Code`` = HTTP-like
status, ``Nats-Service-Error`` = message) and become :class:`ConvoyError` again at the caller.
"""

from __future__ import annotations

import contextvars
import functools
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Concatenate, ParamSpec, TypeVar, overload

import asyncpg
import msgspec
import nats.errors
import structlog
from nats.aio.client import Client
from nats.micro.request import Request
from prometheus_client import Histogram

from schemas.contract import Op
from schemas.subjects import Subjects
from services.runtime import claims, correlation, tracing
from services.runtime.errors import ConvoyError, InvalidInput, Unavailable, from_status

log = structlog.get_logger(__name__)

RPC_SECONDS = Histogram("convoy_rpc_handler_seconds", "Time to answer a request", ["service", "operation", "status"])

Req = TypeVar("Req", bound=msgspec.Struct)
Rep = TypeVar("Rep", bound=msgspec.Struct)
T = TypeVar("T")
P = ParamSpec("P")

_encoder = msgspec.json.Encoder()

_reply_headers: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "convoy_reply_headers", default=None
)


def set_reply_header(name: str, value: str) -> None:
    """Add a NATS header to the answer of the request being handled (``RpcClient.call_with_headers`` reads it):
    facts about the reply that are not part of its type, such as the convoy version a page was read at."""
    headers = _reply_headers.get()
    if headers is not None:
        headers[name] = value


def describe_validation_error(exc: msgspec.ValidationError | msgspec.DecodeError) -> str:
    """Turn msgspec's message into one a person understands, naming the field."""
    text = str(exc)
    if " - at `$." in text:
        message, path = text.rsplit(" - at `$.", 1)
        return f"`{path.rstrip('`')}`: {message}"
    if text.startswith("Object missing required field"):
        return text.replace("Object missing required field", "missing required field")
    if text.startswith("Object contains unknown field"):
        return text.replace("Object contains unknown field", "unknown field")
    return text


def endpoint(
    service: str,
    operation: str,
    request_type: type[Req],
    handler: Callable[[Req], Awaitable[msgspec.Struct]],
    verifier: claims.Verifier | None = None,
) -> Callable[[Request], Awaitable[None]]:
    """Answer ``operation`` with ``handler``. A request with an ``actor`` is admitted only on its signed claim
    (services/runtime/claims.py): without ``verifier`` (no public key) only anonymous and system actors pass."""
    decoder = msgspec.json.Decoder(request_type)
    acts = "actor" in request_type.__struct_fields__
    named = (service, operation)
    checker = verifier or claims.Verifier(None)
    timings: dict[int, Any] = {}
    """The histogram's child per status, looked up once (``labels`` takes a lock and builds a key per call)."""

    async def handle(req: Request) -> None:
        with correlation.bound(correlation.parse((req.headers or {}).get(correlation.NATS_HEADER))):
            if not tracing.enabled():
                await answer(req)
                return
            with tracing.span(
                f"{service}.{operation}",
                kind=tracing.SpanKind.SERVER,
                carrier=tracing.carried(req.headers) or {},
                attributes={"convoy.service": service, "rpc.method": operation},
            ):
                await answer(req)

    async def answer(req: Request) -> None:
        started = time.perf_counter()
        status = 200
        try:
            try:
                body = decoder.decode(req.data)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                raise InvalidInput(describe_validation_error(exc)) from exc
            # A person's request only on its signed claim, which the handler's own requests forward.
            claim = (req.headers or {}).get(claims.HEADER)
            token = claims.admit(getattr(body, "actor"), claim, checker, named) if acts else None  # noqa: B009
            headers: dict[str, str] = {}
            bound = _reply_headers.set(headers)
            try:
                with claims.bound(token):
                    reply = await handler(body)
            finally:
                _reply_headers.reset(bound)
            await req.respond(_encoder.encode(reply), headers=headers or None)
        except asyncpg.DataError as exc:
            # SQLSTATE class 22: the caller's data cannot be stored (a NUL character, a value out of range)
            status = 400
            log.warning("request refused by the database", operation=operation, error=str(exc))
            await req.respond_error("400", f"the database cannot store this value: {exc}")
        except ConvoyError as exc:
            status = exc.status
            if status >= 500:
                log.warning("request failed", operation=operation, error=exc.message)
            await req.respond_error(str(exc.status), exc.message)
        except Exception:
            status = 500
            log.exception("request crashed", operation=operation)
            await req.respond_error("500", "internal error")
        finally:
            timing = timings.get(status)
            if timing is None:
                timing = timings[status] = RPC_SECONDS.labels(service, operation, str(status))
            timing.observe(time.perf_counter() - started)
            tracing.note_status(status)

    return handle


def _traced(
    call: Callable[Concatenate[RpcClient, str, P], Awaitable[T]],
) -> Callable[Concatenate[RpcClient, str, P], Awaitable[T]]:
    """A CLIENT span around a request when tracing is on; its context travels in the request's headers."""

    @functools.wraps(call)
    async def traced(self: RpcClient, subject: str, /, *args: P.args, **kwargs: P.kwargs) -> T:
        if not tracing.enabled():
            return await call(self, subject, *args, **kwargs)
        with tracing.span(
            Subjects.name_of(subject), kind=tracing.SpanKind.CLIENT, attributes={"messaging.destination.name": subject}
        ):
            return await call(self, subject, *args, **kwargs)

    return traced


_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}
"""A reply decoder per reply type (one made per call costs more than the decoding of a small reply)."""


def _headers(claim: str | None) -> dict[str, str] | None:
    """The request's headers: correlation id, the actor claim, and, when tracing, the W3C trace context."""
    found = correlation.nats_headers()
    trace = tracing.headers()
    headers = {**(found or {}), **trace} if trace else found
    if claim is not None:
        headers = {**(headers or {}), claims.HEADER: claim}
    return headers


class RpcClient:
    """Asks operations of other services: ``await rpc.call(Convoys.CONVOY_GET, request)``."""

    def __init__(self, nc: Client, timeout: float, subjects: Subjects, *, signer: claims.Signer | None = None) -> None:
        self.nc = nc
        self.timeout = timeout
        self.subjects = subjects
        self.signer = signer
        """Signs the actor of each request (the edge, the operator's tools); without it, a request for a
        person carries the claim of the request being handled (services/runtime/claims.py)."""

    @overload
    async def call(self, op: Op[Req, Rep], request: Req, *, timeout: float | None = None) -> Rep: ...
    @overload
    async def call(  # TRANSITION: removed once every call site names an operation
        self, op: str, request: msgspec.Struct, reply_type: type[Rep], *, timeout: float | None = None
    ) -> Rep: ...

    async def call(
        self, op: Any, request: msgspec.Struct, reply_type: Any = None, *, timeout: float | None = None
    ) -> Any:
        """Ask ``op`` with ``request``; its reply, or the service's error as a :class:`ConvoyError`."""
        if isinstance(op, str):
            return (await self._request(op, request, reply_type, timeout=timeout))[0]
        return (await self._request(self.subjects.rpc(op.service, op.name), request, op.reply, timeout=timeout))[0]

    async def call_with_headers(
        self, op: Op[Req, Rep], request: Req, *, timeout: float | None = None
    ) -> tuple[Rep, Mapping[str, str]]:
        """Ask ``op``; its reply and the headers its handler set (``set_reply_header``)."""
        return await self._request(self.subjects.rpc(op.service, op.name), request, op.reply, timeout=timeout)

    @_traced
    async def _request(
        self, subject: str, request: msgspec.Struct, reply_type: type[Rep], *, timeout: float | None = None
    ) -> tuple[Rep, Mapping[str, str]]:
        if not self.nc.is_connected:
            # While reconnecting, nats-py would buffer the request and send it once NATS is back,
            # long after this caller gave up: the service would then act on a request whose
            # client was told 503. Refuse now instead; the client retries after Retry-After.
            raise Unavailable("not connected to NATS")
        try:
            msg = await self.nc.request(
                subject,
                _encoder.encode(request),
                timeout=timeout or self.timeout,
                headers=_headers(claims.for_request(request, self.signer)),
            )
        except nats.errors.NoRespondersError as exc:
            raise Unavailable(f"no service answers {subject}") from exc
        except (TimeoutError, nats.errors.TimeoutError) as exc:
            raise Unavailable(f"{subject} did not answer in time") from exc
        except (
            nats.errors.ConnectionClosedError,
            nats.errors.ConnectionReconnectingError,
            nats.errors.ConnectionDrainingError,
            nats.errors.OutboundBufferLimitError,
            nats.errors.StaleConnectionError,
        ) as exc:
            raise Unavailable("not connected to NATS") from exc
        headers: dict[str, Any] = msg.headers or {}
        code = headers.get("Nats-Service-Error-Code")
        if code:
            raise from_status(int(code), headers.get("Nats-Service-Error", "error"))
        decoder = _decoders.get(reply_type)
        if decoder is None:
            decoder = _decoders[reply_type] = msgspec.json.Decoder(reply_type)
        return decoder.decode(msg.data), headers
