"""Data protection in services/milestones: erased authors, a person's export, the retention rule.

- ``person.erased`` (handled in services/milestones/consumers.py): the person's reports, comments,
  kudos and help offers stay (they are the convoy's shared history) under their person id, which no
  longer leads to a name or address anywhere; ``former_authors`` remembers the company they
  represented in each convoy, and every read that returns reports or comments marks them
  ``author_erased`` with ``former_author``: "a former representative of <company>" in the convoy's
  language (clients show that instead of a name; the person is in no people list any more).
- Retention: a convoy's ``retention_days`` (None: keep) says how long a company's content stays
  after it left. :meth:`PrivacyRules.purge` removes what is due at a given moment; the service runs
  it every hour, and ``Milestones.RETENTION_PURGE`` runs it with a ``now`` the caller picks (tests).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg
import structlog

from schemas import api
from schemas.milestones import Milestones
from services.milestones import repository as repo
from services.runtime.errors import Forbidden
from services.runtime.lifecycle import wait_or_stop
from services.runtime.service import Runtime

log = structlog.get_logger(__name__)

PURGE_EVERY_S = 3600.0

WORDING = {
    "de": ("eine ehemalige Vertretung von {company}", "die ehemalige Moderation"),
    "en": ("a former representative of {company}", "a former facilitator"),
}


def former_author(language: str, company: str | None) -> str:
    representative, facilitator = WORDING.get(language, WORDING["en"])
    return representative.format(company=company) if company else facilitator


def attribute_comments(
    convoy: asyncpg.Record, former: dict[tuple[uuid.UUID, uuid.UUID], str | None], comments: Sequence[api.Comment]
) -> None:
    for c in comments:
        key = (c.author_id, convoy["convoy_id"])
        if key in former:
            c.author_erased = True
            c.former_author = former_author(convoy["language"], former[key])


class PrivacyRules:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    @Milestones.PERSONAL_DATA
    async def personal_data(self, req: api.Ask) -> api.PersonalData:
        if req.actor.person_id is None:
            raise Forbidden("the admin token has no personal data; sign in as a person")
        async with self.rt.db.connection() as conn:
            sections = await repo.privacy.personal_records(conn, req.actor.person_id)
        return api.PersonalData(service=self.rt.name, sections=sections)

    @Milestones.RETENTION_PURGE
    async def purge(self, req: api.RetentionPurge) -> api.Purged:
        """Remove the content of every company whose convoy's retention time since it left is over at ``now``."""
        companies = reports = comments = 0
        async with self.rt.db.transaction() as conn:
            for c in await repo.privacy.companies_due_for_purge(conn, req.now):
                r, k = await repo.privacy.purge_company(conn, c["company_id"], c["convoy_id"], c["left_at"], req.now)
                companies, reports, comments = companies + 1, reports + r, comments + k
                log.info(
                    "retention: removed a departed company's content",
                    company_id=str(c["company_id"]),
                    convoy_id=str(c["convoy_id"]),
                    reports=r,
                    comments=k,
                )
        return api.Purged(companies=companies, reports=reports, comments=comments)

    async def purge_forever(self, stop: asyncio.Event) -> None:
        """The retention rule, applied every hour (and at start)."""
        while not stop.is_set():
            try:
                await self.purge(api.RetentionPurge(now=datetime.now(UTC)))
            except Exception as exc:
                log.warning("retention purge failed; next round in an hour", error=repr(exc))
            await wait_or_stop(stop, PURGE_EVERY_S)
