"""The recipients versions (issue #21): what lets the notifier answer ``CONVOY_RECIPIENTS`` from memory.

Migration 0013 bumps a convoy's version in the transaction of every change to its recipients answer
(members, observers, their names, emails and languages, companies, the convoy's name, language and chat
channels) and NOTIFYs it at the commit; :func:`forwarder` publishes the new versions on
``Subjects.recipient_versions`` (only the notifier may listen); the answer carries the version it was
read at. A removal (a member, a company, an observer, an erasure) calls :func:`announce_now` after its
commit and before it answers: the notifier forgets the old answer before anything that follows the
removal's 200 can reach it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from services.convoys import repository as repo
from services.runtime import versions
from services.runtime.service import Runtime


def channel(schema: str) -> str:
    """The NOTIFY channel of migration 0013's triggers (``'recipient_versions_' || current_schema()``)."""
    return f"recipient_versions_{schema}"


def forwarder(rt: Runtime) -> versions.VersionForwarder:
    forwarder = versions.VersionForwarder(
        nc=lambda: rt.nc,
        database_url=rt.settings.database_url,
        schema=rt.name,
        channel=channel(rt.name),
        subject=rt.subjects.recipient_versions,
        read=repo.recipient_versions,
        timeouts=(rt.settings.db_acquire_timeout, rt.settings.db_command_timeout),
    )
    rt.on_reconnect(forwarder.on_reconnect)  # a reset after every reconnect: the forwards are not flushed
    return forwarder


async def announce_now(rt: Runtime, convoy_ids: Iterable[uuid.UUID]) -> None:
    """Publish the convoys' recipients versions at once (after the removal's commit, before its answer)."""
    wanted = list(dict.fromkeys(convoy_ids))
    if not wanted:
        return
    async with rt.db.connection() as conn:
        found = await repo.recipient_versions(conn, wanted)
    await versions.announce(rt.nc, rt.subjects.recipient_versions, found)
