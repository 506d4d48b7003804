"""Operation handlers of services/milestones: projects, milestones, reports, comments, kudos, help.

Who may do what is decided in services/milestones/access.py (every handler asks it for a grant
first); the SQL is in services/milestones/repository/; the digests the notifier and services/reminders
ask for are in services/milestones/digests.py.
"""

from __future__ import annotations

import base64
import contextlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import msgspec

from schemas import api
from schemas import events as ev
from schemas.milestones import Milestones
from schemas.values import Cadence
from services.milestones import catalogue as cat
from services.milestones import privacy, versions
from services.milestones import repository as repo
from services.milestones.access import Access, Grant
from services.runtime import cycles, markdown, rpc
from services.runtime.db import struct, structs
from services.runtime.errors import Conflict, Forbidden, InvalidInput, NotFound
from services.runtime.service import Runtime

_cadence = msgspec.json.Decoder(Cadence)
TS_CONFIG = {"de": "german", "en": "english"}
OUTCOME_SCORE = {"done": 1.0, "partly": 0.5, "not_yet": 0.0}


def cadence_of(convoy: asyncpg.Record) -> Cadence:
    raw = convoy["cadence"]
    return _cadence.decode(raw.encode() if isinstance(raw, str) else raw)


def current_cycle(convoy: asyncpg.Record, at: datetime) -> cycles.Cycle | None:
    return cycles.cycle_at(cadence_of(convoy), convoy["timezone"], convoy["start_date"], at)


def editable_until(convoy: asyncpg.Record, cycle_index: int, digest_cycle: int | None) -> datetime | None:
    """When a report's edits end unless a digest carries it first (``edit_report``'s rule); None once carried."""
    if digest_cycle is not None:
        return None
    try:
        return cycles.cycle_by_index(
            cadence_of(convoy), convoy["timezone"], convoy["start_date"], cycle_index
        ).closes_at
    except (ValueError, OverflowError):  # a cycle outside the calendar (history brought in by SQL): not editable
        return None


def encode_cursor(submitted_at: datetime, report_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{submitted_at.isoformat()}|{report_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        stamp, report_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(stamp), uuid.UUID(report_id)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("`cursor`: not a cursor this API gave out") from exc


VERSION_HEADER = "Convoy-Version"
"""The convoy's change counter (``convoy_versions``) as read before a page: the API's ETags."""
FRESH_UNTIL_HEADER = "Convoy-Fresh-Until"
"""Unix seconds when a page changes by the clock alone (the board: a new cycle, a new local day)."""


async def announce_version(conn: asyncpg.Connection, convoy_id: uuid.UUID) -> None:
    """Tell the API which version of the convoy the page is read at. Read *before* the page: a change that
    commits in between makes the page newer than its version, never older, so the next revalidation
    answers the page again instead of a 304 for what was missed."""
    rpc.set_reply_header(VERSION_HEADER, str(await repo.versions.version(conn, convoy_id)))


class MilestonesService:
    def __init__(self, rt: Runtime, access: Access) -> None:
        self.rt = rt
        self.access = access
        self.edit_window = timedelta(seconds=rt.settings.comment_edit_window_s)

    # --- projects and milestones ---------------------------------------------------------------
    @Milestones.PROJECT_PUT
    async def put_project(self, req: api.PutProject) -> api.Project:
        p = req.project
        ladder = None
        if p.project_type is not None:
            ladder = cat.project_type(p.project_type)
            if ladder is None:
                known = ", ".join(t.key for t in cat.catalogue().project_types)
                raise InvalidInput(f"`project_type`: unknown type {p.project_type!r} (one of {known})")
        async with self.rt.db.transaction() as conn:
            grant = await self.access.member(conn, req.actor, req.convoy_id)
            grant.writes_for(req.company_id, "describe its project")
            project = await repo.projects.upsert_project(conn, req.convoy_id, req.company_id, p)
            if ladder is not None and await repo.projects.count_milestones(conn, project["id"]) == 0:
                german = grant.convoy["language"] == "de"
                for rung in ladder.rungs:
                    await repo.projects.insert_milestone(
                        conn,
                        project,
                        title=rung.title_de if german else rung.title_en,
                        target_date=None,
                        weight=rung.weight,
                        catalogue_key=rung.key,
                    )
            return await self._project(conn, project)

    @Milestones.PROJECT_GET
    async def get_project(self, req: api.CompanyAction) -> api.Project:
        async with self.rt.db.connection() as conn:
            await self.access.member(conn, req.actor, req.convoy_id)
            project = await repo.projects.project(conn, req.company_id)
            if project is None or project["convoy_id"] != req.convoy_id:
                raise NotFound("this company has no project yet")
            return await self._project(conn, project)

    async def _project(self, conn: asyncpg.Connection, project: asyncpg.Record) -> api.Project:
        milestones = await repo.projects.milestones_of(conn, project["id"])
        return struct(project, api.Project, progress=repo.projects.progress(milestones), milestones=milestones)

    @Milestones.MILESTONE_ADD
    async def add_milestone(self, req: api.AddMilestone) -> api.Milestone:
        m = req.milestone
        if m.catalogue_key is not None and cat.rung(m.catalogue_key) is None:
            raise InvalidInput(f"`catalogue_key`: no milestone {m.catalogue_key!r} in the catalogue")
        async with self.rt.db.transaction() as conn:
            grant = await self.access.member(conn, req.actor, req.convoy_id)
            grant.writes_for(req.company_id, "change its milestones")
            project = await repo.projects.project(conn, req.company_id)
            if project is None:
                raise Conflict("describe the project first (PUT …/project)")
            if await repo.projects.count_milestones(conn, project["id"]) >= api.MAX_MILESTONES:
                raise InvalidInput(f"a project has at most {api.MAX_MILESTONES} milestones")
            return await repo.projects.insert_milestone(
                conn, project, title=m.title, target_date=m.target_date, weight=m.weight, catalogue_key=m.catalogue_key
            )

    @Milestones.MILESTONE_CHANGE
    async def change_milestone(self, req: api.ChangeMilestone) -> api.Milestone:
        changes = {k: v for k, v in msgspec.structs.asdict(req.patch).items() if v is not msgspec.UNSET}
        async with self.rt.db.transaction() as conn:
            row = await repo.projects.milestone_row(conn, req.milestone_id, lock=True)
            if row is None:
                raise NotFound("no such milestone")
            grant = await self.access.member(conn, req.actor, row["convoy_id"], not_found="no such milestone")
            grant.writes_for(row["company_id"], "change its milestones")
            if not changes:
                return repo.projects.milestone(row)
            updated = await repo.projects.update_milestone(conn, req.milestone_id, changes)
            return updated

    @Milestones.MILESTONE_ORDER
    async def order_milestones(self, req: api.OrderMilestones) -> api.Project:
        async with self.rt.db.transaction() as conn:
            grant = await self.access.member(conn, req.actor, req.convoy_id)
            grant.writes_for(req.company_id, "change its milestones")
            project = await repo.projects.project(conn, req.company_id)
            if project is None:
                raise NotFound("this company has no project yet")
            current = {m.id for m in await repo.projects.milestones_of(conn, project["id"])}
            wanted = req.order.milestone_ids
            if set(wanted) != current or len(wanted) != len(current):
                raise InvalidInput("`milestone_ids`: list every milestone of the project exactly once")
            await repo.projects.reorder(conn, project["id"], wanted)
            return await self._project(conn, project)

    # --- reports -------------------------------------------------------------------------------
    @Milestones.REPORT_SUBMIT
    async def submit_report(self, req: api.SubmitReport) -> api.Report:
        r = req.report
        now = datetime.now(UTC)
        async with self.rt.db.transaction() as conn:
            grant = await self.access.member(conn, req.actor, req.convoy_id, round_lock=True)
            grant.writes("post reports")
            if not grant.companies:
                raise Forbidden("facilitators do not post reports; a company's representatives do")
            company_id = r.company_id
            if company_id is None:
                if len(grant.companies) > 1:
                    raise InvalidInput("`company_id`: you represent several companies here; say which")
                company_id = grant.companies[0]
            grant.writes_for(company_id, "post its reports")
            membership = await self.access.under_charter(conn, grant, req.actor)
            assert req.actor.person_id is not None
            cycle = current_cycle(grant.convoy, now)
            index = cycle.index if cycle else 0
            if req.cycle_index is not None and req.cycle_index != index:
                raise Conflict("the round this prompt was for is over; please report for the current round in Convoy")
            # After its cycle's seal (the scheduler closed it, also early by "close now") a report
            # is late and goes into the next digest as an addendum (repository.digests.enter_round):
            # the round lock, then (a statement of its own) the seal with everything else the report
            # needs read, then one statement that writes it all with its events (issue #21: a round
            # trip to PostgreSQL is what a report costs most here).
            if not grant.round_locked:  # the common path took it with the membership (one round trip less)
                await repo.digests.lock_round(conn, req.convoy_id)
            ctx = await repo.reports.report_context(
                conn,
                req.convoy_id,
                company_id,
                report_milestone_ids(r),
                index if r.commitment_reviews else None,
            )
            late = (cycle.is_late(now) if cycle else False) or index <= ctx.sealed_through
            refs = validate_report_refs(company_id, r, ctx.milestones, ctx.open_commitments)
            report_id = uuid.uuid4()
            commitment_ids = [uuid.uuid4() for _ in r.commitments]
            company_name = ctx.company_name
            if company_name is None and membership is None:  # the charter check asked nobody: ask now (rare)
                membership = await self.access.membership(req.actor.person_id, req.convoy_id)
            if company_name is None and membership is not None and company_id in membership.company_names:
                # The member is in the projection but not (yet, or no longer) their company: its
                # company.joined may still be on its way. services/convoys just named it.
                company_name = membership.company_names[company_id]
                await repo.projections.ensure_company(conn, company_id, req.convoy_id, company_name)
            report: api.Report | None = None
            events: list[ev.Event] = []
            if company_name is not None:  # the answer and its events are known before the write
                written = {"version": repo.reports.NEW_REPORT_VERSION, "submitted_at": ctx.now, "updated_at": ctx.now}
                report = _written_report(
                    req, report_id, company_id, company_name, index, late, written, refs, commitment_ids
                )
                report.editable_until = editable_until(grant.convoy, index, None)
                events = self._report_events(req, company_id, report)
            fresh = await repo.reports.write_report(
                conn,
                report_id=report_id,
                convoy_id=req.convoy_id,
                company_id=company_id,
                author_id=req.actor.person_id,
                cycle_index=index,
                late=late,
                r=r,
                ts_config=TS_CONFIG.get(grant.convoy["language"], "simple"),
                submitted_at=ctx.now,
                commitment_ids=commitment_ids,
                status_changes=[u for u in r.milestones if refs.milestones[u.milestone_id]["status"] != u.status],
                events=[self.rt.outbox_row(e) for e in events],
                wake_channel=self.rt.wake_channel,
            )
            if not fresh:
                raise Conflict("your company already reported in this cycle; edit that report instead")
            if report is None:  # not known here at all: let the read decide, as before
                report = await read_report(conn, grant, report_id)
                for event in self._report_events(req, company_id, report):
                    await self.rt.emit(conn, event)
            # Built from what was written, not read back (six round trips less): the same answer
            # as GET /reports/{id} gives its author (tests/test_reports.py compares them).
            return report

    def _report_events(self, req: api.SubmitReport, company_id: uuid.UUID, report: api.Report) -> list[ev.Event]:
        """``report.submitted`` (with the peer view of the report) and, if it asks for help, ``help.requested``."""
        assert req.actor.person_id is not None
        events: list[ev.Event] = [
            ev.ReportSubmitted(
                convoy_id=req.convoy_id,
                company_id=company_id,
                report_id=report.id,
                author_id=req.actor.person_id,
                report=msgspec.convert(report, ev.ReportSnapshot, from_attributes=True),  # what peers see
            )
        ]
        if req.report.help_wanted:
            events.append(
                ev.HelpRequested(
                    convoy_id=req.convoy_id,
                    company_id=company_id,
                    report_id=report.id,
                    milestone_id=req.report.help_milestone_id,
                )
            )
        return events

    @Milestones.REPORT_EDIT
    async def edit_report(self, req: api.EditReport) -> api.Report:
        changes = {k: v for k, v in msgspec.structs.asdict(req.patch).items() if v is not msgspec.UNSET}
        now = datetime.now(UTC)
        async with self.rt.db.transaction() as conn:
            row = await repo.reports.report_row(conn, req.report_id, lock=True)
            if row is None:
                raise NotFound("no such report")
            grant = await self.access.member(conn, req.actor, row["convoy_id"], not_found="no such report")
            grant.writes_for(row["company_id"], "edit its reports")
            await self.access.under_charter(conn, grant, req.actor)
            assert req.actor.person_id is not None
            convoy = grant.convoy
            cycle = cycles.cycle_by_index(
                cadence_of(convoy), convoy["timezone"], convoy["start_date"], row["cycle_index"]
            )
            if row["digest_cycle"] is not None or now >= cycle.closes_at:
                raise Conflict(
                    "this report's round has closed and its digest has gone out, so it can no longer be"
                    " edited; add a comment to it instead"
                )
            made = changes.pop("commitments", None)
            reviews = changes.pop("commitment_reviews", None)
            if made is not None:
                await repo.reports.replace_commitments(conn, row, list(made))
            if reviews is not None:
                await repo.reports.unreview_commitments(conn, row["id"])
                open_ = await repo.reports.open_commitments(conn, row["company_id"], row["cycle_index"])
                for i, review in enumerate(reviews):
                    if review.commitment_id not in open_:
                        raise InvalidInput(
                            f"`commitment_reviews[{i}].commitment_id`: not an open commitment of your company"
                        )
                await repo.reports.review_commitments(conn, row["id"], list(reviews))
            if changes or made is not None or reviews is not None:
                await repo.reports.save_version(conn, row, req.actor.person_id)
                await repo.reports.update_report(conn, req.report_id, changes)
            return await read_report(conn, grant, req.report_id)

    @Milestones.REPORT_GET
    async def get_report(self, req: api.GetReport) -> api.Report:
        async with self.rt.db.connection() as conn:
            grant, _ = await self.access.report(conn, req.actor, req.report_id)
            return await read_report(conn, grant, req.report_id)

    @Milestones.FEEDBACK_REPORTS
    async def feedback_reports(self, req: api.FeedbackAsk) -> api.FeedbackReports:
        """What the notifier's feedback flusher needs of the reports of one pass, in one statement (it
        asked ``REPORT_GET`` per batch before: three statements, the whole report rendered)."""
        async with self.rt.db.connection() as conn:
            rows = await repo.reports.feedback_rows(conn, req.report_ids)
        return api.FeedbackReports(reports=structs(rows, api.FeedbackReport))

    @Milestones.REPORT_LIST
    async def list_reports(self, req: api.ListReports) -> api.ReportList:
        page = await self.timeline(api.Timeline(actor=req.actor, convoy_id=req.convoy_id, limit=min(req.limit, 100)))
        return api.ReportList(reports=page.reports)

    @Milestones.TIMELINE
    async def timeline(self, req: api.Timeline) -> api.TimelinePage:
        async with self.rt.db.connection() as conn:
            await announce_version(conn, req.convoy_id)
            grant = await self.access.member(conn, req.actor, req.convoy_id)
            where, args = ["r.convoy_id = $1"], [req.convoy_id]

            def bind(value: Any) -> str:
                args.append(value)
                return f"${len(args)}"

            if not grant.sees_everything:
                where.append("r.hidden_at IS NULL")
            if req.company_id is not None:
                where.append(f"r.company_id = {bind(req.company_id)}")
            if req.help_wanted is not None:
                where.append(f"r.help_wanted = {bind(req.help_wanted)}")
            if req.blockers is not None:
                where.append("r.blockers <> ''" if req.blockers else "r.blockers = ''")
            if req.milestone_status is not None:
                where.append(
                    "EXISTS (SELECT 1 FROM report_milestones rm WHERE rm.report_id = r.id"
                    f" AND rm.status = {bind(req.milestone_status)})"
                )
            if req.cursor is not None:
                stamp, last_id = decode_cursor(req.cursor)
                where.append(f"(r.submitted_at, r.id) < ({bind(stamp)}, {bind(last_id)})")
            reports = await read_reports(
                conn, grant, " AND ".join(where), args, limit=req.limit + 1, order="r.submitted_at DESC, r.id DESC"
            )
        more = len(reports) > req.limit
        reports = reports[: req.limit]
        cursor = encode_cursor(reports[-1].submitted_at, reports[-1].id) if more and reports else None
        return api.TimelinePage(reports=reports, next_cursor=cursor)

    @Milestones.SEARCH
    async def search(self, req: api.Search) -> api.SearchResults:
        async with self.rt.db.connection() as conn:
            await announce_version(conn, req.convoy_id)
            grant = await self.access.member(conn, req.actor, req.convoy_id)
            config = TS_CONFIG.get(grant.convoy["language"], "simple")
            hits = await repo.reports.search(
                conn, req.convoy_id, config, req.q, req.limit, hidden=grant.sees_everything
            )
        return api.SearchResults(hits=hits)

    @Milestones.EXPORT
    async def export(self, req: api.ExportAsk) -> api.Export:
        """One page of the export, oldest first, peer view (no hidden reports, no facilitator notes)."""
        async with self.rt.db.connection() as conn:
            grant = await self.access.member(conn, req.actor, req.convoy_id)
            peer_view = Grant.peer_view(grant.convoy)
            where = "r.convoy_id = $1 AND r.hidden_at IS NULL"
            args: list[Any] = [req.convoy_id]
            if req.cursor is not None:
                stamp, last_id = decode_cursor(req.cursor)
                where += " AND (r.submitted_at, r.id) > ($2, $3)"
                args += [stamp, last_id]
            reports = await read_reports(
                conn, peer_view, where, args, limit=req.limit + 1, order="r.submitted_at, r.id"
            )
        more = len(reports) > req.limit
        reports = reports[: req.limit]
        cursor = encode_cursor(reports[-1].submitted_at, reports[-1].id) if more and reports else None
        return api.Export(convoy_id=req.convoy_id, reports=reports, next_cursor=cursor)

    @Milestones.BOARD
    async def board(self, req: api.ConvoyAsk) -> api.Board:
        now = datetime.now(UTC)
        async with self.rt.db.connection() as conn:
            await announce_version(conn, req.convoy_id)
            grant = await self.access.member(conn, req.actor, req.convoy_id)
            cycle = current_cycle(grant.convoy, now)
            rpc.set_reply_header(FRESH_UNTIL_HEADER, str(int(board_fresh_until(grant.convoy, cycle, now).timestamp())))
            rows = await repo.reports.board_rows(
                conn, req.convoy_id, local_today(grant.convoy, now), cycle.index if cycle else None
            )
        return build_board(req.convoy_id, cycle, rows)

    # --- comments, kudos, help -----------------------------------------------------------------
    @Milestones.COMMENT_ADD
    async def add_comment(self, req: api.AddComment) -> api.Comment:
        async with self.rt.db.transaction() as conn:
            grant, report = await self.access.report(conn, req.actor, req.report_id)
            assert req.actor.person_id is not None or grant.admin
            if req.actor.person_id is None:
                raise Forbidden("the admin token cannot comment; sign in as a person")
            grant.writes("comment")
            if report["comments_locked_at"] is not None and not grant.sees_everything:
                raise Conflict("the convoy's facilitators have locked the comments on this report")
            await self.access.under_charter(conn, grant, req.actor)
            parent_id = req.comment.parent_id
            if parent_id is not None:
                parent = await repo.comments.comment_row(conn, parent_id)
                if (
                    parent is None
                    or parent["report_id"] != req.report_id
                    or (parent["hidden_at"] is not None and not grant.sees_everything)
                ):
                    raise InvalidInput("`parent_id`: not a comment on this report")
                if parent["parent_id"] is not None:
                    raise InvalidInput("`parent_id`: answers go one level deep; answer the first comment")
            row = await repo.comments.insert_comment(
                conn,
                report_id=req.report_id,
                convoy_id=report["convoy_id"],
                parent_id=parent_id,
                author_id=req.actor.person_id,
                body=req.comment.body,
            )
            await self.rt.emit(
                conn,
                ev.CommentAdded(
                    convoy_id=report["convoy_id"],
                    report_id=req.report_id,
                    comment_id=row["id"],
                    author_id=req.actor.person_id,
                    parent_id=parent_id,
                ),
            )
            return comment_view(row, self.edit_window)

    @Milestones.COMMENT_LIST
    async def list_comments(self, req: api.ReportAction) -> api.Comments:
        async with self.rt.db.connection() as conn:
            grant, _ = await self.access.report(conn, req.actor, req.report_id)
            rows = await repo.comments.comments_of(conn, req.report_id, hidden=grant.sees_everything)
            former = await repo.privacy.former_authors(conn, [r["author_id"] for r in rows])
        top: list[api.Comment] = []
        by_id: dict[uuid.UUID, api.Comment] = {}
        for row in rows:
            comment = comment_view(row, self.edit_window)
            by_id[comment.id] = comment
            if row["parent_id"] is None:
                top.append(comment)
            elif row["parent_id"] in by_id:
                by_id[row["parent_id"]].replies.append(comment)
        # Deleted comments: an answer goes; a first comment stays as a placeholder while it has answers.
        for comment in top:
            comment.replies = [a for a in comment.replies if not a.deleted]
        top = [c for c in top if not c.deleted or c.replies]
        privacy.attribute_comments(grant.convoy, former, list(by_id.values()))
        return api.Comments(comments=top)

    async def _own_comment(
        self, conn: asyncpg.Connection, actor: api.Actor, comment_id: uuid.UUID, what: str
    ) -> asyncpg.Record:
        """The actor's own comment, still theirs to change: 404 if they cannot see it, 403 if it is not
        theirs (facilitators hide instead), 409 after the edit window or in a locked thread."""
        row = await repo.comments.comment_for_update(conn, comment_id)
        grant = await self.access.comment(conn, actor, row)
        assert row is not None
        grant.writes(what)
        if actor.person_id is None or row["author_id"] != actor.person_id:
            if grant.sees_everything:
                raise Forbidden(f"only its author may {what}; facilitators hide a comment instead")
            raise Forbidden(f"only its author may {what}")
        if datetime.now(UTC) >= row["created_at"] + self.edit_window:
            minutes = round(self.edit_window.total_seconds() / 60)
            raise Conflict(f"a comment can be changed only within {minutes} minutes of posting")
        if row["comments_locked_at"] is not None and not grant.sees_everything:
            raise Conflict("the convoy's facilitators have locked the comments on this report")
        if row["hidden_at"] is not None:
            raise Conflict("the convoy's facilitators have hidden this comment")
        return row

    @Milestones.COMMENT_EDIT
    async def edit_comment(self, req: api.EditComment) -> api.Comment:
        async with self.rt.db.transaction() as conn:
            row = await self._own_comment(conn, req.actor, req.comment_id, "edit a comment")
            if row["body"] == req.edit.body:
                return comment_view(row, self.edit_window)  # nothing changed: not "edited"
            updated = await repo.comments.edit_comment(conn, req.comment_id, req.edit.body)
            return comment_view(updated, self.edit_window)

    @Milestones.COMMENT_DELETE
    async def delete_comment(self, req: api.CommentAction) -> api.Comment:
        async with self.rt.db.transaction() as conn:
            await self._own_comment(conn, req.actor, req.comment_id, "delete a comment")
            deleted = await repo.comments.delete_comment(conn, req.comment_id)
            return comment_view(deleted, self.edit_window)

    @Milestones.KUDOS_GIVE
    async def give_kudos(self, req: api.ReportAction) -> api.Report:
        async with self.rt.db.transaction() as conn:
            grant, report = await self.access.report(conn, req.actor, req.report_id)
            if req.actor.person_id is None or not grant.companies:
                raise Forbidden("kudos come from the convoy's representatives")
            if grant.represents(report["company_id"]):
                raise Forbidden("kudos are for peers, not for your own company")
            given = ev.KudosGiven(convoy_id=report["convoy_id"], report_id=req.report_id, person_id=req.actor.person_id)
            await repo.comments.give_kudos(
                conn,
                req.report_id,
                req.actor.person_id,
                report["convoy_id"],
                self.rt.outbox_row(given),
                self.rt.wake_channel,
            )
            return await read_report(conn, grant, req.report_id)

    @Milestones.KUDOS_TAKE_BACK
    async def take_back_kudos(self, req: api.ReportAction) -> api.Report:
        async with self.rt.db.transaction() as conn:
            grant, report = await self.access.report(conn, req.actor, req.report_id)
            grant.writes("give kudos")
            if req.actor.person_id is not None:
                taken = ev.KudosTakenBack(
                    convoy_id=report["convoy_id"], report_id=req.report_id, person_id=req.actor.person_id
                )
                await repo.comments.take_back_kudos(
                    conn, req.report_id, req.actor.person_id, self.rt.outbox_row(taken), self.rt.wake_channel
                )
            return await read_report(conn, grant, req.report_id)

    @Milestones.HELP_OFFER
    async def offer_help(self, req: api.OfferHelp) -> api.HelpOffer:
        async with self.rt.db.transaction() as conn:
            grant, report = await self.access.report(conn, req.actor, req.report_id)
            if req.actor.person_id is None or not grant.companies:
                raise Forbidden("help is offered by the convoy's representatives")
            if grant.represents(report["company_id"]):
                raise Forbidden("offer help to other companies; this is your own report")
            if not report["help_wanted"]:
                raise Conflict("this report asks for no help")
            row = await repo.comments.insert_help_offer(
                conn,
                report_id=req.report_id,
                person_id=req.actor.person_id,
                company_id=grant.companies[0],
                message=req.offer.message,
            )
            if row is None:
                raise Conflict("you already offered help on this report")
            await self.rt.emit(
                conn,
                ev.HelpOffered(
                    convoy_id=report["convoy_id"],
                    report_id=req.report_id,
                    offer_id=row["id"],
                    person_id=req.actor.person_id,
                    message=row["message"],
                ),
            )
            return struct(row, api.HelpOffer)

    @Milestones.HELP_SUGGESTIONS
    async def help_suggestions(self, req: api.ReportAction) -> api.HelpSuggestions:
        async with self.rt.db.connection() as conn:
            _, report = await self.access.report(conn, req.actor, req.report_id)
            if not report["help_milestone_id"]:
                return api.HelpSuggestions(companies=[])
            milestone = await repo.projects.milestone_row(conn, report["help_milestone_id"])
            if milestone is None or not milestone["catalogue_key"]:
                return api.HelpSuggestions(companies=[])
            rows = await repo.comments.companies_that_completed(
                conn, report["convoy_id"], milestone["catalogue_key"], report["company_id"]
            )
        return api.HelpSuggestions(companies=[api.PersonRef(person_id=r["company_id"], name=r["name"]) for r in rows])

    @Milestones.ACCESS_REVOKE
    async def revoke_access(self, req: api.RevokeAccess) -> api.Revoked:
        """services/convoys applies a removal here before answering it (issue #19); waits for writes
        in progress that were authorized by the membership, then no read or write finds it."""
        async with self.rt.db.transaction() as conn:
            if req.observer:
                if req.person_id is None:
                    raise InvalidInput("`person_id`: an observer's removal names the observer")
                removed = await repo.projections.revoke_observer(conn, req.convoy_id, req.person_id)
            else:
                if req.company_id is None:
                    raise InvalidInput("`company_id`: a member's or company's removal names the company")
                removed = await repo.projections.revoke(conn, req.convoy_id, req.company_id, req.person_id, req.at)
        await versions.announce_now(self.rt, req.convoy_id)  # no 304 for the removed from this answer on
        return api.Revoked(members=removed)

    @Milestones.CHARTER_SET
    async def set_charter(self, req: api.SetCharterVersion) -> api.Accepted:
        """services/convoys applies a charter change here before answering it: from this answer on, a
        representative who accepted an older version is asked for (Access.under_charter)."""
        async with self.rt.db.transaction() as conn:
            await repo.projections.set_charter_version(conn, req.convoy_id, req.version)
        return api.Accepted(message=f"charter version {req.version}")

    @Milestones.CATALOGUE
    async def catalogue(self, _: api.Empty) -> cat.Catalogue:
        return cat.catalogue()


@dataclass(frozen=True)
class ReportRefs:
    """What a new report names, as read while checking it: milestones by id, open commitments by id."""

    milestones: dict[uuid.UUID, asyncpg.Record]
    open_commitments: dict[uuid.UUID, asyncpg.Record]


def report_milestone_ids(r: api.NewReport) -> list[uuid.UUID]:
    """The milestones a new report names (its updates, and the one it asks help for)."""
    return [u.milestone_id for u in r.milestones] + ([r.help_milestone_id] if r.help_milestone_id else [])


async def check_report_refs(
    conn: asyncpg.Connection, company_id: uuid.UUID, index: int, r: api.NewReport
) -> ReportRefs:
    """Refuse milestones and commitments the report may not name; returns those it names, as read."""
    ids = report_milestone_ids(r)
    known = await repo.reports.milestones_by_id(conn, ids) if ids else {}
    open_ = await repo.reports.open_commitments(conn, company_id, index) if r.commitment_reviews else {}
    return validate_report_refs(company_id, r, known, open_)


def validate_report_refs(
    company_id: uuid.UUID,
    r: api.NewReport,
    known: dict[uuid.UUID, asyncpg.Record],
    open_: dict[uuid.UUID, asyncpg.Record],
) -> ReportRefs:
    """:func:`check_report_refs` on what was read: ``known`` the milestones the report names (by id),
    ``open_`` the company's open commitments of earlier cycles (read when it reviews any)."""
    for i, u in enumerate(r.milestones):
        if u.milestone_id not in known or known[u.milestone_id]["company_id"] != company_id:
            raise InvalidInput(f"`milestones[{i}].milestone_id`: not a milestone of your company's project")
    if len({u.milestone_id for u in r.milestones}) != len(r.milestones):
        raise InvalidInput("`milestones`: each milestone at most once")
    if r.help_milestone_id and (
        r.help_milestone_id not in known or known[r.help_milestone_id]["company_id"] != company_id
    ):
        raise InvalidInput("`help_milestone_id`: not a milestone of your company's project")
    for i, review in enumerate(r.commitment_reviews):
        if review.commitment_id not in open_:
            raise InvalidInput(f"`commitment_reviews[{i}].commitment_id`: not an open commitment of your company")
    return ReportRefs(milestones=known, open_commitments=open_)


async def read_report(conn: asyncpg.Connection, grant: Grant, report_id: uuid.UUID) -> api.Report:
    """One report as the holder of ``grant`` sees it (its access was checked: it exists)."""
    [report] = await read_reports(conn, grant, "r.id = $1", [report_id], limit=1)
    return report


async def read_reports(
    conn: asyncpg.Connection,
    grant: Grant,
    where: str,
    args: list[Any],
    *,
    limit: int,
    order: str = "r.submitted_at DESC, r.id DESC",
) -> list[api.Report]:
    """Reports with everything the holder of ``grant`` sees, in one statement for any number of reports."""
    rows = await repo.reports.report_rows(conn, where, args, order=order, limit=limit)
    language = grant.convoy["language"]
    out = []
    until: dict[tuple[int, int | None], datetime | None] = {}
    for r in rows:
        out.append(
            struct(
                r,  # the columns of the report as they are, then what is derived from them for this reader
                api.Report,
                done_html=markdown.render(r["done"]),
                next_html=markdown.render(r["next"]),
                blockers_html=markdown.render(r["blockers"]),
                milestones=repo.reports.touched_milestones(r),
                commitments=repo.reports.commitments(r, "made"),
                reviews=repo.reports.commitments(r, "reviewed"),
                kudos=len(r["kudos_by"]),
                former_author=privacy.former_author(language, r["company_name"]) if r["author_erased"] else None,
                comments=r["comment_count"],
                hidden=r["hidden_at"] is not None,
                hidden_reason=r["hidden_reason"] if r["hidden_at"] is not None and grant.sees_everything else None,
                comments_locked=r["comments_locked_at"] is not None,
                facilitator_note=r["facilitator_note"] if grant.sees_note(r["company_id"]) else None,
                editable_until=until.setdefault(
                    (r["cycle_index"], r["digest_cycle"]),
                    editable_until(grant.convoy, r["cycle_index"], r["digest_cycle"]),
                ),
            )
        )
    return out


def _written_report(
    req: api.SubmitReport,
    report_id: uuid.UUID,
    company_id: uuid.UUID,
    company_name: str,
    cycle_index: int,
    late: bool,
    written: Mapping[str, Any],
    refs: ReportRefs,
    commitment_ids: list[uuid.UUID],
) -> api.Report:
    """A report just posted, as :meth:`read_reports` would read it back for its author
    in the same transaction: no kudos, comments or hide yet; the author represents the company, so
    the facilitator note is theirs to see; the author is posting, so they are not an erased one."""
    r = req.report
    assert req.actor.person_id is not None
    touched = sorted(r.milestones, key=lambda u: refs.milestones[u.milestone_id]["position"])
    last_review = {c.commitment_id: c for c in r.commitment_reviews}  # reviewed twice: the last one counts
    reviewed = sorted(
        last_review.values(),
        key=lambda c: (
            refs.open_commitments[c.commitment_id]["cycle_index"],
            refs.open_commitments[c.commitment_id]["position"],
        ),
    )
    return api.Report(
        id=report_id,
        convoy_id=req.convoy_id,
        company_id=company_id,
        company_name=company_name,
        author_id=req.actor.person_id,
        cycle_index=cycle_index,
        late=late,
        version=written["version"],
        submitted_at=written["submitted_at"],
        updated_at=written["updated_at"],
        done=r.done,
        done_html=markdown.render(r.done),
        next=r.next,
        next_html=markdown.render(r.next),
        blockers=r.blockers,
        blockers_html=markdown.render(r.blockers),
        help_wanted=r.help_wanted,
        help_topic=r.help_topic,
        help_milestone_id=r.help_milestone_id,
        mood=r.mood,
        milestones=[
            api.TouchedMilestone(
                milestone_id=u.milestone_id, title=refs.milestones[u.milestone_id]["title"], status=u.status
            )
            for u in touched
        ],
        commitments=[
            api.Commitment(id=cid, text=text, outcome=None, note="")
            for cid, text in zip(commitment_ids, r.commitments, strict=True)
        ],
        reviews=[
            api.Commitment(
                id=c.commitment_id,
                text=refs.open_commitments[c.commitment_id]["text"],
                outcome=c.outcome,
                note=c.note,
            )
            for c in reviewed
        ],
        facilitator_note=r.facilitator_note,
    )


def comment_view(row: asyncpg.Record, edit_window: timedelta | None = None) -> api.Comment:
    deleted = row["deleted_at"] is not None
    return struct(
        row,
        api.Comment,
        body_html=markdown.render(row["body"]) if not deleted else "",
        # Hidden comments reach facilitators and admins only (members' reads leave them out).
        hidden=row["hidden_at"] is not None,
        hidden_reason=row["hidden_reason"] if row["hidden_at"] is not None else None,
        edited=row["edited_at"] is not None and not deleted,
        deleted=deleted,
        editable_until=row["created_at"] + edit_window if edit_window and not deleted else None,
    )


def board_fresh_until(convoy: asyncpg.Record, cycle: cycles.Cycle | None, now: datetime) -> datetime:
    """The first moment the board may change without a write: the cycle's due time or close (a new cycle),
    the first check-in (before it), the next local midnight (pace and streaks count days)."""
    zone = ZoneInfo(convoy["timezone"])
    tomorrow = local_today(convoy, now) + timedelta(days=1)
    edges = [datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=zone).astimezone(UTC)]
    if cycle is not None:
        edges += [t for t in (cycle.due_at, cycle.closes_at) if t > now]
    else:
        with contextlib.suppress(ValueError, OverflowError):
            edges.append(cycles.check_in(cadence_of(convoy), convoy["timezone"], convoy["start_date"], 0))
    return min((t for t in edges if t > now), default=now)


def local_today(convoy: asyncpg.Record, now: datetime) -> date:
    return now.astimezone(ZoneInfo(convoy["timezone"])).date()


def build_board(convoy_id: uuid.UUID, cycle: cycles.Cycle | None, rows: list[asyncpg.Record]) -> api.Board:
    """The progress board from :func:`repository.reports.board_rows` (a row per company): pure arithmetic."""
    cycles_so_far = cycle.index + 1 if cycle else 0
    companies = []
    for c in rows:
        ladder = cat.project_type(c["project_type"]) if c["project_type"] else None
        done_keys = set(c["done_keys"])
        reviewed = c["kept_done"] + c["kept_partly"] + c["kept_not_yet"]
        kept = (
            c["kept_done"] * OUTCOME_SCORE["done"]
            + c["kept_partly"] * OUTCOME_SCORE["partly"]
            + c["kept_not_yet"] * OUTCOME_SCORE["not_yet"]
        )
        companies.append(
            api.CompanyProgress(
                company_id=c["company_id"],
                name=c["name"],
                project_title=c["title"],
                project_type=c["project_type"],
                progress=round(c["weight_done"] / c["weight_total"], 4) if c["weight_total"] else 0.0,
                milestones_done=c["milestones_done"],
                milestones_due=c["milestones_due"],
                milestones_total=c["milestones_total"],
                reports=c["reports"],
                participation=round(min(c["reports"] / cycles_so_far, 1.0), 4) if cycles_so_far else 0.0,
                streak=c["streak"],
                missed=(cycle.index - c["reported_closed"]) if cycle else 0,
                commitments_kept=round(kept / reviewed, 4) if reviewed else None,
                rung=sum(1 for r in ladder.rungs if r.key in done_keys) if ladder else None,
                rungs=len(ladder.rungs) if ladder else None,
            )
        )
    n = len(companies)
    return api.Board(
        convoy_id=convoy_id,
        cycle_index=cycle.index if cycle else None,
        cycles=cycles_so_far,
        progress=round(sum(c.progress for c in companies) / n, 4) if n else 0.0,
        participation=round(sum(c.participation for c in companies) / n, 4) if n else 0.0,
        companies=companies,
    )


def cycle_of(convoy: asyncpg.Record, index: int) -> cycles.Cycle:
    try:
        return cycles.cycle_by_index(cadence_of(convoy), convoy["timezone"], convoy["start_date"], index)
    except (ValueError, OverflowError) as exc:  # an index beyond the calendar (year 9999)
        raise InvalidInput(f"`cycle_index`: this convoy has no cycle {index}") from exc
