"""History brought in: a report of a past, closed check-in cycle, with the times it really had.

Why an import rather than the ordinary path: a report belongs to the cycle that is open when it
is posted (``services/runtime/cycles.py``), so a report posted today can only ever land in
today's cycle. A convoy's earlier weeks — the demo's history, or a convoy that kept its reports
in spreadsheets before it moved to Convoy — happened before Convoy knew of them. Faking the
clock (the scheduler's manual clock is for tests) or writing rows behind the service's back would
both bypass the rules; this endpoint keeps them instead:

- only the centre's admin may import, and only into a convoy that is not completed;
- the cycle must have closed (an open cycle's report is posted by the company itself), and the
  report's ``submitted_at`` must lie in that cycle (``opens_at <= submitted_at < closes_at``, not
  in the future); it is ``late`` exactly when a report posted then would have been;
- the author represents the company; milestones, help milestone and commitment reviews are
  checked as for a posted report (the company's own milestones, its open commitments of earlier
  cycles); commenters are members or facilitators of the convoy; kudos come from representatives
  of *other* companies, as with the ordinary endpoints;
- milestone statuses change as of ``submitted_at`` (a milestone done in that report counts as
  completed in that cycle, so digests and the board tell the history correctly).

Idempotent: a company has one report per cycle (a unique key). If it exists, the import answers
it unchanged (``created`` false), so running an import twice changes nothing.

No events are emitted: notifications tell people what happens now, and history brought in is
not news (nobody is emailed "new report" about a week that is long over). Nothing downstream
keeps state from these events; digests and the board read the reports themselves.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg

from schemas import api
from schemas.milestones import Milestones
from services.milestones import repository as repo
from services.milestones.access import Access, Grant
from services.milestones.service import TS_CONFIG, check_report_refs, cycle_of, read_reports
from services.runtime.errors import Conflict, Forbidden, InvalidInput, NotFound
from services.runtime.service import Runtime


def _aware(value: datetime, field: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"`{field}`: give a time zone (e.g. 2026-03-02T10:00:00+01:00)")
    return value.astimezone(UTC)


class HistoryImport:
    def __init__(self, rt: Runtime, access: Access) -> None:
        self.rt = rt
        self.access = access

    async def _person(self, conn: asyncpg.Connection, person_id: uuid.UUID, convoy_id: uuid.UUID, field: str) -> Grant:
        try:
            grant = await self.access.member(conn, api.Actor(person_id=person_id), convoy_id)
        except NotFound as exc:
            raise InvalidInput(f"`{field}`: not a member or facilitator of this convoy") from exc
        if grant.reads_only:
            raise InvalidInput(f"`{field}`: an observer of this convoy; observers write nothing")
        return grant

    @Milestones.REPORT_IMPORT
    async def import_report(self, req: api.ImportReport) -> api.ImportedReport:
        if not req.actor.is_admin:
            raise Forbidden("only the centre's admin imports history")
        r = req.report
        if r.company_id is not None and r.company_id != req.company_id:
            raise InvalidInput("`report.company_id`: differs from `company_id`")
        now = datetime.now(UTC)
        submitted_at = _aware(req.submitted_at, "submitted_at")
        comment_times = [_aware(c.at, f"comments[{i}].at") for i, c in enumerate(req.comments)]
        async with self.rt.db.transaction() as conn:
            grant = await self.access.member(conn, req.actor, req.convoy_id)
            convoy = grant.convoy
            if convoy["status"] == "completed":
                raise Conflict("the convoy is completed and read-only")
            company = await repo.imports.company_row(conn, req.company_id)
            if company is None or company["convoy_id"] != req.convoy_id or not company["active"]:
                raise NotFound("no such company in this convoy")
            existing = await repo.imports.report_id_for_cycle(conn, req.company_id, req.cycle_index)
            if existing is not None:
                return await self._answer(conn, grant, existing, created=False)

            cycle = cycle_of(convoy, req.cycle_index)
            if cycle.closes_at > now:
                raise InvalidInput(
                    f"`cycle_index`: cycle {req.cycle_index} has not closed; its reports are posted by the company"
                )
            if not cycle.opens_at <= submitted_at < cycle.closes_at:
                raise InvalidInput(
                    f"`submitted_at`: cycle {req.cycle_index} ran from {cycle.opens_at.isoformat()}"
                    f" to {cycle.closes_at.isoformat()}"
                )
            author = await self._person(conn, req.author_id, req.convoy_id, "author_id")
            if not author.represents(req.company_id):
                raise InvalidInput("`author_id`: not a representative of this company")
            await check_report_refs(conn, req.company_id, req.cycle_index, r)
            for i, (c, at) in enumerate(zip(req.comments, comment_times, strict=True)):
                if not submitted_at <= at <= now:
                    raise InvalidInput(f"`comments[{i}].at`: between the report's submitted_at and now")
                await self._person(conn, c.author_id, req.convoy_id, f"comments[{i}].author_id")
            if len(set(req.kudos_by)) != len(req.kudos_by):
                raise InvalidInput("`kudos_by`: each person at most once")
            for i, person_id in enumerate(req.kudos_by):
                giver = await self._person(conn, person_id, req.convoy_id, f"kudos_by[{i}]")
                if not giver.companies or giver.represents(req.company_id):
                    raise InvalidInput(f"`kudos_by[{i}]`: kudos come from representatives of other companies")

            report_id = uuid.uuid4()
            written = await repo.reports.insert_report(
                conn,
                report_id=report_id,
                convoy_id=req.convoy_id,
                company_id=req.company_id,
                author_id=req.author_id,
                cycle_index=req.cycle_index,
                late=cycle.is_late(submitted_at),
                r=r,
                ts_config=TS_CONFIG.get(convoy["language"], "simple"),
                submitted_at=submitted_at,
                digest_cycle=req.cycle_index,  # history: its cycle's digest carried it
            )
            await repo.digests.seal_rounds(conn, [req.convoy_id], [req.cycle_index])  # a closed cycle: sealed
            if written is None:  # imported a moment ago by someone else
                existing = await repo.imports.report_id_for_cycle(conn, req.company_id, req.cycle_index)
                assert existing is not None
                return await self._answer(conn, grant, existing, created=False)
            if r.milestones:
                before = await repo.reports.milestones_by_id(conn, [u.milestone_id for u in r.milestones])
                await repo.reports.touch_milestones(conn, report_id, list(r.milestones))
                for u in r.milestones:
                    if before[u.milestone_id]["status"] != u.status:
                        await repo.imports.set_milestone_status_at(conn, u.milestone_id, u.status, submitted_at)
            await repo.reports.insert_commitments(
                conn,
                report_id=report_id,
                convoy_id=req.convoy_id,
                company_id=req.company_id,
                cycle_index=req.cycle_index,
                texts=list(r.commitments),
            )
            await repo.reports.review_commitments(conn, report_id, list(r.commitment_reviews))
            for c, at in sorted(zip(req.comments, comment_times, strict=True), key=lambda pair: pair[1]):
                await repo.imports.insert_comment_at(
                    conn, report_id=report_id, convoy_id=req.convoy_id, author_id=c.author_id, body=c.body, at=at
                )
            if req.kudos_by:
                await repo.imports.give_kudos_at(conn, report_id, list(req.kudos_by), req.convoy_id, submitted_at)
            return await self._answer(conn, grant, report_id, created=True)

    async def _answer(
        self, conn: asyncpg.Connection, grant: Grant, report_id: uuid.UUID, *, created: bool
    ) -> api.ImportedReport:
        [report] = await read_reports(conn, grant, "r.id = $1", [report_id], limit=1)
        return api.ImportedReport(report=report, created=created)
