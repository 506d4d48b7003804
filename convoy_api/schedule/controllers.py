"""The check-in schedule: upcoming cycles, settings, skips, away, prompt now / close now."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, get, post, put
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, QueryParameter

from convoy_api import examples as ex
from convoy_api.deps import Backend, provide_actor
from schemas import api
from schemas.reminders import Reminders

Actor = NamedDependency[api.Actor]
Services = NamedDependency[Backend]
ConvoyId = FromPath[uuid.UUID]


class ScheduleController(Controller):
    path = "/api/v1/convoys/{convoy_id:uuid}"
    tags = ["schedule"]
    dependencies = {"actor": Provide(provide_actor)}

    @get("/schedule", summary="Upcoming check-in cycles, settings and absences (members)")
    async def schedule(
        self,
        convoy_id: ConvoyId,
        actor: Actor,
        backend: Services,
        upcoming: Annotated[int, QueryParameter(ge=1, le=52)] = 6,
    ) -> api.Schedule:
        return await backend.call(
            Reminders.SCHEDULE, api.AskSchedule(actor=actor, convoy_id=convoy_id, upcoming=upcoming)
        )

    @put("/schedule/settings", summary="Holidays (Bundesland, skip or move) and nudge times (facilitators)")
    async def settings(
        self, convoy_id: ConvoyId, data: ex.ScheduleSettings, actor: Actor, backend: Services
    ) -> api.Schedule:
        return await backend.call(
            Reminders.SCHEDULE_SETTINGS, api.PutScheduleSettings(actor=actor, convoy_id=convoy_id, settings=data)
        )

    @post(
        "/cycles/{cycle_index:int}/skip",
        summary="Skip a cycle: no prompt, nudges or digest (facilitators)",
        status_code=200,
    )
    async def skip_cycle(
        self, convoy_id: ConvoyId, cycle_index: FromPath[int], data: ex.CycleSkip, actor: Actor, backend: Services
    ) -> api.Schedule:
        return await backend.call(
            Reminders.CYCLE_SKIP, api.SkipCycle(actor=actor, convoy_id=convoy_id, cycle_index=cycle_index, skip=data)
        )

    @post("/companies/{company_id:uuid}/away", summary="Mark a company away for dates (facilitators)", status_code=200)
    async def away(
        self,
        convoy_id: ConvoyId,
        company_id: FromPath[uuid.UUID],
        data: ex.NewAway,
        actor: Actor,
        backend: Services,
    ) -> api.Schedule:
        return await backend.call(
            Reminders.COMPANY_AWAY, api.MarkAway(actor=actor, convoy_id=convoy_id, company_id=company_id, away=data)
        )

    @post("/companies/{company_id:uuid}/skips", summary="Skip a cycle for my company, with a reason", status_code=200)
    async def company_skip(
        self,
        convoy_id: ConvoyId,
        company_id: FromPath[uuid.UUID],
        data: ex.NewCompanySkip,
        actor: Actor,
        backend: Services,
    ) -> api.Schedule:
        return await backend.call(
            Reminders.COMPANY_SKIP,
            api.SkipForCompany(actor=actor, convoy_id=convoy_id, company_id=company_id, skip=data),
        )

    @post("/prompt-now", summary="Open the current cycle now: prompts go out (facilitators)", status_code=200)
    async def prompt_now(self, convoy_id: ConvoyId, actor: Actor, backend: Services) -> api.Fired:
        return await backend.call(Reminders.PROMPT_NOW, api.FireNow(actor=actor, convoy_id=convoy_id))

    @post("/close-now", summary="Close the current cycle now: the digest goes out (facilitators)", status_code=200)
    async def close_now(self, convoy_id: ConvoyId, actor: Actor, backend: Services) -> api.Fired:
        return await backend.call(Reminders.CLOSE_NOW, api.FireNow(actor=actor, convoy_id=convoy_id))
