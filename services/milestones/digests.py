"""What the notifier and services/reminders ask per check-in cycle (system calls, no actor): who
reported, what each prompt reminds a company of, a cycle's digest, the round boundary's seals, and
the facilitators' weekly digest of their convoys' health.

Each answer is read with a fixed number of set-based queries (services/milestones/repository/digests.py)
and built by pure functions here (``build_digest``, ``build_facilitator_digest``).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

import asyncpg

from schemas import api
from schemas.milestones import Milestones
from services.milestones import repository as repo
from services.milestones.access import Access
from services.milestones.service import current_cycle, cycle_of, local_today
from services.runtime import cycles
from services.runtime.db import struct, structs
from services.runtime.errors import InvalidInput, NotFound
from services.runtime.service import Runtime


class Digests:
    def __init__(self, rt: Runtime, access: Access) -> None:
        self.rt = rt
        self.access = access

    async def _cycle(self, conn: asyncpg.Connection, req: api.CycleAsk) -> tuple[asyncpg.Record, cycles.Cycle]:
        """The convoy asked about (read through on a miss; 404 if unknown) and its cycle ``req.cycle_index``."""
        _check_index(req.cycle_index)
        convoy = await self.access.convoy(conn, req.convoy_id)
        if convoy is None:
            raise NotFound("no such convoy")
        return convoy, cycle_of(convoy, req.cycle_index)

    @Milestones.CYCLE_STATUS
    async def cycle_status(self, req: api.CycleAsk) -> api.CycleStatus:
        """Companies with a visible report for the cycle: one query (plus a read-through on a miss)."""
        _check_index(req.cycle_index)
        async with self.rt.db.connection() as conn:
            reported = await repo.digests.cycle_reporters(conn, req.convoy_id, req.cycle_index)
            if reported is None:
                if await self.access.convoy(conn, req.convoy_id) is None:
                    raise NotFound("no such convoy")
                reported = await repo.digests.cycle_reporters(conn, req.convoy_id, req.cycle_index) or []
        return api.CycleStatus(convoy_id=req.convoy_id, cycle_index=req.cycle_index, reported_company_ids=reported)

    @Milestones.PROMPT_CONTEXT
    async def prompt_context(self, req: api.CycleAsk) -> api.PromptContexts:
        """What each active company's prompt reminds it of: the convoy, then three set-based queries."""
        async with self.rt.db.connection() as conn:
            convoy, cycle = await self._cycle(conn, req)
            due_date = cycle.due_at.astimezone(ZoneInfo(convoy["timezone"])).date()
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                data = await repo.digests.prompt_rows(conn, req.convoy_id, req.cycle_index, due_date)
        due: dict[uuid.UUID, list[api.DueMilestone]] = {}
        for m in data["milestones"]:
            due.setdefault(m["company_id"], []).append(struct(m, api.DueMilestone))
        open_: dict[uuid.UUID, list[str]] = {}
        for c in data["commitments"]:
            open_.setdefault(c["company_id"], []).append(c["text"])
        return api.PromptContexts(
            convoy_id=req.convoy_id,
            cycle_index=req.cycle_index,
            companies=[
                api.PromptContext(
                    company_id=c["company_id"],
                    milestones_due=due.get(c["company_id"], []),
                    last_next_steps=c["last_next"],
                    open_commitments=open_.get(c["company_id"], []),
                )
                for c in data["companies"]
            ],
        )

    @Milestones.DIGEST
    async def digest(self, req: api.CycleAsk) -> api.Digest:
        """One cycle's digest, peer view: the convoy, then four set-based queries in one snapshot.

        A report counts for the digest of its own cycle if it was in before that cycle's seal (the
        close), and otherwise, once, as a late addendum of the next digest sealed after it arrived;
        for a sealed cycle, calling it again (a retry, or days later) gives the same reports, addenda
        and completed milestones. For a cycle not sealed yet it is a preview: what a seal now would carry.
        """
        async with self.rt.db.connection() as conn:
            convoy, cycle = await self._cycle(conn, req)
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                through = await repo.digests.sealed_through(conn, req.convoy_id)
                data = await repo.digests.digest_rows(
                    conn, req.convoy_id, req.cycle_index, cycle.opens_at, cycle.closes_at, sealed_through=through
                )
        return build_digest(convoy, req.cycle_index, data)

    @Milestones.ROUNDS_SEAL
    async def seal_rounds(self, req: api.SealRounds) -> api.RoundsSealed:
        """services/reminders seals cycles before it closes them: from here on they are closed.

        Idempotent (a retried close seals nothing again); see repository.digests.seal_rounds.
        """
        async with self.rt.db.transaction() as conn:
            sealed = await repo.digests.seal_rounds(
                conn, [r.convoy_id for r in req.rounds], [r.cycle_index for r in req.rounds]
            )
        return api.RoundsSealed(sealed=sealed)

    @Milestones.FACILITATOR_DIGEST
    async def facilitator_digest(self, req: api.FacilitatorDigestAsk) -> api.FacilitatorDigest:
        """The weekly health of a facilitator's convoys at ``req.at``: six set-based queries for all
        of them together (the convoys, then five in one snapshot); unknown convoy ids are skipped.
        ``flags_waiting`` counts the flags open at ``req.at``.

        A pure function of the stored data and ``at``: asked again, it says the same.
        """
        if req.at.tzinfo is None or req.at.utcoffset() is None:
            raise InvalidInput("`at`: must carry a time zone offset")
        wanted = list(dict.fromkeys(req.convoy_ids))  # in the order asked, each once
        if not wanted:
            return api.FacilitatorDigest(convoys=[])
        async with (
            self.rt.db.connection() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            known = {row["convoy_id"]: row for row in await repo.digests.convoys(conn, wanted)}
            convoys = [known[c] for c in wanted if c in known]
            if not convoys:
                return api.FacilitatorDigest(convoys=[])
            currents = [_current_index(c, req.at) for c in convoys]
            data = await repo.digests.facilitator_digest_rows(
                conn,
                [c["convoy_id"] for c in convoys],
                [max(k, 0) for k in currents],
                currents,
                [local_today(c, req.at) for c in convoys],
                req.at,
            )
        return build_facilitator_digest(convoys, currents, data)


def _check_index(index: int) -> None:
    if index < 0:
        raise InvalidInput("`cycle_index`: must be >= 0")


def build_digest(convoy: asyncpg.Record, cycle_index: int, data: dict[str, list[asyncpg.Record]]) -> api.Digest:
    """The digest from the set-based rows of :func:`repository.digests.digest_rows`; pure arithmetic from here."""
    names: dict[uuid.UUID, str] = {}
    progress: dict[uuid.UUID, float] = {}
    for c in data["companies"]:
        names[c["company_id"]] = c["name"]
        total = c["total_weight"]
        progress[c["company_id"]] = round(c["done_weight"] / total, 4) if total else 0.0
    changes: dict[uuid.UUID, list[tuple[str, str]]] = {}
    for t in data["touched"]:
        changes.setdefault(t["report_id"], []).append((t["title"], t["status"]))
    reports: list[api.DigestReport] = []
    addenda: list[api.DigestReport] = []
    for r in data["reports"]:
        company_id, name = r["company_id"], names[r["company_id"]]
        (reports if r["cycle_index"] == cycle_index else addenda).append(
            struct(
                r,
                api.DigestReport,
                report_id=r["id"],
                company_name=name,
                progress=progress[company_id],
                milestone_changes=[
                    api.DigestMilestone(company_id=company_id, company_name=name, title=title, status=status)
                    for title, status in changes.get(r["id"], [])
                ],
            )
        )
    reported = {r.company_id for r in reports}
    n = len(names)
    return api.Digest(
        convoy_id=convoy["convoy_id"],
        convoy_name=convoy["name"],
        cycle_index=cycle_index,
        completed_milestones=structs(data["completed"], api.DigestMilestone),
        help_requests=[r for r in reports if r.help_wanted],
        reports=reports,
        late_addenda=addenda,
        silent_company_ids=[c for c in names if c not in reported],
        progress=round(sum(progress.values()) / n, 4) if n else 0.0,
        participation=round(len(reported) / n, 4) if n else 0.0,
    )


def _current_index(convoy: asyncpg.Record, at: datetime) -> int:
    """The index of the cycle open at ``at``; -1 before the first check-in."""
    try:
        cycle = current_cycle(convoy, at)
    except (ValueError, OverflowError):  # a moment beyond the calendar
        return -1
    return cycle.index if cycle else -1


SILENT_AFTER = 2
"""A company is listed as silent after this many cycles in a row without a visible report."""
MOOD_CYCLES = 4


def build_facilitator_digest(
    convoys: list[asyncpg.Record], currents: list[int], data: dict[str, list[asyncpg.Record]]
) -> api.FacilitatorDigest:
    """The facilitator digest from the rows of :func:`repository.digests.facilitator_digest_rows`.

    ``currents`` holds each convoy's current cycle (-1 before its first check-in). Silence counts
    the cycles ``0..current`` in a row, back from the current one, without a visible report.
    """
    companies: dict[uuid.UUID, list[asyncpg.Record]] = {}
    for c in data["companies"]:
        companies.setdefault(c["convoy_id"], []).append(c)
    stalled: dict[uuid.UUID, list[api.StalledMilestone]] = {}
    for m in data["milestones"]:
        stalled.setdefault(m["convoy_id"], []).append(struct(m, api.StalledMilestone))
    help_: dict[uuid.UUID, list[api.OpenItem]] = {}
    for h in data["help"]:
        help_.setdefault(h["convoy_id"], []).append(
            api.OpenItem(company_name=h["company_name"], report_id=h["report_id"], text=h["help_topic"] or "")
        )
    moods: dict[tuple[uuid.UUID, int], float] = {
        (m["convoy_id"], m["cycle_index"]): float(m["mood"]) for m in data["moods"]
    }
    flags: dict[uuid.UUID, int] = {f["convoy_id"]: int(f["flags"]) for f in data.get("flags", [])}
    out: list[api.ConvoyHealth] = []
    for convoy, k in zip(convoys, currents, strict=True):
        convoy_id = convoy["convoy_id"]
        silent: list[api.SilentCompany] = []
        blockers: list[api.OpenItem] = []
        for c in companies.get(convoy_id, []):
            if k >= 0:
                last = c["cycle_index"]
                cycles_silent = k + 1 if last is None else max(k - last, 0)
                if cycles_silent >= SILENT_AFTER:
                    silent.append(
                        api.SilentCompany(company_id=c["company_id"], name=c["name"], cycles_silent=cycles_silent)
                    )
            if c["report_id"] is not None and c["blockers"]:
                blockers.append(api.OpenItem(company_name=c["name"], report_id=c["report_id"], text=c["blockers"]))
        out.append(
            api.ConvoyHealth(
                convoy_id=convoy_id,
                convoy_name=convoy["name"],
                cycle_index=k if k >= 0 else None,
                silent_companies=silent,
                stalled_milestones=stalled.get(convoy_id, []),
                open_blockers=blockers,
                unanswered_help=help_.get(convoy_id, []),
                mood_trend=[moods.get((convoy_id, i)) for i in range(max(k - MOOD_CYCLES + 1, 0), k + 1)],
                flags_waiting=flags.get(convoy_id, 0),
            )
        )
    return api.FacilitatorDigest(convoys=out)
