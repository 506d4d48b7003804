"""Who may do what to which object in services/milestones: the one place it is decided.

Decided from the projection of memberships kept from convoys events (services/milestones/consumers.py);
on a miss (a convoy or a membership whose event is still on its way) services/convoys is asked once
and the answer remembered in the projection (the read-through). A removal is applied here by
services/convoys (``ACCESS_REVOKE``) before it is answered: reads and writes after its 200 are
refused; a write in progress holds its membership rows (share lock), so the removal waits for it.

- a company's representatives write its project, milestones and reports;
- the convoy's members (representatives) and facilitators read everything in the convoy and
  comment; representatives give kudos and offer help to *other* companies;
- observers read what members read and write nothing (403): no report, comment, kudos, help
  offer, flag or project change;
- hidden reports and comments (and answers to a hidden comment) are seen by the convoy's
  facilitators and the centre's admins only; they moderate (hide, restore, lock, work the flags);
- the facilitator-only note of a report is seen by the convoy's facilitators and the company's
  own representatives, never by peers, never in exports;
- a representative writes reports and comments only once they accepted the convoy's current charter
  (decided from the projection of charters; see :meth:`Access.under_charter`);
- anyone else is told the convoy (or report, comment) does not exist (404).

Handlers ask :class:`Access` for a :class:`Grant` (the caller's part in a convoy) and the grant
what the caller may do.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from schemas import api
from schemas.convoys import Convoys
from services.milestones import repository as repo
from services.runtime.errors import Conflict, Forbidden, NotFound
from services.runtime.service import Runtime

HIDDEN_MARKS = ("hidden_at", "report_hidden_at", "parent_hidden_at")
"""The columns of a comment row that hide it from members: its own, its report's, its parent's."""


@dataclass(frozen=True)
class Grant:
    """The caller's part in one convoy (``convoy``: its projected row)."""

    convoy: asyncpg.Record
    companies: list[uuid.UUID]
    facilitator: bool
    admin: bool
    observer: bool = False

    @classmethod
    def peer_view(cls, convoy: asyncpg.Record) -> Grant:
        """What any member sees: no hidden content, no facilitator notes (exports)."""
        return cls(convoy=convoy, companies=[], facilitator=False, admin=False)

    @property
    def round_locked(self) -> bool:
        """The statement that read this grant also took the convoy's round lock shared (``member(round_lock=True)``)."""
        return bool(self.convoy.get("round_locked"))

    @property
    def sees_everything(self) -> bool:
        """Facilitators and admins see hidden content and facilitator notes."""
        return self.facilitator or self.admin

    @property
    def reads_only(self) -> bool:
        """An observer (and nothing more here): reads as members do, writes nothing."""
        return self.observer and not (self.companies or self.facilitator or self.admin)

    def represents(self, company_id: uuid.UUID) -> bool:
        return company_id in self.companies

    def sees_note(self, company_id: uuid.UUID) -> bool:
        """The facilitator-only note of a company's report: its representatives, facilitators, admins."""
        return self.sees_everything or self.represents(company_id)

    def writes(self, what: str) -> None:
        """Anyone here but an observer: 403 for an observer."""
        if self.reads_only:
            raise Forbidden(f"observers read along; they do not {what}")

    def writes_for(self, company_id: uuid.UUID, what: str) -> None:
        """The company's representatives, while the convoy is not completed."""
        if not self.represents(company_id):
            raise Forbidden(f"only the company's representatives {what}")
        if self.convoy["status"] == "completed":
            raise Conflict("the convoy is completed and read-only")

    def moderates(self) -> None:
        """The convoy's facilitators and the centre's admins: 403 for anyone else here."""
        if not self.sees_everything:
            raise Forbidden("only the convoy's facilitators moderate its content")


class Access:
    """Grants from the projection, with a read-through to services/convoys on a miss."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def convoy(self, conn: asyncpg.Connection, convoy_id: uuid.UUID) -> asyncpg.Record | None:
        """The convoy from the projection; on a miss (its events still on their way) ask services/convoys."""
        row = await repo.projections.convoy(conn, convoy_id)
        if row is not None:
            return row
        try:
            convoy = await self.rt.rpc.call(Convoys.CONVOY_GET, api.GetConvoy(actor=api.SYSTEM, convoy_id=convoy_id))
        except NotFound:
            return None
        if conn.is_in_transaction():  # see member(): not after a removal was applied
            await repo.projections.lock_access(conn, convoy_id)
        await repo.projections.upsert_convoy(
            conn,
            convoy_id=convoy.id,
            name=convoy.name,
            timezone=convoy.timezone,
            language=convoy.language,
            cadence=convoy.cadence,
            start_date=convoy.start_date or convoy.created_at.date(),
            status=convoy.status,
            retention_days=convoy.retention_days,
        )
        for company in convoy.companies:
            await repo.projections.upsert_company(conn, company.id, convoy.id, company.name)
            for rep in company.representatives:
                await repo.projections.add_member(conn, rep.person_id, company.id, convoy.id)
        for f in convoy.facilitators:
            await repo.projections.add_facilitator(conn, convoy.id, f.person_id)
        for o in convoy.observers:
            await repo.projections.add_observer(conn, o.person_id, convoy.id)
        return await repo.projections.convoy(conn, convoy_id)

    async def member(
        self,
        conn: asyncpg.Connection,
        actor: api.Actor,
        convoy_id: uuid.UUID,
        not_found: str = "no such convoy",
        *,
        round_lock: bool = False,
    ) -> Grant:
        """Anyone with a part in the convoy (representative, facilitator, observer; admins and the
        system); 404 with ``not_found`` for anyone else.

        ``round_lock`` (a report): on the common path the same statement also takes the convoy's round lock
        shared, after the membership's share lock; ``grant.round_locked`` says whether it did (see
        ``repository.projections.convoy_for``)."""
        # One round trip on the hot path (every read and write): the convoy and the caller's part in it.
        # In a writing transaction the membership rows are share-locked: a removal waits for this write
        # to commit, and once it is applied (before its 200) no write finds them (issue #19).
        writing = conn.is_in_transaction()
        key = repo.digests.round_lock_key(convoy_id) if round_lock and writing else None
        convoy = await repo.projections.convoy_for(conn, convoy_id, actor.person_id, lock=writing, round_lock=key)
        if convoy is None:  # not in the projection yet: read through, then ask the projection again
            if await self.convoy(conn, convoy_id) is None:
                raise NotFound(not_found)
            convoy = await repo.projections.convoy_for(conn, convoy_id, actor.person_id, lock=writing, round_lock=key)
            if convoy is None:
                raise NotFound(not_found)
        if actor.is_admin or actor.is_system:
            return Grant(convoy=convoy, companies=[], facilitator=False, admin=True)
        if actor.person_id is None:
            raise NotFound(not_found)
        companies: list[uuid.UUID] = list(convoy["access_companies"])
        facilitator = bool(convoy["access_facilitator"])
        observer = bool(convoy["access_observer"])
        if not companies and not facilitator and not observer:
            # Maybe they joined a moment ago and the event is still on its way: ask once, remember.
            if writing:  # an answer from before a removal is not projected after the removal was applied
                await repo.projections.lock_access(conn, convoy_id)
            membership = await self.rt.rpc.call(
                Convoys.MEMBERSHIP_GET, api.GetMembership(person_id=actor.person_id, convoy_id=convoy_id)
            )
            for company_id in membership.company_ids:
                if company_id in membership.company_names:  # its company.added event may be on its way too
                    await repo.projections.ensure_company(
                        conn, company_id, convoy_id, membership.company_names[company_id]
                    )
                await repo.projections.add_member(conn, actor.person_id, company_id, convoy_id)
            if membership.is_facilitator:
                await repo.projections.add_facilitator(conn, convoy_id, actor.person_id)
            if membership.is_observer:
                await repo.projections.add_observer(conn, actor.person_id, convoy_id)
            companies, facilitator = membership.company_ids, membership.is_facilitator
            observer = membership.is_observer
        if not companies and not facilitator and not observer:
            raise NotFound(not_found)
        return Grant(convoy=convoy, companies=companies, facilitator=facilitator, admin=False, observer=observer)

    async def moderator(
        self, conn: asyncpg.Connection, actor: api.Actor, convoy_id: uuid.UUID, not_found: str = "no such convoy"
    ) -> Grant:
        """The convoy's facilitators and admins; its other members 403, anyone else 404."""
        grant = await self.member(conn, actor, convoy_id, not_found=not_found)
        grant.moderates()
        return grant

    async def report(
        self, conn: asyncpg.Connection, actor: api.Actor, report_id: uuid.UUID, *, lock: bool = False
    ) -> tuple[Grant, asyncpg.Record]:
        """A report the actor may see (a hidden one: facilitators and admins only), with its row
        (``lock``: locked for update); 404 otherwise."""
        row = await repo.reports.report_row(conn, report_id, lock=lock)
        if row is None:
            raise NotFound("no such report")
        grant = await self.member(conn, actor, row["convoy_id"], not_found="no such report")
        if row["hidden_at"] is not None and not grant.sees_everything:
            raise NotFound("no such report")
        return grant, row

    async def comment(
        self, conn: asyncpg.Connection, actor: api.Actor, row: asyncpg.Record | None, *, deleted: bool = False
    ) -> Grant:
        """A comment (its row as read by the caller, with whichever of :data:`HIDDEN_MARKS` that read
        carries) the actor may see: hidden only to facilitators and admins, deleted only with
        ``deleted`` (moderators still hide a deleted one); 404 otherwise."""
        if row is None or (row["deleted_at"] is not None and not deleted):
            raise NotFound("no such comment")
        grant = await self.member(conn, actor, row["convoy_id"], not_found="no such comment")
        if not grant.sees_everything and any(row.get(k) is not None for k in HIDDEN_MARKS):
            raise NotFound("no such comment")
        return grant

    async def under_charter(self, conn: asyncpg.Connection, grant: Grant, actor: api.Actor) -> api.Membership | None:
        """A representative writes reports and comments only once they accepted the convoy's current charter.

        Decided from the projection of charters (``grant.convoy``'s ``charter_version``, the convoy's
        current version, and ``access_charter_version``, the one the representative accepted: both read
        with the grant, no extra query), kept from ``charter.updated``, ``charter.accepted`` and
        ``person.joined`` (the version accepted with the invitation). The projection only ever lets a
        write through faster, never one services/convoys would refuse:

        - a charter changed a second ago binds: services/convoys sets the new version here
          (``Milestones.CHARTER_SET``) before it answers the change (503 if it cannot; the event
          follows), and projected acceptances are only ever versions services/convoys recorded;
        - an acceptance a second ago counts: when the projection says "not accepted" (or knows nothing:
          rows from before it existed, or learnt by a read-through), services/convoys is asked
          (``MEMBERSHIP_GET``, exact, as every write did before) and its answer is remembered here.

        Facilitators and admins are not bound (they keep the charter; they do not accept it).
        Returns the answer of services/convoys (None when nobody was asked).
        """
        if grant.sees_everything or not grant.companies or actor.person_id is None:
            return None
        convoy_id = grant.convoy["convoy_id"]
        current = grant.convoy.get("charter_version")
        accepted = grant.convoy.get("access_charter_version")
        if current is not None and accepted is not None and accepted >= current:
            return None  # the common path: accepted as projected
        membership = await self.membership(actor.person_id, convoy_id)
        if not membership.company_ids and not membership.is_facilitator:
            # Removed a moment ago (services/convoys is the truth): the projection is corrected first.
            raise NotFound("no such convoy")
        if membership.company_ids and not membership.charter_accepted:
            raise Conflict(
                "accept the convoy's updated charter first"
                f" (read it at GET /api/v1/convoys/{convoy_id}/charter, then POST …/charter/accept)"
            )
        if membership.charter_accepted and membership.charter_version > 0:
            # They accepted at least that version (versions only grow): the next write needs no request.
            await repo.projections.set_charter_version(conn, convoy_id, membership.charter_version)
            await repo.projections.learn_acceptance(conn, actor.person_id, convoy_id, membership.charter_version)
        return membership

    async def membership(self, person_id: uuid.UUID, convoy_id: uuid.UUID) -> api.Membership:
        """The person's part in the convoy as services/convoys knows it now (one request)."""
        return await self.rt.rpc.call(
            Convoys.MEMBERSHIP_GET, api.GetMembership(person_id=person_id, convoy_id=convoy_id)
        )
