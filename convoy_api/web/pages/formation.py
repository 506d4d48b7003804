"""Facilitators: the formation pool (form a convoy from waiting companies) and the programme report."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import QueryParameter
from litestar.response import Redirect, Template

from convoy_api.web.core import Page, field_error, provide_page, service_error
from convoy_api.web.pages.check import localized
from schemas import api
from schemas.convoys import Convoys
from services.runtime.errors import ConvoyError, Forbidden, InvalidInput

PageDep = NamedDependency[Page]


def _facilitator(page: Page) -> None:
    if not (page.actor.is_facilitator or page.actor.is_admin):
        raise Forbidden("only facilitators see the formation pool and the programme report")


class FormationPages(Controller):
    dependencies = {"page": Provide(provide_page)}
    include_in_schema = False

    async def _pool(self, page: Page, status: int = 200, **context: Any) -> Template:
        _facilitator(page)
        pool = await page.call(Convoys.POOL_LIST, api.Ask(actor=page.actor))
        themes = {t.project_type: t for t in pool.themes}
        names = {e.id: e.company_name for e in pool.entries}
        context.setdefault("errors", {})
        context.setdefault("error", "")
        context.setdefault("selected", set())
        context.setdefault("values", {})
        chosen = [e for e in pool.entries if e.id in context["selected"]]
        if chosen and not context["values"].get("theme"):  # the theme of the selection, in words
            theme = themes.get(chosen[0].theme)
            context["values"] = {**context["values"], "theme": localized(page.lang)(theme, "title") if theme else ""}
        return page.render(
            "pool.html", status, pool=pool, themes=themes, names=names, loc=localized(page.lang), **context
        )

    @get("/pool")
    async def pool(self, page: PageDep, select: Annotated[str | None, QueryParameter()] = None) -> Template:
        selected: set[uuid.UUID] = set()
        for part in (select or "").split(","):
            try:
                selected.add(uuid.UUID(part.strip()))
            except ValueError:
                continue
        return await self._pool(page, selected=selected)

    @post("/pool", status_code=200)
    async def form(self, page: PageDep) -> Template | Redirect:
        values = {k: str(page.form.get(k, "")).strip() for k in ("name", "theme", "start_date", "language")}
        selected: set[uuid.UUID] = set()
        for raw in page.form.getall("request", []):
            try:
                selected.add(uuid.UUID(str(raw)))
            except ValueError:
                continue
        allow = page.form.get("allow_competitors") == "yes"
        if not selected:
            return await self._pool(
                page, 422, selected=selected, values=values, error=page._("Select at least one company.")
            )
        convoy = {
            "name": values["name"],
            "theme": values["theme"],
            "start_date": values["start_date"] or None,
            "language": values["language"] or "de",
        }
        try:
            new = msgspec.convert(convoy, api.NewConvoy, strict=False)
            formation = api.Formation(request_ids=sorted(selected), convoy=new, allow_competitors=allow)
            made = await page.call(Convoys.POOL_FORM, api.FormConvoy(actor=page.actor, formation=formation))
        except msgspec.ValidationError as exc:
            name, message = field_error(page, exc, values)
            return await self._pool(page, 422, selected=selected, values=values, errors={name: message})
        except ConvoyError as exc:
            if exc.status in (401, 403):
                raise
            competitors = exc.status == 409 and "competitors" in exc.message
            return await self._pool(
                page,
                exc.status,
                selected=selected,
                values=values,
                error=service_error(page, exc),
                competitors=competitors,
            )
        return page.redirect(f"/convoys/{made.id}/manage?done=formed")

    @get("/programme")
    async def programme(
        self,
        page: PageDep,
        from_date: Annotated[str | None, QueryParameter()] = None,
        to_date: Annotated[str | None, QueryParameter()] = None,
        convoy_id: Annotated[str | None, QueryParameter()] = None,
    ) -> Template:
        _facilitator(page)
        # the facilitator's day, as a check completion is dated by its company's day (not the server's, which
        # is still yesterday between midnight in Germany and midnight UTC)
        today = datetime.now(ZoneInfo(page.zone)).date()
        try:
            start = date.fromisoformat(from_date) if from_date else date(today.year, 1, 1)
            end = date.fromisoformat(to_date) if to_date else today
            convoy = uuid.UUID(convoy_id) if convoy_id else None
        except ValueError as exc:
            raise InvalidInput("`from_date`, `to_date`: dates such as 2027-01-31") from exc
        period = api.Period(from_date=start, to_date=end, convoy_id=convoy, timezone=page.zone)
        report = await page.call(Convoys.PROGRAMME_REPORT, api.AskProgramme(actor=page.actor, period=period))
        query = f"from_date={start.isoformat()}&to_date={end.isoformat()}" + (f"&convoy_id={convoy}" if convoy else "")
        return page.render("programme.html", report=report, query=query, loc=localized(page.lang), convoy=convoy)
