"""Who may do what to which object in services/convoys: the one place its handlers ask.

Roles:
- admin (and the system, i.e. other services): everything; appoints facilitators.
- facilitator (the role on the person): creates convoys, sees the formation pool and the programme
  figures; manages the convoys they facilitate (``convoy_facilitators``).
- representative (an active membership): reads the convoys their company belongs to, accepts its
  charter, invites a second reader for their own company (an observer).
- observer (an active observer seat): reads the convoy as its members do; changes nothing.
Anyone else learns nothing: a convoy they have no part in is "not found" (404, not 403).

Every check reads the database in the caller's connection (and transaction), so a decision and
the change it allows see the same rows. The refusal messages are matched by the pages
(convoy_api/web/refusals.py translates them): change one there too.
"""

from __future__ import annotations

import uuid

import asyncpg

from schemas import api
from services.convoys import repository as repo
from services.runtime.errors import Conflict, Forbidden, NotFound

Conn = asyncpg.Connection


class Access:
    """The authorization of services/convoys (stateless: every answer comes from the database)."""

    # --- roles on the person (no convoy) ------------------------------------------------------
    @staticmethod
    def admin(actor: api.Actor) -> bool:
        """The centre's admin token, or another service acting as the system."""
        return actor.is_admin or actor.is_system

    def require_admin(self, actor: api.Actor, refusal: str) -> None:
        if not self.admin(actor):
            raise Forbidden(refusal)

    def require_facilitator(self, actor: api.Actor, refusal: str) -> None:
        """A facilitator of the centre (of any convoy, or none yet), or an admin."""
        if not (self.admin(actor) or actor.is_facilitator):
            raise Forbidden(refusal)

    @staticmethod
    def person(actor: api.Actor, refusal: str) -> uuid.UUID:
        """The person acting (their own profile, tokens, personal data); the admin token has none."""
        if actor.person_id is None:
            raise Forbidden(refusal)
        return actor.person_id

    # --- roles in one convoy ------------------------------------------------------------------
    async def facilitator_of(self, conn: Conn, actor: api.Actor, convoy_id: uuid.UUID) -> bool:
        """The actor manages this convoy: one of its facilitators, or an admin."""
        if self.admin(actor):
            return True
        return actor.person_id is not None and await repo.facilitates(conn, actor.person_id, convoy_id)

    @staticmethod
    async def member_of(conn: Conn, actor: api.Actor, convoy_id: uuid.UUID) -> asyncpg.Record | None:
        """The actor's active membership (a representative of one of its companies), or None."""
        if actor.person_id is None:
            return None
        return await repo.active_membership(conn, actor.person_id, convoy_id)

    async def reader(self, conn: Conn, actor: api.Actor, convoy_id: uuid.UUID) -> asyncpg.Record:
        """The convoy's row for someone who may read it (its facilitators, members, observers, admins);
        404 for everyone else and for a convoy that does not exist (its existence is not revealed)."""
        row = await repo.convoy_row(conn, convoy_id)
        if row is None:
            raise NotFound("no such convoy")
        if self.admin(actor):
            return row
        if actor.person_id is not None and (
            await repo.facilitates(conn, actor.person_id, convoy_id)
            or await repo.active_membership(conn, actor.person_id, convoy_id)
            or await repo.active_observer(conn, actor.person_id, convoy_id)
        ):
            return row
        raise NotFound("no such convoy")  # do not reveal that it exists

    async def manager(
        self, conn: Conn, actor: api.Actor, convoy_id: uuid.UUID, *, change: bool = True
    ) -> asyncpg.Record:
        """The convoy's row for one of its facilitators (or an admin); ``change``: it is about to be
        changed, which a completed convoy refuses (409)."""
        row = await self.reader(conn, actor, convoy_id)
        if not await self.facilitator_of(conn, actor, convoy_id):
            raise Forbidden("only the convoy's facilitators may do this")
        if change and row["status"] == "completed":
            raise Conflict("the convoy is completed and read-only")
        return row

    async def representative(self, conn: Conn, actor: api.Actor, convoy_id: uuid.UUID, refusal: str) -> asyncpg.Record:
        """The actor's active membership in a convoy they may read; 403 ``refusal`` for non-members."""
        membership = await self.member_of(conn, actor, convoy_id)
        if membership is None:
            raise Forbidden(refusal)
        return membership

    async def observer_inviter(
        self, conn: Conn, actor: api.Actor, convoy_id: uuid.UUID, company_id: uuid.UUID | None
    ) -> tuple[asyncpg.Record, uuid.UUID | None]:
        """Who invites an observer: the convoy's facilitators (of the convoy, or as ``company_id``'s second
        reader), and a representative (a second reader for their own company only; ``company_id`` becomes
        theirs). Observers invite nobody (403). The convoy (not completed) and the company to invite for."""
        convoy = await self.reader(conn, actor, convoy_id)
        if not await self.facilitator_of(conn, actor, convoy_id):
            membership = await self.member_of(conn, actor, convoy_id)
            if membership is None:
                raise Forbidden("only the convoy's facilitators and representatives invite observers")
            if company_id is not None and company_id != membership["company_id"]:
                raise Forbidden("a representative invites a second reader for their own company only")
            company_id = membership["company_id"]
        if convoy["status"] == "completed":
            raise Conflict("the convoy is completed and read-only")
        return convoy, company_id
