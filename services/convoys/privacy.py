"""Data protection in services/convoys: a person's export, and deleting their account.

Deleting an account erases the person's personal data here in one transaction (name, email,
sessions, sign-in links, API tokens, invitations to their address, join requests they made as
contact, pending sign-in rate-limit records) and ends their memberships, observer seats and facilitator roles.
The ``people`` row stays as an anonymous id (name '', email ``erased-<id>``, ``erased_at``): the
append-only audit log and the history of memberships refer to it. ``person.erased`` (through the
outbox, same transaction) tells every other service to erase what it holds.
"""

from __future__ import annotations

import hashlib

from schemas import api
from schemas import events as ev
from schemas.convoys import Convoys
from services.convoys import recipients
from services.convoys import repository as repo
from services.convoys.access import Access
from services.runtime.errors import NotFound
from services.runtime.service import Runtime

ERASED_REASON = "account deleted"
NO_PERSON = "the admin token has no personal data; sign in as a person"


def email_hash(email: str) -> bytes:
    """SHA-256 of the trimmed, lower-cased address (as the sign-in rate limit stores it)."""
    return hashlib.sha256(email.strip().lower().encode()).digest()


class Privacy:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.access = Access()

    @Convoys.PERSONAL_DATA
    async def personal_data(self, req: api.Ask) -> api.PersonalData:
        person_id = self.access.person(req.actor, NO_PERSON)
        async with self.rt.db.connection() as conn:
            sections = await repo.personal_records(conn, person_id)
        if sections is None:
            raise NotFound("no such person")
        return api.PersonalData(service=self.rt.name, sections=sections)

    @Convoys.ME_ERASE
    async def erase(self, req: api.EraseMe) -> api.Erased:
        person_id = self.access.person(req.actor, NO_PERSON)
        async with self.rt.db.transaction() as conn:
            person = await repo.person_for_erasure(conn, person_id)
            if person is None:
                raise NotFound("no such person")
            hashed = email_hash(person["email"])
            memberships = await repo.all_memberships(conn, person_id)
            for m in memberships:
                if not m["active"]:
                    continue
                await repo.remove_membership(conn, m["id"], ERASED_REASON)
                # The projections (milestones, reminders) drop the member; no "removed" email is sent.
                await self.rt.emit(
                    conn,
                    ev.PersonRemoved(
                        convoy_id=m["convoy_id"], company_id=m["company_id"], person_id=person_id, reason=ERASED_REASON
                    ),
                )
            observed = await repo.end_observer_seats(conn, person_id, ERASED_REASON)
            for convoy_id in observed:  # as for a membership: the projections drop the seat, no email
                await self.rt.emit(
                    conn, ev.ObserverRemoved(convoy_id=convoy_id, person_id=person_id, reason=ERASED_REASON)
                )
            facilitated = await repo.leave_all_convoys_as_facilitator(conn, person_id)
            await repo.erase_person(conn, person, hashed, "the contact deleted their account")
            convoys = list(dict.fromkeys([m["convoy_id"] for m in memberships] + facilitated + observed))
            for convoy_id in convoys or [None]:
                await repo.audit(
                    conn,
                    convoy_id=convoy_id,
                    actor=req.actor,
                    action="person.erased",
                    object_type="person",
                    object_id=person_id,
                )
            await self.rt.emit(
                conn,
                ev.PersonErased(
                    person_id=person_id,
                    email_sha256=hashed.hex(),
                    memberships=[
                        ev.FormerMembership(convoy_id=m["convoy_id"], company_id=m["company_id"]) for m in memberships
                    ],
                    facilitated=facilitated,
                    observed=observed,
                ),
            )
        # the notifier forgets the recipients answers that name them before we answer
        await recipients.announce_now(self.rt, [m["convoy_id"] for m in memberships] + observed)
        return api.Erased(person_id=person_id, message="your account and your personal data were deleted")
