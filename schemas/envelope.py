"""The event envelope every event travels in, and its codec.

Encoding: JSON through msgspec. MessagePack would be ~30% smaller and a little faster, but
JSON can be read with ``nats sub``/``nats stream view`` and in the dead-letter stream by a
person at 3 a.m., and msgspec's JSON is fast enough that the PostgreSQL commit, not encoding,
bounds throughput (see docs/architecture.md).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec

from schemas import events as ev


class Envelope(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Metadata around one event; ``payload`` is the typed event."""

    id: uuid.UUID
    type: str
    schema_version: int
    occurred_at: datetime
    producer: str
    correlation_id: uuid.UUID
    causation_id: uuid.UUID | None = None
    traceparent: str | None = None
    """W3C trace context of the span that emitted the event (services/runtime/tracing.py); None when off."""
    tracestate: str | None = None
    payload: msgspec.Raw


class MalformedEvent(ValueError):
    """Raised when bytes on an event subject are not a valid, known event."""


_envelope_decoder = msgspec.json.Decoder(Envelope)
_payload_decoders: dict[tuple[str, int], msgspec.json.Decoder[Any]] = {
    (cls.TYPE, cls.SCHEMA_VERSION): msgspec.json.Decoder(cls) for cls in ev.EVENT_TYPES
}
_encoder = msgspec.json.Encoder()


def new_envelope(
    event: ev.Event,
    *,
    producer: str,
    correlation_id: uuid.UUID | None = None,
    causation_id: uuid.UUID | None = None,
    event_id: uuid.UUID | None = None,
    trace: dict[str, str] | None = None,
) -> Envelope:
    """``event_id``: give a deterministic id when the same fact may be produced twice (scheduler fires).

    ``trace``: the W3C ``traceparent``/``tracestate`` to carry, as tracing.headers() gives them.
    """
    event_id = event_id or uuid.uuid4()
    return Envelope(
        id=event_id,
        type=event.TYPE,
        schema_version=event.SCHEMA_VERSION,
        occurred_at=datetime.now(UTC),
        producer=producer,
        correlation_id=correlation_id or event_id,
        causation_id=causation_id,
        traceparent=trace.get("traceparent") if trace else None,
        tracestate=trace.get("tracestate") if trace else None,
        payload=msgspec.Raw(_encoder.encode(event)),
    )


class _Trace(msgspec.Struct):
    traceparent: str | None = None
    tracestate: str | None = None


_trace_decoder = msgspec.json.Decoder(_Trace)


def trace_of(data: bytes) -> dict[str, str] | None:
    """The W3C trace context an encoded envelope carries, decoding nothing else; None if none (or unreadable)."""
    try:
        found = _trace_decoder.decode(data)
    except (msgspec.DecodeError, RecursionError):
        return None
    if found.traceparent is None:
        return None
    trace = {"traceparent": found.traceparent}
    if found.tracestate is not None:
        trace["tracestate"] = found.tracestate
    return trace


def encode(envelope: Envelope) -> bytes:
    return _encoder.encode(envelope)


def decode(data: bytes) -> tuple[Envelope, ev.Event]:
    """Decode and validate an envelope and its payload; raise MalformedEvent if either is bad."""
    try:
        envelope = _envelope_decoder.decode(data)
    except (msgspec.DecodeError, RecursionError) as exc:  # RecursionError: JSON nested ~1000 levels deep
        raise MalformedEvent(f"invalid envelope: {exc}") from exc
    decoder = _payload_decoders.get((envelope.type, envelope.schema_version))
    if decoder is None:
        raise MalformedEvent(f"unknown event type {envelope.type!r} v{envelope.schema_version}")
    try:
        payload = decoder.decode(envelope.payload)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise MalformedEvent(f"invalid {envelope.type} payload: {exc}") from exc
    return envelope, payload
