"""Data protection in the notifier: a person's export, and ``person.erased``.

On ``person.erased`` the notifier deletes the person's preferences and replaces their address in
every delivery to them with ``erased`` (the delivery keys stay, so nothing is ever sent twice). A
message to their address that was still on its way when they left is dropped, not sent.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from datetime import datetime

import asyncpg
import structlog
from nats.js.errors import NotFoundError

from notifier import access
from notifier import repository as repo
from schemas import api
from schemas import envelope as env
from schemas import events as ev
from schemas.convoys import Convoys
from schemas.notifier import Notifier
from services.runtime import sealing
from services.runtime.service import Runtime

log = structlog.get_logger(__name__)

MESSAGES_CONSUMER = "messages"
"""The purpose of the notifier's consumer of email requests (notifier/__init__.py)."""


def email_sha256(address: str) -> bytes:
    """As services/convoys hashes it for ``person.erased``: trimmed and lower-cased."""
    return hashlib.sha256(address.strip().lower().encode()).digest()


class PrivacyRules:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def on_person_erased(self, envelope: env.Envelope, event: ev.Event, conn: asyncpg.Connection) -> None:
        assert isinstance(event, ev.PersonErased)
        await repo.erase_person(conn, event.person_id, bytes.fromhex(event.email_sha256), envelope.occurred_at)
        await self.erase_messages(sealing.tag_of_hash(event.email_sha256))

    async def erase_messages(self, tag: str) -> int:
        """Erase every email request to the address tagged ``tag`` (sealing.recipient_tag) from the messages
        stream and its dead letters: each found by subject and deleted by sequence (JetStream overwrites a
        deleted message in its files), then the subject purged (whatever arrived meanwhile). Idempotent.

        The notifier owns the messages stream; its NATS user may get, delete and purge messages there and in
        the dead-letter stream."""
        js, s = self.rt.js, self.rt.subjects
        erased = 0
        for stream, subject in (
            (s.messages_stream, s.addressed(ev.EmailRequested, tag)),
            (s.dead_letter_stream, s.dead_letter(s.consumer(self.rt.name, MESSAGES_CONSUMER), tag)),
        ):
            seq = 1
            while True:
                try:
                    found = await js.get_msg(stream, seq=seq, subject=subject, next=True)
                except NotFoundError:
                    break
                assert found.seq is not None
                with contextlib.suppress(NotFoundError):  # gone meanwhile (retention, another replica)
                    await js.delete_msg(stream, found.seq)
                    erased += 1
                seq = found.seq + 1
            await js.purge_stream(stream, subject=subject)
        if erased:
            log.info("erased messages to a deleted account", messages=erased)
        return erased

    async def erased_since(self, to_email: str, person_id: uuid.UUID | None, asked_at: datetime) -> bool:
        """Whether the recipient deleted their account after this message was asked for."""
        return await repo.erased_before(self.rt.db, person_id, email_sha256(to_email), asked_at)

    async def is_erased(self, person_id: uuid.UUID) -> bool:
        return await repo.is_erased(self.rt.db, person_id)

    @Notifier.PERSONAL_DATA
    async def personal_data(self, req: api.Ask) -> api.PersonalData:
        person_id = access.own_person(req.actor, "personal data")
        me = await self.rt.rpc.call(Convoys.ME_GET, req)
        sections = await repo.personal_records(self.rt.db, person_id, me.person.email)
        return api.PersonalData(service=self.rt.name, sections=sections)
