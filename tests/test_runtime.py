"""The service runtime against real PostgreSQL and NATS: outbox relay, consumers, dead letters,
retries, restarts, migrations, bounded waits."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import nats
import pytest

from schemas import envelope as env
from schemas import events as ev
from schemas.subjects import Subjects
from services.runtime import consumer, db, outbox
from services.runtime.errors import Unavailable
from services.runtime.service import Runtime, serve
from services.runtime.settings import Settings
from tests.conftest import NatsServer, delete_streams, eventually


@dataclass
class Probe:
    """A small service module: one consumer whose handler can be told to fail."""

    NAME = "probe"
    MIGRATIONS = Path(__file__).parent / "probe_migrations"
    attempts: collections.Counter[str] = field(default_factory=collections.Counter)
    healed: bool = False
    """Once set, "fail-always" succeeds (an operator fixed the cause)."""
    rt: Runtime | None = None

    async def setup(self, rt: Runtime) -> None:
        self.rt = rt
        rt.consumer("probe", (ev.ConvoyCreated,), self.handle)

    async def handle(self, envelope: env.Envelope, event: ev.Event, conn: asyncpg.Connection) -> None:
        assert isinstance(event, ev.ConvoyCreated)
        self.attempts[event.name] += 1
        if (event.name == "fail-always" and not self.healed) or (
            event.name == "fail-once" and self.attempts[event.name] == 1
        ):
            raise RuntimeError(f"handler refuses {event.name}")
        await conn.execute("INSERT INTO seen (event_id, name) VALUES ($1, $2)", envelope.id, event.name)


@dataclass
class Running:
    probe: Probe
    settings: Settings
    subjects: Subjects
    nc: nats.NATS

    async def seen(self) -> list[str]:
        conn = await asyncpg.connect(self.settings.database_url)
        try:
            return [r["name"] for r in await conn.fetch("SELECT name FROM probe.seen ORDER BY name")]
        finally:
            await conn.close()

    async def publish_raw(self, data: bytes, msg_id: str | None = None) -> None:
        js = self.nc.jetstream()
        await js.publish(
            self.subjects.event(ev.ConvoyCreated.TYPE),
            data,
            headers={"Nats-Msg-Id": msg_id or str(uuid.uuid4())},
        )

    async def emit(self, name: str) -> env.Envelope:
        assert self.probe.rt is not None
        async with self.probe.rt.db.transaction() as conn:
            return await outbox.add(conn, self.subjects, created(name), producer="probe")


def created(name: str) -> ev.ConvoyCreated:
    return ev.ConvoyCreated(convoy_id=uuid.uuid4(), name=name, timezone="Europe/Berlin", language="de")


@contextlib.asynccontextmanager
async def start_probe(settings: Settings, probe: Probe | None = None) -> AsyncIterator[Running]:
    """A service process running ``probe`` (a plain :class:`Probe` by default), until its consumers run."""
    probe = probe or Probe()
    stop = asyncio.Event()
    task = asyncio.create_task(serve(probe, settings, stop))  # type: ignore[arg-type]
    nc = await nats.connect(settings.nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    subjects = Subjects(settings.namespace)

    async def consuming() -> bool:
        if task.done():
            task.result()
        return probe.rt is not None and all(c.running for c in probe.rt._consumers)

    await eventually(consuming, timeout=20)
    try:
        yield Running(probe=probe, settings=settings, subjects=subjects, nc=nc)
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await delete_streams(nc, subjects)
        await nc.close()


@pytest.fixture
async def running(settings: Settings) -> AsyncIterator[Running]:
    async with start_probe(settings) as r:
        yield r


async def test_outbox_event_is_relayed_with_its_id_and_handled_once(running: Running) -> None:
    envelope = await running.emit("first")
    await eventually(lambda: _contains(running, ["first"]))
    js = running.nc.jetstream()
    stored = await js.get_last_msg(running.subjects.events_stream, running.subjects.event(ev.ConvoyCreated.TYPE))
    assert stored.headers is not None and stored.headers["Nats-Msg-Id"] == str(envelope.id)
    assert env.decode(stored.data)[0].id == envelope.id
    conn = await asyncpg.connect(running.settings.database_url)
    try:
        # the acknowledged row leaves the outbox with the relay's next fetch, or outbox.LINGER_S later

        async def row_deleted() -> bool:
            return await conn.fetchval("SELECT count(*) FROM probe.outbox") == 0

        await eventually(row_deleted, timeout=5)
    finally:
        await conn.close()


async def test_jetstream_drops_a_republished_event_id(running: Running) -> None:
    js = running.nc.jetstream()
    data = env.encode(env.new_envelope(created("dedupe"), producer="test"))
    first = await js.publish(running.subjects.event(ev.ConvoyCreated.TYPE), data, headers={"Nats-Msg-Id": "same"})
    second = await js.publish(running.subjects.event(ev.ConvoyCreated.TYPE), data, headers={"Nats-Msg-Id": "same"})
    assert not first.duplicate and second.duplicate


async def test_a_redelivered_event_has_one_effect(running: Running) -> None:
    data = env.encode(env.new_envelope(created("twice"), producer="test"))
    # Two copies JetStream cannot dedupe (other message ids), as after a crash past the window.
    await running.publish_raw(data)
    await running.publish_raw(data)
    await running.emit("after")
    await eventually(lambda: _contains(running, ["after", "twice"]))
    assert running.probe.attempts["twice"] == 1
    assert await running.seen() == ["after", "twice"]


@dataclass
class OneStatementProbe(Probe):
    """A consumer whose effect is one statement that records the event too (``one_statement``)."""

    answers: list[tuple[str, bool]] = field(default_factory=list)
    statements: list[str] = field(default_factory=list)

    async def setup(self, rt: Runtime) -> None:
        self.rt = rt
        rt.consumer("probe", (ev.ConvoyCreated,), self.handle_once, one_statement=True)

    async def handle_once(self, envelope: env.Envelope, event: ev.Event, conn: asyncpg.Connection, name: str) -> bool:
        assert isinstance(event, ev.ConvoyCreated)
        assert not conn.is_in_transaction()  # the statement is its own transaction

        def log(q: Any) -> None:
            self.statements.append(q.query.split()[0])

        conn.add_query_logger(log)
        try:
            fresh = bool(
                await conn.fetchval(
                    f"WITH {consumer.PROCESSED_CTE}, seen_now AS ("
                    "  INSERT INTO seen (event_id, name) SELECT $2, $3 WHERE EXISTS (SELECT FROM fresh)"
                    ") SELECT EXISTS (SELECT FROM fresh)",
                    name,
                    envelope.id,
                    event.name,
                )
            )
        finally:
            conn.remove_query_logger(log)
        self.answers.append((event.name, fresh))
        return fresh


async def test_a_one_statement_consumer_records_the_event_in_its_statement(settings: Settings) -> None:
    """No BEGIN, no separate processed_events insert, no COMMIT: one statement per event, and a
    redelivered copy (another message id, the same event id) has no second effect."""
    probe = OneStatementProbe()
    async with start_probe(settings, probe) as running:
        data = env.encode(env.new_envelope(created("twice"), producer="test"))
        await running.publish_raw(data)
        await running.publish_raw(data)
        await running.emit("after")
        await eventually(lambda: _contains(running, ["after", "twice"]))

        async def answered() -> bool:
            return len(probe.answers) == 3

        await eventually(answered)
        assert sorted(probe.answers) == [("after", True), ("twice", False), ("twice", True)]
        assert probe.statements == ["WITH", "WITH", "WITH"]  # one statement per event, nothing else
        assert await running.seen() == ["after", "twice"]


@dataclass
class QuietProbe(Probe):
    """A consumer told by ``quiet`` which events need only their record (``ConsumerSpec.quiet``)."""

    asked: list[str] = field(default_factory=list)

    async def setup(self, rt: Runtime) -> None:
        self.rt = rt
        rt.consumer("probe", (ev.ConvoyCreated,), self.handle, quiet=self.is_quiet)

    async def is_quiet(self, envelope: env.Envelope, event: ev.Event) -> bool:
        assert isinstance(event, ev.ConvoyCreated)
        self.asked.append(event.name)
        if event.name == "quiet-fails" and self.asked.count(event.name) == 1:
            raise RuntimeError("cannot tell yet")  # as the handler's own failure: retried
        return event.name.startswith("quiet")


async def test_a_quiet_event_is_recorded_without_its_handler(settings: Settings) -> None:
    """An event that needs nothing but its record is recorded once (a redelivered copy finds the record), its
    handler never runs; the others go through the handler as always; a failing ``quiet`` is retried."""
    probe = QuietProbe()
    async with start_probe(settings, probe) as running:
        quiet = env.new_envelope(created("quiet"), producer="test")
        await running.publish_raw(env.encode(quiet))
        await running.publish_raw(env.encode(quiet))  # another message id: JetStream keeps both
        failing = await running.emit("quiet-fails")
        loud = await running.emit("loud")
        await eventually(lambda: _contains(running, ["loud"]))

        async def recorded() -> list[uuid.UUID]:
            conn = await asyncpg.connect(settings.database_url)
            try:
                return [r["event_id"] for r in await conn.fetch("SELECT event_id FROM probe.processed_events")]
            finally:
                await conn.close()

        async def all_recorded() -> bool:
            return len(await recorded()) == 3

        await eventually(all_recorded, timeout=20)
        assert sorted(map(str, await recorded())) == sorted(str(e.id) for e in (quiet, failing, loud))
        assert probe.asked.count("quiet") == 2 and probe.asked.count("quiet-fails") == 2
        assert dict(probe.attempts) == {"loud": 1}  # the handler saw the loud event only
        assert await running.seen() == ["loud"]


async def test_malformed_event_is_dead_lettered_and_the_consumer_carries_on(running: Running) -> None:
    await running.publish_raw(b"this is not an event")
    bad_payload = msgspec.json.encode(
        {
            "id": str(uuid.uuid4()),
            "type": "convoy.created",
            "schema_version": 1,
            "occurred_at": "2026-11-27T08:00:00Z",
            "producer": "x",
            "correlation_id": str(uuid.uuid4()),
            "payload": {"convoy_id": "not-a-uuid"},
        }
    )
    await running.publish_raw(bad_payload)
    await running.emit("good")
    await eventually(lambda: _contains(running, ["good"]))

    dead = await _dead_letters(running, 2)
    assert dead[0].data == b"this is not an event"
    assert dead[0].headers is not None and dead[0].headers["Convoy-Error"].startswith("malformed")
    assert dead[1].headers is not None and "convoy_id" in dead[1].headers["Convoy-Error"]
    assert dead[1].headers["Convoy-Subject"] == running.subjects.event(ev.ConvoyCreated.TYPE)


async def test_failures_are_retried_then_dead_lettered(running: Running) -> None:
    await running.emit("fail-once")
    await running.emit("fail-always")
    await running.emit("fine")
    await eventually(lambda: _contains(running, ["fail-once", "fine"]))
    [dead] = await _dead_letters(running, 1)
    assert dead.headers is not None and "handler refuses fail-always" in dead.headers["Convoy-Error"]
    assert running.probe.attempts["fail-always"] == running.settings.consumer_max_deliver
    assert running.probe.attempts["fail-once"] == 2
    assert await running.seen() == ["fail-once", "fine"]


async def test_consumer_and_relay_survive_a_nats_restart(settings: Settings, own_nats_server: NatsServer) -> None:
    settings = settings.with_(nats_url=own_nats_server.url)
    async with start_probe(settings) as running:
        await running.emit("before")
        await eventually(lambda: _contains(running, ["before"]))

        own_nats_server.stop()
        await running.emit("while-down")  # committed with its outbox row; NATS is away
        await asyncio.sleep(1.0)
        own_nats_server.start()

        await running.emit("after")
        # Nothing is lost; one may come late: a batch the server handed to a pull request that expired
        # around the reconnect is redelivered only after the consumer's ack wait (60 s).
        await eventually(lambda: _contains(running, ["after", "before", "while-down"]), timeout=75)


async def test_migrations_apply_once_even_when_raced(empty_database_url: str) -> None:
    from services import convoys

    results = await asyncio.gather(*(db.migrate(empty_database_url, "convoys", convoys.MIGRATIONS) for _ in range(4)))
    applied = [v for r in results for v in r]
    expected = ["runtime_0001_outbox_and_inbox", *(p.stem for p in sorted(convoys.MIGRATIONS.glob("*.sql")))]
    assert sorted(applied) == sorted(expected)  # each exactly once, though four raced
    assert await db.migrate(empty_database_url, "convoys", convoys.MIGRATIONS) == []


async def test_a_pool_wait_is_bounded(settings: Settings) -> None:
    database = await db.connect(settings.with_(db_pool_min=1, db_pool_max=1, db_acquire_timeout=0.3), "convoys")
    try:
        async with database.connection():
            with pytest.raises(Unavailable, match="database unavailable"):
                async with database.connection():
                    pass
    finally:
        await database.close(5)


async def test_a_connection_whose_protocol_broke_is_unavailable_and_not_pooled_again(settings: Settings) -> None:
    """asyncpg's InternalClientError ("cannot switch to state 15; another operation (2) is in progress",
    seen in `make chaos` when PostgreSQL shut down under an idle pooled connection) is a 503 to the
    caller, not a crash, and that connection is closed instead of going back to the pool."""
    database = await db.connect(settings.with_(db_pool_min=1, db_pool_max=1), "convoys")
    pids: list[int] = []

    async def use_a_broken_connection() -> None:
        async with database.connection() as conn:
            pids.append(await conn.fetchval("SELECT pg_backend_pid()"))
            raise asyncpg.exceptions.InternalClientError("cannot switch to state 15; another operation (2) in progress")

    try:
        with pytest.raises(Unavailable, match="InternalClientError"):
            await use_a_broken_connection()
        async with database.transaction() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") not in pids  # a new connection
    finally:
        await database.close(5)


async def test_a_pooled_connection_comes_back_clean_without_a_reset_statement(settings: Settings) -> None:
    """Released without asyncpg's reset round trip (db.PoolConnection): an abandoned transaction is
    still rolled back, and the pool's own settings (search_path) stay."""
    database = await db.connect(settings.with_(db_pool_min=1, db_pool_max=1), "convoys")
    try:
        async with database.connection() as conn:
            backend = await conn.fetchval("SELECT pg_backend_pid()")
            await conn.execute("BEGIN")  # left open by mistake
            await conn.execute("CREATE TEMP TABLE abandoned (x int) ON COMMIT DROP")
        async with database.connection() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") == backend  # the same connection
            assert await conn.fetchval("SELECT to_regclass('pg_temp.abandoned')") is None  # rolled back
            assert await conn.fetchval("SHOW search_path") == "convoys"
        # A release costs no round trip: asyncpg's reset statement (advisory unlock, CLOSE ALL, UNLISTEN,
        # RESET ALL) would be one more per request in every service (issue #21).
        sent: list[str] = []
        async with database.connection() as conn:
            conn.add_query_logger(lambda q: sent.append(q.query))
            async with conn.transaction():
                await conn.fetchval("SELECT 1")
        assert sent == ["BEGIN;", "SELECT 1", "COMMIT;"]
    finally:
        await database.close(5)


async def _contains(running: Running, names: list[str]) -> bool:
    return await running.seen() == names


async def _dead_letters(running: Running, count: int) -> list[nats.aio.msg.Msg]:
    js = running.nc.jetstream()
    sub = await js.pull_subscribe(running.subjects.dead_letter_wildcard, stream=running.subjects.dead_letter_stream)
    got: list[nats.aio.msg.Msg] = []

    async def fetch() -> bool:
        with contextlib.suppress(TimeoutError):
            got.extend(await sub.fetch(count - len(got), timeout=1))
        return len(got) >= count

    await eventually(fetch)
    return got


async def test_an_operator_replays_a_dead_letter(running: Running) -> None:
    import os
    import subprocess
    import sys

    await running.emit("fail-always")
    [dead] = await _dead_letters(running, 1)
    env = {**os.environ, "CONVOY_NATS_URL": running.settings.nats_url, "CONVOY_NAMESPACE": running.settings.namespace}
    listed = subprocess.run(
        [sys.executable, "-m", "services.cli", "dead-letters"], env=env, capture_output=True, timeout=60, check=False
    )
    assert listed.returncode == 0, listed.stderr
    assert "handler refuses fail-always" in listed.stdout.decode()
    running.probe.healed = True
    seq = dead.metadata.sequence.stream
    replayed = subprocess.run(
        [sys.executable, "-m", "services.cli", "dead-letters", "--replay", str(seq)],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert replayed.returncode == 0, replayed.stderr
    await eventually(lambda: _contains(running, ["fail-always"]))
