"""Flags, the moderation queue and the convoy charter, as pages.

Members flag a report or comment from its page; the convoy's facilitators work through the queue
(dismiss, or act: hide with a reason, which tells the author); representatives accept the charter
(again, when a facilitator changed it: the dashboard sends them here first).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template

from convoy_api.web.core import Page, field_error, provide_page, service_error
from convoy_api.web.pages.auth import safe_next
from schemas import api
from schemas.convoys import Convoys
from schemas.milestones import Milestones
from services.runtime.errors import ConvoyError, NotFound

PageDep = NamedDependency[Page]
ConvoyId = FromPath[uuid.UUID]
FLAG_REASONS = ("spam", "off_topic", "confidential", "offensive", "other")


class ModerationPages(Controller):
    dependencies = {"page": Provide(provide_page)}
    include_in_schema = False

    # --- flagging ------------------------------------------------------------------------------
    @post("/flag/{object_type:str}/{object_id:uuid}", status_code=200)
    async def flag(
        self, page: PageDep, object_type: FromPath[str], object_id: FromPath[uuid.UUID]
    ) -> Template | Redirect:
        if object_type not in ("report", "comment"):
            raise NotFound("no such thing to flag")
        values = {"reason": str(page.form.get("reason", "")), "note": str(page.form.get("note", "")).strip()}
        back = safe_next(str(page.form.get("next", "/")))
        try:
            flag = msgspec.convert(values, api.NewFlag)
            if flag.reason == "other" and not flag.note:
                return page.render(
                    "flagged.html", 422, error=page._("Please say in a few words what is wrong."), back=back
                )
            ask = api.FlagContent(actor=page.actor, object_type=object_type, object_id=object_id, flag=flag)  # type: ignore[arg-type]
            await page.call(Milestones.FLAG_CREATE, ask)
        except msgspec.ValidationError as exc:
            return page.render("flagged.html", 422, error=field_error(page, exc, values)[1], back=back)
        except ConvoyError as exc:
            if exc.status in (401, 404):
                raise
            return page.render("flagged.html", exc.status, error=service_error(page, exc), back=back)
        return page.render("flagged.html", error="", back=back)

    # --- the queue -----------------------------------------------------------------------------
    @get("/convoys/{convoy_id:uuid}/flags")
    async def queue(self, page: PageDep, convoy_id: ConvoyId) -> Template:
        return await self._queue(page, convoy_id)

    async def _queue(
        self, page: Page, convoy_id: uuid.UUID, errors: dict[str, str] | None = None, status_code: int = 200
    ) -> Template:
        actor = page.actor
        convoy, queue = await asyncio.gather(
            page.call(Convoys.CONVOY_GET, api.GetConvoy(actor=actor, convoy_id=convoy_id)),
            page.call(Milestones.FLAG_QUEUE, api.ConvoyAsk(actor=actor, convoy_id=convoy_id)),
        )
        names = {f.person_id: f.name for f in convoy.facilitators}
        for company in convoy.companies:
            names.update({r.person_id: r.name for r in company.representatives})
        return page.render(
            "flags.html", status_code, convoy=convoy, items=queue.items, names=names, errors=errors or {}
        )

    @post("/convoys/{convoy_id:uuid}/flags/{flag_id:uuid}", status_code=200)
    async def resolve(self, page: PageDep, convoy_id: ConvoyId, flag_id: FromPath[uuid.UUID]) -> Template | Redirect:
        values = {"action": str(page.form.get("action", "")), "reason": str(page.form.get("reason", "")).strip()}
        try:
            resolution = msgspec.convert(values, api.FlagResolution)
            if resolution.action == "act" and not resolution.reason:
                return await self._queue(
                    page, convoy_id, {str(flag_id): page._("Please give a reason: its author is told.")}, 422
                )
            ask = api.ResolveFlag(actor=page.actor, flag_id=flag_id, resolution=resolution)
            await page.call(Milestones.FLAG_RESOLVE, ask)
        except msgspec.ValidationError as exc:
            return await self._queue(page, convoy_id, {str(flag_id): field_error(page, exc, values)[1]}, 422)
        except ConvoyError as exc:
            if exc.status in (401, 404):
                raise
            return await self._queue(page, convoy_id, {str(flag_id): service_error(page, exc)}, exc.status)
        return page.redirect(f"/convoys/{convoy_id}/flags?done=1")

    # --- the charter ---------------------------------------------------------------------------
    @get("/convoys/{convoy_id:uuid}/charter")
    async def charter(
        self,
        page: PageDep,
        convoy_id: ConvoyId,
        next: Annotated[str | None, QueryParameter()] = None,
    ) -> Template:
        return await self._charter(page, convoy_id, safe_next(next))

    async def _charter(
        self, page: Page, convoy_id: uuid.UUID, back: str, error: str = "", status_code: int = 200
    ) -> Template:
        actor = page.actor
        convoy, charter = await asyncio.gather(
            page.call(Convoys.CONVOY_GET, api.GetConvoy(actor=actor, convoy_id=convoy_id)),
            page.call(Convoys.CHARTER_GET, api.AskConvoy(actor=actor, convoy_id=convoy_id)),
        )
        return page.render(
            "charter.html",
            status_code,
            convoy=convoy,
            charter=charter,
            back=back,
            error=error,
            facilitates=page.facilitates(convoy_id),
        )

    @post("/convoys/{convoy_id:uuid}/charter/accept", status_code=200)
    async def accept(self, page: PageDep, convoy_id: ConvoyId) -> Template | Redirect:
        back = safe_next(str(page.form.get("next", "/")))
        version = str(page.form.get("version", ""))
        try:
            acceptance = api.CharterAcceptance(version=int(version) if version.isdigit() and int(version) > 0 else None)
            ask = api.AcceptCharter(actor=page.actor, convoy_id=convoy_id, acceptance=acceptance)
            await page.call(Convoys.CHARTER_ACCEPT, ask)
        except ConvoyError as exc:
            if exc.status in (401, 404):
                raise
            return await self._charter(page, convoy_id, back, service_error(page, exc), exc.status)
        return page.redirect(back if back != "/" else f"/convoys/{convoy_id}")

    @post("/convoys/{convoy_id:uuid}/charter", status_code=200)
    async def edit(self, page: PageDep, convoy_id: ConvoyId) -> Template | Redirect:
        try:
            text = msgspec.convert({"text": str(page.form.get("text", "")).strip()}, api.CharterText)
            ask = api.PutCharter(actor=page.actor, convoy_id=convoy_id, charter=text)
            await page.call(Convoys.CHARTER_PUT, ask)
        except msgspec.ValidationError as exc:
            return await self._charter(page, convoy_id, "/", field_error(page, exc, {"text": ""})[1], 422)
        except ConvoyError as exc:
            if exc.status in (401, 404):
                raise
            return await self._charter(page, convoy_id, "/", service_error(page, exc), exc.status)
        return page.redirect(f"/convoys/{convoy_id}/charter")


__all__ = ["FLAG_REASONS", "ModerationPages"]
