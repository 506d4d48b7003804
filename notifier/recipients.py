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

import msgspec

from schemas import api
from schemas.convoys import Convoys
from services.runtime.coalesce import Coalescer
from services.runtime.errors import NotFound
from services.runtime.service import Runtime
from services.runtime.versions import VersionedCache

MAX_PER_REQUEST = 256
"""Convoys in one ``CONVOYS_RECIPIENTS`` request at most (its request's limit)."""
MAX_CONVOYS = 20_000
"""Answers kept at most (a few kB each): the convoys with reports, feedback or replies in the last minutes."""

_directories: weakref.WeakKeyDictionary[Runtime, Directory] = weakref.WeakKeyDictionary()
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(api.Recipients).decode


class Directory:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.cache: VersionedCache[bytes] = VersionedCache(rt.settings.recipients_max_age_s, max_entries=MAX_CONVOYS)
        """Answers kept encoded (msgpack), decoded on each use (2-12 µs): as bytes they are one object the garbage
        collector skips, not a dozen it visits (their lists and UUIDs). Decoded, 17,000 answers made the
        notifier's full collections take 50-100 ms at 100 reports/s (issue #21)."""
        self.asked = 0
        """Convoys asked of services/convoys (the rest were answered from the cache)."""
        self.fetcher: Coalescer[uuid.UUID, api.Recipients | None] = Coalescer(self._fetch, max_keys=MAX_PER_REQUEST)
        """The convoys not known here go to services/convoys together: alone at once, else those that came up
        while a request was out in the next one (``CONVOYS_RECIPIENTS``: one message, one statement)."""

    async def start(self) -> None:
        """Listen to services/convoys' announcements: from here on answers are reused."""
        self.rt.on_reconnect(self.cache.on_reconnect)
        await self.cache.subscribe(self.rt.nc, self.rt.subjects.recipient_versions)

    async def get(self, convoy_id: uuid.UUID) -> api.Recipients:
        """The convoy's recipients as of now (NotFound: no such convoy; Unavailable: convoys away).

        Not known here: asked of services/convoys as of now, possibly together with other convoys asked for
        meanwhile (the answer is services/convoys' as of that request, which leaves after this call)."""
        kept = self.cache.get(convoy_id)
        if kept is not None:
            return _decode(kept)
        found = await self.fetcher.get(convoy_id)
        if found is None:
            raise NotFound("no such convoy")
        return found

    async def _fetch(self, convoy_ids: list[uuid.UUID]) -> list[api.Recipients | None]:
        ticket = self.cache.ticket()  # before the question: an answer that predates a reset is not kept
        self.asked += len(convoy_ids)
        reply = await self.rt.rpc.call(Convoys.CONVOYS_RECIPIENTS, api.GetManyRecipients(convoy_ids=convoy_ids))
        for found in reply.recipients:
            if found is not None:
                self.cache.put(found.convoy_id, found.version, _encode(found), ticket)
        return reply.recipients


def of(rt: Runtime) -> Directory:
    """The runtime's one directory (the handlers, the feedback collector, chat and replies share it)."""
    found = _directories.get(rt)
    if found is None:
        found = _directories[rt] = Directory(rt)
    return found
