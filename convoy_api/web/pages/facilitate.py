"""The facilitator's pages: create and edit a convoy, companies and invitations, join requests,
Slack and Teams, the schedule (skip, away, prompt now, close now), the audit log and the overview."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath
from litestar.response import Redirect, Template

from convoy_api.web import audit, i18n
from convoy_api.web.core import Page, field_error, provide_page, service_error
from convoy_api.web.pages.checklist import formation_steps, ready_to_activate
from schemas import api
from schemas.convoys import Convoys
from schemas.milestones import Milestones
from schemas.reminders import Reminders
from schemas.values import Bundesland, SizeClass
from services.runtime.errors import ConvoyError, Forbidden

PageDep = NamedDependency[Page]
ConvoyId = FromPath[uuid.UUID]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
BUNDESLAENDER = Bundesland.__args__  # type: ignore[attr-defined]
SIZE_CLASSES = SizeClass.__args__  # type: ignore[attr-defined]


def _text(page: Page, *names: str) -> dict[str, str]:
    return {n: str(page.form.get(n, "")).strip() for n in names}


def convoy_values(page: Page) -> dict[str, Any]:
    values: dict[str, Any] = _text(page, "name", "theme", "description", "timezone", "language")
    values["cadence"] = {
        "frequency": str(page.form.get("frequency", "weekly")),
        "weekday": str(page.form.get("weekday", "mon")),
        "local_time": str(page.form.get("local_time", "09:00")),
        "window_hours": str(page.form.get("window_hours", "72")),
    }
    for name in ("start_date", "end_date"):
        values[name] = str(page.form.get(name, "")) or None
    values["open_for_requests"] = bool(page.form.get("open_for_requests"))
    values["share_anonymised_results"] = bool(page.form.get("share_anonymised_results"))
    return values


class FacilitatorPages(Controller):
    dependencies = {"page": Provide(provide_page)}
    include_in_schema = False

    # --- create --------------------------------------------------------------------------------
    @get("/convoys/new")
    async def new(self, page: PageDep) -> Template:
        if not (page.actor.is_facilitator or page.actor.is_admin):
            raise Forbidden("only facilitators create convoys")
        # form_key: a one-time key; convoy.js puts it back when "back" shows the form again after sending it
        return page.render(
            "convoy_form.html", convoy=None, values={}, errors={}, error="", weekdays=WEEKDAYS, form_key=uuid.uuid4()
        )

    @post("/convoys/new", status_code=200)
    async def create(self, page: PageDep) -> Template | Redirect:
        values = convoy_values(page)
        try:  # the form's one-time key: back + resubmit lands on the convoy the first submit created
            form_key: uuid.UUID | None = uuid.UUID(str(page.form.get("form_key", "")))
        except ValueError:
            form_key = None
        try:
            new = msgspec.convert(values, api.NewConvoy, strict=False)
            ask = api.CreateConvoy(actor=page.actor, convoy=new, form_key=form_key)
            convoy = await page.call(Convoys.CONVOY_CREATE, ask)
        except msgspec.ValidationError as exc:
            name, message = field_error(page, exc, values)
            return page.render(
                "convoy_form.html",
                422,
                convoy=None,
                values=values,
                errors={name: message},
                error="",
                weekdays=WEEKDAYS,
                form_key=form_key or uuid.uuid4(),
            )
        except ConvoyError as exc:
            return page.render(
                "convoy_form.html",
                exc.status,
                convoy=None,
                values=values,
                errors={},
                error=service_error(page, exc),
                weekdays=WEEKDAYS,
                form_key=form_key or uuid.uuid4(),
            )
        return page.redirect(f"/convoys/{convoy.id}/manage")

    # --- manage: settings, status, Slack, companies, invitations, join requests --------------------
    @get("/convoys/{convoy_id:uuid}/manage")
    async def manage(self, page: PageDep, convoy_id: ConvoyId) -> Template:
        return await self._manage(page, convoy_id)

    async def _manage(
        self,
        page: Page,
        convoy_id: uuid.UUID,
        errors: dict[str, dict[str, str]] | None = None,
        error: str = "",
        status_code: int = 200,
        notice: str = "",
        values: dict[str, Any] | None = None,
    ) -> Template:
        actor = page.actor
        convoy, requests, chats = await asyncio.gather(
            page.call(Convoys.CONVOY_GET, api.GetConvoy(actor=actor, convoy_id=convoy_id)),
            page.call(Convoys.JOIN_REQUEST_LIST, api.ListJoinRequests(actor=actor, convoy_id=convoy_id)),
            # a system read (no actor): shown only when the join requests above say this is a facilitator
            page.call(Convoys.CONVOY_CHAT_GET, api.GetRecipients(convoy_id=convoy_id)),
            return_exceptions=True,
        )
        if isinstance(convoy, BaseException):
            raise convoy
        if isinstance(requests, BaseException):  # members may read the convoy, not its join requests
            raise requests
        invitations, charter = await asyncio.gather(
            page.call(Convoys.INVITATION_LIST, api.ListInvitations(actor=actor, convoy_id=convoy_id)),
            self._charter(page, convoy),
        )
        steps = formation_steps(convoy, invitations.invitations, charter) if convoy.status == "forming" else []
        return page.render(
            "manage.html",
            status_code,
            convoy=convoy,
            invitations=invitations.invitations,
            steps=steps,
            ready=ready_to_activate(steps),
            now=datetime.now(UTC),
            requests=requests.requests,
            chats={t.channel: t for t in chats.targets} if isinstance(chats, api.ChatTargets) else {},
            errors=errors or {},
            error=error,
            notice=notice,
            values=values or {},
            weekdays=WEEKDAYS,
            bundeslaender=BUNDESLAENDER,
            size_classes=SIZE_CLASSES,
        )

    @staticmethod
    async def _charter(page: Page, convoy: api.Convoy) -> api.Charter | None:
        """The charter, for the checklist of a forming convoy only."""
        if convoy.status != "forming":
            return None
        ask = api.AskConvoy(actor=page.actor, convoy_id=convoy.id)
        return await page.call(Convoys.CHARTER_GET, ask)

    async def _act(
        self,
        page: Page,
        convoy_id: uuid.UUID,
        form: str,
        action: Any,
        notice: str,
        values: dict[str, Any] | None = None,
    ) -> Template | Redirect:
        """Run one facilitator action; show a refusal next to the form it came from."""
        try:
            await action()
        except msgspec.ValidationError as exc:
            name, message = field_error(page, exc, (values or {}).get(form))
            return await self._manage(page, convoy_id, {form: {name: message}}, status_code=422, values=values)
        except ConvoyError as exc:
            if exc.status in (401, 404):
                raise
            return await self._manage(
                page, convoy_id, {form: {"": service_error(page, exc)}}, status_code=exc.status, values=values
            )
        return page.redirect(f"/convoys/{convoy_id}/manage?done={notice}")

    @post("/convoys/{convoy_id:uuid}/manage/settings", status_code=200)
    async def settings(self, page: PageDep, convoy_id: ConvoyId) -> Template | Redirect:
        values = convoy_values(page)

        async def run() -> None:
            patch = msgspec.convert(values, api.ConvoyPatch, strict=False)
            await page.call(Convoys.CONVOY_UPDATE, api.UpdateConvoy(actor=page.actor, convoy_id=convoy_id, patch=patch))

        return await self._act(page, convoy_id, "settings", run, "settings", {"settings": values})

    @post("/convoys/{convoy_id:uuid}/manage/status", status_code=200)
    async def status(self, page: PageDep, convoy_id: ConvoyId) -> Template | Redirect:
        async def run() -> None:
            change = msgspec.convert(_text(page, "status", "reason"), api.StatusChange)
            await page.call(
                Convoys.CONVOY_STATUS, api.ChangeStatus(actor=page.actor, convoy_id=convoy_id, change=change)
            )

        return await self._act(page, convoy_id, "status", run, "status")

    @post("/convoys/{convoy_id:uuid}/manage/slack", status_code=200)
    async def slack(self, page: PageDep, convoy_id: ConvoyId) -> Template | Redirect:
        return await self._set_chat(page, convoy_id, "slack")

    @post("/convoys/{convoy_id:uuid}/manage/teams", status_code=200)
    async def teams(self, page: PageDep, convoy_id: ConvoyId) -> Template | Redirect:
        return await self._set_chat(page, convoy_id, "teams")

    async def _set_chat(self, page: Page, convoy_id: uuid.UUID, channel: api.ChatChannelName) -> Template | Redirect:
        async def run() -> None:
            url = str(page.form.get("webhook_url", "")).strip() or None
            hook = api.ChatWebhook(webhook_url=url, post_reports=bool(page.form.get("post_reports")))
            await page.call(
                Convoys.CONVOY_CHAT_SET, api.SetChat(actor=page.actor, convoy_id=convoy_id, channel=channel, hook=hook)
            )

        return await self._act(page, convoy_id, channel, run, channel)

    @post("/convoys/{convoy_id:uuid}/manage/companies", status_code=200)
    async def add_company(self, page: PageDep, convoy_id: ConvoyId) -> Template | Redirect:
        values = _text(page, "name", "sector", "size_class", "region")

        async def run() -> None:
            company = msgspec.convert(values, api.NewCompany)
            await page.call(Convoys.COMPANY_ADD, api.AddCompany(actor=page.actor, convoy_id=convoy_id, company=company))

        return await self._act(page, convoy_id, "company", run, "company", {"company": values})

    @post("/convoys/{convoy_id:uuid}/manage/companies/{company_id:uuid}/invite", status_code=200)
    async def invite(self, page: PageDep, convoy_id: ConvoyId, company_id: FromPath[uuid.UUID]) -> Template | Redirect:
        values = _text(page, "email", "name", "language")

        async def run() -> None:
            invitation = msgspec.convert(values, api.NewInvitation)
            ask = api.CreateInvitation(
                actor=page.actor, convoy_id=convoy_id, company_id=company_id, invitation=invitation
            )
            await page.call(Convoys.INVITATION_CREATE, ask)

        return await self._act(
            page, convoy_id, f"invite-{company_id}", run, "invited", {f"invite-{company_id}": values}
        )

    @post("/convoys/{convoy_id:uuid}/manage/companies/{company_id:uuid}/remove", status_code=200)
    async def remove_company(
        self, page: PageDep, convoy_id: ConvoyId, company_id: FromPath[uuid.UUID]
    ) -> Template | Redirect:
        async def run() -> None:
            removal = msgspec.convert(_text(page, "reason"), api.Removal)
            ask = api.RemoveCompany(actor=page.actor, convoy_id=convoy_id, company_id=company_id, removal=removal)
            await page.call(Convoys.COMPANY_REMOVE, ask)

        return await self._act(page, convoy_id, f"remove-{company_id}", run, "removed")

    @post("/convoys/{convoy_id:uuid}/manage/observers", status_code=200)
    async def invite_observer(self, page: PageDep, convoy_id: ConvoyId) -> Template | Redirect:
        values = _text(page, "email", "name", "note", "language")

        async def run() -> None:
            invitation = msgspec.convert(values, api.NewObserverInvitation)
            ask = api.InviteObserver(actor=page.actor, convoy_id=convoy_id, invitation=invitation)
            await page.call(Convoys.OBSERVER_INVITE, ask)

        return await self._act(page, convoy_id, "observer", run, "invited", {"observer": values})

    @post("/convoys/{convoy_id:uuid}/manage/observers/{person_id:uuid}/remove", status_code=200)
    async def remove_observer(
        self, page: PageDep, convoy_id: ConvoyId, person_id: FromPath[uuid.UUID]
    ) -> Template | Redirect:
        async def run() -> None:
            removal = msgspec.convert(_text(page, "reason"), api.Removal)
            ask = api.RemoveObserver(actor=page.actor, convoy_id=convoy_id, person_id=person_id, removal=removal)
            await page.call(Convoys.OBSERVER_REMOVE, ask)

        return await self._act(page, convoy_id, f"observer-remove-{person_id}", run, "removed")

    @post("/convoys/{convoy_id:uuid}/manage/invitations/{invitation_id:uuid}/resend", status_code=200)
    async def resend(
        self, page: PageDep, convoy_id: ConvoyId, invitation_id: FromPath[uuid.UUID]
    ) -> Template | Redirect:
        async def run() -> None:
            ask = api.InvitationAction(actor=page.actor, convoy_id=convoy_id, invitation_id=invitation_id)
            await page.call(Convoys.INVITATION_RESEND, ask)

        return await self._act(page, convoy_id, f"invitation-{invitation_id}", run, "resent")

    @post("/convoys/{convoy_id:uuid}/manage/invitations/{invitation_id:uuid}/withdraw", status_code=200)
    async def withdraw(
        self, page: PageDep, convoy_id: ConvoyId, invitation_id: FromPath[uuid.UUID]
    ) -> Template | Redirect:
        async def run() -> None:
            ask = api.InvitationAction(actor=page.actor, convoy_id=convoy_id, invitation_id=invitation_id)
            await page.call(Convoys.INVITATION_WITHDRAW, ask)

        return await self._act(page, convoy_id, f"invitation-{invitation_id}", run, "withdrawn")

    @post("/convoys/{convoy_id:uuid}/manage/join-requests/{request_id:uuid}", status_code=200)
    async def decide(self, page: PageDep, convoy_id: ConvoyId, request_id: FromPath[uuid.UUID]) -> Template | Redirect:
        async def run() -> None:
            decision = api.JoinDecision(
                approve=page.form.get("approve") == "1", reason=str(page.form.get("reason", "")).strip()
            )
            ask = api.DecideJoinRequest(actor=page.actor, convoy_id=convoy_id, request_id=request_id, decision=decision)
            await page.call(Convoys.JOIN_REQUEST_DECIDE, ask)

        return await self._act(page, convoy_id, f"request-{request_id}", run, "decided")

    # --- schedule ------------------------------------------------------------------------------
    @get("/convoys/{convoy_id:uuid}/schedule")
    async def schedule(self, page: PageDep, convoy_id: ConvoyId) -> Template:
        return await self._schedule(page, convoy_id)

    async def _schedule(
        self, page: Page, convoy_id: uuid.UUID, error: str = "", status_code: int = 200, notice: str = ""
    ) -> Template:
        actor = page.actor
        convoy, schedule = await asyncio.gather(
            page.call(Convoys.CONVOY_GET, api.GetConvoy(actor=actor, convoy_id=convoy_id)),
            page.call(Reminders.SCHEDULE, api.AskSchedule(actor=actor, convoy_id=convoy_id, upcoming=8)),
        )
        return page.render(
            "schedule.html",
            status_code,
            convoy=convoy,
            schedule=schedule,
            error=error,
            notice=notice,
            facilitates=page.facilitates(convoy_id),
            mine=page.membership(convoy_id),
            bundeslaender=BUNDESLAENDER,
        )

    async def _fire(self, page: Page, convoy_id: uuid.UUID, action: Any, notice: str) -> Template | Redirect:
        try:
            await action()
        except msgspec.ValidationError as exc:
            return await self._schedule(page, convoy_id, field_error(page, exc)[1], 422)
        except ConvoyError as exc:
            if exc.status in (401, 404):
                raise
            return await self._schedule(page, convoy_id, service_error(page, exc), exc.status)
        return page.redirect(f"/convoys/{convoy_id}/schedule?done={notice}")

    # Opening or closing a round sends email to every company at once: a page asks first.
    @get("/convoys/{convoy_id:uuid}/schedule/prompt-now")
    async def confirm_prompt_now(self, page: PageDep, convoy_id: ConvoyId) -> Template:
        return await self._confirm(page, convoy_id, "prompt-now")

    @get("/convoys/{convoy_id:uuid}/schedule/close-now")
    async def confirm_close_now(self, page: PageDep, convoy_id: ConvoyId) -> Template:
        return await self._confirm(page, convoy_id, "close-now")

    async def _confirm(self, page: Page, convoy_id: uuid.UUID, action: str) -> Template:
        actor = page.actor
        convoy, schedule = await asyncio.gather(
            page.call(Convoys.CONVOY_GET, api.GetConvoy(actor=actor, convoy_id=convoy_id)),
            page.call(Reminders.SCHEDULE, api.AskSchedule(actor=actor, convoy_id=convoy_id, upcoming=2)),
        )
        if not page.facilitates(convoy_id):
            raise Forbidden("only the convoy's facilitators may do this")
        current = next((c for c in schedule.cycles if not c.closed and not c.skipped), None)
        return page.render("schedule_confirm.html", convoy=convoy, action=action, cycle=current)

    @post("/convoys/{convoy_id:uuid}/schedule/prompt-now", status_code=200)
    async def prompt_now(self, page: PageDep, convoy_id: ConvoyId) -> Template | Redirect:
        if page.form.get("confirm") != "yes":  # an old form or a stray submit: ask first
            return page.redirect(f"/convoys/{convoy_id}/schedule/prompt-now")

        async def run() -> None:
            await page.call(Reminders.PROMPT_NOW, api.FireNow(actor=page.actor, convoy_id=convoy_id))

        return await self._fire(page, convoy_id, run, "prompted")

    @post("/convoys/{convoy_id:uuid}/schedule/close-now", status_code=200)
    async def close_now(self, page: PageDep, convoy_id: ConvoyId) -> Template | Redirect:
        if page.form.get("confirm") != "yes":
            return page.redirect(f"/convoys/{convoy_id}/schedule/close-now")

        async def run() -> None:
            await page.call(Reminders.CLOSE_NOW, api.FireNow(actor=page.actor, convoy_id=convoy_id))

        return await self._fire(page, convoy_id, run, "closed")

    @post("/convoys/{convoy_id:uuid}/schedule/cycles/{cycle_index:int}/skip", status_code=200)
    async def skip(self, page: PageDep, convoy_id: ConvoyId, cycle_index: FromPath[int]) -> Template | Redirect:
        async def run() -> None:
            skip = msgspec.convert(_text(page, "reason"), api.CycleSkip)
            ask = api.SkipCycle(actor=page.actor, convoy_id=convoy_id, cycle_index=cycle_index, skip=skip)
            await page.call(Reminders.CYCLE_SKIP, ask)

        return await self._fire(page, convoy_id, run, "skipped")

    @post("/convoys/{convoy_id:uuid}/schedule/away", status_code=200)
    async def away(self, page: PageDep, convoy_id: ConvoyId) -> Template | Redirect:
        async def run() -> None:
            values = _text(page, "company_id", "from_date", "until_date", "reason")
            away = msgspec.convert({k: values[k] for k in ("from_date", "until_date", "reason")}, api.NewAway)
            ask = api.MarkAway(
                actor=page.actor, convoy_id=convoy_id, company_id=uuid.UUID(values["company_id"]), away=away
            )
            await page.call(Reminders.COMPANY_AWAY, ask)

        return await self._fire(page, convoy_id, run, "away")

    @post("/convoys/{convoy_id:uuid}/schedule/settings", status_code=200)
    async def schedule_settings(self, page: PageDep, convoy_id: ConvoyId) -> Template | Redirect:
        async def run() -> None:
            offsets = [x.strip() for x in str(page.form.get("nudge_offsets_hours", "")).split(",") if x.strip()]
            raw = {**_text(page, "holiday_region", "holiday_policy"), "nudge_offsets_hours": offsets}
            settings = msgspec.convert(raw, api.ScheduleSettings, strict=False)
            ask = api.PutScheduleSettings(actor=page.actor, convoy_id=convoy_id, settings=settings)
            await page.call(Reminders.SCHEDULE_SETTINGS, ask)

        return await self._fire(page, convoy_id, run, "settings")

    # --- audit log and overview ------------------------------------------------------------------
    @get("/convoys/{convoy_id:uuid}/audit")
    async def audit(self, page: PageDep, convoy_id: ConvoyId) -> Template:
        actor = page.actor
        convoy, log = await asyncio.gather(
            page.call(Convoys.CONVOY_GET, api.GetConvoy(actor=actor, convoy_id=convoy_id)),
            page.call(Convoys.AUDIT_LIST, api.ListAudit(actor=actor, convoy_id=convoy_id, limit=200)),
        )
        people = audit.people_of(convoy)
        gettext = i18n.gettext_for(page.lang)
        rows = [{"at": e.at, **audit.describe(gettext, e, people)} for e in log.entries]
        return page.render("audit.html", convoy=convoy, entries=rows)

    @get("/facilitate")
    async def overview(self, page: PageDep) -> Template:
        """Participation and health across the convoys this person facilitates, in one request."""
        mine = [c for c in (page.me.convoys if page.me else []) if c.role == "facilitator"]
        if not mine and not page.actor.is_facilitator:
            raise Forbidden("only facilitators have an overview")
        health = await page.call(
            Milestones.FACILITATOR_DIGEST,
            api.FacilitatorDigestAsk(convoy_ids=[c.convoy_id for c in mine][:500], at=datetime.now(UTC)),
        )
        return page.render("overview.html", convoys=mine, health={h.convoy_id: h for h in health.convoys})
