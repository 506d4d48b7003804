"""Lifecycle helpers shared by every process and background loop: the start-up heap set aside from the
garbage collector, a wait that a stop cuts short, and leadership through a PostgreSQL advisory lock (the
outbox relay, the reminders scheduler)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Awaitable, Callable

import asyncpg
import structlog

log = structlog.get_logger(__name__)

STANDBY_S = 2.0
"""How often a standby replica tries the leader lock (so it takes over within seconds)."""
RETRY_MIN_S = 0.5
RETRY_MAX_S = 10.0


def freeze_startup_heap() -> int:
    """Set what the process built to start (modules, classes, routes, compiled templates, pools) aside from
    the garbage collector; returns how many objects that is. Called once a process is ready to serve.

    A full collection visits every tracked object, and most of a service's are these, which live as long as
    the process: 100 to 200 ms pauses were measured in the notifier and the API at 100 reports/s (issue #21),
    each leaving a queue that takes seconds to drain. Frozen objects are never visited or freed again (they
    would not be freed anyway); what the process makes from here on is collected as before.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds`` or until ``stop`` is set, whichever comes first; whether ``stop`` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


async def lead(
    connect: Callable[[], Awaitable[asyncpg.Connection]],
    key: str,
    stop: asyncio.Event,
    work: Callable[[asyncpg.Connection], Awaitable[None]],
    *,
    standby_s: float = STANDBY_S,
) -> None:
    """Run ``work`` while this process holds the advisory lock ``key``, one replica at a time, until ``stop``.

    The lock is a session lock on a connection of its own (``connect()``; never a pooled one), so
    PostgreSQL frees it when that connection ends: on stop (the connection is closed), on a lost
    connection, when the process dies. A standby replica tries every ``standby_s`` seconds and so
    takes over within seconds. ``work(conn)`` runs on the lock's connection while the lock is held;
    it returns once ``stop`` is set and must raise when the connection is gone (the lock with it).
    Then, and when connecting fails, leadership is sought again after a backoff (0.5 s, doubling
    to 10 s).
    """
    delay = RETRY_MIN_S
    while not stop.is_set():
        conn: asyncpg.Connection | None = None
        try:
            conn = await connect()
            while not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", key, timeout=5):
                if await wait_or_stop(stop, standby_s):  # another replica leads; stand by
                    return
            if stop.is_set():
                return
            delay = RETRY_MIN_S
            log.info("leading", lock=key)
            await work(conn)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("leadership interrupted", lock=key, error=repr(exc))
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close(timeout=2)  # frees the lock
        if await wait_or_stop(stop, delay):
            return
        delay = min(delay * 2, RETRY_MAX_S)


async def hold(conn: asyncpg.Connection, stop: asyncio.Event, *, every: float = STANDBY_S) -> None:
    """Until ``stop``: check every ``every`` seconds that ``conn`` (and a lock held on it) lives; raise when not."""
    while not await wait_or_stop(stop, every):
        await conn.fetchval("SELECT 1", timeout=5)
