"""Request/reply over NATS with nats.micro: typed endpoints on the service side, a typed client.

Errors cross the wire as nats.micro service errors (``Nats-Service-Error-Code`` = HTTP-like
status, ``Nats-Service-Error`` = message) and become :class:`ConvoyError` again at the caller.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import nats.errors
import structlog
from nats.aio.client import Client
from nats.micro.request import Request
from prometheus_client import Histogram

from services.runtime import correlation
from services.runtime.errors import ConvoyError, InvalidInput, Unavailable, from_status

log = structlog.get_logger(__name__)

RPC_SECONDS = Histogram("convoy_rpc_handler_seconds", "Time to answer a request", ["service", "operation", "status"])

Req = TypeVar("Req", bound=msgspec.Struct)
Rep = TypeVar("Rep", bound=msgspec.Struct)

_encoder = msgspec.json.Encoder()


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
) -> Callable[[Request], Awaitable[None]]:
    decoder = msgspec.json.Decoder(request_type)

    async def handle(req: Request) -> None:
        with correlation.bound(correlation.parse((req.headers or {}).get(correlation.NATS_HEADER))):
            await answer(req)

    async def answer(req: Request) -> None:
        started = time.perf_counter()
        status = 200
        try:
            try:
                body = decoder.decode(req.data)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                raise InvalidInput(describe_validation_error(exc)) from exc
            reply = await handler(body)
            await req.respond(_encoder.encode(reply))
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
            RPC_SECONDS.labels(service, operation, str(status)).observe(time.perf_counter() - started)

    return handle


class RpcClient:
    def __init__(self, nc: Client, timeout: float) -> None:
        self.nc = nc
        self.timeout = timeout

    async def call(
        self, subject: str, request: msgspec.Struct, reply_type: type[Rep], *, timeout: float | None = None
    ) -> Rep:
        try:
            msg = await self.nc.request(
                subject, _encoder.encode(request), timeout=timeout or self.timeout, headers=correlation.nats_headers()
            )
        except nats.errors.NoRespondersError as exc:
            raise Unavailable(f"no service answers {subject}") from exc
        except (TimeoutError, nats.errors.TimeoutError) as exc:
            raise Unavailable(f"{subject} did not answer in time") from exc
        except nats.errors.ConnectionClosedError as exc:
            raise Unavailable("not connected to NATS") from exc
        headers: dict[str, Any] = msg.headers or {}
        code = headers.get("Nats-Service-Error-Code")
        if code:
            raise from_status(int(code), headers.get("Nats-Service-Error", "error"))
        return msgspec.json.decode(msg.data, type=reply_type)
