"""Progress reports: representatives post for their company; members read the convoy's reports."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, QueryParameter

from convoy_api import examples as ex
from convoy_api.deps import Backend, provide_actor
from schemas import api
from schemas.subjects import Rpc

Actor = NamedDependency[api.Actor]
Services = NamedDependency[Backend]


class ReportController(Controller):
    path = "/api/v1/convoys/{convoy_id:uuid}/reports"
    tags = ["reports"]
    dependencies = {"actor": Provide(provide_actor)}

    @post("/", summary="Post my company's progress report")
    async def submit(
        self, convoy_id: FromPath[uuid.UUID], data: ex.NewReport, actor: Actor, backend: Services
    ) -> api.Report:
        return await backend.call(
            "milestones",
            Rpc.REPORT_SUBMIT,
            api.SubmitReport(actor=actor, convoy_id=convoy_id, report=data),
            api.Report,
        )

    @get("/", summary="The convoy's reports, newest first (members)")
    async def list_reports(
        self,
        convoy_id: FromPath[uuid.UUID],
        actor: Actor,
        backend: Services,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
    ) -> api.ReportList:
        return await backend.call(
            "milestones",
            Rpc.REPORT_LIST,
            api.ListReports(actor=actor, convoy_id=convoy_id, limit=limit),
            api.ReportList,
        )
