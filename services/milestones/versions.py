"""Convoy versions for the API's conditional GETs (issue #21).

The change counter lives in ``convoy_versions``: deferred triggers bump it in the transaction of every
change that alters what a convoy's timeline, board or search shows, and NOTIFY the convoy at the commit
(migration 0011). This forwarder LISTENs on its own connection and publishes the convoys' new versions on
core NATS (``Subjects.convoy_versions``); each API process keeps the newest version per convoy and answers
``If-None-Match`` from it without asking us.

Every replica forwards (duplicates are harmless: the API keeps the largest version). A notification lost
while this connection was down cannot be replayed, so every (re)connection first LISTENs and then
publishes ``reset``: the API forgets what it knows and learns the versions again from the pages it serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import asyncpg
import msgspec
import structlog

from schemas import api
from services.milestones import repository as repo
from services.runtime.lifecycle import wait_or_stop
from services.runtime.service import Runtime

log = structlog.get_logger(__name__)

BATCH = 1000
"""Convoys per announcement (a bulk change of many convoys becomes several messages)."""
POLL_S = 1.0
"""How often the forwarder checks that its connection is alive while no change arrives."""

_encoder = msgspec.json.Encoder()


def channel(schema: str) -> str:
    """The NOTIFY channel of migration 0011's triggers (``'convoy_versions_' || current_schema()``)."""
    return f"convoy_versions_{schema}"


class VersionForwarder:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.forwarded = 0

    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(
                    self.rt.settings.database_url,
                    timeout=self.rt.settings.db_acquire_timeout,
                    command_timeout=self.rt.settings.db_command_timeout,
                    server_settings={
                        "search_path": self.rt.name,
                        "application_name": f"convoy-{self.rt.name}-versions",
                    },
                )
                await self._forward(conn, stop)
                failures = 0
            except Exception as exc:  # database or NATS away: connect again, then reset the API's versions
                failures += 1
                log.warning("convoy version forwarder restarts", error=repr(exc), failures=failures)
                await wait_or_stop(stop, min(0.5 * 2**failures, 10.0))
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)

    async def _forward(self, conn: asyncpg.Connection, stop: asyncio.Event) -> None:
        pending: set[uuid.UUID] = set()
        wake = asyncio.Event()

        def on_notify(_c: object, _pid: int, _channel: str, payload: object) -> None:
            with contextlib.suppress(ValueError):
                pending.add(uuid.UUID(str(payload)))
                wake.set()

        await conn.add_listener(channel(self.rt.name), on_notify)
        # Listening from here on: whatever committed before is in a version the API learns from its next page.
        await self._publish(api.ConvoyVersions(reset=True))
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), POLL_S)
            wake.clear()
            if conn.is_closed():
                raise asyncpg.exceptions.ConnectionDoesNotExistError("version listener connection closed")
            while pending:
                batch = [pending.pop() for _ in range(min(BATCH, len(pending)))]
                found = await repo.versions.versions(conn, batch)
                await self._publish(api.ConvoyVersions(versions=found))
                self.forwarded += len(found)

    async def _publish(self, notice: api.ConvoyVersions) -> None:
        await self.rt.nc.publish(self.rt.subjects.convoy_versions, _encoder.encode(notice))
        await self.rt.nc.flush()


async def announce_now(rt: Runtime, convoy_id: uuid.UUID) -> None:
    """Publish a convoy's version at once, before the caller answers (a removal: issue #19 makes it
    authoritative before its 200, so no removed member may revalidate a page from then on). The API reads
    this before the removal's answer reaches it through services/convoys (one NATS server delivers in order)."""
    async with rt.db.connection() as conn:
        version = await repo.versions.version(conn, convoy_id)
    if version:
        await rt.nc.publish(
            rt.subjects.convoy_versions, _encoder.encode(api.ConvoyVersions(versions={convoy_id: version}))
        )
        await rt.nc.flush()
