"""A convoy's recipients (``CONVOY_RECIPIENTS``: members, observers, their contacts and languages, the
convoy's name, language and chat channels), asked of services/convoys once and then reused while they
have not changed (issue #21).

services/convoys bumps a per-convoy version in the transaction of every change to that answer (its
migration 0013) and announces the new version on core NATS (``Subjects.recipient_versions``) after the
commit; each answer carries the version it was read at. This process keeps convoy → (version, answer)
(services/runtime/versions.py ``VersionedCache``) and reuses an answer only while

- no newer version of the convoy was announced (a removal — member, company, observer, erasure —
  is announced by services/convoys *before* it answers, so from the removal's 200 on no cached answer
  names the removed person; any other change arrives a few milliseconds after its commit),
- this process's NATS connection is up and has not reconnected since (announcements sent while it was
  away are lost: a reconnect forgets everything, and so does a ``reset`` that services/convoys publishes
  whenever its listener (re)connects),
- this process hears services/convoys' announcements (a heartbeat every second when nothing changes;
  nothing heard since subscribing or reconnecting, or for ``DEAF_AFTER_S``: nothing is reused, and the
  first announcement after the silence forgets everything: services/runtime/versions.py ``Hearing``),
- and for at most ``CONVOY_RECIPIENTS_MAX_AGE_S`` (bounds an announcement lost without either).

Before :meth:`Directory.start` (a runtime that does not listen, as in tests that build the handlers
alone) nothing is kept: every call asks services/convoys.
"""

from __future__ import annotations

import uuid
import weakref

from schemas import api
from schemas.convoys import Convoys
from services.runtime.service import Runtime
from services.runtime.versions import VersionedCache

MAX_CONVOYS = 20_000
"""Answers kept at most (a few kB each): the convoys with reports, feedback or replies in the last minutes."""

_directories: weakref.WeakKeyDictionary[Runtime, Directory] = weakref.WeakKeyDictionary()


class Directory:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.cache: VersionedCache[api.Recipients] = VersionedCache(
            rt.settings.recipients_max_age_s, max_entries=MAX_CONVOYS
        )
        self.asked = 0
        """Requests made to services/convoys (the rest were answered from the cache)."""

    async def start(self) -> None:
        """Listen to services/convoys' announcements: from here on answers are reused."""
        self.rt.on_reconnect(self.cache.on_reconnect)
        await self.cache.subscribe(self.rt.nc, self.rt.subjects.recipient_versions)

    async def get(self, convoy_id: uuid.UUID) -> api.Recipients:
        """The convoy's recipients as of now (NotFound: no such convoy; Unavailable: convoys away)."""
        found = self.cache.get(convoy_id)
        if found is not None:
            return found
        ticket = self.cache.ticket()
        self.asked += 1
        found = await self.rt.rpc.call(Convoys.CONVOY_RECIPIENTS, api.GetRecipients(convoy_id=convoy_id))
        self.cache.put(convoy_id, found.version, found, ticket)
        return found


def of(rt: Runtime) -> Directory:
    """The runtime's one directory (the handlers, the feedback collector, chat and replies share it)."""
    found = _directories.get(rt)
    if found is None:
        found = _directories[rt] = Directory(rt)
    return found
