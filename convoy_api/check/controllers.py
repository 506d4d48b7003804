"""The digitalisation check (anyone), the formation pool (facilitators) and programme figures."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

from litestar import Controller, Response, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, QueryParameter

from convoy_api import csvout
from convoy_api import examples as ex
from convoy_api.deps import Backend, anonymous_request_limit, client_rate_limit, provide_actor
from schemas import api
from schemas.convoys import Convoys, WithdrawFromPool

Actor = NamedDependency[api.Actor]
Services = NamedDependency[Backend]
CheckId = FromPath[uuid.UUID]
PROGRAMME_CSV_COLUMNS = (
    "convoy_id",
    "name",
    "status",
    "start_date",
    "created_on",
    "formed_from_pool",
    "companies",
    "companies_reporting",
    "participation",
    "reports",
    "milestones_done",
    "go_lives",
)


class CheckController(Controller):
    """Anyone, without an account: nothing about a person is sent or stored unless they consent."""

    path = "/api/v1/check"
    tags = ["digitalisation check"]

    @get("/questions", summary="The current question set, grouped by area (German and English)")
    async def questions(self, backend: Services) -> api.QuestionSet:
        return await backend.call(Convoys.CHECK_QUESTIONS, api.Empty())

    @post("/", summary="Score answers (kept anonymously); the result with potentials", guards=[client_rate_limit])
    async def submit(self, data: ex.CheckAnswers, backend: Services) -> api.CheckResult:
        return await backend.call(Convoys.CHECK_SUBMIT, api.SubmitCheck(check=data))

    @get("/{check_id:uuid}", summary="A result (whoever holds its id)")
    async def result(self, check_id: CheckId, backend: Services) -> api.CheckResult:
        return await backend.call(Convoys.CHECK_GET, api.GetCheck(check_id=check_id))

    @post(
        "/{check_id:uuid}/join",
        summary="Leave a contact (consent required) and ask to join a convoy on a theme",
        status_code=202,
        guards=[anonymous_request_limit],
    )
    async def join(self, check_id: CheckId, data: ex.NewPoolRequest, backend: Services) -> api.Accepted:
        return await backend.call(Convoys.POOL_JOIN, api.JoinPool(check_id=check_id, request=data))

    @delete(
        "/{check_id:uuid}/join",
        summary="Take back the contact left from this result: it is deleted from the formation pool",
        status_code=200,
        guards=[client_rate_limit],
    )
    async def withdraw(self, check_id: CheckId, backend: Services) -> api.Accepted:
        return await backend.call(Convoys.POOL_WITHDRAW, WithdrawFromPool(check_id=check_id))


class PoolController(Controller):
    path = "/api/v1"
    tags = ["digitalisation check"]
    dependencies = {"actor": Provide(provide_actor)}

    @get("/pool", summary="Companies waiting in the formation pool, with suggested groups (facilitators)")
    async def pool(self, actor: Actor, backend: Services) -> api.Pool:
        return await backend.call(Convoys.POOL_LIST, api.Ask(actor=actor))

    @post("/pool/convoys", summary="Form a convoy from pool requests; invites the contacts (facilitators)")
    async def form(self, data: ex.Formation, actor: Actor, backend: Services) -> api.Convoy:
        return await backend.call(Convoys.POOL_FORM, api.FormConvoy(actor=actor, formation=data))

    @get("/programme", summary="Programme figures for a period, without personal data (facilitators)")
    async def programme(
        self,
        actor: Actor,
        backend: Services,
        from_date: Annotated[date, QueryParameter()],
        to_date: Annotated[date, QueryParameter()],
        convoy_id: Annotated[uuid.UUID | None, QueryParameter()] = None,
    ) -> api.ProgrammeReport:
        return await programme_report(backend, actor, from_date, to_date, convoy_id)

    @get("/programme.csv", summary="Programme figures per convoy as CSV (facilitators)", media_type="text/csv")
    async def programme_csv(
        self,
        actor: Actor,
        backend: Services,
        from_date: Annotated[date, QueryParameter()],
        to_date: Annotated[date, QueryParameter()],
        convoy_id: Annotated[uuid.UUID | None, QueryParameter()] = None,
    ) -> Response[str]:
        report = await programme_report(backend, actor, from_date, to_date, convoy_id)
        return Response(
            programme_csv(report),
            media_type="text/csv",  # Litestar adds "; charset=utf-8" to text types
            headers={"Content-Disposition": f'attachment; filename="programme-{from_date}-{to_date}.csv"'},
        )


async def programme_report(
    backend: Backend, actor: api.Actor, from_date: date, to_date: date, convoy_id: uuid.UUID | None
) -> api.ProgrammeReport:
    period = api.Period(from_date=from_date, to_date=to_date, convoy_id=convoy_id)
    return await backend.call(Convoys.PROGRAMME_REPORT, api.AskProgramme(actor=actor, period=period))


def programme_csv(report: api.ProgrammeReport) -> str:
    """One row per convoy, then the programme totals and the project types (suppressed figures empty)."""
    rows: list[list[object]] = [list(PROGRAMME_CSV_COLUMNS)]
    rows += [[getattr(c, column) for column in PROGRAMME_CSV_COLUMNS] for c in report.convoys]
    rows.append([])
    rows.append(["period", "check_completions", "pool_requests", "convoys_formed", "convoys_formed_from_pool",
                 "companies_reached"])  # fmt: skip
    rows.append(
        [
            f"{report.from_date}/{report.to_date}",
            report.check_completions,
            report.pool_requests,
            report.convoys_formed,
            report.convoys_formed_from_pool,
            report.companies_reached,
        ]
    )
    rows.append([])
    rows.append(["project_type", "companies", "went_live", "went_live_share", "median_weeks_to_go_live"])
    rows += [[t.project_type, t.companies, t.went_live, t.went_live_share, t.median_weeks]
             for t in report.project_types]  # fmt: skip
    return csvout.table(rows)
