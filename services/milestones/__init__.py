"""services/milestones: projects, milestones, progress reports (foundation: reports)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from schemas import api
from schemas import events as ev
from schemas.subjects import Rpc
from services.milestones.service import MilestonesService
from services.runtime.service import Runtime

NAME = "milestones"
MIGRATIONS = Path(str(resources.files(__name__) / "migrations"))


async def setup(rt: Runtime) -> None:
    svc = MilestonesService(rt)
    rt.endpoint(Rpc.REPORT_SUBMIT, api.SubmitReport, svc.submit_report)
    rt.endpoint(Rpc.REPORT_LIST, api.ListReports, svc.list_reports)
    rt.endpoint(Rpc.REPORT_GET, api.GetReport, svc.get_report)
    rt.consumer("memberships", (ev.PersonJoined, ev.PersonRemoved, ev.CompanyLeft), svc.on_membership)
