"""Transactional outbox: write an event with the state change, relay it to JetStream afterwards.

The relay is the only publisher of domain events. It runs in every replica but works only
while it holds a PostgreSQL advisory lock, so events of one service leave in commit order.
Each message carries ``Nats-Msg-Id`` = event id: a row published twice (crash between the
JetStream ack and the DELETE) is dropped by JetStream's duplicate window.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter as Tally

import asyncpg
import structlog
from nats.js import JetStreamContext
from prometheus_client import Counter

from schemas import envelope as env
from schemas import events as ev
from schemas.subjects import Subjects
from services.runtime import correlation, metrics, tracing
from services.runtime.db import TRANSIENT_DB_ERRORS, Database
from services.runtime.settings import Settings

log = structlog.get_logger(__name__)

PUBLISHED = Counter("convoy_outbox_published", "Events relayed from the outbox to JetStream", ["service"])
RELAY_ERRORS = Counter("convoy_outbox_relay_errors", "Failed relay rounds (retried)", ["service"])

DB_ERRORS: tuple[type[BaseException], ...] = (*TRANSIENT_DB_ERRORS, asyncpg.PostgresError)

BATCH = 500
POLL_S = 1.0


async def add(
    conn: asyncpg.Connection,
    subjects: Subjects,
    event: ev.Event,
    *,
    producer: str,
    correlation_id: uuid.UUID | None = None,
    causation_id: uuid.UUID | None = None,
    event_id: uuid.UUID | None = None,
) -> env.Envelope:
    """Record ``event`` in the outbox inside the caller's transaction (once per ``event_id``).

    Correlation and causation default to what the current request or event bound (see correlation.py).
    """
    envelope = env.new_envelope(
        event,
        producer=producer,
        correlation_id=correlation_id or correlation.current(),
        causation_id=causation_id or correlation.causation(),
        event_id=event_id,
        trace=tracing.headers(),  # the emitting span: the relay's publish continues it
    )
    await conn.execute(
        "INSERT INTO outbox (event_id, subject, data) VALUES ($1, $2, $3) ON CONFLICT (event_id) DO NOTHING",
        envelope.id,
        subjects.of(type(event)),
        env.encode(envelope),
    )
    await conn.execute("SELECT pg_notify($1, '')", _channel(producer))
    return envelope


def _channel(service: str) -> str:
    return f"convoy_outbox_{service}"


class Relay:
    def __init__(self, *, service: str, db: Database, js: JetStreamContext, settings: Settings) -> None:
        self.service = service
        self.db = db
        self.js = js
        self.settings = settings
        self.wake = asyncio.Event()
        self.leader = False

    async def run(self, stop: asyncio.Event) -> None:
        delay = 0.5
        while not stop.is_set():
            try:
                await self._lead(stop)
                delay = 0.5
            except DB_ERRORS as exc:
                log.warning("outbox relay lost its database connection", error=repr(exc))
            self.leader = False
            await _sleep_unless(stop, delay)
            delay = min(delay * 2, 10.0)

    async def _lead(self, stop: asyncio.Event) -> None:
        conn: asyncpg.Connection = await asyncpg.connect(
            self.settings.database_url, timeout=self.settings.db_acquire_timeout
        )
        try:
            while not stop.is_set():
                got = await conn.fetchval(
                    "SELECT pg_try_advisory_lock(hashtext($1))", f"convoy-relay:{self.service}", timeout=5
                )
                if got:
                    break
                await _sleep_unless(stop, 2.0)  # another replica relays; stand by
            if stop.is_set():
                return
            self.leader = True
            await conn.add_listener(_channel(self.service), lambda *_: self.wake.set())
            failures = 0
            while not stop.is_set():
                try:
                    sent = await self.relay_once()
                    failures = 0
                except DB_ERRORS:
                    raise
                except Exception as exc:  # NATS down or slow: keep the rows, try again
                    RELAY_ERRORS.labels(self.service).inc()
                    failures += 1
                    log.warning("outbox relay round failed", error=repr(exc), failures=failures)
                    await _sleep_unless(stop, min(0.5 * 2**failures, 10.0))
                    continue
                if sent == BATCH:
                    continue  # more waiting; no pause
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), POLL_S)
                if conn.is_closed():
                    raise asyncpg.exceptions.ConnectionDoesNotExistError("listener connection closed")
        finally:
            await conn.close(timeout=2)

    async def relay_once(self) -> int:
        """Publish one batch with many acks in flight; delete what JetStream acknowledged."""
        async with self.db.transaction() as conn:
            rows = await conn.fetch(
                "SELECT seq, event_id, subject, data FROM outbox ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED",
                BATCH,
            )
            if not rows:
                return 0
            # One PRODUCER span per event when tracing is on, continuing the context stored in its
            # envelope; the message carries the span's own context for the consumers.
            spans = (
                [
                    tracing.start(
                        f"{Subjects.name_of(r['subject'])} publish",
                        kind=tracing.SpanKind.PRODUCER,
                        carrier=env.trace_of(bytes(r["data"])) or {},
                        attributes={"convoy.service": self.service, "messaging.destination.name": r["subject"]},
                    )
                    for r in rows
                ]
                if tracing.enabled()
                else [None] * len(rows)
            )
            results: list[object] = [None] * len(rows)
            try:
                futures = [
                    await self.js.publish_async(
                        r["subject"],
                        bytes(r["data"]),
                        headers={"Nats-Msg-Id": str(r["event_id"]), **tracing.headers_of(span)},
                    )
                    for r, span in zip(rows, spans, strict=True)
                ]
                results = await asyncio.wait_for(
                    asyncio.gather(*futures, return_exceptions=True), self.settings.nats_request_timeout
                )
            except BaseException as exc:
                results = [exc] * len(rows)
                raise
            finally:
                for span, res in zip(spans, results, strict=True):
                    if span is not None:
                        if isinstance(res, BaseException):
                            tracing.record_error(res, span)
                        span.end()
            acked = [r for r, res in zip(rows, results, strict=True) if not isinstance(res, BaseException)]
            if acked:
                await conn.execute("DELETE FROM outbox WHERE seq = ANY($1::bigint[])", [r["seq"] for r in acked])
            PUBLISHED.labels(self.service).inc(len(acked))
            for event_type, n in Tally(Subjects.name_of(r["subject"]) for r in acked).items():
                metrics.EVENTS_PUBLISHED.labels(self.service, event_type).inc(n)
            failed = [res for res in results if isinstance(res, BaseException)]
            if failed:
                raise RuntimeError(f"{len(failed)} of {len(rows)} publishes failed: {failed[0]!r}")
            return len(rows)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
