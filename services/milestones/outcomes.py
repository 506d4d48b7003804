"""What companies achieved with each project type, aggregated for the digitalisation check and the
programme figures (asked by services/convoys, which decides which convoys count).

Go-live is the last rung of the type's ladder in the milestone catalogue (``online_booking.go_live``,
``web_shop.launch``, ...); weeks count from the convoy's start. k-anonymity is enforced here, where the
data are: a project type with fewer than ``api.MIN_GROUP`` companies shows no figure at all, and the
median time is shown only when at least ``api.MIN_GROUP`` companies went live.
"""

from __future__ import annotations

from schemas import api
from schemas.milestones import Milestones
from services.milestones import catalogue as cat
from services.milestones import repository as repo
from services.runtime.db import structs
from services.runtime.service import Runtime


def _figures(outcome: api.ProjectOutcome, companies: int, went_live: int, median: float | None) -> None:
    if companies < api.MIN_GROUP:
        return
    outcome.companies = companies
    outcome.went_live = went_live
    outcome.went_live_share = round(went_live / companies, 3)
    outcome.median_weeks = round(median, 1) if median is not None and went_live >= api.MIN_GROUP else None


class Outcomes:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    @Milestones.CHECK_OUTCOMES
    async def outcomes(self, req: api.OutcomesAsk) -> api.Outcomes:
        types = [t for t in cat.catalogue().project_types if not req.project_types or t.key in req.project_types]
        keys = [t.key for t in types]
        go_live = [t.rungs[-1].key for t in types]
        async with self.rt.db.connection() as conn:
            rows = {
                r["project_type"]: r
                for r in await repo.outcomes.project_type_outcomes(
                    conn, req.convoy_ids, keys, go_live, req.from_date, req.to_date
                )
            }
            per_convoy = []
            if req.from_date is not None and req.to_date is not None and req.convoy_ids:
                per_convoy = await repo.outcomes.convoy_outcomes(
                    conn, req.convoy_ids, go_live, req.from_date, req.to_date
                )
        found = []
        for t in types:
            outcome = api.ProjectOutcome(
                project_type=t.key,
                title_de=t.title_de,
                title_en=t.title_en,
                description_de=t.description_de,
                description_en=t.description_en,
            )
            r = rows.get(t.key)
            if r is not None:
                _figures(outcome, r["companies"], r["went_live"], r["median_weeks"])
            found.append(outcome)
        return api.Outcomes(
            project_types=found,
            convoys=structs(per_convoy, api.ConvoyOutcome),
        )
