"""Durable JetStream consumers: explicit ack, exactly-once effects, bounded redelivery, dead letters.

For each message: decode the envelope (malformed: dead-letter it and carry on); in one
transaction record the event id in ``processed_events`` and run the handler (a redelivered,
already processed event is acked without running it again); ack after commit. (A handler whose
effect is one statement records the event in that statement instead: ``ConsumerSpec.one_statement``.) A failing
handler is retried with backoff (``nak(delay)``) up to ``CONVOY_CONSUMER_MAX_DELIVER``
attempts, then the message goes to the dead-letter subject with the error in its headers; a
failure because a dependency is away (:class:`Unavailable`) is retried at the longest backoff
for as long as it lasts, never dead-lettered.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import cast

import asyncpg
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError
from prometheus_client import Counter

from schemas import envelope as env
from schemas import events as ev
from schemas.contract import Contract
from schemas.subjects import Subjects
from services.runtime import bus, correlation, tracing
from services.runtime.db import Database
from services.runtime.errors import Unavailable
from services.runtime.lifecycle import wait_or_stop
from services.runtime.settings import Settings

log = structlog.get_logger(__name__)

PROCESSED = Counter("convoy_events_processed", "Events handled by consumers", ["service", "consumer", "outcome"])

Handler = Callable[[env.Envelope, ev.Event, asyncpg.Connection], Awaitable[None]]
StatementHandler = Callable[[env.Envelope, ev.Event, asyncpg.Connection, str], Awaitable[bool]]
"""A handler whose effect is one statement that also records the event (``ConsumerSpec.one_statement``):
called with a connection outside any transaction and the consumer's durable name, it answers whether
the event was new (its ``processed_events`` row inserted by that statement)."""
PROCESSED_CTE = (
    "fresh AS (INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true)"
)
"""For a :data:`StatementHandler`: the CTE that records the event, its parameters $1 (the consumer's name)
and $2 (the event id); the statement's effects are written only ``WHERE EXISTS (SELECT FROM fresh)``."""
RECORD = "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true"
"""An event's ``processed_events`` row ($1 the consumer's name, $2 the event id): true when it is new."""
Quiet = Callable[[env.Envelope, ev.Event], Awaitable[bool]]
"""``ConsumerSpec.quiet``: whether an event needs nothing but its ``processed_events`` row."""
Decoded = tuple[env.Envelope, ev.Event] | env.MalformedEvent
"""A message's envelope and event, or why it could not be decoded."""


def _decode(msg: Msg) -> Decoded:
    try:
        return env.decode(msg.data)
    except env.MalformedEvent as exc:
        return exc


FETCH_BATCH = 64
FETCH_WAIT_S = 2.0


def by_convoy(event: ev.Event) -> object:
    """The default ordering key: events of one convoy are handled in stream order."""
    return getattr(event, "convoy_id", None)


@dataclass(frozen=True)
class ConsumerSpec:
    purpose: str
    """Short name, unique within the service (part of the durable name)."""
    event_types: tuple[type[ev.Event], ...]
    handler: Handler | StatementHandler
    concurrency: int = 1
    """Events of one fetched batch handled at once. Events with the same ``ordered_by`` key are
    still handled one after the other, in stream order; 1: every event in order."""
    ordered_by: Callable[[ev.Event], object] = by_convoy
    one_statement: bool = False
    """``handler`` is a :data:`StatementHandler`: the event's whole effect, and its ``processed_events``
    row, in one statement (its own transaction), so BEGIN, the separate insert and COMMIT (three round
    trips per event) are saved. Only for handlers that write one statement and send nothing."""
    quiet: Quiet | None = None
    """Asked before the event's transaction: True when the event has no effect here but its record (a report in
    a convoy with nobody to tell). Then the event is recorded in one statement (its own transaction: no BEGIN
    and COMMIT round trips) and ``handler`` is not called; False (or None): the transaction and the handler as
    always. An exception is the handler's (retried, dead-lettered)."""


def durable_config(name: str, subjects: Subjects, event_types: Iterable[type[ev.Event]]) -> js_api.ConsumerConfig:
    """The JetStream configuration of a durable consumer (the same whoever declares it)."""
    return js_api.ConsumerConfig(
        durable_name=name,
        filter_subjects=sorted(f for t in event_types for f in subjects.filters(t)),
        ack_policy=js_api.AckPolicy.EXPLICIT,
        deliver_policy=js_api.DeliverPolicy.ALL,
        ack_wait=60,
        max_deliver=-1,  # we count attempts ourselves and dead-letter; the server never drops
        max_ack_pending=1000,
    )


async def ensure_consumers(js: JetStreamContext, subjects: Subjects, contracts: Iterable[type[Contract]]) -> None:
    """Declare every durable consumer the contracts name (``Contract.CONSUMERS``): the admin's job,
    except on the messages stream (the notifier, its only reader, declares its own there)."""
    for contract in contracts:
        for purpose, types in contract.CONSUMERS.items():
            stream = subjects.stream_of(types[0])
            if stream == subjects.messages_stream:
                continue
            await js.add_consumer(stream, durable_config(subjects.consumer(contract.SERVICE, purpose), subjects, types))


class Consumer:
    def __init__(
        self,
        *,
        service: str,
        spec: ConsumerSpec,
        db: Database,
        js: JetStreamContext,
        subjects: Subjects,
        settings: Settings,
        slots: asyncio.Semaphore | None = None,
    ) -> None:
        self.service = service
        self.slots = slots or asyncio.Semaphore(max(1, spec.concurrency))
        """Shared by the service's consumers: bounds the handlers (each holds a database connection) in flight."""
        self.own_slots = asyncio.Semaphore(max(1, spec.concurrency))
        self.spec = spec
        self.db = db
        self.js = js
        self.subjects = subjects
        self.settings = settings
        self.name = subjects.consumer(service, spec.purpose)
        streams = {subjects.stream_of(t) for t in spec.event_types}
        if len(streams) != 1:
            raise ValueError(f"consumer {self.name} mixes streams {sorted(streams)}; use one consumer per stream")
        self.stream = streams.pop()
        self.running = False
        self._resubscribe = asyncio.Event()

    def on_reconnect(self) -> None:
        # A pull subscription can stall silently after a server restart: make a fresh one.
        self._resubscribe.set()

    async def _declare(self) -> JetStreamContext.PullSubscription:
        if bus.manages_streams(self.settings) or self.stream == self.subjects.messages_stream:
            await self.js.add_consumer(self.stream, durable_config(self.name, self.subjects, self.spec.event_types))
        else:
            # A service role may not create consumers (a push consumer could deliver a stream to any
            # subject, past its publish permissions): the admin declared it (`convoy up`/`migrate`).
            # The messages stream's consumers are the notifier's own (its only reader) and declared by it.
            try:
                await self.js.consumer_info(self.stream, self.name)
            except NotFoundError:
                raise RuntimeError(
                    f"consumer {self.name} is not declared on {self.stream}: `convoy migrate` (as admin) declares it"
                ) from None
        return await self.js.pull_subscribe_bind(self.name, stream=self.stream)

    async def run(self, stop: asyncio.Event) -> None:
        delay = 0.5
        while not stop.is_set():
            sub: JetStreamContext.PullSubscription | None = None
            try:
                sub = await self._declare()
                self._resubscribe.clear()
                self.running = True
                delay = 0.5
                while not stop.is_set() and not self._resubscribe.is_set():
                    try:
                        msgs = await sub.fetch(FETCH_BATCH, timeout=FETCH_WAIT_S)
                    except TimeoutError:
                        continue
                    await self.process_batch(msgs)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.running = False
                log.warning("consumer interrupted; resubscribing", consumer=self.name, error=repr(exc))
                await wait_or_stop(stop, delay)
                delay = min(delay * 2, 10.0)
            finally:
                if sub is not None:
                    with contextlib.suppress(Exception):  # the connection may be gone; nothing to free
                        await sub.unsubscribe()
        self.running = False

    async def process_batch(self, msgs: list[Msg]) -> None:
        """Handle a fetched batch: in order, or in lanes by ordering key, several lanes at a time.

        The batch is finished before the next fetch, so an event is never overtaken by a later
        event of its lane (a redelivered one, after a nak, comes back later as it always did).
        """
        if self.spec.concurrency <= 1 or len(msgs) <= 1:
            for msg in msgs:
                await self.process(msg)
            return
        lanes: dict[object, list[tuple[Msg, Decoded]]] = {}
        for msg in msgs:
            decoded = _decode(msg)
            lanes.setdefault(self._lane(msg, decoded), []).append((msg, decoded))

        async def lane(queue: list[tuple[Msg, Decoded]]) -> None:
            for msg, decoded in queue:
                async with self.own_slots, self.slots:
                    await self.process(msg, decoded)

        # Not a TaskGroup: one failing lane must not cancel the others mid-send (an email handed
        # to SMTP but not recorded would become "uncertain"); the first failure is raised after.
        results = await asyncio.gather(*(lane(q) for q in lanes.values()), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def _lane(self, msg: Msg, decoded: Decoded) -> object:
        if isinstance(decoded, env.MalformedEvent):
            return ("malformed", id(msg))  # dead-lettered on its own
        try:
            return ("key", self.spec.ordered_by(decoded[1]))
        except Exception:
            return ("key", None)

    async def process(self, msg: Msg, decoded: Decoded | None = None) -> None:
        attempt = msg.metadata.num_delivered
        if decoded is None:
            decoded = _decode(msg)
        if isinstance(decoded, env.MalformedEvent):
            await self._dead_letter(msg, f"malformed: {decoded}")
            PROCESSED.labels(self.service, self.spec.purpose, "malformed").inc()
            return
        envelope, event = decoded
        with (
            correlation.bound(envelope.correlation_id, causation_id=envelope.id),
            tracing.span(
                f"{envelope.type} process",
                kind=tracing.SpanKind.CONSUMER,
                # the relay's publish span; else the emitter's, from the envelope (relay not tracing)
                carrier=(tracing.carried(msg.headers) or _trace_of(envelope)) if tracing.enabled() else None,
                attributes={"convoy.service": self.service, "convoy.consumer": self.spec.purpose, "attempt": attempt},
            ),
        ):
            await self._handle(msg, envelope, event, attempt)

    async def _handle(self, msg: Msg, envelope: env.Envelope, event: ev.Event, attempt: int) -> None:
        bound = log.bind(consumer=self.name, event_id=str(envelope.id), type=envelope.type, attempt=attempt)
        try:
            if self.spec.one_statement:
                async with self.db.connection() as conn:
                    fresh = await cast(StatementHandler, self.spec.handler)(envelope, event, conn, self.name)
            elif self.spec.quiet is not None and await self.spec.quiet(envelope, event):
                fresh = await self._record(envelope)
            else:
                fresh = await self._in_transaction(envelope, event)
        except Exception as exc:
            tracing.record_error(exc)
            # A dependency that is away (database restarting, a service or NATS between restarts)
            # says nothing about the event: wait for it, however long, instead of dead-lettering a
            # good event because PostgreSQL took longer than the backoff to come back.
            transient = isinstance(exc, Unavailable)
            if attempt >= self.settings.consumer_max_deliver and not transient:
                bound.error("event failed for the last time; dead-lettered", error=repr(exc))
                await self._dead_letter(msg, f"failed {attempt} times: {exc!r}")
                PROCESSED.labels(self.service, self.spec.purpose, "dead_lettered").inc()
            else:
                backoff = self.settings.backoff_seconds
                # Jitter (±20%) spreads the retries of many messages that failed together.
                delay = round(backoff[min(attempt - 1, len(backoff) - 1)] * random.uniform(0.8, 1.2), 3)
                bound.warning("event failed; will retry", error=repr(exc), retry_in_s=delay, transient=transient)
                await msg.nak(delay=delay)
                PROCESSED.labels(self.service, self.spec.purpose, "retried").inc()
            return
        await msg.ack()
        PROCESSED.labels(self.service, self.spec.purpose, "ok" if fresh else "duplicate").inc()
        bound.debug("event handled" if fresh else "event already handled")

    async def _record(self, envelope: env.Envelope) -> bool:
        """Only record the event (``ConsumerSpec.quiet``); False: recorded before."""
        async with self.db.connection() as conn:
            return bool(await conn.fetchval(RECORD, self.name, envelope.id))

    async def _in_transaction(self, envelope: env.Envelope, event: ev.Event) -> bool:
        """Record the event and run the handler in one transaction; False: handled before."""
        async with self.db.transaction() as conn:
            fresh = bool(await conn.fetchval(RECORD, self.name, envelope.id))
            if fresh:
                await cast(Handler, self.spec.handler)(envelope, event, conn)
        return fresh

    async def _dead_letter(self, msg: Msg, reason: str) -> None:
        meta = msg.metadata
        await self.js.publish(
            self.subjects.dead_letter(self.name, self.subjects.recipient_of(msg.subject)),
            msg.data,
            headers={
                "Nats-Msg-Id": f"{self.name}:{meta.sequence.stream}",
                "Convoy-Error": reason[:1000].replace("\r", " ").replace("\n", " "),
                "Convoy-Subject": msg.subject,
                "Convoy-Consumer": self.name,
                "Convoy-Stream-Seq": str(meta.sequence.stream),
                **(correlation.nats_headers() or {}),
            },
            timeout=self.settings.nats_request_timeout,
        )
        await msg.ack()
        log.warning("event dead-lettered", consumer=self.name, subject=msg.subject, reason=reason[:300])


def _trace_of(envelope: env.Envelope) -> dict[str, str]:
    if envelope.traceparent is None:
        return {}  # a new trace
    return {"traceparent": envelope.traceparent, **({"tracestate": envelope.tracestate} if envelope.tracestate else {})}
