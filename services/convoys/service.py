"""Operation handlers of services/convoys: convoys, companies, facilitators, invitations, join requests.

Who may do what is decided in services/convoys/access.py (every handler asks it).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
import zoneinfo
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

import asyncpg
import msgspec

from schemas import api
from schemas import events as ev
from schemas.convoys import Convoys
from schemas.milestones import Milestones
from schemas.values import PERIOD_HOURS, Cadence
from services.convoys import recipients
from services.convoys import repository as repo
from services.convoys.access import Access
from services.convoys.charter import default_charter
from services.runtime.db import struct
from services.runtime.errors import Conflict, Gone, InvalidInput, NotFound, TooManyRequests
from services.runtime.service import Runtime

TRANSITIONS: dict[str, frozenset[str]] = {
    "forming": frozenset({"active", "completed"}),
    "active": frozenset({"paused", "completed"}),
    "paused": frozenset({"active", "completed"}),
    "completed": frozenset(),
}
"""Allowed convoy status changes; a completed convoy is read-only."""

JOIN_REQUESTS_PER_DAY = 3


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def email_to(
    person: asyncpg.Record | Mapping[str, Any], template: ev.EmailTemplate, *, key: str, params: dict[str, str]
) -> ev.EmailRequested:
    """An email to a person's row (its ``email``, ``name`` and ``language``), in their language."""
    return ev.EmailRequested(
        key=key,
        to_email=person["email"],
        to_name=person["name"],
        language=person["language"],
        template=template,
        params=params,
    )


def check_timezone(name: str, field: str = "timezone") -> None:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput(f"`{field}`: unknown time zone {name!r} (use an IANA name such as Europe/Berlin)") from exc


def check_schedule(cadence: Cadence, start: Any, end: Any) -> None:
    period = PERIOD_HOURS[cadence.frequency]
    if cadence.window_hours >= period:
        raise InvalidInput(
            f"`cadence.window_hours`: a {cadence.window_hours}-hour check-in window does not fit a "
            f"{cadence.frequency} cadence (at most {period - 1} hours)"
        )
    if start is not None and end is not None and end < start:
        raise InvalidInput("`end_date`: the convoy cannot end before it starts")


class ConvoysService:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.base_url = rt.settings.public_url.rstrip("/")
        self.access = Access()

    async def _reload(self, conn: asyncpg.Connection, convoy_id: uuid.UUID) -> asyncpg.Record:
        row = await repo.convoy_row(conn, convoy_id)
        assert row is not None
        return row

    async def _email(self, conn: asyncpg.Connection, message: ev.EmailRequested) -> None:
        await self.rt.emit(conn, message)

    async def _tell_removed(
        self,
        conn: asyncpg.Connection,
        person_id: uuid.UUID,
        template: Literal["member_removed", "observer_removed"],
        convoy_id: uuid.UUID,
        params: dict[str, str],
        reason: str,
    ) -> None:
        """Tell a person (in their language) that their seat in a convoy ended, and why."""
        person = await repo.person_by_id(conn, person_id)
        assert person is not None
        await self._email(
            conn,
            email_to(
                person,
                template,
                key=f"{template}:{convoy_id}:{person_id}:{uuid.uuid4()}",
                params={**params, "reason": reason},
            ),
        )

    # --- convoys -------------------------------------------------------------------------------
    @Convoys.CONVOY_CREATE
    async def create_convoy(self, req: api.CreateConvoy) -> api.Convoy:
        actor = req.actor
        self.access.require_facilitator(actor, "only facilitators create convoys")
        c = req.convoy
        check_timezone(c.timezone)
        check_schedule(c.cadence, c.start_date, c.end_date)
        async with self.rt.db.transaction() as conn:
            convoy_id = uuid.uuid4()
            if req.form_key is not None and actor.person_id is not None:
                first = await repo.claim_form_key(conn, actor.person_id, req.form_key, convoy_id)
                if first != convoy_id:  # sent before: the convoy that request created
                    row = await self.access.reader(conn, actor, first)
                    return await repo.convoy(conn, row, with_members=True)
            convoy_id = await self.new_convoy(conn, actor, c, convoy_id)
            row = await self._reload(conn, convoy_id)
            return await repo.convoy(conn, row, with_members=True)

    async def new_convoy(
        self, conn: asyncpg.Connection, actor: api.Actor, c: api.NewConvoy, convoy_id: uuid.UUID | None = None
    ) -> uuid.UUID:
        """Insert, audit and announce a convoy (the caller checked the actor, time zone and schedule)."""
        convoy_id = convoy_id or uuid.uuid4()
        await repo.insert_convoy(conn, convoy_id, c)
        if actor.person_id is not None:
            await repo.add_facilitator(conn, convoy_id, actor.person_id)
        await repo.audit(
            conn,
            convoy_id=convoy_id,
            actor=actor,
            action="convoy.created",
            object_type="convoy",
            object_id=convoy_id,
            details={"name": c.name},
        )
        await self.rt.emit(
            conn,
            ev.ConvoyCreated(
                convoy_id=convoy_id,
                name=c.name,
                timezone=c.timezone,
                language=c.language,
                cadence=c.cadence,
                start_date=c.start_date,
                end_date=c.end_date,
                facilitator_id=actor.person_id,
                retention_days=c.retention_days,
            ),
        )
        return convoy_id

    @Convoys.CONVOY_GET
    async def get_convoy(self, req: api.GetConvoy) -> api.Convoy:
        async with self.rt.db.connection() as conn:
            row = await self.access.reader(conn, req.actor, req.convoy_id)
            return await repo.convoy(conn, row, with_members=True)

    @Convoys.CONVOY_LIST_OPEN
    async def list_open(self, _: api.Empty) -> api.OpenConvoys:
        async with self.rt.db.connection() as conn:
            return api.OpenConvoys(convoys=await repo.open_convoys(conn))

    @Convoys.CONVOY_UPDATE
    async def update_convoy(self, req: api.UpdateConvoy) -> api.Convoy:
        patch = {k: v for k, v in msgspec.structs.asdict(req.patch).items() if v is not msgspec.UNSET}
        async with self.rt.db.transaction() as conn:
            row = await self.access.manager(conn, req.actor, req.convoy_id)
            merged_cadence = patch.get("cadence", repo.cadence(row))
            start = patch.get("start_date", row["start_date"])
            end = patch.get("end_date", row["end_date"])
            if "timezone" in patch:
                check_timezone(patch["timezone"])
            check_schedule(merged_cadence, start, end)
            if patch:
                await repo.update_convoy(conn, req.convoy_id, dict(patch))
                await repo.audit(
                    conn,
                    convoy_id=req.convoy_id,
                    actor=req.actor,
                    action="convoy.updated",
                    object_type="convoy",
                    object_id=req.convoy_id,
                    details={"fields": ",".join(sorted(patch))},
                )
            row = await self._reload(conn, req.convoy_id)
            await self.rt.emit(
                conn,
                ev.ConvoyUpdated(
                    convoy_id=req.convoy_id,
                    name=row["name"],
                    timezone=row["timezone"],
                    language=row["language"],
                    cadence=repo.cadence(row),
                    start_date=row["start_date"],
                    end_date=row["end_date"],
                    retention_days=row["retention_days"],
                ),
            )
            return await repo.convoy(conn, row, with_members=True)

    @Convoys.CONVOY_STATUS
    async def change_status(self, req: api.ChangeStatus) -> api.Convoy:
        async with self.rt.db.transaction() as conn:
            row = await self.access.manager(conn, req.actor, req.convoy_id, change=False)
            old, new = row["status"], req.change.status
            if new == old:
                raise Conflict(f"the convoy is already {old}")
            if new not in TRANSITIONS[old]:
                allowed = ", ".join(sorted(TRANSITIONS[old])) or "none: it is read-only"
                raise Conflict(f"a {old} convoy cannot become {new} (possible: {allowed})")
            await repo.set_status(conn, req.convoy_id, new)
            await repo.audit(
                conn,
                convoy_id=req.convoy_id,
                actor=req.actor,
                action="convoy.status_changed",
                object_type="convoy",
                object_id=req.convoy_id,
                reason=req.change.reason,
                details={"from": old, "to": new},
            )
            await self.rt.emit(
                conn,
                ev.ConvoyStatusChanged(
                    convoy_id=req.convoy_id,
                    old_status=old,
                    new_status=new,
                    actor_id=req.actor.person_id,
                    reason=req.change.reason,
                ),
            )
            row = await self._reload(conn, req.convoy_id)
            return await repo.convoy(conn, row, with_members=True)

    # --- facilitators --------------------------------------------------------------------------
    @Convoys.FACILITATOR_APPOINT
    async def appoint_facilitator(self, req: api.AppointFacilitator) -> api.Person:
        self.access.require_admin(req.actor, "only the centre's admins appoint facilitators")
        f = req.facilitator
        check_timezone(f.timezone)
        async with self.rt.db.transaction() as conn:
            row = await repo.person_by_email(conn, f.email)
            if row is None:
                row = await repo.insert_person(
                    conn,
                    name=f.name,
                    email=f.email,
                    language=f.language,
                    timezone=f.timezone,
                    is_facilitator=True,
                )
            elif row["is_facilitator"]:
                raise Conflict(f"{f.email} is already a facilitator")
            else:
                await repo.make_facilitator(conn, row["id"])
                row = await repo.person_by_id(conn, row["id"])
                assert row is not None
            await repo.audit(
                conn,
                convoy_id=None,
                actor=req.actor,
                action="facilitator.appointed",
                object_type="person",
                object_id=row["id"],
            )
            await self._email(
                conn,
                email_to(
                    row,
                    "facilitator_appointed",
                    key=f"facilitator_appointed:{row['id']}",
                    params={"link": f"{self.base_url}/sign-in"},
                ),
            )
            return repo.person(row)

    @Convoys.CONVOY_FACILITATOR_ADD
    async def add_facilitator(self, req: api.AddFacilitator) -> api.Convoy:
        async with self.rt.db.transaction() as conn:
            await self.access.manager(conn, req.actor, req.convoy_id)
            person = await repo.person_by_id(conn, req.person_id)
            if person is None or not person["is_facilitator"]:
                raise InvalidInput("`person_id`: not a facilitator; an admin appoints facilitators first")
            if await repo.add_facilitator(conn, req.convoy_id, req.person_id):
                await repo.audit(
                    conn,
                    convoy_id=req.convoy_id,
                    actor=req.actor,
                    action="convoy.facilitator_added",
                    object_type="person",
                    object_id=req.person_id,
                )
                await self.rt.emit(conn, ev.ConvoyFacilitatorAdded(convoy_id=req.convoy_id, person_id=req.person_id))
            row = await self._reload(conn, req.convoy_id)
            return await repo.convoy(conn, row, with_members=True)

    # --- companies and members -----------------------------------------------------------------
    @Convoys.COMPANY_ADD
    async def add_company(self, req: api.AddCompany) -> api.Company:
        async with self.rt.db.transaction() as conn:
            await self.access.manager(conn, req.actor, req.convoy_id)
            company = await self.new_company(conn, req.convoy_id, req.company)
            await repo.audit(
                conn,
                convoy_id=req.convoy_id,
                actor=req.actor,
                action="company.joined",
                object_type="company",
                object_id=company.id,
                details={"name": company.name},
            )
            return company

    async def new_company(self, conn: asyncpg.Connection, convoy_id: uuid.UUID, c: api.NewCompany) -> api.Company:
        try:
            async with conn.transaction():  # a savepoint: the caller's transaction survives a duplicate
                company = await repo.insert_company(conn, uuid.uuid4(), convoy_id, c)
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(f"a company named {c.name!r} is already in this convoy") from exc
        await self.rt.emit(conn, ev.CompanyJoined(convoy_id=convoy_id, company_id=company.id, name=company.name))
        return company

    @Convoys.COMPANY_REMOVE
    async def remove_company(self, req: api.RemoveCompany) -> api.Convoy:
        reason = req.removal.reason
        async with self.rt.db.transaction() as conn:
            convoy = await self.access.manager(conn, req.actor, req.convoy_id)
            company = await repo.company_row(conn, req.company_id)
            if company is None or company["convoy_id"] != req.convoy_id:
                raise NotFound("no such company in this convoy")
            people = await repo.remove_company(conn, req.company_id, reason)
            await repo.audit(
                conn,
                convoy_id=req.convoy_id,
                actor=req.actor,
                action="company.removed",
                object_type="company",
                object_id=req.company_id,
                reason=reason,
                details={"name": company["name"]},
            )
            await self.rt.emit(conn, ev.CompanyLeft(convoy_id=req.convoy_id, company_id=req.company_id, reason=reason))
            for person_id in people:
                await self._person_left(conn, convoy, company, person_id, reason)
            for person_id in await repo.remove_company_observers(conn, req.company_id, reason):
                await self._observer_left(conn, convoy, person_id, reason)  # its second readers leave with it
            result = await repo.convoy(conn, convoy, with_members=True)
        await recipients.announce_now(self.rt, [req.convoy_id])  # the notifier forgets them before our 200
        await self._revoke_in_readers(req.convoy_id, req.company_id, None)
        return result

    @Convoys.MEMBER_REMOVE
    async def remove_member(self, req: api.RemoveMember) -> api.Convoy:
        reason = req.removal.reason
        async with self.rt.db.transaction() as conn:
            convoy = await self.access.manager(conn, req.actor, req.convoy_id)
            membership = await repo.active_membership(conn, req.person_id, req.convoy_id)
            if membership is None:
                raise NotFound("no such member in this convoy")
            await repo.remove_membership(conn, membership["id"], reason)
            company = await repo.company_row(conn, membership["company_id"])
            assert company is not None
            await repo.audit(
                conn,
                convoy_id=req.convoy_id,
                actor=req.actor,
                action="person.removed",
                object_type="person",
                object_id=req.person_id,
                reason=reason,
                details={"company": company["name"]},
            )
            await self._person_left(conn, convoy, company, req.person_id, reason)
            result = await repo.convoy(conn, convoy, with_members=True)
        await recipients.announce_now(self.rt, [req.convoy_id])  # the notifier forgets them before our 200
        await self._revoke_in_readers(req.convoy_id, company["id"], req.person_id)
        return result

    async def _revoke_in_readers(
        self, convoy_id: uuid.UUID, company_id: uuid.UUID, person_id: uuid.UUID | None
    ) -> None:
        """A removal takes effect before it is answered (issue #19): after the commit here (the truth),
        services/milestones drops the membership from the projection it authorizes from, waiting for
        writes in progress; its ``person.removed`` event later repeats that, idempotently. A removal is
        rare, so the extra request costs little, and reports keep their one-hop authorization.
        If services/milestones cannot be told, the caller hears 503: the removal is recorded and takes
        effect there with its event, moments later."""
        request = api.RevokeAccess(
            convoy_id=convoy_id, company_id=company_id, person_id=person_id, at=datetime.now(UTC)
        )
        await self.rt.rpc.call(Milestones.ACCESS_REVOKE, request)

    async def _person_left(
        self,
        conn: asyncpg.Connection,
        convoy: asyncpg.Record,
        company: asyncpg.Record,
        person_id: uuid.UUID,
        reason: str,
    ) -> None:
        await self.rt.emit(
            conn,
            ev.PersonRemoved(convoy_id=convoy["id"], company_id=company["id"], person_id=person_id, reason=reason),
        )
        await self._tell_removed(
            conn,
            person_id,
            "member_removed",
            convoy["id"],
            {"convoy": convoy["name"], "company": company["name"]},
            reason,
        )

    # --- observers -----------------------------------------------------------------------------
    @Convoys.OBSERVER_INVITE
    async def invite_observer(self, req: api.InviteObserver) -> api.Invitation:
        """Facilitators invite an observer of the convoy (or a company's second reader); a representative
        invites a second reader for their own company. Observers invite nobody (403)."""
        invitation = req.invitation
        async with self.rt.db.transaction() as conn:
            convoy, company_id = await self.access.observer_inviter(
                conn, req.actor, req.convoy_id, invitation.company_id
            )
            company = None
            if company_id is not None:
                company = await repo.company_row(conn, company_id)
                if company is None or company["convoy_id"] != req.convoy_id:
                    raise NotFound("no such company in this convoy")
            return await self.send_invitation(
                conn, req.actor, convoy, company, msgspec.structs.replace(invitation, company_id=company_id)
            )

    @Convoys.OBSERVER_REMOVE
    async def remove_observer(self, req: api.RemoveObserver) -> api.Convoy:
        reason = req.removal.reason
        async with self.rt.db.transaction() as conn:
            convoy = await self.access.manager(conn, req.actor, req.convoy_id)
            seat = await repo.active_observer(conn, req.person_id, req.convoy_id)
            if seat is None:
                raise NotFound("no such observer in this convoy")
            await repo.remove_observer(conn, seat["id"], reason)
            await repo.audit(
                conn,
                convoy_id=req.convoy_id,
                actor=req.actor,
                action="observer.removed",
                object_type="person",
                object_id=req.person_id,
                reason=reason,
            )
            await self._observer_left(conn, convoy, req.person_id, reason)
            result = await repo.convoy(conn, convoy, with_members=True)
        await recipients.announce_now(self.rt, [req.convoy_id])  # the notifier forgets them before our 200
        # Like a member's removal: in effect in services/milestones before it is answered (issue #19).
        revoke = api.RevokeAccess(convoy_id=req.convoy_id, person_id=req.person_id, observer=True, at=datetime.now(UTC))
        await self.rt.rpc.call(Milestones.ACCESS_REVOKE, revoke)
        return result

    async def _observer_left(
        self, conn: asyncpg.Connection, convoy: asyncpg.Record, person_id: uuid.UUID, reason: str
    ) -> None:
        await self.rt.emit(conn, ev.ObserverRemoved(convoy_id=convoy["id"], person_id=person_id, reason=reason))
        await self._tell_removed(conn, person_id, "observer_removed", convoy["id"], {"convoy": convoy["name"]}, reason)

    # --- invitations ---------------------------------------------------------------------------
    @Convoys.INVITATION_CREATE
    async def create_invitation(self, req: api.CreateInvitation) -> api.Invitation:
        async with self.rt.db.transaction() as conn:
            convoy = await self.access.manager(conn, req.actor, req.convoy_id)
            company = await repo.company_row(conn, req.company_id)
            if company is None or company["convoy_id"] != req.convoy_id:
                raise NotFound("no such company in this convoy")
            return await self.send_invitation(conn, req.actor, convoy, company, req.invitation)

    @Convoys.INVITATION_LIST
    async def list_invitations(self, req: api.ListInvitations) -> api.PendingInvitations:
        async with self.rt.db.connection() as conn:
            await self.access.manager(conn, req.actor, req.convoy_id, change=False)
            return api.PendingInvitations(invitations=await repo.pending_invitations(conn, req.convoy_id))

    async def _pending(self, conn: asyncpg.Connection, req: api.InvitationAction) -> tuple[asyncpg.Record, Any]:
        """The convoy (its facilitators only) and one of its invitations still pending, locked."""
        convoy = await self.access.manager(conn, req.actor, req.convoy_id)
        row = await repo.invitation_row(conn, req.invitation_id)
        if row is None or row["convoy_id"] != req.convoy_id:
            raise NotFound("no such invitation in this convoy")
        if row["accepted_at"] is not None:
            raise Conflict("this invitation was already accepted")
        if row["revoked_at"] is not None or row["company_removed_at"] is not None:
            raise Conflict("this invitation was already withdrawn")
        return convoy, row

    @Convoys.INVITATION_RESEND
    async def resend_invitation(self, req: api.InvitationAction) -> api.Invitation:
        """A new link by email (the old one stops working); counts against the address's daily limit."""
        async with self.rt.db.transaction() as conn:
            convoy, row = await self._pending(conn, req)
            company = await repo.company_row(conn, row["company_id"]) if row["company_id"] is not None else None
            invitation: api.NewInvitation | api.NewObserverInvitation
            if row["role"] == "observer":
                invitation = api.NewObserverInvitation(
                    email=row["email"],
                    name=row["name"],
                    language=row["language"],
                    note=row["note"],
                    company_id=row["company_id"],
                )
            else:
                invitation = api.NewInvitation(email=row["email"], name=row["name"], language=row["language"])
            return await self.send_invitation(
                conn, req.actor, convoy, company, invitation, action="invitation.resent", previous=row["id"]
            )

    @Convoys.INVITATION_WITHDRAW
    async def withdraw_invitation(self, req: api.InvitationAction) -> api.PendingInvitations:
        async with self.rt.db.transaction() as conn:
            convoy, row = await self._pending(conn, req)
            await repo.withdraw_invitation(conn, row["id"])
            await repo.audit(
                conn,
                convoy_id=convoy["id"],
                actor=req.actor,
                action="invitation.withdrawn",
                object_type="invitation",
                object_id=row["id"],
                details={"role": row["role"]},  # never an address
            )
            return api.PendingInvitations(invitations=await repo.pending_invitations(conn, convoy["id"]))

    async def send_invitation(
        self,
        conn: asyncpg.Connection,
        actor: api.Actor,
        convoy: asyncpg.Record,
        company: asyncpg.Record | None,
        invitation: api.NewInvitation | api.NewObserverInvitation,
        *,
        action: str = "",
        previous: uuid.UUID | None = None,
    ) -> api.Invitation:
        """An invitation to represent ``company``, or (``NewObserverInvitation``) to observe the convoy
        (``company``: the company whose second reader they will be, or None). ``previous``: the
        invitation this one replaces (a resend; audited as ``action``)."""
        settings = self.rt.settings
        now = datetime.now(UTC)
        observer = isinstance(invitation, api.NewObserverInvitation)
        existing = await repo.person_by_email(conn, invitation.email)
        if existing is not None and await repo.active_membership(conn, existing["id"], convoy["id"]):
            raise Conflict(f"{invitation.email} is already a member of this convoy")
        if existing is not None and await repo.active_observer(conn, existing["id"], convoy["id"]):
            raise Conflict(f"{invitation.email} already observes this convoy (remove the observer seat first)")
        if await repo.invitations_to(conn, invitation.email, now - timedelta(days=1)) >= settings.invitations_per_day:
            raise TooManyRequests(f"{invitation.email} has had {settings.invitations_per_day} invitations today")
        await repo.revoke_pending_invitations(conn, convoy["id"], invitation.email)  # the newest link counts
        token = new_token("cvi_")
        created = await repo.insert_invitation(
            conn,
            token_hash=hash_token(token),
            convoy_id=convoy["id"],
            company_id=company["id"] if company is not None else None,
            invitation=invitation,
            invited_by=actor.person_id,
            expires_at=now + timedelta(days=settings.invitation_days),
        )
        inviter = "Convoy"
        if actor.person_id is not None:
            person = await repo.person_by_id(conn, actor.person_id)
            inviter = person["name"] if person else inviter
        await repo.audit(
            conn,
            convoy_id=convoy["id"],
            actor=actor,
            action=action or ("observer.invited" if observer else "person.invited"),
            object_type="invitation",
            object_id=created.id,
            details={  # never an address
                "company": company["name"] if company is not None else "",
                **({"replaces": str(previous)} if previous is not None else {}),
            },
        )
        expires = created.expires_at.strftime("%d.%m.%Y" if invitation.language == "de" else "%Y-%m-%d")
        params = {
            "convoy": convoy["name"],
            "inviter": inviter,
            "link": f"{self.base_url}/invitations/{token}",
            "expires": expires,
        }
        if not observer:
            assert company is not None
            params["company"] = company["name"]
        await self._email(
            conn,
            ev.EmailRequested(
                key=f"invitation:{created.id}",
                to_email=invitation.email,
                to_name=invitation.name,
                language=invitation.language,
                template="observer_invitation" if observer else "invitation",
                params=params,
            ),
        )
        return created

    async def _open_invitation(self, conn: asyncpg.Connection, token: str, *, lock: bool) -> asyncpg.Record:
        row = await repo.invitation_by_token(conn, hash_token(token), lock=lock)
        if row is None:
            raise NotFound("no such invitation")
        if row["accepted_at"] is not None:
            raise Gone("this invitation has already been used; sign in instead")
        if row["revoked_at"] is not None or row["company_removed_at"] is not None:
            raise Gone("this invitation was withdrawn")
        if row["expires_at"] < datetime.now(UTC):
            raise Gone("this invitation has expired; ask the facilitator for a new one")
        if row["convoy_status"] == "completed":
            raise Gone("this convoy has completed")
        return row

    @Convoys.INVITATION_PREVIEW
    async def preview_invitation(self, req: api.PreviewInvitation) -> api.InvitationPreview:
        async with self.rt.db.connection() as conn:
            row = await self._open_invitation(conn, req.token, lock=False)
        lang = req.language or row["language"]  # the default charter as the invitee reads (en: in English)
        charter = row["charter_text"] if row["charter_text"] is not None else default_charter(lang)
        return struct(row, api.InvitationPreview, charter=charter)

    async def accept_invitation(self, req: api.AcceptInvitationRequest, sessions: Any) -> api.SignedIn:
        a = req.accept
        check_timezone(a.timezone)
        async with self.rt.db.transaction() as conn:
            row = await self._open_invitation(conn, a.token, lock=True)
            person = await repo.person_by_email(conn, row["email"])
            if person is None:
                person = await repo.insert_person(
                    conn, name=a.name, email=row["email"], language=a.language, timezone=a.timezone
                )
            if await repo.active_membership(conn, person["id"], row["convoy_id"]):
                raise Conflict("you are already a member of this convoy")
            if await repo.active_observer(conn, person["id"], row["convoy_id"]):
                raise Conflict("you already observe this convoy")
            # Accepting the invitation accepts the convoy's current charter (shown with the invitation).
            charter_version = row["charter_version"]
            if a.charter_version is not None and a.charter_version != charter_version:
                raise Conflict(
                    f"the convoy's charter changed (version {charter_version} now, not {a.charter_version});"
                    " read it again and accept"
                )
            if row["role"] == "observer":
                return await self._accept_as_observer(conn, row, person, sessions)
            await repo.insert_membership(
                conn, person["id"], row["company_id"], row["convoy_id"], charter_version=charter_version
            )
            await repo.accept_invitation(conn, row["id"], person["id"])
            actor = api.Actor(person_id=person["id"])
            await repo.audit(
                conn,
                convoy_id=row["convoy_id"],
                actor=actor,
                action="person.joined",
                object_type="person",
                object_id=person["id"],
                details={
                    "company": row["company_name"],
                    "invitation": str(row["id"]),
                    "charter_version": str(charter_version),
                },
            )
            await self.rt.emit(
                conn,
                ev.PersonJoined(
                    convoy_id=row["convoy_id"],
                    company_id=row["company_id"],
                    person_id=person["id"],
                    charter_version=charter_version,  # accepted with the invitation
                ),
            )
            signed_in: api.SignedIn = await sessions.open(conn, person)
            return signed_in

    async def _accept_as_observer(
        self, conn: asyncpg.Connection, row: asyncpg.Record, person: asyncpg.Record, sessions: Any
    ) -> api.SignedIn:
        """An observer seat; they read the charter with the invitation (it binds what they read), and
        are not asked again when it changes: the charter gates writing, and observers write nothing."""
        await repo.insert_observer(
            conn,
            person["id"],
            row["convoy_id"],
            company_id=row["company_id"],
            note=row["note"],
            invited_by=row["invited_by"],
        )
        await repo.accept_invitation(conn, row["id"], person["id"])
        await repo.audit(
            conn,
            convoy_id=row["convoy_id"],
            actor=api.Actor(person_id=person["id"]),
            action="observer.joined",
            object_type="person",
            object_id=person["id"],
            details={
                "company": row["company_name"],
                "invitation": str(row["id"]),
                "charter_version": str(row["charter_version"]),
            },
        )
        await self.rt.emit(
            conn,
            ev.ObserverJoined(convoy_id=row["convoy_id"], person_id=person["id"], company_id=row["company_id"]),
        )
        signed_in: api.SignedIn = await sessions.open(conn, person)
        return signed_in

    # --- join requests -------------------------------------------------------------------------
    @Convoys.JOIN_REQUEST_CREATE
    async def create_join_request(self, req: api.CreateJoinRequest) -> api.JoinRequest:
        r = req.request
        async with self.rt.db.transaction() as conn:
            convoy = await repo.convoy_row(conn, req.convoy_id)
            if convoy is None or not convoy["open_for_requests"] or convoy["status"] not in ("forming", "active"):
                raise NotFound("no such open convoy")
            since = datetime.now(UTC) - timedelta(days=1)
            if await repo.join_requests_from(conn, r.contact_email, since) >= JOIN_REQUESTS_PER_DAY:
                raise TooManyRequests("too many join requests from this address today")
            created = await repo.insert_join_request(conn, req.convoy_id, r)
            await repo.audit(
                conn,
                convoy_id=req.convoy_id,
                actor=api.ANONYMOUS,
                action="join.requested",
                object_type="join_request",
                object_id=created.id,
                details={"company": r.company.name},  # never an address: the join request (object_id) has it
            )
            for f in await repo.facilitator_contacts(conn, req.convoy_id):
                await self._email(
                    conn,
                    email_to(
                        f,
                        "join_request_received",
                        key=f"join_request_received:{created.id}:{f['id']}",
                        params={  # nothing the anonymous sender typed: facilitators read it in Convoy
                            "convoy": convoy["name"],
                            "link": f"{self.base_url}/convoys/{req.convoy_id}/join-requests",
                        },
                    ),
                )
            return created

    @Convoys.JOIN_REQUEST_LIST
    async def list_join_requests(self, req: api.ListJoinRequests) -> api.JoinRequests:
        async with self.rt.db.connection() as conn:
            await self.access.manager(conn, req.actor, req.convoy_id, change=False)
            return api.JoinRequests(requests=await repo.list_join_requests(conn, req.convoy_id, req.status))

    @Convoys.JOIN_REQUEST_DECIDE
    async def decide_join_request(self, req: api.DecideJoinRequest) -> api.JoinRequest:
        d = req.decision
        if not d.approve and not d.reason.strip():
            raise InvalidInput("`reason`: say why the request is declined; the company reads it")
        async with self.rt.db.transaction() as conn:
            convoy = await self.access.manager(conn, req.actor, req.convoy_id)
            row = await repo.join_request_row(conn, req.request_id, lock=True)
            if row is None or row["convoy_id"] != req.convoy_id:
                raise NotFound("no such join request in this convoy")
            if row["status"] != "pending":
                raise Conflict(f"this request was already {row['status']}")
            company_id: uuid.UUID | None = None
            if d.approve:
                company = await self.new_company(
                    conn,
                    req.convoy_id,
                    api.NewCompany(
                        name=row["company_name"],
                        sector=row["sector"],
                        size_class=row["size_class"],
                        region=row["region"],
                    ),
                )
                company_id = company.id
                company_row = await repo.company_row(conn, company.id)
                assert company_row is not None
                await self.send_invitation(
                    conn,
                    req.actor,
                    convoy,
                    company_row,
                    api.NewInvitation(
                        email=row["contact_email"],
                        name=row["contact_name"],
                        language=row["contact_language"],
                    ),
                )
            else:
                await self._email(
                    conn,
                    ev.EmailRequested(
                        key=f"join_request_declined:{row['id']}",
                        to_email=row["contact_email"],
                        to_name=row["contact_name"],
                        language=row["contact_language"],
                        template="join_request_declined",
                        params={"convoy": convoy["name"], "company": row["company_name"], "reason": d.reason},
                    ),
                )
            status = "approved" if d.approve else "declined"
            decided = await repo.decide_join_request(
                conn,
                req.request_id,
                status=status,
                reason=d.reason,
                decided_by=req.actor.person_id,
                company_id=company_id,
            )
            await repo.audit(
                conn,
                convoy_id=req.convoy_id,
                actor=req.actor,
                action=f"join.{status}",
                object_type="join_request",
                object_id=req.request_id,
                reason=d.reason,
            )
            return repo.join_request(decided)

    # --- audit ---------------------------------------------------------------------------------
    @Convoys.AUDIT_LIST
    async def list_audit(self, req: api.ListAudit) -> api.AuditLog:
        async with self.rt.db.connection() as conn:
            await self.access.manager(conn, req.actor, req.convoy_id, change=False)
            return api.AuditLog(entries=await repo.audit_entries(conn, req.convoy_id, req.limit))

    # --- for other services --------------------------------------------------------------------
    @Convoys.MEMBERSHIP_GET
    async def get_membership(self, req: api.GetMembership) -> api.Membership:
        async with self.rt.db.connection() as conn:  # one query: services/milestones asks when its projection misses
            row = await repo.membership(conn, req.person_id, req.convoy_id)
        company_id = row["company_id"]
        return api.Membership(
            person_id=req.person_id,
            convoy_id=req.convoy_id,
            company_ids=[company_id] if company_id is not None else [],
            is_facilitator=bool(row["facilitator"]),
            charter_accepted=company_id is not None and bool(row["charter_accepted"]),
            company_names={company_id: row["company_name"]}
            if company_id is not None and row["company_name"] is not None
            else {},
            is_observer=bool(row["observer"]),
            charter_version=row["charter_version"] or 0,
        )

    @Convoys.CONVOY_CHAT_SET
    async def set_chat(self, req: api.SetChat) -> api.Convoy:
        """Set or remove one chat channel's webhook (the convoy's facilitators; the notifier as system
        when the channel refused it for good). https only, to the channel's allow-listed hosts."""
        url = req.hook.webhook_url
        if url is not None:
            check_webhook_url(req.channel, url, getattr(self.rt.settings, f"{req.channel}_webhook_hosts"))
        async with self.rt.db.transaction() as conn:
            # the notifier may drop a refused webhook of a completed convoy too
            await self.access.manager(conn, req.actor, req.convoy_id, change=not (req.actor.is_system and url is None))
            changed = await repo.set_chat(
                conn, req.convoy_id, req.channel, url, req.hook.post_reports, only_if_url=req.only_if_url
            )
            if changed:
                await repo.audit(
                    conn,
                    convoy_id=req.convoy_id,
                    actor=req.actor,
                    action=f"convoy.{req.channel}_changed",
                    object_type="convoy",
                    object_id=req.convoy_id,
                    details={"configured": "yes" if url else "no"},
                )
            return await repo.convoy(conn, await self._reload(conn, req.convoy_id), with_members=True)

    @Convoys.CONVOY_SLACK_SET
    async def set_slack(self, req: api.SetSlack) -> api.Convoy:
        """The older Slack-only request (``CONVOY_SLACK_SET``)."""
        hook = api.ChatWebhook(webhook_url=req.slack.webhook_url, post_reports=req.slack.post_reports)
        return await self.set_chat(api.SetChat(actor=req.actor, convoy_id=req.convoy_id, channel="slack", hook=hook))

    @Convoys.CONVOY_CHAT_GET
    async def chat_targets(self, req: api.GetRecipients) -> api.ChatTargets:
        async with self.rt.db.connection() as conn:
            if await repo.convoy_row(conn, req.convoy_id) is None:
                raise NotFound("no such convoy")
            return api.ChatTargets(convoy_id=req.convoy_id, targets=await repo.chat_targets(conn, req.convoy_id))

    @Convoys.FACILITATORS
    async def facilitators(self, _: api.Empty) -> api.Facilitators:
        async with self.rt.db.connection() as conn:
            return api.Facilitators(facilitators=await repo.facilitators(conn))

    @Convoys.CONVOY_FACILITATORS
    async def convoy_facilitators(self, req: api.GetRecipients) -> api.ConvoyFacilitators:
        """One convoy's facilitators with their contacts (internal: the notifier's help requests and
        round summaries; one query, instead of every facilitator of the installation)."""
        async with self.rt.db.connection() as conn:
            found = await repo.convoy_facilitators(conn, req.convoy_id)
        if found is None:
            raise NotFound("no such convoy")
        return found

    @Convoys.CONVOY_RECIPIENTS
    async def get_recipients(self, req: api.GetRecipients) -> api.Recipients:
        """The representatives' contacts, with the convoy's name, language and chat channels (one query:
        the notifier asks it for every report, and needs nothing else from here for it)."""
        async with self.rt.db.connection() as conn:
            found = await repo.recipients(conn, req.convoy_id)
        if found is None:
            raise NotFound("no such convoy")
        return found

    @Convoys.CONVOYS_RECIPIENTS
    async def get_many_recipients(self, req: api.GetManyRecipients) -> api.ManyRecipients:
        """:meth:`get_recipients` for the convoys the notifier met at one moment: one statement for all."""
        async with self.rt.db.connection() as conn:
            found = await repo.recipients_of(conn, req.convoy_ids)
        return api.ManyRecipients(recipients=[found.get(c) for c in req.convoy_ids])


WEBHOOK_EXAMPLES = {
    "slack": "a Slack incoming-webhook URL (https://hooks.slack.com/…)",
    "teams": "a Microsoft Teams Workflows webhook URL (https://….logic.azure.com/… or https://….powerplatform.com/…)",
}


def host_allowed(host: str, allowed: str) -> bool:
    """``host`` is one of the comma-separated ``allowed`` hosts; ``*.example.com`` allows every subdomain."""
    host = host.lower().rstrip(".")
    for entry in (h.strip().lower() for h in allowed.split(",")):
        if entry.startswith("*.") and host.endswith(entry[1:]) and len(host) > len(entry) - 1:
            return True
        if entry and host == entry:
            return True
    return False


def check_webhook_url(channel: str, url: str, allowed: str) -> None:
    """https to an allow-listed host (plain http only to a local host that is allow-listed: tests)."""
    try:
        parts = urlsplit(url)
        host, scheme = parts.hostname or "", parts.scheme
        _ = parts.port  # a bad port raises
    except ValueError:
        host, scheme = "", ""
    local = host in ("127.0.0.1", "localhost")
    if not host_allowed(host, allowed) or not (scheme == "https" or (local and scheme == "http")) or "@" in url:
        raise InvalidInput(f"`webhook_url`: must be {WEBHOOK_EXAMPLES.get(channel, 'an allow-listed https URL')}")
