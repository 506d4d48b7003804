"""services/runtime/lifecycle.py on a real PostgreSQL: the stop-wait and the advisory-lock leader."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import asyncpg

from services.runtime import lifecycle
from tests.conftest import eventually

KEY = "convoy-test-leader"


async def test_wait_or_stop_returns_as_soon_as_stop_is_set() -> None:
    stop = asyncio.Event()
    assert await lifecycle.wait_or_stop(stop, 0.01) is False
    asyncio.get_running_loop().call_later(0.05, stop.set)
    started = time.monotonic()
    assert await lifecycle.wait_or_stop(stop, 30) is True
    assert time.monotonic() - started < 5


@dataclass
class Replica:
    database_url: str
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    leading: bool = False
    terms: int = 0
    pid: int | None = None
    task: asyncio.Task[None] | None = None

    async def connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.database_url)

    async def work(self, conn: asyncpg.Connection) -> None:
        self.leading, self.terms, self.pid = True, self.terms + 1, conn.get_server_pid()
        try:
            await lifecycle.hold(conn, self.stop, every=0.1)
        finally:
            self.leading = False

    def start(self) -> Replica:
        self.task = asyncio.create_task(lifecycle.lead(self.connect, KEY, self.stop, self.work, standby_s=0.1))
        return self

    async def halt(self) -> None:
        self.stop.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, 10)


async def lock_is_free(database_url: str) -> bool:
    conn = await asyncpg.connect(database_url)
    try:
        got = await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", KEY)
        if got:
            await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", KEY)
        return bool(got)
    finally:
        await conn.close()


async def test_one_replica_leads_a_standby_takes_over_and_a_lost_connection_is_survived(database_url: str) -> None:
    a, b = Replica(database_url).start(), Replica(database_url).start()
    try:

        async def one_leads() -> Replica | None:
            leaders = [r for r in (a, b) if r.leading]
            assert len(leaders) <= 1, "two leaders at once"
            return leaders[0] if leaders else None

        first = await eventually(one_leads)
        other = b if first is a else a
        for _ in range(5):  # the standby keeps standing by
            assert await one_leads() is first
            await asyncio.sleep(0.1)

        # The leader's connection dies (PostgreSQL frees the lock with it): someone leads again.
        admin = await asyncpg.connect(database_url)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", first.pid)
        finally:
            await admin.close()
        await eventually(lambda: _leads_again(first, other))
        assert first.terms + other.terms == 2

        # The leader stops: the lock is released and the standby takes over within seconds.
        current = await eventually(one_leads)
        standby = other if current is first else first
        await current.halt()
        assert not current.leading
        await eventually(lambda: _true(standby.leading), timeout=5)
    finally:
        for r in (a, b):
            if r.task is not None and not r.task.done():
                await r.halt()
    assert await lock_is_free(database_url)  # stopped leaders leave the lock free


async def _leads_again(first: Replica, other: Replica) -> bool:
    return (first.leading and first.terms == 2) or (other.leading and other.terms == 1)


async def _true(value: bool) -> bool:
    return value
