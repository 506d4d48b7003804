"""Rules of services/milestones: only a company's representatives report for it; only members
and the convoy's facilitators read."""

from __future__ import annotations

import uuid

import asyncpg

from schemas import api
from schemas import envelope as env
from schemas import events as ev
from schemas.subjects import Rpc
from services.milestones import repository as repo
from services.runtime.errors import Forbidden, InvalidInput, NotFound
from services.runtime.service import Runtime


class MilestonesService:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def on_membership(self, envelope: env.Envelope, event: ev.Event, conn: asyncpg.Connection) -> None:
        """Keep the projection of memberships that authorizes every report action."""
        if isinstance(event, ev.PersonJoined):
            await repo.add_member(conn, event.person_id, event.company_id, event.convoy_id)
        elif isinstance(event, ev.PersonRemoved):
            await repo.remove_member(conn, event.person_id, event.company_id)
        elif isinstance(event, ev.CompanyLeft):
            await repo.remove_company(conn, event.company_id)

    async def _membership(self, person_id: uuid.UUID, convoy_id: uuid.UUID) -> api.Membership:
        return await self.rt.rpc.call(
            self.rt.subjects.rpc("convoys", Rpc.MEMBERSHIP_GET),
            api.GetMembership(person_id=person_id, convoy_id=convoy_id),
            api.Membership,
        )

    async def _companies(self, conn: asyncpg.Connection, person_id: uuid.UUID, convoy_id: uuid.UUID) -> list[uuid.UUID]:
        """Companies the person represents in the convoy, from the projection.

        On a miss, ask services/convoys: the person.joined event may still be on its way
        (a representative who joined a moment ago); what it answers is recorded.
        """
        companies = await repo.companies_of(conn, person_id, convoy_id)
        if companies:
            return companies
        membership = await self._membership(person_id, convoy_id)
        for company_id in membership.company_ids:
            await repo.add_member(conn, person_id, company_id, convoy_id)
        return membership.company_ids

    async def submit_report(self, req: api.SubmitReport) -> api.Report:
        person = req.actor.person_id
        if person is None:
            raise Forbidden("only a company's representatives post its reports")
        async with self.rt.db.transaction() as conn:
            companies = await self._companies(conn, person, req.convoy_id)
            if not companies:
                if (await self._membership(person, req.convoy_id)).is_facilitator:
                    raise Forbidden("facilitators do not post reports; a company's representatives do")
                raise NotFound("no such convoy")
            company_id = req.report.company_id
            if company_id is None:
                if len(companies) > 1:
                    raise InvalidInput("`company_id`: you represent several companies here; say which")
                company_id = companies[0]
            elif company_id not in companies:
                raise Forbidden("you do not represent this company")
            report = await repo.insert_report(conn, uuid.uuid4(), req.convoy_id, company_id, person, req.report)
            await self.rt.emit(
                conn,
                ev.ReportSubmitted(
                    convoy_id=req.convoy_id, company_id=company_id, report_id=report.id, author_id=person
                ),
            )
        return report

    async def list_reports(self, req: api.ListReports) -> api.ReportList:
        async with self.rt.db.connection() as conn:
            await self._authorize_reader(conn, req.actor, req.convoy_id)
            return api.ReportList(reports=await repo.list_reports(conn, req.convoy_id, req.limit))

    async def get_report(self, req: api.GetReport) -> api.Report:
        async with self.rt.db.connection() as conn:
            report = await repo.get_report(conn, req.report_id)
            if report is None:
                raise NotFound("no such report")
            await self._authorize_reader(conn, req.actor, report.convoy_id, not_found="no such report")
        return report

    async def _authorize_reader(
        self,
        conn: asyncpg.Connection,
        actor: api.Actor,
        convoy_id: uuid.UUID,
        not_found: str = "no such convoy",
    ) -> None:
        """Members and the convoy's facilitators read; everyone else is told it does not exist."""
        if actor.is_admin or actor.is_system:
            return
        if actor.person_id is None:
            raise NotFound(not_found)
        if await repo.companies_of(conn, actor.person_id, convoy_id):
            return
        membership = await self._membership(actor.person_id, convoy_id)
        if not (membership.company_ids or membership.is_facilitator):
            raise NotFound(not_found)
