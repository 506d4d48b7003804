"""Progress reports: representatives post for their company; members read the convoy's reports."""

from __future__ import annotations

import uuid

from litestar import Controller, get, post
from litestar.di import Provide
from litestar.params import Parameter

from convoy_api.deps import Backend, provide_actor
from schemas import api
from schemas.subjects import Rpc


class ReportController(Controller):
    path = "/api/v1/convoys/{convoy_id:uuid}/reports"
    tags = ["reports"]
    dependencies = {"actor": Provide(provide_actor)}

    @post("/", summary="Post my company's progress report")
    async def submit(self, convoy_id: uuid.UUID, data: api.NewReport, actor: api.Actor, backend: Backend) -> api.Report:
        return await backend.call(
            "milestones", Rpc.REPORT_SUBMIT, api.SubmitReport(actor=actor, convoy_id=convoy_id, report=data), api.Report
        )

    @get("/", summary="The convoy's reports, newest first (members)")
    async def list(
        self,
        convoy_id: uuid.UUID,
        actor: api.Actor,
        backend: Backend,
        limit: int = Parameter(default=50, ge=1, le=200),
    ) -> api.ReportList:
        return await backend.call(
            "milestones", Rpc.REPORT_LIST, api.ListReports(actor=actor, convoy_id=convoy_id, limit=limit),
            api.ReportList,
        )
