"""The digitalisation check: public pages, no account and no cookie of ours needed.

The answers go to services/convoys without anything about the person; the result page lives at the
result's random id. Only the join form at the end asks for a contact, and only with the consent box
ticked is anything personal sent (the service refuses it otherwise, too).
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath
from litestar.response import Redirect, Template

from convoy_api.deps import anonymous_request_limit, client_rate_limit
from convoy_api.web.core import Page, field_error, provide_page, service_error
from schemas import api
from schemas.convoys import Convoys, PoolLink
from schemas.values import Bundesland, SizeClass
from services.runtime.errors import ConvoyError

PageDep = NamedDependency[Page]
BUNDESLAENDER = Bundesland.__args__  # type: ignore[attr-defined]
SIZE_CLASSES = SizeClass.__args__  # type: ignore[attr-defined]
JOIN_FIELDS = ("theme", "company_name", "sector", "size_class", "region", "contact_name", "contact_email")


def localized(lang: str) -> Any:
    def loc(obj: Any, name: str) -> str:
        return str(getattr(obj, f"{name}_{'de' if lang == 'de' else 'en'}", "") or "")

    return loc


class CheckPages(Controller):
    path = "/check"
    dependencies = {"page": Provide(provide_page)}
    include_in_schema = False

    async def _questions(self, page: Page) -> api.QuestionSet:
        return await page.call(Convoys.CHECK_QUESTIONS, api.Empty())

    @staticmethod
    def _render(page: Page, template: str, status: int, defaults: dict[str, Any], /, **context: Any) -> Template:
        """A page with the check's forms: ``errors`` and ``error`` (none by default), and the form's
        ``values`` (those in ``context`` over the ``defaults``)."""
        context = {"errors": {}, "error": "", **context, "values": {**defaults, **context.get("values", {})}}
        return page.render(
            template,
            status,
            loc=localized(page.lang),
            pool_days=page.backend.settings.pool_retention_days,
            size_classes=SIZE_CLASSES,
            bundeslaender=BUNDESLAENDER,
            **context,
        )

    def _form(self, page: Page, qs: api.QuestionSet, status: int = 200, **context: Any) -> Template:
        return self._render(page, "check_form.html", status, {}, qs=qs, **context)

    @get("/")
    async def start(self, page: PageDep) -> Template:
        return self._form(page, await self._questions(page))

    @post("/", guards=[client_rate_limit], status_code=200)
    async def submit(self, page: PageDep) -> Template | Redirect:
        qs = await self._questions(page)
        values: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for q in qs.questions:
            if q.kind == "multi":
                values[q.key] = [str(v) for v in page.form.getall(q.key, [])]
            else:
                values[q.key] = str(page.form.get(q.key, ""))
                if not values[q.key]:
                    errors[q.key] = page._("Please choose an answer.")
        profile = {k: str(page.form.get(k, "")) for k in ("sector", "size_class", "region")}
        if errors:
            message = page._("%(count)d questions still need an answer.", count=len(errors))
            return self._form(page, qs, 422, errors=errors, values={**values, **profile}, error=message)
        try:
            check = {"version": qs.version, "answers": values, **profile, "timezone": page.zone}  # its local day
            answers = msgspec.convert(check, api.CheckAnswers)
            result = await page.call(Convoys.CHECK_SUBMIT, api.SubmitCheck(check=answers))
        except msgspec.ValidationError as exc:
            name, message = field_error(page, exc, profile)
            return self._form(page, qs, 422, errors={name: message}, values={**values, **profile}, error=message)
        except ConvoyError as exc:
            return self._form(page, qs, exc.status, values={**values, **profile}, error=service_error(page, exc))
        return page.redirect(f"/check/{result.id}")

    async def _result(self, page: Page, check_id: uuid.UUID, status: int = 200, **context: Any) -> Template:
        result = await page.call(Convoys.CHECK_GET, api.GetCheck(check_id=check_id))
        qs = await self._questions(page)
        sector = next((s for s in qs.sectors if s.key == result.sector), None)
        first = next((p.project_type for pot in result.potentials for p in pot.projects), "")
        values = {
            "theme": first,
            "sector": localized(page.lang)(sector, "label") if sector else "",
            "size_class": result.size_class,
            "region": result.region,
            "contact_language": page.lang,
        }
        return self._render(page, "check_result.html", status, values, result=result, **context)

    # --- the withdraw link of the pool confirmation email (no sign-in; GET only shows, POST withdraws) ----
    async def _withdraw_page(self, page: Page, token: str, *, withdraw: bool) -> Template:
        try:
            state = await page.call(Convoys.POOL_LINK, PoolLink(token=token, withdraw=withdraw))
        except msgspec.ValidationError:
            state, status = None, 404
        except ConvoyError as exc:
            if exc.status not in (404, 410):
                raise
            state, status = None, exc.status
        else:
            status = 200
        title = localized(page.lang)(state, "title") if state is not None else ""
        return page.render(
            "check_withdraw.html", status, token=token, state=state, theme=title, withdrawn=withdraw, code=status
        )

    @get("/withdraw/{token:str}")
    async def withdraw_confirm(self, page: PageDep, token: FromPath[str]) -> Template:
        """Shows what the link is about and a button; changes nothing (mail scanners open links)."""
        return await self._withdraw_page(page, token, withdraw=False)

    @post("/withdraw/{token:str}", guards=[client_rate_limit], status_code=200)
    async def withdraw(self, page: PageDep, token: FromPath[str]) -> Template:
        return await self._withdraw_page(page, token, withdraw=True)

    @get("/{check_id:uuid}")
    async def result(self, page: PageDep, check_id: FromPath[uuid.UUID]) -> Template:
        return await self._result(page, check_id)

    @post("/{check_id:uuid}/join", guards=[anonymous_request_limit], status_code=200)
    async def join(self, page: PageDep, check_id: FromPath[uuid.UUID]) -> Template:
        values = {k: str(page.form.get(k, "")).strip() for k in (*JOIN_FIELDS, "contact_language", "message")}
        consent = page.form.get("consent") == "yes"
        if not consent:  # nothing is sent without the box ticked
            message = page._("Please agree so that we may keep your contact; otherwise nothing is stored.")
            return await self._result(page, check_id, 422, errors={"consent": message}, values=values)
        company = {
            "name": values["company_name"],
            "sector": values["sector"],
            "size_class": values["size_class"],
            "region": values["region"],
        }
        try:
            msgspec.convert(company, api.NewCompany)
        except msgspec.ValidationError as exc:
            name, message = field_error(page, exc, company)
            key = "company_name" if name == "name" else name
            return await self._result(page, check_id, 422, errors={key: message}, values=values)
        body = {
            "theme": values["theme"] or "unknown",
            "company": company,
            "contact_name": values["contact_name"],
            "contact_email": values["contact_email"],
            "contact_language": values["contact_language"] or page.lang,
            "message": values["message"],
            "consent": True,
        }
        try:
            request = msgspec.convert(body, api.NewPoolRequest)
            await page.call(Convoys.POOL_JOIN, api.JoinPool(check_id=check_id, request=request))
        except msgspec.ValidationError as exc:
            name, message = field_error(page, exc, values)
            return await self._result(page, check_id, 422, errors={name: message}, values=values)
        except ConvoyError as exc:
            if exc.status == 404:
                raise
            return await self._result(page, check_id, exc.status, error=service_error(page, exc), values=values)
        return page.render("check_joined.html", check_id=check_id, email=values["contact_email"])
