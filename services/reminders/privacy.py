"""Data protection in services/reminders: the only personal datum kept is who marked an absence
(``absences.created_by``); the export lists those absences, ``person.erased`` forgets the id."""

from __future__ import annotations

import asyncpg

from schemas import api
from schemas import envelope as env
from schemas import events as ev
from services.reminders import repository as repo
from services.runtime.errors import Forbidden
from services.runtime.service import Runtime


class PrivacyRules:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def on_person_erased(self, envelope: env.Envelope, event: ev.Event, conn: asyncpg.Connection) -> None:
        assert isinstance(event, ev.PersonErased)
        await repo.forget_person(conn, event.person_id)  # idempotent

    async def personal_data(self, req: api.Ask) -> api.PersonalData:
        if req.actor.person_id is None:
            raise Forbidden("the admin token has no personal data; sign in as a person")
        async with self.rt.db.connection() as conn:
            absences = await repo.absences_created_by(conn, req.actor.person_id)
        return api.PersonalData(service=self.rt.name, sections={"absences_marked": absences})
