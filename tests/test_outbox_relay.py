"""The outbox relay against real PostgreSQL and NATS: order across batches, atomic batches and their
fallback, a lost DELETE (rows published twice), the DELETE on the next fetch, the dead-letter stream's
retention."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import nats
import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from schemas import envelope as env
from schemas import events as ev
from schemas.subjects import Subjects
from services.reminders import repository as reminders_repo
from services.runtime import bus, db, outbox
from services.runtime.settings import Settings
from tests.conftest import delete_streams, eventually

SERVICE = "reminders"  # a schema with an outbox table (every service's has one)


@dataclass
class Bed:
    settings: Settings
    subjects: Subjects
    db: db.Database
    nc: nats.NATS
    js: JetStreamContext

    async def write(self, convoys: list[uuid.UUID], *, index: int = 7) -> list[uuid.UUID]:
        """One transaction per convoy, as the tick writes them: its cycle.closed, then its cycle.opened."""
        now = datetime.now(UTC)
        ids: list[uuid.UUID] = []

        async def one(convoy_id: uuid.UUID) -> None:
            events: list[ev.Event] = [
                ev.CycleClosed(convoy_id=convoy_id, cycle_index=index, opens_at=now, closes_at=now, absences=[]),
                ev.CycleOpened(
                    convoy_id=convoy_id, cycle_index=index + 1, opens_at=now, due_at=now, closes_at=now, absences=[]
                ),
            ]
            envelopes = [env.new_envelope(e, producer=SERVICE, correlation_id=uuid.uuid4()) for e in events]
            async with self.db.transaction() as conn:
                await reminders_repo.add_outbox(
                    conn,
                    [e.id for e in envelopes],
                    [self.subjects.of(type(e)) for e in events],
                    [env.encode(e) for e in envelopes],
                    outbox.wake_channel(SERVICE),
                )
            ids.extend(e.id for e in envelopes)

        # several transactions at once: their outbox seqs interleave and they commit out of seq order
        gate = asyncio.Semaphore(4)

        async def gated(convoy_id: uuid.UUID) -> None:
            async with gate:
                await one(convoy_id)

        await asyncio.gather(*(gated(c) for c in convoys))
        return ids

    async def outbox_rows(self) -> int:
        async with self.db.connection() as conn:
            return int(await conn.fetchval("SELECT count(*) FROM outbox"))

    async def stream(self) -> list[tuple[str, ev.Event]]:
        """Every message of the events stream in stream order: (Nats-Msg-Id, event)."""
        info = await self.js.stream_info(self.subjects.events_stream)
        sub = await self.js.subscribe(self.subjects.events_wildcard, ordered_consumer=True)
        out: list[tuple[str, ev.Event]] = []
        try:
            while len(out) < info.state.messages:
                msg = await sub.next_msg(timeout=10)
                envelope, event = env.decode(msg.data)
                assert msg.headers is not None and msg.headers["Nats-Msg-Id"] == str(envelope.id)
                out.append((str(envelope.id), event))
        finally:
            await sub.unsubscribe()
        return out

    @contextlib.asynccontextmanager
    async def relaying(self, **kw: object) -> AsyncIterator[outbox.Relay]:
        relay = outbox.Relay(service=SERVICE, nc=self.nc, settings=self.settings, **kw)  # type: ignore[arg-type]
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop))
        try:
            yield relay
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)

    async def drained(self) -> bool:
        return await self.outbox_rows() == 0


@pytest.fixture
async def bed(settings: Settings) -> AsyncIterator[Bed]:
    subjects = Subjects(settings.namespace)
    nc = await nats.connect(settings.nats_url)
    js = nc.jetstream(timeout=10)
    await bus.ensure_streams(js, subjects, 1)
    database = await db.connect(settings, SERVICE)
    try:
        yield Bed(settings=settings, subjects=subjects, db=database, nc=nc, js=js)
    finally:
        await database.close(5)
        await delete_streams(nc, subjects)
        await nc.close()


def assert_in_order_once(stream: list[tuple[str, ev.Event]], ids: list[uuid.UUID], convoys: list[uuid.UUID]) -> None:
    counts = Counter(i for i, _ in stream)
    assert set(counts) == {str(i) for i in ids}
    assert max(counts.values()) == 1, "an event stored twice"
    state: dict[uuid.UUID, str] = {}
    for _, event in stream:
        assert isinstance(event, ev.CycleClosed | ev.CycleOpened)
        if isinstance(event, ev.CycleOpened):
            assert state.get(event.convoy_id) == "closed", f"{event.convoy_id}: cycle.opened before its cycle.closed"
            state[event.convoy_id] = "opened"
        else:
            assert event.convoy_id not in state
            state[event.convoy_id] = "closed"
    assert set(state) == set(convoys) and set(state.values()) == {"opened"}


@pytest.mark.parametrize(
    ("atomic", "in_flight"),
    [(True, 1), (True, 3), (False, 3)],
    ids=["atomic-one-in-flight", "atomic-three-in-flight", "one-by-one-three-in-flight"],
)
async def test_a_convoys_close_leaves_before_its_open_across_batch_boundaries(
    bed: Bed, atomic: bool, in_flight: int
) -> None:
    convoys = [uuid.uuid4() for _ in range(150)]
    published: Counter[str] = Counter()  # every publish (JetStream would hide a second one of an id)

    async def seen(msg: Msg) -> None:
        published[(msg.headers or {})["Nats-Msg-Id"]] += 1

    wire = await bed.nc.subscribe(bed.subjects.events_wildcard, cb=seen)
    # Batches of 7 rows: odd, so a convoy's close and open keep landing in different batches.
    async with bed.relaying(batch=7, in_flight=in_flight, atomic=atomic) as relay:
        writing = asyncio.create_task(bed.write(convoys))  # the relay runs while the rows commit
        ids = await writing
        await eventually(bed.drained, timeout=60)
        assert relay.atomic == atomic  # the server took every atomic batch (none refused)
    await bed.nc.flush()
    await wire.unsubscribe()
    assert_in_order_once(await bed.stream(), ids, convoys)
    # nothing failed, so nothing was sent twice (the next batch is fetched while one is in flight)
    assert set(published) == {str(i) for i in ids} and set(published.values()) == {1}


async def test_rows_published_twice_are_stored_once(bed: Bed) -> None:
    """A crash between the acks and the DELETE: the same rows go again and JetStream drops them,
    also when they come back inside an atomic batch (refused as a whole, then sent one by one)."""
    first = [uuid.uuid4() for _ in range(20)]
    async with bed.relaying(batch=10) as relay:
        ids = await bed.write(first)
        await eventually(bed.drained, timeout=30)
        stored = await bed.stream()
        async with bed.db.connection() as conn:  # the DELETE "lost": the rows are back, same ids
            await conn.execute(
                "INSERT INTO outbox (event_id, subject, data) SELECT event_id, subject, data"
                " FROM unnest($1::uuid[], $2::text[], $3::bytea[]) AS x(event_id, subject, data)",
                [uuid.UUID(i) for i, _ in stored[:15]],
                [bed.subjects.of(type(e)) for _, e in stored[:15]],
                [env.encode(env.new_envelope(e, producer=SERVICE, event_id=uuid.UUID(i))) for i, e in stored[:15]],
            )
        later = [uuid.uuid4() for _ in range(5)]
        ids += await bed.write(later)  # new rows after the old ones: in the same batches
        relay.wake.set()
        await eventually(bed.drained, timeout=30)
        assert relay.atomic  # a duplicate refuses one batch, not atomic batches for good
    assert_in_order_once(await bed.stream(), ids, first + later)


async def test_acknowledged_rows_leave_with_the_next_fetch_or_at_stop(
    bed: Bed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The DELETE of acknowledged rows rides on the relay's next fetch (issue #21): a round leaves its rows
    to the next round's fetch, which deletes them in its statement; stopping the relay deletes the rest."""
    relay = outbox.Relay(service=SERVICE, nc=bed.nc, settings=bed.settings)
    publisher = outbox.Publisher(bed.nc)
    await publisher.start()
    conn = await relay._connect()  # the relay's own session, as it leads
    stop = asyncio.Event()
    convoys = [uuid.uuid4() for _ in range(3)]
    try:
        first = await bed.write(convoys[:1])
        assert await relay.relay_all(conn, publisher, stop) == 2
        assert await bed.outbox_rows() == 2 and len(relay.acked) == 2  # acknowledged: no statement of its own
        second = await bed.write(convoys[1:2])
        assert await relay.relay_all(conn, publisher, stop) == 2  # its fetch deleted the first two
        async with bed.db.connection() as db_conn:
            assert [r["event_id"] for r in await db_conn.fetch("SELECT event_id FROM outbox ORDER BY seq")] == second
        assert await relay.relay_all(conn, publisher, stop) == 0  # nothing new: the look deletes the rest
        assert await bed.outbox_rows() == 0 and relay.acked == []
    finally:
        await publisher.close()
        await conn.close()
    # run(): rows acknowledged at the stop are deleted before the relay lets go (not left for LINGER_S)
    monkeypatch.setattr(outbox, "LINGER_S", 60.0)
    async with bed.relaying() as running:
        third = await bed.write(convoys[2:])

        async def stored() -> bool:
            return (await bed.js.stream_info(bed.subjects.events_stream)).state.messages == 6

        await eventually(stored, timeout=30)
    assert await bed.outbox_rows() == 0 and running.acked == []
    assert_in_order_once(await bed.stream(), first + second + third, convoys)


async def test_streams_allow_atomic_batches_and_dead_letters_expire(bed: Bed) -> None:
    for name in (bed.subjects.events_stream, bed.subjects.messages_stream):
        assert (await bed.js.stream_info(name)).config.allow_atomic
    dead = await bed.js.stream_info(bed.subjects.dead_letter_stream)
    assert dead.config.max_age == bus.DEAD_LETTER_RETENTION_S == 14 * 86400  # CONVOY_DEAD_LETTER_DAYS default
    # A changed setting reaches a stream that exists (as after an upgrade: the old one had no max_age).
    await bus.ensure_streams(bed.js, bed.subjects, 1, dead_letter_max_age_s=3 * 86400)
    assert (await bed.js.stream_info(bed.subjects.dead_letter_stream)).config.max_age == 3 * 86400


async def test_a_service_declares_the_dead_letter_retention_of_its_settings(settings: Settings) -> None:
    from tests.test_runtime import start_probe

    async with start_probe(settings.with_(dead_letter_days=2.5)) as running:
        info = await running.nc.jetstream().stream_info(running.subjects.dead_letter_stream)
        assert info.config.max_age == 2.5 * 86400
