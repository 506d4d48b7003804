"""Progress reports: post and edit (representatives), timeline, board, search, export (members);
comments, kudos and help offers; moderation (facilitators: hide, restore, lock comments)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, patch, post, put
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, QueryParameter

from convoy_api import conditional, csvout
from convoy_api import examples as ex
from convoy_api.deps import Backend, provide_actor
from schemas import api
from schemas.milestones import Milestones

Actor = NamedDependency[api.Actor]
Services = NamedDependency[Backend]
ConvoyId = FromPath[uuid.UUID]
ReportId = FromPath[uuid.UUID]
CommentId = FromPath[uuid.UUID]

CSV_COLUMNS = (
    "submitted_at",
    "cycle_index",
    "late",
    "company_name",
    "done",
    "next",
    "blockers",
    "help_wanted",
    "help_topic",
    "mood",
    "kudos",
    "comments",
)


class ConvoyReportsController(Controller):
    path = "/api/v1/convoys/{convoy_id:uuid}"
    tags = ["reports"]
    dependencies = {"actor": Provide(provide_actor)}

    @post("/reports", summary="Post my company's report for the current check-in cycle")
    async def submit(self, convoy_id: ConvoyId, data: ex.NewReportFull, actor: Actor, backend: Services) -> api.Report:
        return await backend.call(
            Milestones.REPORT_SUBMIT, api.SubmitReport(actor=actor, convoy_id=convoy_id, report=data)
        )

    @get("/reports", summary="The convoy's reports, newest first (see /timeline for filters and paging)")
    async def list_reports(
        self,
        convoy_id: ConvoyId,
        actor: Actor,
        backend: Services,
        limit: Annotated[int, QueryParameter(ge=1, le=50)] = 50,
    ) -> api.ReportList:
        return await backend.call(
            Milestones.REPORT_LIST, api.ListReports(actor=actor, convoy_id=convoy_id, limit=limit)
        )

    @get("/timeline", summary="Reports newest first, filtered, with a cursor for the next page (ETag: If-None-Match)")
    async def timeline(
        self,
        request: Request[Any, Any, Any],
        convoy_id: ConvoyId,
        actor: Actor,
        backend: Services,
        company_id: Annotated[uuid.UUID | None, QueryParameter()] = None,
        milestone_status: Annotated[
            str | None, QueryParameter(pattern="^(not_started|in_progress|done|blocked)$")
        ] = None,
        help_wanted: Annotated[bool | None, QueryParameter()] = None,
        blockers: Annotated[bool | None, QueryParameter()] = None,
        cursor: Annotated[str | None, QueryParameter(max_length=200)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=50)] = 20,
    ) -> Response[api.TimelinePage]:
        ask = api.Timeline(
            actor=actor,
            convoy_id=convoy_id,
            company_id=company_id,
            milestone_status=milestone_status,  # type: ignore[arg-type]
            help_wanted=help_wanted,
            blockers=blockers,
            cursor=cursor,
            limit=limit,
        )
        params = (company_id, milestone_status, help_wanted, blockers, cursor, limit)
        return await conditional.page(
            request,
            backend.versions,
            "timeline",
            convoy_id,
            actor,
            params,
            lambda: backend.call_with_headers(Milestones.TIMELINE, ask),
        )

    @get(
        "/board",
        summary="Progress board: progress, milestones, participation, streaks, pace per company (ETag: If-None-Match)",
    )
    async def board(
        self, request: Request[Any, Any, Any], convoy_id: ConvoyId, actor: Actor, backend: Services
    ) -> Response[api.Board]:
        ask = api.ConvoyAsk(actor=actor, convoy_id=convoy_id)
        return await conditional.page(
            request,
            backend.versions,
            "board",
            convoy_id,
            actor,
            (),
            lambda: backend.call_with_headers(Milestones.BOARD, ask),
        )

    @get(
        "/search",
        summary="Full-text search over the convoy's reports (German or English by convoy language; ETag)",
    )
    async def search(
        self,
        request: Request[Any, Any, Any],
        convoy_id: ConvoyId,
        actor: Actor,
        backend: Services,
        q: Annotated[str, QueryParameter(min_length=1, max_length=200)],
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
    ) -> Response[api.SearchResults]:
        ask = api.Search(actor=actor, convoy_id=convoy_id, q=q, limit=limit)
        return await conditional.page(
            request,
            backend.versions,
            "search",
            convoy_id,
            actor,
            (q, limit),
            lambda: backend.call_with_headers(Milestones.SEARCH, ask),
        )

    @get("/export.json", summary="All of the convoy's reports as JSON (members)")
    async def export_json(self, convoy_id: ConvoyId, actor: Actor, backend: Services) -> api.Export:
        return api.Export(convoy_id=convoy_id, reports=await _all_reports(backend, actor, convoy_id))

    @get("/export.csv", summary="All of the convoy's reports as CSV (members)", media_type="text/csv")
    async def export_csv(self, convoy_id: ConvoyId, actor: Actor, backend: Services) -> Response[str]:
        reports = await _all_reports(backend, actor, convoy_id)
        return Response(
            csvout.table([CSV_COLUMNS, *([getattr(r, column) for column in CSV_COLUMNS] for r in reports)]),
            media_type="text/csv",  # Litestar adds "; charset=utf-8" to text types
            headers={"Content-Disposition": f'attachment; filename="convoy-{convoy_id}-reports.csv"'},
        )


async def _all_reports(backend: Backend, actor: api.Actor, convoy_id: uuid.UUID) -> list[api.Report]:
    """Every page of the export (the service answers a page per request)."""
    reports: list[api.Report] = []
    cursor: str | None = None
    while True:
        page = await backend.call(Milestones.EXPORT, api.ExportAsk(actor=actor, convoy_id=convoy_id, cursor=cursor))
        reports += page.reports
        cursor = page.next_cursor
        if cursor is None:
            return reports


class ReportController(Controller):
    path = "/api/v1/reports/{report_id:uuid}"
    tags = ["reports"]
    dependencies = {"actor": Provide(provide_actor)}

    @get("/", summary="One report")
    async def read(self, report_id: ReportId, actor: Actor, backend: Services) -> api.Report:
        return await backend.call(Milestones.REPORT_GET, api.GetReport(actor=actor, report_id=report_id))

    @patch("/", summary="Edit my company's report until its cycle closes (the previous version is kept)")
    async def edit(self, report_id: ReportId, data: ex.ReportPatch, actor: Actor, backend: Services) -> api.Report:
        return await backend.call(Milestones.REPORT_EDIT, api.EditReport(actor=actor, report_id=report_id, patch=data))

    @get("/comments", summary="Comments on a report, answers nested one level")
    async def comments(self, report_id: ReportId, actor: Actor, backend: Services) -> api.Comments:
        return await backend.call(Milestones.COMMENT_LIST, api.ReportAction(actor=actor, report_id=report_id))

    @post("/comments", summary="Comment on a report, or answer a comment")
    async def comment(self, report_id: ReportId, data: ex.NewComment, actor: Actor, backend: Services) -> api.Comment:
        return await backend.call(
            Milestones.COMMENT_ADD, api.AddComment(actor=actor, report_id=report_id, comment=data)
        )

    @put("/kudos", summary="Give kudos (once per person; peers only)")
    async def give_kudos(self, report_id: ReportId, actor: Actor, backend: Services) -> api.Report:
        return await backend.call(Milestones.KUDOS_GIVE, api.ReportAction(actor=actor, report_id=report_id))

    @delete("/kudos", summary="Take my kudos back", status_code=200)
    async def take_back_kudos(self, report_id: ReportId, actor: Actor, backend: Services) -> api.Report:
        return await backend.call(Milestones.KUDOS_TAKE_BACK, api.ReportAction(actor=actor, report_id=report_id))

    @post("/help-offers", summary='"I can help": tells the asker')
    async def offer_help(
        self, report_id: ReportId, data: ex.NewHelpOffer, actor: Actor, backend: Services
    ) -> api.HelpOffer:
        return await backend.call(Milestones.HELP_OFFER, api.OfferHelp(actor=actor, report_id=report_id, offer=data))

    @get("/help-suggestions", summary="Peers who already completed the milestone the help request is about")
    async def help_suggestions(self, report_id: ReportId, actor: Actor, backend: Services) -> api.HelpSuggestions:
        return await backend.call(Milestones.HELP_SUGGESTIONS, api.ReportAction(actor=actor, report_id=report_id))

    # --- moderation (the convoy's facilitators and admins) --------------------------------------
    @post("/hide", summary="Hide the report from the convoy's members, with a reason (facilitators)", status_code=200)
    async def hide(self, report_id: ReportId, data: ex.Hide, actor: Actor, backend: Services) -> api.Report:
        return await backend.call(
            Milestones.REPORT_HIDE, api.ModerateReport(actor=actor, report_id=report_id, reason=data.reason)
        )

    @post("/restore", summary="Show a hidden report again (facilitators)", status_code=200)
    async def restore(
        self, report_id: ReportId, data: ex.ModerationNote, actor: Actor, backend: Services
    ) -> api.Report:
        return await backend.call(
            Milestones.REPORT_RESTORE, api.ModerateReport(actor=actor, report_id=report_id, reason=data.reason)
        )

    @put("/comment-lock", summary="Lock the report's comments: members can no longer comment (facilitators)")
    async def lock_comments(
        self, report_id: ReportId, data: ex.CommentLock, actor: Actor, backend: Services
    ) -> api.Report:
        return await backend.call(
            Milestones.REPORT_LOCK_COMMENTS,
            api.LockComments(actor=actor, report_id=report_id, locked=True, reason=data.reason),
        )

    @delete("/comment-lock", summary="Unlock the report's comments (facilitators)", status_code=200)
    async def unlock_comments(
        self,
        report_id: ReportId,
        actor: Actor,
        backend: Services,
        reason: Annotated[str, QueryParameter(max_length=500)] = "",
    ) -> api.Report:
        return await backend.call(
            Milestones.REPORT_LOCK_COMMENTS,
            api.LockComments(actor=actor, report_id=report_id, locked=False, reason=reason),
        )


class CommentController(Controller):
    """One comment: its author edits or deletes it within the edit window; the convoy's facilitators and
    admins hide and restore it."""

    path = "/api/v1/comments/{comment_id:uuid}"
    tags = ["reports"]
    dependencies = {"actor": Provide(provide_actor)}

    @patch(
        "/",
        summary="Edit my comment (its author only, within CONVOY_COMMENT_EDIT_WINDOW_S of posting; shown as edited)",
    )
    async def edit(self, comment_id: CommentId, data: ex.CommentText, actor: Actor, backend: Services) -> api.Comment:
        return await backend.call(
            Milestones.COMMENT_EDIT, api.EditComment(actor=actor, comment_id=comment_id, edit=data)
        )

    @delete(
        "/",
        summary="Delete my comment (its author only, within the edit window); answers keep a placeholder",
        status_code=200,
    )
    async def remove(self, comment_id: CommentId, actor: Actor, backend: Services) -> api.Comment:
        return await backend.call(Milestones.COMMENT_DELETE, api.CommentAction(actor=actor, comment_id=comment_id))

    @post(
        "/hide", summary="Hide a comment (and its answers) from members, with a reason (facilitators)", status_code=200
    )
    async def hide(self, comment_id: CommentId, data: ex.Hide, actor: Actor, backend: Services) -> api.Comment:
        return await backend.call(
            Milestones.COMMENT_HIDE, api.ModerateComment(actor=actor, comment_id=comment_id, reason=data.reason)
        )

    @post("/restore", summary="Show a hidden comment again (facilitators)", status_code=200)
    async def restore(
        self, comment_id: CommentId, data: ex.ModerationNote, actor: Actor, backend: Services
    ) -> api.Comment:
        return await backend.call(
            Milestones.COMMENT_RESTORE, api.ModerateComment(actor=actor, comment_id=comment_id, reason=data.reason)
        )
