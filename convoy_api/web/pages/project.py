"""My company's digital project: pick a type from the catalogue (it seeds the milestone ladder),
describe it, add milestones with target dates."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath
from litestar.response import Redirect, Template

from convoy_api.web.core import Page, field_error, provide_page, service_error
from schemas import api
from schemas.convoys import Convoys
from schemas.milestones import Milestones
from services.runtime.errors import ConvoyError, NotFound

PageDep = NamedDependency[Page]
ConvoyId = FromPath[uuid.UUID]


class ProjectPages(Controller):
    path = "/convoys/{convoy_id:uuid}/project"
    dependencies = {"page": Provide(provide_page)}
    include_in_schema = False

    def _company(self, page: Page, convoy_id: uuid.UUID) -> uuid.UUID:
        return page.representing(convoy_id)[1]

    @get("/")
    async def show(self, page: PageDep, convoy_id: ConvoyId) -> Template:
        return await self._show(page, convoy_id)

    async def _show(
        self,
        page: Page,
        convoy_id: uuid.UUID,
        errors: dict[str, dict[str, str]] | None = None,
        status_code: int = 200,
        values: dict[str, Any] | None = None,
    ) -> Template:
        company_id = self._company(page, convoy_id)
        ask = api.CompanyAction(actor=page.actor, convoy_id=convoy_id, company_id=company_id)
        convoy, project, catalogue = await asyncio.gather(
            page.call(Convoys.CONVOY_GET, api.GetConvoy(actor=page.actor, convoy_id=convoy_id)),
            page.call(Milestones.PROJECT_GET, ask),
            page.call(Milestones.CATALOGUE, api.Empty()),
            return_exceptions=True,
        )
        if isinstance(convoy, BaseException):
            raise convoy
        if isinstance(catalogue, BaseException):
            raise catalogue
        if isinstance(project, BaseException) and not isinstance(project, NotFound):
            raise project
        return page.render(
            "project.html",
            status_code,
            convoy=convoy,
            project=project if isinstance(project, api.Project) else None,
            catalogue=catalogue,
            errors=errors or {},
            values=values or {},
            mine=page.membership(convoy_id),
        )

    async def _guard(
        self, page: Page, convoy_id: uuid.UUID, form: str, action: Any, values: dict[str, Any]
    ) -> Template | Redirect:
        try:
            await action()
        except msgspec.ValidationError as exc:
            name, message = field_error(page, exc, values)
            return await self._show(page, convoy_id, {form: {name: message}}, 422, {form: values})
        except ConvoyError as exc:
            if exc.status in (401, 404):
                raise
            return await self._show(page, convoy_id, {form: {"": service_error(page, exc)}}, exc.status, {form: values})
        return page.redirect(f"/convoys/{convoy_id}/project?done=1")

    @post("/", status_code=200)
    async def put(self, page: PageDep, convoy_id: ConvoyId) -> Template | Redirect:
        values = {k: str(page.form.get(k, "")).strip() for k in ("title", "goal", "project_type")}

        async def run() -> None:
            body = msgspec.convert({**values, "project_type": values["project_type"] or None}, api.ProjectIn)
            ask = api.PutProject(
                actor=page.actor, convoy_id=convoy_id, company_id=self._company(page, convoy_id), project=body
            )
            await page.call(Milestones.PROJECT_PUT, ask)

        return await self._guard(page, convoy_id, "project", run, values)

    @post("/milestones", status_code=200)
    async def add_milestone(self, page: PageDep, convoy_id: ConvoyId) -> Template | Redirect:
        values = {k: str(page.form.get(k, "")).strip() for k in ("title", "target_date")}

        async def run() -> None:
            body = msgspec.convert({**values, "target_date": values["target_date"] or None}, api.NewMilestone)
            ask = api.AddMilestone(
                actor=page.actor, convoy_id=convoy_id, company_id=self._company(page, convoy_id), milestone=body
            )
            await page.call(Milestones.MILESTONE_ADD, ask)

        return await self._guard(page, convoy_id, "milestone", run, values)
