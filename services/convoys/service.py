"""Rules of services/convoys: who may do what, and which event each change emits."""

from __future__ import annotations

import hashlib
import secrets
import uuid
import zoneinfo

import asyncpg

from schemas import api
from schemas import events as ev
from services.convoys import repository as repo
from services.runtime.errors import Conflict, Forbidden, InvalidInput, NotFound
from services.runtime.service import Runtime

TOKEN_PREFIX = "cvy_"


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _require_admin(actor: api.Actor) -> None:
    if not (actor.is_admin or actor.is_system):
        raise Forbidden("only the centre's admin may do this")


def _check_timezone(name: str) -> None:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput(
            f"`timezone`: unknown time zone {name!r} (use an IANA name such as Europe/Berlin)"
        ) from exc


class ConvoysService:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def create_convoy(self, req: api.CreateConvoy) -> api.Convoy:
        _require_admin(req.actor)
        _check_timezone(req.convoy.timezone)
        async with self.rt.db.transaction() as conn:
            convoy = await repo.insert_convoy(conn, uuid.uuid4(), req.convoy)
            await self.rt.emit(
                conn,
                ev.ConvoyCreated(
                    convoy_id=convoy.id, name=convoy.name, timezone=convoy.timezone, language=convoy.language
                ),
            )
        return convoy

    async def get_convoy(self, req: api.GetConvoy) -> api.Convoy:
        async with self.rt.db.connection() as conn:
            privileged = req.actor.is_admin or req.actor.is_system
            if not privileged and (
                req.actor.person_id is None
                or not await repo.is_member_of_convoy(conn, req.actor.person_id, req.convoy_id)
            ):
                raise NotFound("no such convoy")  # do not reveal that it exists
            convoy = await repo.get_convoy(conn, req.convoy_id)
        if convoy is None:
            raise NotFound("no such convoy")
        return convoy

    async def add_company(self, req: api.AddCompany) -> api.Company:
        _require_admin(req.actor)
        async with self.rt.db.transaction() as conn:
            convoy = await repo.get_convoy(conn, req.convoy_id)
            if convoy is None:
                raise NotFound("no such convoy")
            if convoy.status == "completed":
                raise Conflict("the convoy is completed and read-only")
            try:
                company = await repo.insert_company(conn, uuid.uuid4(), req.convoy_id, req.company)
            except asyncpg.UniqueViolationError as exc:
                raise Conflict(f"a company named {req.company.name!r} is already in this convoy") from exc
            await self.rt.emit(
                conn, ev.CompanyJoined(convoy_id=req.convoy_id, company_id=company.id, name=company.name)
            )
        return company

    async def add_representative(self, req: api.AddRepresentative) -> api.RepresentativeAdded:
        _require_admin(req.actor)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        async with self.rt.db.transaction() as conn:
            company = await repo.get_company(conn, req.company_id)
            if company is None or company.convoy_id != req.convoy_id:
                raise NotFound("no such company in this convoy")
            person_id, name, email, language = await repo.upsert_person(conn, req.representative)
            if await repo.is_member_of_convoy(conn, person_id, req.convoy_id):
                raise Conflict(f"{req.representative.email} is already a member of this convoy")
            await repo.insert_membership(conn, person_id, req.company_id, req.convoy_id)
            await repo.insert_token(conn, hash_token(token), person_id)
            await self.rt.emit(
                conn, ev.PersonJoined(convoy_id=req.convoy_id, company_id=req.company_id, person_id=person_id)
            )
        return api.RepresentativeAdded(
            representative=api.Representative(
                person_id=person_id,
                convoy_id=req.convoy_id,
                company_id=req.company_id,
                name=name,
                email=email,
                language=language,
            ),
            api_token=token,
        )

    async def resolve_token(self, req: api.ResolveToken) -> api.TokenOwner:
        if not req.token.startswith(TOKEN_PREFIX):
            raise NotFound("unknown token")
        async with self.rt.db.connection() as conn:
            person_id = await repo.token_owner(conn, hash_token(req.token))
        if person_id is None:
            raise NotFound("unknown token")
        return api.TokenOwner(person_id=person_id)

    async def get_membership(self, req: api.GetMembership) -> api.Membership:
        async with self.rt.db.connection() as conn:
            companies = await repo.companies_of(conn, req.person_id, req.convoy_id)
        return api.Membership(person_id=req.person_id, convoy_id=req.convoy_id, company_ids=companies)

    async def get_recipients(self, req: api.GetRecipients) -> api.Recipients:
        async with self.rt.db.connection() as conn:
            found = await repo.recipients(conn, req.convoy_id)
        if found is None:
            raise NotFound("no such convoy")
        name, members = found
        return api.Recipients(convoy_id=req.convoy_id, convoy_name=name, members=members)
