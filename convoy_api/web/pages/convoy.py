"""The representative's pages: dashboard, convoy (timeline, board, search), report, comments, kudos, report form.

Each page asks the services it needs once, in parallel (``asyncio.gather``), never once per item.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template

from convoy_api.web.core import SEEN_COOKIE, Page, field_error, now, provide_page, service_error
from convoy_api.web.pages.checklist import Step, formation_steps
from schemas import api
from schemas.convoys import Convoys
from schemas.milestones import Milestones
from schemas.reminders import Reminders
from services.runtime import markdown
from services.runtime.errors import ConvoyError, NotFound

PageDep = NamedDependency[Page]
ConvoyId = FromPath[uuid.UUID]
ReportId = FromPath[uuid.UUID]
DASHBOARD_CONVOYS = 8
"""The dashboard details this many convoys (asked in parallel); the rest are listed by name."""
STATUSES = ("not_started", "in_progress", "done", "blocked")
CHART_CYCLES = 8
FORM_REPORTS = 10
"""The report form looks this many of our reports back for commitments not reviewed yet."""


def names_of(convoy: api.Convoy) -> dict[uuid.UUID, str]:
    names = {f.person_id: f.name for f in convoy.facilitators}
    for company in convoy.companies:
        names.update({r.person_id: r.name for r in company.representatives})
    return names


def open_cycle(schedule: api.Schedule | None, now: datetime | None = None) -> api.ScheduledCycle | None:
    """The cycle a company should report in now, or the next one to open (one whose time is over
    but that the scheduler has not closed yet, e.g. while the convoy was paused, is neither)."""
    for cycle in schedule.cycles if schedule else []:
        if not cycle.closed and not cycle.skipped and (now is None or cycle.closes_at > now):
            return cycle
    return None


@dataclass(frozen=True)
class RoundState:
    """Where a company stands in the round, for the call to report (dashboard card, convoy page).

    ``kind``: "open" (check-in open, nothing sent yet) · "sent" (sent, editable until ``until``) ·
    "in_digest" (the round closed and its digest carried the report) · "closed" (the round closed
    without a report from us; one now is late and goes out with the next digest) · "" (between rounds).
    """

    kind: str
    cycle: api.ScheduledCycle | None = None
    report: api.Report | None = None
    until: datetime | None = None


def round_state(schedule: api.Schedule | None, latest: api.Report | None, now: datetime) -> RoundState:
    """The state of the company's report in the round in play (see docs/architecture.md "One boundary")."""
    if schedule is None:
        return RoundState("")
    cycle = open_cycle(schedule, now)
    ours = latest is not None and cycle is not None and latest.cycle_index == cycle.cycle_index
    if cycle is not None and (cycle.opened or ours):  # sent already, though the prompt has not gone out yet
        if latest is not None and ours:
            if latest.digest_cycle is None and latest.editable_until and latest.editable_until > now:
                return RoundState("sent", cycle, latest, latest.editable_until)
            return RoundState("in_digest", cycle, latest)
        return RoundState("open", cycle)
    # Between rounds: the last one closed (on schedule or early by "close now"), the next not open yet.
    closed = [
        c for c in schedule.cycles if c.closed and c.opened and (cycle is None or c.cycle_index < cycle.cycle_index)
    ]
    if not closed:
        return RoundState("", cycle)
    last = closed[-1]
    if latest is not None and latest.cycle_index == last.cycle_index:
        if latest.digest_cycle is None and latest.editable_until and latest.editable_until > now:
            return RoundState("sent", last, latest, latest.editable_until)  # a late addendum
        return RoundState("in_digest", last, latest)
    if now < last.closes_at:  # still this round's time: a report now is late, in the next digest
        return RoundState("closed", last)
    return RoundState("", cycle)


def cycle_charts(board: api.Board, reports: list[api.Report]) -> dict[str, Any]:
    """Participation and mood per cycle, for the last cycles, from the latest reports."""
    if board.cycle_index is None or not board.companies:
        return {"cycles": []}
    first = max(0, board.cycle_index - CHART_CYCLES + 1)
    reported: dict[int, set[uuid.UUID]] = defaultdict(set)
    moods: dict[int, list[int]] = defaultdict(list)
    for r in reports:
        reported[r.cycle_index].add(r.company_id)
        if r.mood is not None:
            moods[r.cycle_index].append(r.mood)
    rows = []
    for index in range(first, board.cycle_index + 1):
        mood = moods.get(index)
        rows.append(
            {
                "index": index,
                "participation": len(reported.get(index, ())) / len(board.companies),
                "mood": sum(mood) / len(mood) if mood else None,
            }
        )
    return {"cycles": rows}


async def forming_steps(page: Page, convoy: api.Convoy) -> list[Step]:
    """The checklist of a forming convoy, for its facilitators (two more requests, only while forming)."""
    ask = api.AskConvoy(actor=page.actor, convoy_id=convoy.id)
    invitations, charter = await asyncio.gather(
        page.call(Convoys.INVITATION_LIST, api.ListInvitations(actor=page.actor, convoy_id=convoy.id)),
        page.call(Convoys.CHARTER_GET, ask),
    )
    return formation_steps(convoy, invitations.invitations, charter)


_SLOT = re.compile(r"(comment|reply|edit|delete|hide)-[0-9a-f-]{36}")
_WITHIN = re.compile(r"within (\d+) minutes")


def form_slot(page: Page, default: str) -> str:
    """Which comment form was sent (its error slot is ``err-<slot>``); only our own shape is taken."""
    sent = str(page.form.get("slot", ""))
    return sent if _SLOT.fullmatch(sent) else default


def comment_error(page: Page, exc: ConvoyError) -> str:
    """A refusal of a comment action, in the person's language."""
    if exc.status == 409 and "locked" in exc.message:
        return page._("The facilitators have locked the comments on this report.")
    if exc.status == 409 and (within := _WITHIN.search(exc.message)):
        return page._("A comment can be changed only within %(minutes)s minutes of posting.", minutes=within[1])
    if exc.status == 409 and "hidden" in exc.message:
        return page._("The facilitators have hidden this comment.")
    if exc.status == 403 and "only its author" in exc.message:
        return page._("Only its author may change a comment; facilitators hide it instead.")
    return service_error(page, exc)


class ConvoyPages(Controller):
    dependencies = {"page": Provide(provide_page)}
    include_in_schema = False

    # --- dashboard -------------------------------------------------------------------------------
    @get("/")
    async def dashboard(self, page: PageDep) -> Template | Redirect:
        if page.me is None:
            return Redirect("/sign-in", status_code=303)
        if unaccepted := next((c for c in page.me.convoys if not c.charter_accepted), None):
            return Redirect(f"/convoys/{unaccepted.convoy_id}/charter", status_code=303)  # a changed charter first
        actor = page.actor
        seen_raw = page.request.cookies.get(SEEN_COOKIE, "")
        try:
            seen = datetime.fromisoformat(seen_raw) if seen_raw else None
        except ValueError:
            seen = None
        detailed = page.me.convoys[:DASHBOARD_CONVOYS]
        now = datetime.now(UTC)

        async def details(mine: api.MyConvoy) -> dict[str, Any]:
            asks: list[Any] = [
                page.call(Reminders.SCHEDULE, api.AskSchedule(actor=actor, convoy_id=mine.convoy_id)),
                page.call(Milestones.TIMELINE, api.Timeline(actor=actor, convoy_id=mine.convoy_id, limit=10)),
            ]
            if mine.company_id is not None:
                ask = api.CompanyAction(actor=actor, convoy_id=mine.convoy_id, company_id=mine.company_id)
                asks.append(page.call(Milestones.PROJECT_GET, ask))
                ours = api.Timeline(actor=actor, convoy_id=mine.convoy_id, company_id=mine.company_id, limit=1)
                asks.append(page.call(Milestones.TIMELINE, ours))
            got = await asyncio.gather(*asks, return_exceptions=True)
            schedule = got[0] if isinstance(got[0], api.Schedule) else None
            timeline = (
                got[1] if isinstance(got[1], api.TimelinePage) else api.TimelinePage(reports=[], next_cursor=None)
            )
            project = got[2] if len(got) > 2 and isinstance(got[2], api.Project) else None
            ours_page = got[3] if len(got) > 3 and isinstance(got[3], api.TimelinePage) else None
            latest = ours_page.reports[0] if ours_page and ours_page.reports else None
            new = [
                r
                for r in timeline.reports
                if (seen is None or r.submitted_at > seen) and r.company_id != mine.company_id
            ]
            return {
                "mine": mine,
                "cycle": open_cycle(schedule, now),
                "state": round_state(schedule, latest, now),
                "project": project,
                "new": new,
                # A new member's first step: their company has no project yet (the project page starts one).
                "first_step": mine.role == "representative"
                and mine.company_id is not None
                and len(got) > 2
                and isinstance(got[2], NotFound),
            }

        cards = await asyncio.gather(*(details(m) for m in detailed))
        page.cookies.append(
            Cookie(
                key=SEEN_COOKIE,
                value=datetime.now(UTC).isoformat(),
                max_age=365 * 86400,
                path="/",
                httponly=True,
                samesite="lax",
            )
        )
        return page.render("dashboard.html", cards=cards, more=page.me.convoys[DASHBOARD_CONVOYS:], seen=seen, now=now)

    # --- a convoy --------------------------------------------------------------------------------
    @get("/convoys/{convoy_id:uuid}")
    async def convoy(
        self,
        page: PageDep,
        convoy_id: ConvoyId,
        company_id: Annotated[uuid.UUID | None, QueryParameter()] = None,
        milestone_status: Annotated[str | None, QueryParameter()] = None,
        help_wanted: Annotated[bool | None, QueryParameter()] = None,
        blockers: Annotated[bool | None, QueryParameter()] = None,
        cursor: Annotated[str | None, QueryParameter(max_length=200)] = None,
    ) -> Template:
        actor = page.actor
        status = milestone_status if milestone_status in STATUSES else None
        timeline_ask = api.Timeline(
            actor=actor,
            convoy_id=convoy_id,
            company_id=company_id,
            milestone_status=status,  # type: ignore[arg-type]
            help_wanted=help_wanted or None,
            blockers=blockers or None,
            cursor=cursor,
            limit=20,
        )
        if page.request.headers.get("hx-request") and cursor:  # "more": the next page of the timeline only
            convoy, timeline = await asyncio.gather(
                page.call(Convoys.CONVOY_GET, api.GetConvoy(actor=actor, convoy_id=convoy_id)),
                page.call(Milestones.TIMELINE, timeline_ask),
            )
            return page.render(
                "_timeline.html", convoy=convoy, timeline=timeline, names=names_of(convoy), filters=timeline_ask
            )
        mine = page.membership(convoy_id)
        convoy, timeline, board, recent, state = await asyncio.gather(
            page.call(Convoys.CONVOY_GET, api.GetConvoy(actor=actor, convoy_id=convoy_id)),
            page.call(Milestones.TIMELINE, timeline_ask),
            page.call(Milestones.BOARD, api.ConvoyAsk(actor=actor, convoy_id=convoy_id)),
            page.call(Milestones.REPORT_LIST, api.ListReports(actor=actor, convoy_id=convoy_id, limit=50)),
            self._our_round(page, convoy_id, mine),
        )
        facilitates = page.facilitates(convoy_id)
        steps = await forming_steps(page, convoy) if facilitates and convoy.status == "forming" else []
        return page.render(
            "convoy.html",
            convoy=convoy,
            steps=steps,
            timeline=timeline,
            board=board,
            charts=cycle_charts(board, recent.reports),
            names=names_of(convoy),
            filters=timeline_ask,
            mine=mine,
            state=state,
            facilitates=facilitates,
        )

    async def _our_round(self, page: Page, convoy_id: uuid.UUID, mine: api.MyConvoy | None) -> RoundState:
        """Our company's state in the round in play (two asks in parallel; none for non-representatives)."""
        if mine is None or mine.company_id is None:
            return RoundState("")
        actor = page.actor
        schedule, ours = await asyncio.gather(
            page.call(Reminders.SCHEDULE, api.AskSchedule(actor=actor, convoy_id=convoy_id)),
            page.call(
                Milestones.TIMELINE, api.Timeline(actor=actor, convoy_id=convoy_id, company_id=mine.company_id, limit=1)
            ),
            return_exceptions=True,
        )
        latest = ours.reports[0] if isinstance(ours, api.TimelinePage) and ours.reports else None
        return round_state(schedule if isinstance(schedule, api.Schedule) else None, latest, datetime.now(UTC))

    @get("/convoys/{convoy_id:uuid}/search")
    async def search(
        self, page: PageDep, convoy_id: ConvoyId, q: Annotated[str, QueryParameter(max_length=200)] = ""
    ) -> Template:
        actor = page.actor
        convoy = await page.call(Convoys.CONVOY_GET, api.GetConvoy(actor=actor, convoy_id=convoy_id))
        hits: list[api.SearchHit] = []
        if q.strip():
            found = await page.call(Milestones.SEARCH, api.Search(actor=actor, convoy_id=convoy_id, q=q.strip()))
            hits = found.hits
        return page.render("search.html", convoy=convoy, q=q, hits=hits)

    # --- one report, comments and kudos -----------------------------------------------------------
    @get("/reports/{report_id:uuid}")
    async def report(self, page: PageDep, report_id: ReportId) -> Template:
        return await self._report_page(page, report_id)

    async def _report_page(
        self,
        page: Page,
        report_id: uuid.UUID,
        error: str = "",
        status_code: int = 200,
        help_error: str = "",
        comment_error: str = "",
        error_for: str = "",
        text: str = "",
    ) -> Template:
        actor = page.actor
        report, comments = await asyncio.gather(
            page.call(Milestones.REPORT_GET, api.GetReport(actor=actor, report_id=report_id)),
            page.call(Milestones.COMMENT_LIST, api.ReportAction(actor=actor, report_id=report_id)),
        )
        convoy = await page.call(Convoys.CONVOY_GET, api.GetConvoy(actor=actor, convoy_id=report.convoy_id))
        return page.render(
            "report.html",
            status_code,
            convoy=convoy,
            report=report,
            comments=comments.comments,
            names=names_of(convoy),
            facilitates=page.facilitates(convoy.id),
            open_comments=True,
            now=now(),
            error=comment_error,
            error_for=error_for,
            text=text,
            moderation_error=error,
            help_error=help_error,
        )

    @get("/reports/{report_id:uuid}/comments")
    async def comments(self, page: PageDep, report_id: ReportId) -> Template:
        return await self._comments(page, report_id)

    async def _comments(self, page: Page, report_id: uuid.UUID) -> Template:
        """The thread as a fragment, with the report's comment counter out of band (htmx)."""
        actor = page.actor
        report, comments = await asyncio.gather(
            page.call(Milestones.REPORT_GET, api.GetReport(actor=actor, report_id=report_id)),
            page.call(Milestones.COMMENT_LIST, api.ReportAction(actor=actor, report_id=report_id)),
        )
        convoy = await page.call(Convoys.CONVOY_GET, api.GetConvoy(actor=actor, convoy_id=report.convoy_id))
        return page.render(
            "_comments.html",
            report=report,
            comments=comments.comments,
            names=names_of(convoy),
            facilitates=page.facilitates(convoy.id),
            now=now(),
            oob_count=True,
            error="",
        )

    async def _comment_failed(
        self, page: Page, report_id: uuid.UUID, slot: str, message: str, status: int, text: str = ""
    ) -> Template:
        """A comment form's error in the person's language: with htmx into the form's own error slot (the
        typed text stays where it is), without it the report page with the form open and the text kept."""
        if page.request.headers.get("hx-request"):
            answer = page.render("_comment_error.html", status, message=message)
            answer.headers.update({"HX-Retarget": f"#err-{slot}", "HX-Reswap": "innerHTML"})
            return answer
        return await self._report_page(
            page, report_id, status_code=status, comment_error=message, error_for=slot, text=text
        )

    @post("/reports/{report_id:uuid}/comments", status_code=200)
    async def comment(self, page: PageDep, report_id: ReportId) -> Template | Redirect:
        text = str(page.form.get("body", "")).strip()
        values = {"body": text}
        if parent := str(page.form.get("parent_id", "")):
            values["parent_id"] = parent
        slot = form_slot(page, f"comment-{report_id}")
        try:
            new = msgspec.convert(values, api.NewComment)
            await page.call(Milestones.COMMENT_ADD, api.AddComment(actor=page.actor, report_id=report_id, comment=new))
        except msgspec.ValidationError as exc:
            return await self._comment_failed(page, report_id, slot, field_error(page, exc, values)[1], 422, text)
        except ConvoyError as exc:
            if exc.status in (401, 404):
                raise
            return await self._comment_failed(page, report_id, slot, comment_error(page, exc), exc.status, text)
        if page.request.headers.get("hx-request"):
            return await self._comments(page, report_id)
        return page.redirect(f"/reports/{report_id}")

    @post("/reports/{report_id:uuid}/kudos", status_code=200)
    async def kudos(self, page: PageDep, report_id: ReportId) -> Template | Redirect:
        actor = page.actor
        ask = api.ReportAction(actor=actor, report_id=report_id)
        error = ""
        try:
            if page.form.get("take_back"):
                report = await page.call(Milestones.KUDOS_TAKE_BACK, ask)
            else:
                report = await page.call(Milestones.KUDOS_GIVE, ask)
        except ConvoyError as exc:
            if exc.status in (401, 404):
                raise
            error = service_error(page, exc)
            report = await page.call(Milestones.REPORT_GET, api.GetReport(actor=actor, report_id=report_id))
        if page.request.headers.get("hx-request"):
            return page.render("_kudos.html", report=report, error=error)
        return page.redirect(f"/reports/{report_id}")

    @post("/reports/{report_id:uuid}/help", status_code=200)
    async def offer_help(self, page: PageDep, report_id: ReportId) -> Template | Redirect:
        """ "I can help" (the report email links here): the report's author hears of it by email."""
        values = {"message": str(page.form.get("message", "")).strip()}
        try:
            offer = msgspec.convert(values, api.NewHelpOffer)
            await page.call(Milestones.HELP_OFFER, api.OfferHelp(actor=page.actor, report_id=report_id, offer=offer))
        except msgspec.ValidationError as exc:
            return await self._report_page(
                page, report_id, status_code=422, help_error=field_error(page, exc, values)[1]
            )
        except ConvoyError as exc:
            if exc.status in (401, 404):
                raise
            return await self._report_page(page, report_id, status_code=exc.status, help_error=service_error(page, exc))
        return page.redirect(f"/reports/{report_id}?offered=1#help")

    # --- moderation (facilitators; the service checks it) -------------------------------------------
    async def _moderate(self, page: Page, report_id: uuid.UUID, action: Any) -> Template | Redirect:
        try:
            await action()
        except msgspec.ValidationError as exc:
            return await self._report_page(page, report_id, field_error(page, exc, {"reason": ""})[1], 422)
        except ConvoyError as exc:
            if exc.status in (401, 404):
                raise
            return await self._report_page(page, report_id, service_error(page, exc), exc.status)
        return page.redirect(f"/reports/{report_id}")

    @post("/comments/{comment_id:uuid}/{action:str}", status_code=200)
    async def comment_action(
        self, page: PageDep, comment_id: FromPath[uuid.UUID], action: FromPath[str]
    ) -> Template | Redirect:
        """One comment: anyone who may comment answers it, its author edits or deletes it (within the window),
        facilitators hide or restore it."""
        if action not in ("reply", "hide", "restore", "edit", "delete"):
            raise NotFound("no such action")
        try:
            report_id = uuid.UUID(str(page.form.get("report_id", "")))
        except ValueError as exc:
            raise NotFound("no such report") from exc
        slot = form_slot(page, f"{'hide' if action in ('hide', 'restore') else action}-{comment_id}")
        text = str(page.form.get("body", "")).strip()
        reason = str(page.form.get("reason", "")).strip()[:500]
        try:
            if action == "reply":  # answers go one level deep: the form names the first comment of the thread
                values = {"body": text, "parent_id": str(page.form.get("parent_id", "")) or str(comment_id)}
                new = msgspec.convert(values, api.NewComment)
                added = api.AddComment(actor=page.actor, report_id=report_id, comment=new)
                await page.call(Milestones.COMMENT_ADD, added)
            elif action == "edit":
                edit = msgspec.convert({"body": text}, api.CommentText)
                await page.call(
                    Milestones.COMMENT_EDIT, api.EditComment(actor=page.actor, comment_id=comment_id, edit=edit)
                )
            elif action == "delete":
                await page.call(Milestones.COMMENT_DELETE, api.CommentAction(actor=page.actor, comment_id=comment_id))
            else:
                if action == "hide" and not reason:
                    message = page._("Please give a reason: its author is told.")
                    return await self._comment_failed(page, report_id, slot, message, 422)
                ask = api.ModerateComment(actor=page.actor, comment_id=comment_id, reason=reason)
                await page.call(Milestones.COMMENT_HIDE if action == "hide" else Milestones.COMMENT_RESTORE, ask)
        except msgspec.ValidationError as exc:
            message = field_error(page, exc, {"body": text})[1]
            return await self._comment_failed(page, report_id, slot, message, 422, text)
        except ConvoyError as exc:
            if exc.status in (401, 404):
                raise
            return await self._comment_failed(page, report_id, slot, comment_error(page, exc), exc.status, text)
        if page.request.headers.get("hx-request"):
            return await self._comments(page, report_id)
        return page.redirect(f"/reports/{report_id}")

    @post("/reports/{report_id:uuid}/{action:str}", status_code=200)
    async def moderate_report(self, page: PageDep, report_id: ReportId, action: FromPath[str]) -> Template | Redirect:
        reason = str(page.form.get("reason", "")).strip()[:500]
        actor = page.actor

        async def run() -> None:
            if action == "hide":
                msgspec.convert({"reason": reason}, api.Hide)
                await page.call(
                    Milestones.REPORT_HIDE, api.ModerateReport(actor=actor, report_id=report_id, reason=reason)
                )
            elif action == "restore":
                await page.call(
                    Milestones.REPORT_RESTORE, api.ModerateReport(actor=actor, report_id=report_id, reason=reason)
                )
            elif action in ("lock", "unlock"):
                ask = api.LockComments(actor=actor, report_id=report_id, locked=action == "lock", reason=reason)
                await page.call(Milestones.REPORT_LOCK_COMMENTS, ask)
            else:
                raise NotFound("no such action")

        return await self._moderate(page, report_id, run)

    # --- the report form -------------------------------------------------------------------------
    @get("/convoys/{convoy_id:uuid}/report")
    async def report_form(self, page: PageDep, convoy_id: ConvoyId) -> Template:
        return await self._form(page, convoy_id, {}, {}, "")

    async def _form(
        self,
        page: Page,
        convoy_id: uuid.UUID,
        values: dict[str, Any],
        errors: dict[str, str],
        error: str,
        status_code: int = 200,
    ) -> Template:
        mine, company_id = page.representing(convoy_id)
        actor = page.actor
        convoy, project, ours, board = await asyncio.gather(
            page.call(Convoys.CONVOY_GET, api.GetConvoy(actor=actor, convoy_id=convoy_id)),
            page.call(
                Milestones.PROJECT_GET, api.CompanyAction(actor=actor, convoy_id=convoy_id, company_id=company_id)
            ),
            page.call(
                Milestones.TIMELINE,
                api.Timeline(actor=actor, convoy_id=convoy_id, company_id=company_id, limit=FORM_REPORTS),
            ),
            page.call(Milestones.BOARD, api.ConvoyAsk(actor=actor, convoy_id=convoy_id)),
            return_exceptions=True,
        )
        if isinstance(convoy, BaseException):
            raise convoy
        index = (board.cycle_index or 0) if isinstance(board, api.Board) else 0
        reports = ours.reports if isinstance(ours, api.TimelinePage) else []
        current = reports[0] if reports and reports[0].cycle_index == index else None
        # Last rounds' commitments to review: still open, oldest first; in edit mode with those this
        # report reviewed (their outcome preselected).
        to_review = (list(current.reviews) if current else []) + [
            c for r in reversed(reports) if r.cycle_index < index for c in r.commitments if c.outcome is None
        ]
        if not values and current is not None:
            values = {
                "done": current.done,
                "next": current.next,
                "blockers": current.blockers,
                "help_wanted": current.help_wanted,
                "help_topic": current.help_topic,
                "mood": current.mood,
                "facilitator_note": current.facilitator_note or "",
                "commitments": [c.text for c in current.commitments],
                "reviews": {str(c.id): {"outcome": c.outcome, "note": c.note} for c in current.reviews},
            }
        closed = current is not None and (
            current.digest_cycle is not None or not current.editable_until or current.editable_until <= now()
        )
        return page.render(
            "report_form.html",
            status_code,
            convoy=convoy,
            mine=mine,
            project=project if isinstance(project, api.Project) else None,
            current=current,
            closed=closed,
            to_review=to_review,
            cycle_index=board.cycle_index if isinstance(board, api.Board) else None,
            values=values,
            errors=errors,
            error=error,
            statuses=STATUSES,
        )

    @post("/convoys/{convoy_id:uuid}/report", status_code=200)
    async def submit(self, page: PageDep, convoy_id: ConvoyId) -> Template | Redirect:
        _, company_id = page.representing(convoy_id)
        form = page.form
        values: dict[str, Any] = {k: str(form.get(k, "")).strip() for k in ("done", "next", "blockers", "help_topic")}
        values["help_wanted"] = bool(form.get("help_wanted"))
        values["facilitator_note"] = str(form.get("facilitator_note", "")).strip()
        values["commitments"] = [line.strip() for line in str(form.get("commitments", "")).splitlines() if line.strip()]
        values["reviews"] = {
            key.removeprefix("review_"): {
                "outcome": str(form.get(key)),
                "note": str(form.get("review_note_" + key.removeprefix("review_"), "")).strip(),
            }
            for key in dict.fromkeys(form)
            if key.startswith("review_")
            and not key.startswith("review_note_")
            and str(form.get(key)) in ("done", "partly", "not_yet")
        }
        mood = str(form.get("mood", ""))
        values["mood"] = int(mood) if mood in {"1", "2", "3", "4", "5"} else None
        changed = [
            {"milestone_id": key[3:], "status": str(form.get(key))}
            for key in form
            if key.startswith("ms_")
            and str(form.get(key)) in STATUSES
            and str(form.get(key)) != str(form.get("was_" + key[3:], ""))
        ]
        report_id = str(form.get("report_id", ""))
        body = {k: v for k, v in values.items() if k != "reviews"}
        body["commitment_reviews"] = [
            {"commitment_id": cid, "outcome": r["outcome"], "note": r["note"]} for cid, r in values["reviews"].items()
        ]
        try:
            if report_id:
                patch = msgspec.convert(body, api.ReportPatch)
                await page.call(
                    Milestones.REPORT_EDIT,
                    api.EditReport(actor=page.actor, report_id=uuid.UUID(report_id), patch=patch),
                )
                for change in changed:
                    ms_patch = msgspec.convert({"status": change["status"]}, api.MilestonePatch)
                    await page.call(
                        Milestones.MILESTONE_CHANGE,
                        api.ChangeMilestone(
                            actor=page.actor, milestone_id=uuid.UUID(change["milestone_id"]), patch=ms_patch
                        ),
                    )
            else:
                new = msgspec.convert({**body, "company_id": str(company_id), "milestones": changed}, api.NewReport)
                await page.call(
                    Milestones.REPORT_SUBMIT, api.SubmitReport(actor=page.actor, convoy_id=convoy_id, report=new)
                )
        except msgspec.ValidationError as exc:
            name, message = field_error(page, exc, values)
            return await self._form(page, convoy_id, values, {name: message}, "", 422)
        except (ValueError, ConvoyError) as exc:
            if isinstance(exc, ConvoyError) and exc.status == 401:
                raise
            message = service_error(page, exc) if isinstance(exc, ConvoyError) else page._("Please check this value.")
            return await self._form(page, convoy_id, values, {}, message, getattr(exc, "status", 400))
        return page.redirect(f"/convoys/{convoy_id}?saved=1")

    @post("/preview", status_code=200)
    async def preview(self, page: PageDep) -> Template:
        """Markdown preview of the report form's text, rendered and sanitized like the saved report."""
        page.actor  # noqa: B018 — signed-in people only
        text = str(page.form.get("done", "") or page.form.get("text", ""))[:20000]
        return page.render("_preview.html", html=markdown.render(text))
