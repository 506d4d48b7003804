"""Data protection in services/reminders: the only personal datum kept is who marked an absence
(``absences.created_by``); the export lists those absences (``person.erased`` forgets the id: consumers.py)."""

from __future__ import annotations

from schemas import api
from schemas.reminders import Reminders
from services.reminders import repository as repo
from services.reminders.access import Access
from services.runtime.service import Runtime


class PrivacyRules:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.access = Access(rt)

    @Reminders.PERSONAL_DATA
    async def personal_data(self, req: api.Ask) -> api.PersonalData:
        person_id = self.access.person(req.actor, "the admin token has no personal data; sign in as a person")
        async with self.rt.db.connection() as conn:
            absences = await repo.absences_created_by(conn, person_id)
        return api.PersonalData(service=self.rt.name, sections={"absences_marked": absences})
