"""Consumers that handle several events at once keep each convoy's events in stream order
(real NATS JetStream and PostgreSQL; see services/runtime/consumer.py ``process_batch``)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import nats
import pytest

from schemas import envelope as env
from schemas import events as ev
from schemas.subjects import Subjects
from services.runtime.service import Runtime, serve
from services.runtime.settings import Settings
from tests.conftest import delete_streams, eventually

CONVOYS = 3
PER_CONVOY = 6


@dataclass
class LaneProbe:
    """One consumer with concurrency 4; its handler waits for ``go`` and takes longer for earlier events."""

    NAME = "probe"
    MIGRATIONS = Path(__file__).parent / "probe_migrations"
    go: asyncio.Event = field(default_factory=asyncio.Event)
    started: list[tuple[uuid.UUID, int]] = field(default_factory=list)
    finished: list[tuple[uuid.UUID, int]] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    rt: Runtime | None = None

    async def setup(self, rt: Runtime) -> None:
        self.rt = rt
        rt.consumer("lanes", (ev.ConvoyCreated,), self.handle, concurrency=4)

    async def handle(self, envelope: env.Envelope, event: ev.Event, conn: asyncpg.Connection) -> None:
        assert isinstance(event, ev.ConvoyCreated)
        n = int(event.name.rsplit("-", 1)[1])
        self.started.append((event.convoy_id, n))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.go.wait()
            # Earlier events take longer: handled without lanes, later ones would overtake them.
            await asyncio.sleep(0.01 * (PER_CONVOY - n))
            await conn.execute("INSERT INTO seen (event_id, name) VALUES ($1, $2)", envelope.id, event.name)
            self.finished.append((event.convoy_id, n))
        finally:
            self.in_flight -= 1


@contextlib.asynccontextmanager
async def start(settings: Settings) -> AsyncIterator[tuple[LaneProbe, nats.NATS, Subjects]]:
    probe = LaneProbe()
    stop = asyncio.Event()
    task = asyncio.create_task(serve(probe, settings, stop))  # type: ignore[arg-type]
    nc = await nats.connect(settings.nats_url)
    subjects = Subjects(settings.namespace)

    async def consuming() -> bool:
        if task.done():
            task.result()
        return probe.rt is not None and all(c.running for c in probe.rt._consumers)

    await eventually(consuming, timeout=20)
    try:
        yield probe, nc, subjects
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await delete_streams(nc, subjects)
        await nc.close()


@pytest.fixture
async def lanes(settings: Settings) -> AsyncIterator[tuple[LaneProbe, nats.NATS, Subjects]]:
    async with start(settings) as running:
        yield running


async def test_events_of_one_convoy_stay_in_order_while_convoys_run_side_by_side(
    lanes: tuple[LaneProbe, nats.NATS, Subjects], settings: Settings
) -> None:
    probe, nc, subjects = lanes
    convoys = [uuid.uuid4() for _ in range(CONVOYS)]
    js = nc.jetstream()
    for c in convoys:  # one convoy after the other: c0-0, c0-1, …, c1-0, …
        for n in range(PER_CONVOY):
            event = ev.ConvoyCreated(convoy_id=c, name=f"{c}-{n}", timezone="Europe/Berlin", language="de")
            envelope = env.new_envelope(event, producer="test")
            await js.publish(
                subjects.event(ev.ConvoyCreated.TYPE), env.encode(envelope), headers={"Nats-Msg-Id": str(envelope.id)}
            )
    await eventually(lambda: _at_least(probe, 1))
    probe.go.set()
    await eventually(lambda: _at_least(probe, CONVOYS * PER_CONVOY), timeout=30)

    conn = await asyncpg.connect(settings.database_url)
    try:
        rows = await conn.fetch("SELECT name FROM probe.seen")
    finally:
        await conn.close()
    assert len(rows) == CONVOYS * PER_CONVOY  # each once
    for c in convoys:
        assert [n for convoy, n in probe.finished if convoy == c] == list(range(PER_CONVOY))
    assert probe.most_in_flight >= 2  # different convoys were handled at the same time


async def _at_least(probe: LaneProbe, count: int) -> bool:
    return len(probe.started) >= count if count == 1 else len(probe.finished) >= count
