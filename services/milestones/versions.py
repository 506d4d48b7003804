"""Convoy versions for the API's conditional GETs (issue #21).

The change counter lives in ``convoy_versions``: deferred triggers bump it in the transaction of every
change that alters what a convoy's timeline, board or search shows, and NOTIFY the convoy at the commit
(migration 0011). The forwarder (services/runtime/versions.py, on its own connection) LISTENs and publishes
the convoys' new versions on core NATS (``Subjects.convoy_versions``); each API process keeps the newest
version per convoy and answers ``If-None-Match`` from it without asking us.

Every replica forwards (duplicates are harmless: the API keeps the largest version). A notification lost
while this connection was down cannot be replayed, so every (re)connection first LISTENs and then
publishes ``reset``: the API forgets what it knows and learns the versions again from the pages it serves.
"""

from __future__ import annotations

import uuid

from services.milestones import repository as repo
from services.runtime import versions
from services.runtime.service import Runtime


def channel(schema: str) -> str:
    """The NOTIFY channel of migration 0011's triggers (``'convoy_versions_' || current_schema()``)."""
    return f"convoy_versions_{schema}"


def forwarder(rt: Runtime) -> versions.VersionForwarder:
    """The forwarder (services/runtime/versions.py) of this service's convoy versions to the API."""
    forwarder = versions.VersionForwarder(
        nc=lambda: rt.nc,
        database_url=rt.settings.database_url,
        schema=rt.name,
        channel=channel(rt.name),
        subject=rt.subjects.convoy_versions,
        read=repo.versions.versions,
        timeouts=(rt.settings.db_acquire_timeout, rt.settings.db_command_timeout),
    )
    rt.on_reconnect(forwarder.on_reconnect)  # a reset after every reconnect: the forwards are not flushed
    return forwarder


async def announce_now(rt: Runtime, convoy_id: uuid.UUID) -> None:
    """Publish a convoy's version at once, before the caller answers (a removal: issue #19 makes it
    authoritative before its 200, so no removed member may revalidate a page from then on). The API reads
    this before the removal's answer reaches it through services/convoys (one NATS server delivers in order)."""
    async with rt.db.connection() as conn:
        version = await repo.versions.version(conn, convoy_id)
    if version:
        await versions.announce(rt.nc, rt.subjects.convoy_versions, {convoy_id: version})
