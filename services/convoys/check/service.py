"""Rules of the digitalisation check, the formation pool and the programme figures (services/convoys).

Privacy:
- A check result holds the answers, the scores and three coarse choices (sector, size class, Bundesland),
  the day it was completed, and nothing else: no contact, no IP address, no cookie or session id. Its
  random id is the link to the result page.
- Contact data enter only with ``consent`` (pool_requests, with the moment of consent); without it the
  request is refused before anything is written.
- What "similar companies achieved" comes from services/milestones, over convoys that share anonymised
  results only, and every figure about fewer than ``api.MIN_GROUP`` companies is suppressed there.
- Programme figures are counts and medians: no person and no company is named.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import asyncpg
import msgspec
import structlog

from schemas import api
from schemas import events as ev
from schemas.convoys import Convoys, PoolLink, PoolLinkState, PoolPurge, PoolPurged, WithdrawFromPool
from schemas.milestones import Milestones
from services.convoys import repository as repo
from services.convoys.check import formation
from services.convoys.check import questions as qs_
from services.convoys.check import repository as check_repo
from services.convoys.service import ConvoysService, check_schedule, check_timezone, email_to
from services.runtime import signing
from services.runtime.db import struct
from services.runtime.errors import Conflict, ConvoyError, InvalidInput, NotFound, TooManyRequests
from services.runtime.lifecycle import wait_or_stop

log = structlog.get_logger(__name__)

POOL_REQUESTS_PER_DAY = 3
WITHDRAW_PURPOSE = "pool-withdraw"
"""The signing salt of the pool confirmation's withdraw link (services/runtime/signing.py)."""
PURGE_EVERY_S = 3600.0
MAX_PERIOD_DAYS = 3 * 366
FACILITATORS_ONLY = "only facilitators and the centre's admins may do this"


def pool_joined_key(request_id: uuid.UUID) -> str:
    """The delivery key of a pool contact's confirmation email (once per request)."""
    return f"pool_joined:{request_id}"


class CheckService:
    def __init__(self, svc: ConvoysService) -> None:
        self.svc = svc
        self.rt = svc.rt

    # --- the check (anyone) ----------------------------------------------------------------------
    @Convoys.CHECK_QUESTIONS
    async def questions(self, _: api.Empty) -> api.QuestionSet:
        return qs_.question_set()

    @Convoys.CHECK_SUBMIT
    async def submit(self, req: api.SubmitCheck) -> api.CheckResult:
        a = req.check
        try:
            qs = qs_.question_set(a.version)
        except KeyError:
            raise InvalidInput(f"`version`: no question set {a.version} (current: {qs_.CURRENT_VERSION})") from None
        try:
            scored = qs_.score(qs, a)
        except qs_.AnswerError as exc:
            raise InvalidInput(str(exc)) from exc
        check_timezone(a.timezone)
        async with self.rt.db.transaction() as conn:
            row = await check_repo.insert_result(
                conn,
                check_id=uuid.uuid4(),
                completed_on=datetime.now(ZoneInfo(a.timezone)).date(),
                version=a.version,
                answers=scored.answers,
                scores=scored.areas,
                overall=scored.overall,
                sector=a.sector,
                size_class=a.size_class,
                region=a.region,
            )
            sharing = await check_repo.sharing_convoys(conn)
        return await self._result(row, sharing)

    @Convoys.CHECK_GET
    async def get(self, req: api.GetCheck) -> api.CheckResult:
        async with self.rt.db.connection() as conn:
            row = await check_repo.result_row(conn, req.check_id)
            if row is None:
                raise NotFound("no such check result")
            sharing = await check_repo.sharing_convoys(conn)
        return await self._result(row, sharing)

    async def outcomes(self, ask: api.OutcomesAsk) -> api.Outcomes:
        """Aggregates from services/milestones; without it the result still shows, without figures."""
        try:
            return await self.rt.rpc.call(Milestones.CHECK_OUTCOMES, ask)
        except ConvoyError:
            return api.Outcomes(project_types=[api.ProjectOutcome(project_type=t) for t in ask.project_types])

    async def _result(self, row: asyncpg.Record, sharing: list[uuid.UUID]) -> api.CheckResult:
        qs = qs_.question_set(row["version"])
        scores = check_repo.scores_of(row)
        found = await self.outcomes(api.OutcomesAsk(convoy_ids=sharing, project_types=qs_.themes(qs)))
        projects = {p.project_type: p for p in found.project_types}
        areas = {a.key: a for a in qs.areas}
        order = {a.key: i for i, a in enumerate(qs.areas)}
        low = sorted(
            (k for k, s in scores.items() if k in areas and s is not None and s < qs.potential_below),
            key=lambda k: (scores[k], order[k]),
        )[: qs_.MAX_POTENTIALS]
        return struct(
            row,
            api.CheckResult,
            areas=[
                api.AreaScore(key=a.key, title_de=a.title_de, title_en=a.title_en, score=scores.get(a.key))
                for a in qs.areas
            ],
            potentials=[
                api.Potential(
                    area=k,
                    title_de=areas[k].title_de,
                    title_en=areas[k].title_en,
                    advice_de=areas[k].advice_de,
                    advice_en=areas[k].advice_en,
                    score=scores[k] or 0,
                    projects=[projects.get(t) or api.ProjectOutcome(project_type=t) for t in areas[k].project_types],
                )
                for k in low
            ],
            themes=[projects.get(t) or api.ProjectOutcome(project_type=t) for t in qs_.themes(qs)],
        )

    # --- joining the pool (anyone holding a result, with consent) ----------------------------------
    @Convoys.POOL_WITHDRAW
    async def withdraw(self, req: WithdrawFromPool) -> api.Accepted:
        """The contact is deleted, not marked: consent taken back leaves nothing personal behind."""
        async with self.rt.db.transaction() as conn:
            removed, formed = await check_repo.withdraw_pool_requests(conn, req.check_id)
            for request_id in removed:
                await self._contact_deleted(conn, request_id, api.ANONYMOUS, "pool.withdrawn", {})
        if not removed and formed:
            raise Conflict("your company is already part of a convoy; its facilitator can remove it")
        if not removed:
            raise NotFound("no contact from this check result is waiting in the pool")
        return api.Accepted(message="Your contact has been deleted from the formation pool.")

    @Convoys.POOL_JOIN
    async def join(self, req: api.JoinPool) -> api.Accepted:
        r = req.request
        if not r.consent:  # before anything is read or written: without consent nothing personal is kept
            raise InvalidInput("`consent`: please agree that we store your contact to form a convoy")
        async with self.rt.db.connection() as conn:
            row = await check_repo.result_row(conn, req.check_id)
        if row is None:
            raise NotFound("no such check result")
        allowed = qs_.themes(qs_.question_set(row["version"]))
        if r.theme not in allowed:
            raise InvalidInput(f"`theme`: choose one of {', '.join(allowed)}")
        titles = await self.outcomes(api.OutcomesAsk(convoy_ids=[], project_types=[r.theme]))
        theme = next(iter(titles.project_types), api.ProjectOutcome(project_type=r.theme))
        request_id = uuid.uuid4()
        async with self.rt.db.transaction() as conn:
            since = datetime.now(UTC) - timedelta(days=1)
            if await check_repo.pool_requests_from(conn, r.contact_email, since) >= POOL_REQUESTS_PER_DAY:
                raise TooManyRequests("too many requests from this address today")
            await check_repo.insert_pool_request(conn, request_id, req.check_id, r)
            await repo.audit(
                conn,
                convoy_id=None,
                actor=api.ANONYMOUS,
                action="pool.joined",
                object_type="pool_request",
                object_id=request_id,
                details={"theme": r.theme},  # never the contact: the pool request (object_id) has it
            )
            # The contact's confirmation, with a signed link that withdraws without signing in: nothing they
            # typed (company, message) goes into it, since anyone may enter any address here.
            days = self.rt.settings.pool_retention_days
            token = signing.sign(self.rt.settings, WITHDRAW_PURPOSE, {"r": str(request_id)})
            await self.rt.emit(
                conn,
                ev.EmailRequested(
                    key=pool_joined_key(request_id),
                    to_email=r.contact_email,
                    to_name=r.contact_name,
                    language=r.contact_language,
                    template="pool_joined",
                    params={
                        "theme": (theme.title_de if r.contact_language == "de" else theme.title_en) or r.theme,
                        "days": str(days),
                        "link": f"{self.svc.base_url}/check/withdraw/{token}",
                    },
                ),
            )
            for f in await check_repo.facilitator_contacts(conn):
                de = f["language"] == "de"
                await self.rt.emit(
                    conn,
                    email_to(
                        f,
                        "pool_request_received",
                        key=f"pool_request_received:{request_id}:{f['id']}",
                        params={  # nothing the anonymous sender typed: facilitators read it in Convoy
                            "theme": (theme.title_de if de else theme.title_en) or r.theme,
                            "link": f"{self.svc.base_url}/pool",
                        },
                    ),
                )
        return api.Accepted(message="Thank you: the competence centre will get in touch by email.")

    async def _contact_deleted(
        self,
        conn: asyncpg.Connection,
        request_id: uuid.UUID,
        actor: api.Actor,
        action: str,
        details: dict[str, str],
    ) -> None:
        """A pool contact was deleted: audited, and the notifier forgets the address its confirmation went
        to (in the same transaction)."""
        await repo.audit(
            conn,
            convoy_id=None,
            actor=actor,
            action=action,
            object_type="pool_request",
            object_id=request_id,
            details=details,
        )
        await self.rt.emit(conn, ev.PoolContactDeleted(request_id=request_id, key=pool_joined_key(request_id)))

    @Convoys.POOL_LINK
    async def pool_link(self, req: PoolLink) -> PoolLinkState:
        """The confirmation email's link: what it is about, or (``withdraw``) the contact deleted. Works for
        as long as the entry may be kept; withdrawing twice answers ``gone`` again (nothing is left)."""
        max_age = (self.rt.settings.pool_retention_days + 1) * 86400
        payload = signing.verify(self.rt.settings, WITHDRAW_PURPOSE, req.token, max_age)
        try:
            request_id = uuid.UUID(str(payload.get("r")))
        except ValueError:
            raise NotFound("this link is not valid") from None
        async with self.rt.db.transaction() as conn:
            row = await check_repo.pool_request_state(conn, request_id)
            if row is None:
                return PoolLinkState(theme="", status="gone")
            titles = await self.outcomes(api.OutcomesAsk(convoy_ids=[], project_types=[row["theme"]]))
            theme = next(iter(titles.project_types), api.ProjectOutcome(project_type=row["theme"]))
            words = {"title_de": theme.title_de or row["theme"], "title_en": theme.title_en or row["theme"]}
            if req.withdraw and await check_repo.withdraw_pool_request(conn, request_id):
                await self._contact_deleted(conn, request_id, api.ANONYMOUS, "pool.withdrawn", {"via": "email link"})
                return PoolLinkState(theme=row["theme"], status="gone", **words)
            status: Literal["waiting", "formed", "gone"] = (
                "waiting" if row["status"] == "waiting" else "formed" if row["status"] == "formed" else "gone"
            )
            return PoolLinkState(theme=row["theme"], status=status, **words)

    @Convoys.POOL_PURGE
    async def pool_purge(self, req: PoolPurge) -> PoolPurged:
        """Pool entries expire: a contact waits CONVOY_POOL_RETENTION_DAYS at most, then it is deleted."""
        before = req.now - timedelta(days=self.rt.settings.pool_retention_days)
        async with self.rt.db.transaction() as conn:
            expired = await check_repo.expire_pool_requests(conn, before)
            days = {"days": str(self.rt.settings.pool_retention_days)}
            for request_id in expired:
                await self._contact_deleted(conn, request_id, api.SYSTEM, "pool.expired", days)
        return PoolPurged(expired=len(expired))

    async def purge_forever(self, stop: asyncio.Event) -> None:
        """The pool's retention, every hour (and at start)."""
        while not stop.is_set():
            try:
                await self.pool_purge(PoolPurge(now=datetime.now(UTC)))
            except Exception as exc:
                log.warning("pool purge failed; next round in an hour", error=repr(exc))
            await wait_or_stop(stop, PURGE_EVERY_S)

    # --- the pool and formation (facilitators) -------------------------------------------------------
    @Convoys.POOL_LIST
    async def pool(self, req: api.Ask) -> api.Pool:
        self.svc.access.require_facilitator(req.actor, FACILITATORS_ONLY)
        async with self.rt.db.connection() as conn:
            rows = await check_repo.pool_rows(conn)
        entries = [self._entry(r) for r in rows]
        groups = formation.suggest([_candidate(e) for e in entries])
        titles = await self.outcomes(
            api.OutcomesAsk(convoy_ids=[], project_types=list(dict.fromkeys(e.theme for e in entries)))
        )
        return api.Pool(
            entries=entries,
            suggestions=[
                api.PoolGroup(
                    theme=g.theme,
                    request_ids=[m.id for m in g.members],
                    maturity=g.maturity,
                    competitors=[_pair(a, b) for a, b in g.competitors],
                )
                for g in groups
            ],
            themes=titles.project_types,
        )

    def _entry(self, r: asyncpg.Record) -> api.PoolEntry:
        scores = check_repo.scores_of(r) if r["scores"] is not None else {}
        areas: list[api.AreaScore] = []
        if r["check_id"] is not None and scores:
            with_check = qs_.question_set(r["check_version"])
            areas = [
                api.AreaScore(key=a.key, title_de=a.title_de, title_en=a.title_en, score=scores.get(a.key))
                for a in with_check.areas
                if a.key in scores
            ]
        return struct(r, api.PoolEntry, areas=areas)

    @Convoys.POOL_FORM
    async def form(self, req: api.FormConvoy) -> api.Convoy:
        self.svc.access.require_facilitator(req.actor, FACILITATORS_ONLY)
        f = req.formation
        c = f.convoy
        check_timezone(c.timezone)
        check_schedule(c.cadence, c.start_date, c.end_date)
        ids = list(dict.fromkeys(f.request_ids))
        async with self.rt.db.transaction() as conn:
            rows = await check_repo.pool_rows_by_id(conn, ids, lock=True)
            if len(rows) != len(ids):
                raise NotFound("no such pool request")
            taken = [r["company_name"] for r in rows if r["status"] != "waiting"]
            if taken:
                raise Conflict(f"no longer waiting in the pool: {', '.join(taken)}")
            entries = [self._entry(r) for r in rows]
            pairs = formation.competitors([_candidate(e) for e in entries])
            if pairs and not f.allow_competitors:
                names = {e.id: e.company_name for e in entries}
                described = "; ".join(
                    f"{names[a.id]} and {names[b.id]} ({a.sector.strip()}, {a.region})" for a, b in pairs
                )
                raise Conflict(f"likely competitors in one convoy: {described}; confirm to form it anyway")
            convoy_id = await self.svc.new_convoy(conn, req.actor, c)
            convoy = await repo.convoy_row(conn, convoy_id)
            assert convoy is not None
            for e in entries:
                new = {"name": e.company_name, "sector": e.sector, "size_class": e.size_class, "region": e.region}
                company = await self.svc.new_company(conn, convoy_id, msgspec.convert(new, api.NewCompany))
                await repo.audit(
                    conn,
                    convoy_id=convoy_id,
                    actor=req.actor,
                    action="company.joined",
                    object_type="company",
                    object_id=company.id,
                    details={"name": company.name, "pool_request": str(e.id)},
                )
                company_row = await repo.company_row(conn, company.id)
                assert company_row is not None
                await self.svc.send_invitation(
                    conn,
                    req.actor,
                    convoy,
                    company_row,
                    msgspec.convert(
                        {"email": e.contact_email, "name": e.contact_name, "language": e.contact_language},
                        api.NewInvitation,
                    ),
                )
                await check_repo.mark_formed(conn, e.id, convoy_id, company.id, req.actor.person_id)
            await repo.audit(
                conn,
                convoy_id=convoy_id,
                actor=req.actor,
                action="pool.formed",
                object_type="convoy",
                object_id=convoy_id,
                details={"companies": str(len(entries)), "competitors_confirmed": "yes" if pairs else "no"},
            )
            return await repo.convoy(conn, convoy, with_members=True)

    # --- programme figures (facilitators) --------------------------------------------------------------
    @Convoys.PROGRAMME_REPORT
    async def programme(self, req: api.AskProgramme) -> api.ProgrammeReport:
        self.svc.access.require_facilitator(req.actor, FACILITATORS_ONLY)
        p = req.period
        if p.to_date < p.from_date:
            raise InvalidInput("`to_date`: the period cannot end before it starts")
        if (p.to_date - p.from_date).days > MAX_PERIOD_DAYS:
            raise InvalidInput("`to_date`: at most three years at a time")
        check_timezone(p.timezone)
        async with self.rt.db.connection() as conn:
            counts = await check_repo.programme_counts(conn, p.from_date, p.to_date, p.convoy_id, p.timezone)
            convoys = await check_repo.programme_convoys(conn, p.from_date, p.to_date, p.convoy_id, p.timezone)
        if p.convoy_id is not None and not convoys:
            raise NotFound("no such convoy in this period")
        found = await self.outcomes(
            api.OutcomesAsk(convoy_ids=[c["id"] for c in convoys], from_date=p.from_date, to_date=p.to_date)
        )
        per = {o.convoy_id: o for o in found.convoys}
        rows = []
        for c in convoys:
            o = per.get(c["id"]) or api.ConvoyOutcome(
                convoy_id=c["id"], companies=0, companies_reporting=0, reports=0, milestones_done=0, go_lives=0
            )
            rows.append(
                struct(
                    c,
                    api.ProgrammeConvoy,
                    convoy_id=c["id"],
                    companies_reporting=o.companies_reporting,
                    participation=round(o.companies_reporting / c["companies"], 3) if c["companies"] else None,
                    reports=o.reports,
                    milestones_done=o.milestones_done,
                    go_lives=o.go_lives,
                )
            )
        return struct(
            counts,
            api.ProgrammeReport,
            from_date=p.from_date,
            to_date=p.to_date,
            convoys=rows,
            project_types=found.project_types,
        )


def _candidate(e: api.PoolEntry) -> formation.Candidate:
    return formation.Candidate(id=e.id, theme=e.theme, sector=e.sector, region=e.region, overall=e.overall)


def _pair(a: formation.Candidate, b: formation.Candidate) -> api.Competitors:
    return api.Competitors(first=a.id, second=b.id, sector=a.sector.strip(), region=a.region)
