"""Prometheus metrics that describe a service as a whole, and the sampler that keeps the gauges current.

Counters are incremented where things happen (outbox.py, consumer.py, rpc.py, the notifier, the
scheduler); what can only be asked for — how far a durable consumer is behind, how many rows wait
in the outbox — is sampled every ``CONVOY_METRICS_SAMPLE_SECONDS`` by :func:`sample_forever`, one
task per service process. Labels are bounded: service, consumer purpose, event type, channel,
action kind, role; never an id.

Every replica samples the same durable consumer and the same outbox table, so aggregate the
gauges with ``max by (…)``, not ``sum``.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import structlog
from prometheus_client import Counter, Gauge

from services.runtime.lifecycle import wait_or_stop

if TYPE_CHECKING:
    from nats.js import JetStreamContext

    from services.runtime.consumer import Consumer
    from services.runtime.db import Database

log = structlog.get_logger(__name__)

EVENTS_PUBLISHED = Counter(
    "convoy_events_published", "Events the outbox relay published to JetStream, by type", ["service", "type"]
)
CONSUMER_PENDING = Gauge(
    "convoy_consumer_pending",
    "Messages a durable consumer has not been handed yet (its lag), sampled from JetStream",
    ["service", "consumer"],
)
CONSUMER_ACK_PENDING = Gauge(
    "convoy_consumer_ack_pending",
    "Messages handed to a durable consumer and not acknowledged yet (in hand or waiting for a retry)",
    ["service", "consumer"],
)
OUTBOX_BACKLOG = Gauge(
    "convoy_outbox_backlog", "Rows in the service's outbox not yet published (sampled; capped)", ["service"]
)
OUTBOX_OLDEST_SECONDS = Gauge(
    "convoy_outbox_oldest_seconds", "Age of the oldest unpublished outbox row (0 when empty)", ["service"]
)
SCHEDULER_FIRES = Counter(
    "convoy_scheduler_fires", "Scheduler actions fired (open, nudge, close, drop_*, facilitator_digest)", ["kind"]
)
SCHEDULER_FAILURES = Counter(
    "convoy_scheduler_failures",
    "Convoys the scheduler could not plan or fire at a tick (stage: plan, fire); retried at the next tick",
    ["stage"],
)
LEADER = Gauge(
    "convoy_leader",
    "1 while this process leads (role: outbox_relay per service, scheduler for reminders), else 0",
    ["service", "role"],
)

OUTBOX_COUNT_CAP = 100_000
"""The backlog is counted up to this many rows: a sample must stay cheap when the outbox is not."""


def leader_gauge(service: str, role: str, leads: Callable[[], bool]) -> None:
    """Report ``leads()`` as ``convoy_leader{service, role}``, read at every scrape."""
    LEADER.labels(service, role).set_function(lambda: 1.0 if leads() else 0.0)


def count_fires(kinds: Iterable[str]) -> None:
    """Count the scheduler's fires by action kind (after their transaction committed)."""
    for kind, n in collections.Counter(kinds).items():  # a slot is 400,000 fires at 1,000,000 convoys
        SCHEDULER_FIRES.labels(kind).inc(n)


def count_scheduler_failures(stage: str, convoys: int) -> None:
    """Count convoys a tick could not plan or fire (each also logged with its error)."""
    if convoys:
        SCHEDULER_FAILURES.labels(stage).inc(convoys)


async def sample_once(
    service: str, db: Database, js: JetStreamContext, consumers: Iterable[Consumer], timeout: float
) -> None:
    """Ask JetStream for each consumer's position and PostgreSQL for the outbox backlog; skip what fails."""
    for consumer in consumers:
        try:
            info = await js.consumer_info(consumer.stream, consumer.name, timeout=timeout)
        except Exception as exc:  # not declared yet, NATS away: keep the last value
            log.debug("consumer info unavailable", consumer=consumer.name, error=repr(exc))
            continue
        CONSUMER_PENDING.labels(service, consumer.spec.purpose).set(info.num_pending or 0)
        CONSUMER_ACK_PENDING.labels(service, consumer.spec.purpose).set(info.num_ack_pending or 0)
    try:
        async with db.connection() as conn:
            row = await conn.fetchrow(
                "SELECT count(*) AS rows, coalesce(extract(epoch FROM now() - min(created_at)), 0) AS oldest"
                " FROM (SELECT created_at FROM outbox ORDER BY seq LIMIT $1) AS waiting",
                OUTBOX_COUNT_CAP,
                timeout=timeout,
            )
    except Exception as exc:
        log.debug("outbox backlog unavailable", error=repr(exc))
        return
    if row is not None:
        OUTBOX_BACKLOG.labels(service).set(row["rows"])
        OUTBOX_OLDEST_SECONDS.labels(service).set(float(row["oldest"]))


async def sample_forever(
    service: str,
    db: Database,
    js: JetStreamContext,
    consumers: Iterable[Consumer],
    every: float,
    timeout: float,
    stop: asyncio.Event,
) -> None:
    """:func:`sample_once` now and every ``every`` seconds until ``stop``."""
    consumers = list(consumers)
    while not stop.is_set():
        await sample_once(service, db, js, consumers, timeout)
        await wait_or_stop(stop, every)
