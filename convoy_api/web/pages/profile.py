"""Profile, notification preferences, the calendar feed and personal API tokens."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import msgspec
from litestar import Controller, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath
from litestar.response import Redirect, Template

from convoy_api.calendar.controllers import create_feed, subscribe_links
from convoy_api.deps import SESSION_COOKIE
from convoy_api.web.core import Page, field_error, provide_page, service_error
from schemas import api
from schemas.convoys import Convoys
from schemas.notifier import Notifier
from services.runtime.errors import ConvoyError

PageDep = NamedDependency[Page]
KINDS = (
    "report",
    "feedback",
    "reply",
    "help_offered",
    "prompt",
    "nudge",
    "facilitator_digest",
    "help_requested",
    "facilitator_cycle",
)


class ProfilePages(Controller):
    path = "/profile"
    dependencies = {"page": Provide(provide_page)}
    include_in_schema = False

    @get("/")
    async def show(self, page: PageDep) -> Template:
        return await self._show(page)

    async def _show(
        self,
        page: Page,
        errors: dict[str, dict[str, str]] | None = None,
        status_code: int = 200,
        created: str = "",
        notice: str = "",
        calendar: api.CalendarSubscription | None = None,
    ) -> Template:
        actor = page.actor
        prefs, tokens, feed = await asyncio.gather(
            page.call(Notifier.PREFS_GET, api.PrefsAsk(actor=actor)),
            page.call(Convoys.API_TOKEN_LIST, api.Ask(actor=actor)),
            page.call(Convoys.CALENDAR_GET, api.Ask(actor=actor)),
        )
        return page.render(
            "profile.html",
            status_code,
            prefs=prefs,
            tokens=tokens.tokens,
            token_days=page.backend.settings.api_token_days,
            token_max_days=page.backend.settings.api_token_max_days,
            kinds=KINDS,
            errors=errors or {},
            created=created,
            notice=notice,
            feed=calendar.feed if calendar else feed,
            calendar=calendar,
            subscribe=subscribe_links(calendar.url, calendar.webcal_url, "Convoy") if calendar else {},
        )

    async def _guard(self, page: Page, form: str, action: Any) -> Template | None:
        try:
            await action()
        except msgspec.ValidationError as exc:
            name, message = field_error(page, exc)
            return await self._show(page, {form: {name: message}}, 422)
        except ConvoyError as exc:
            if exc.status in (401, 404):
                raise
            return await self._show(page, {form: {"": service_error(page, exc)}}, exc.status)
        return None

    @post("/", status_code=200)
    async def update(self, page: PageDep) -> Template | Redirect:
        async def run() -> None:
            values = {k: str(page.form.get(k, "")).strip() for k in ("name", "language", "timezone")}
            patch = msgspec.convert(values, api.ProfilePatch)
            await page.call(Convoys.ME_UPDATE, api.UpdateMe(actor=page.actor, patch=patch))

        failed = await self._guard(page, "profile", run)
        return failed or page.redirect("/profile?done=profile")

    @post("/notifications", status_code=200)
    async def notifications(self, page: PageDep) -> Template | Redirect:
        async def run() -> None:
            prefs = api.NotificationPrefs(
                email=bool(page.form.get("email")),
                digest=bool(page.form.get("digest")),
                immediate={kind: bool(page.form.get(f"immediate_{kind}")) for kind in KINDS},  # type: ignore[misc]
            )
            await page.call(Notifier.PREFS_PUT, api.PutPrefs(actor=page.actor, prefs=prefs))

        failed = await self._guard(page, "prefs", run)
        return failed or page.redirect("/profile?done=notifications")

    @post("/tokens", status_code=200)
    async def create_token(self, page: PageDep) -> Template:
        created: list[api.ApiTokenCreated] = []

        async def run() -> None:
            days = str(page.form.get("expires_in_days", "")).strip()
            values: dict[str, object] = {
                "name": str(page.form.get("name", "")).strip(),
                "scope": str(page.form.get("scope", "read-write")),
                "expires_in_days": int(days) if days.isdigit() else (days or None),
            }
            request = msgspec.convert(values, api.NewApiToken)
            ask = api.CreateApiToken(actor=page.actor, request=request)
            created.append(await page.call(Convoys.API_TOKEN_CREATE, ask))

        failed = await self._guard(page, "token", run)
        return failed or await self._show(page, created=created[0].secret)

    @post("/calendar", status_code=200)
    async def create_calendar(self, page: PageDep) -> Template:
        """Create the calendar feed, or give it a new address (the old one stops working): shown this once."""
        created: list[api.CalendarSubscription] = []

        async def run() -> None:
            created.append(await create_feed(page.backend, page.actor))

        failed = await self._guard(page, "calendar", run)
        return failed or await self._show(page, calendar=created[0])

    @post("/calendar/revoke", status_code=200)
    async def revoke_calendar(self, page: PageDep) -> Template | Redirect:
        async def run() -> None:
            try:
                await page.call(Convoys.CALENDAR_REVOKE, api.Ask(actor=page.actor))
            except ConvoyError as exc:
                if exc.status != 404:  # already off: nothing to do
                    raise

        failed = await self._guard(page, "calendar", run)
        return failed or page.redirect("/profile?done=calendar#calendar")

    @post("/delete", status_code=200)
    async def delete_account(self, page: PageDep) -> Template | Redirect:
        """Erase my account in every service (after an explicit confirmation); signs out."""
        if not page.form.get("understood"):
            return await self._show(page, {"delete": {"": page._("Please confirm that you understand this.")}}, 422)
        ask = api.EraseMe(actor=page.actor, confirm="DELETE")
        await page.call(Convoys.ME_ERASE, ask)
        token = page.request.cookies.get(SESSION_COOKIE)
        if token:
            page.backend.forget(token)
        page.cookies.append(Cookie(key=SESSION_COOKIE, value="", max_age=0, path="/", httponly=True))
        return page.redirect("/sign-in?deleted=1")

    @post("/tokens/{token_id:uuid}/revoke", status_code=200)
    async def revoke(self, page: PageDep, token_id: FromPath[uuid.UUID]) -> Template | Redirect:
        async def run() -> None:
            await page.call(Convoys.API_TOKEN_REVOKE, api.RevokeApiToken(actor=page.actor, token_id=token_id))

        failed = await self._guard(page, "token", run)
        return failed or page.redirect("/profile?done=revoked")
