"""Who may do what in services/reminders: the one place its handlers ask.

- Reading a convoy's schedule: its facilitators, representatives and observers, and admins; anyone
  else gets 404 (the convoy's existence is not revealed).
- Changing it (settings, skipping a cycle, marking a company away, prompting or closing now): its
  facilitators and admins (403 for representatives and observers).
- Skipping a cycle for one company: that company's representatives, and admins (a facilitator
  marks a company away instead).
- The calendar rounds of several convoys: the system only (the API's calendar feed).

Roles in a convoy are held by services/convoys; this asks it (``MEMBERSHIP_GET``, one query there)
once per request, here and nowhere else in this service.
"""

from __future__ import annotations

import uuid

from schemas import api
from schemas.convoys import Convoys
from services.runtime.errors import Forbidden, NotFound
from services.runtime.service import Runtime


class Access:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def reader(self, actor: api.Actor, convoy_id: uuid.UUID) -> api.Membership | None:
        """None for admins and the system; the actor's membership otherwise (404 when the person has no
        part in the convoy). Observers read the schedule; every change checks its own role on top."""
        if actor.is_admin or actor.is_system:
            return None
        if actor.person_id is None:
            raise NotFound("no such convoy")
        membership = await self.rt.rpc.call(
            Convoys.MEMBERSHIP_GET, api.GetMembership(person_id=actor.person_id, convoy_id=convoy_id)
        )
        if not membership.company_ids and not membership.is_facilitator and not membership.is_observer:
            raise NotFound("no such convoy")
        return membership

    async def facilitator(self, actor: api.Actor, convoy_id: uuid.UUID) -> None:
        """The convoy's facilitators and admins change its schedule."""
        membership = await self.reader(actor, convoy_id)
        if membership is not None and not membership.is_facilitator:
            raise Forbidden("only the convoy's facilitators may change its schedule")

    async def representative(self, actor: api.Actor, convoy_id: uuid.UUID, company_id: uuid.UUID) -> None:
        """The company's representatives (and admins) act for it."""
        membership = await self.reader(actor, convoy_id)
        if membership is not None and company_id not in membership.company_ids:
            raise Forbidden("only the company's representatives skip a cycle for it")

    @staticmethod
    def system(actor: api.Actor, refusal: str) -> None:
        """Other services only (never a person's or the admin's token)."""
        if not actor.is_system:
            raise Forbidden(refusal)

    @staticmethod
    def person(actor: api.Actor, refusal: str) -> uuid.UUID:
        """The person acting (their own personal data); the admin token has none."""
        if actor.person_id is None:
            raise Forbidden(refusal)
        return actor.person_id
