"""The scheduler: materialises cycles, fires prompts, nudges and digests once, as the leader.

Several reminders processes may run; only the one holding the PostgreSQL advisory lock
``convoy-reminders-leader`` ticks. A fire is a conditional UPDATE of the cycle row plus an
outbox event with a deterministic id (convoy, cycle, kind), committed together: a second fire,
a second leader or a retry changes nothing and publishes nothing new (JetStream and the
consumers dedupe the id too).
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import msgspec
import structlog

from schemas import api
from schemas import envelope as env
from schemas import events as ev
from schemas.convoys import Convoys
from schemas.milestones import Milestones
from schemas.reminders import Reminders
from schemas.values import Cadence
from services.reminders import repository as repo
from services.reminders import schedule as plan_
from services.reminders.access import Access
from services.runtime import correlation, lifecycle, metrics, outbox
from services.runtime.db import struct, structs
from services.runtime.errors import Conflict, Forbidden, InvalidInput, NotFound
from services.runtime.service import Runtime

log = structlog.get_logger(__name__)
_cadence = msgspec.json.Decoder(Cadence)
FIRE_NAMESPACE = uuid.UUID("6f1c2b53-8e0a-4f5e-9d3c-5b1f0c7a2e91")
"""uuid5 namespace of the deterministic ids of scheduler fires."""
LEADER_LOCK = "convoy-reminders-leader"
PLAN_PAGE = 2000
"""Convoys planned per transaction."""
FIRE_BATCH = 500
"""Cycles fired per transaction (whole convoys: a convoy's events stay in order)."""
SEAL_CHUNK = 1000
"""Cycles per seal request to services/milestones (api.SealRounds takes at most this many)."""
FIRE_CONCURRENCY = 4
"""Fire transactions at a time (the pool is shared with the consumers and the relay)."""


_FIRE_NAMESPACE_BYTES = FIRE_NAMESPACE.bytes
_UUID5_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID5_SET = (5 << 76) | (0x8000 << 48)


_Planned = tuple[plan_.Plan, list[plan_.PlannedCycle], datetime]
"""A plan, the cycles to keep at the tick's time and until when they stay the same (``plan_horizon``)."""


def fire_id(convoy_id: uuid.UUID, index: int, kind: str, number: int = 0) -> uuid.UUID:
    return _fire_uuid(f"{convoy_id}:{index}:{kind}:{number}")


def _fire_uuid(name: str) -> uuid.UUID:
    """``uuid.uuid5(FIRE_NAMESPACE, name)``, the same id in a third of the time (a slot computes 400,000)."""
    digest = hashlib.sha1(_FIRE_NAMESPACE_BYTES + name.encode(), usedforsecurity=False).digest()
    return uuid.UUID(int=(int.from_bytes(digest[:16], "big") & _UUID5_CLEAR) | _UUID5_SET)


def plan_of(row: asyncpg.Record) -> plan_.Plan:
    raw = row["cadence"]
    return struct(row, plan_.Plan, cadence=_cadence.decode(raw.encode() if isinstance(raw, str) else raw))


def state_of(row: asyncpg.Record) -> plan_.CycleState:
    return plan_.CycleState(
        index=row["cycle_index"],
        opens_at=row["opens_at"],
        due_at=row["due_at"],
        closes_at=row["closes_at"],
        skipped=row["skipped"],
        opened=row["opened_at"] is not None,
        nudges_done=row["nudges_done"],
        closed=row["closed_at"] is not None,
    )


class Scheduler:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.leader = False
        self._tick_lock = asyncio.Lock()
        self.access = Access(rt)

    # --- leadership and ticking ----------------------------------------------------------------
    async def lead(self, stop: asyncio.Event) -> None:
        """Lead while this replica holds the leader lock (on a connection of its own: PostgreSQL frees
        it when the process dies); a standby takes over within seconds."""
        settings = self.rt.settings

        async def connect() -> asyncpg.Connection:
            return await asyncpg.connect(
                settings.database_url,
                timeout=settings.db_acquire_timeout,
                server_settings={"application_name": "convoy-reminders-leader"},
            )

        await lifecycle.lead(connect, LEADER_LOCK, stop, lambda conn: self._hold(conn, stop))

    async def _hold(self, conn: asyncpg.Connection, stop: asyncio.Event) -> None:
        self.leader = True
        log.info("leading the scheduler")
        try:
            await lifecycle.hold(conn, stop)  # the lock lives as long as this connection
        finally:
            self.leader = False

    async def tick_if_leader(self) -> None:
        """The APScheduler job: only the leader fires."""
        if self.leader and not self.rt.settings.reminders_manual_clock:
            await self.tick(datetime.now(UTC))

    async def tick(self, now: datetime) -> tuple[list[str], int]:
        """Fire whatever is due at ``now`` for every active convoy; return what was done and how many
        convoys failed to plan or fire (each is logged; the next tick retries them).

        Set-based (issue #9): re-plan only the convoys whose plan changed or ran out, ask the
        database which cycles have something due (one indexed query), fire those in batches.
        A tick with nothing due reads empty ranges of three indexes (convoys_unplanned,
        cycles_next_at, convoys_plan_expiry), whatever the number of convoys (issue #21).
        """
        done: list[str] = []
        async with self._tick_lock:
            # A changed schedule moves cycles not yet opened: plan those convoys before firing. A plan
            # that only ran out (the current cycle ended) adds the next cycle, which is not due yet:
            # fire first (the prompts of a busy slot go out sooner), then plan, then fire whatever
            # that added (after an outage longer than a cycle: the same rules as ever, by cycle index).
            _, failed = await self._plan(now, changed_only=True)
            fired, failed_firing = await self._fire_due(now)
            done += fired
            planned, failed_planning = await self._plan(now)
            failed += failed_firing + failed_planning
            if planned:
                fired, failed_firing = await self._fire_due(now)
                done += fired
                failed += failed_firing
            done += await self._facilitator_digest(now)
        return done, failed

    async def _plan(self, now: datetime, *, changed_only: bool = False) -> tuple[int, int]:
        """Keep the previous, current and next cycle of every active convoy whose plan may have changed:
        its settings changed (``convoys_unplanned``) or, unless ``changed_only``, its plan ran out at
        ``now`` (``convoys_plan_expiry``). Each set is read through its own index, in that index's
        order: a tick with nothing to plan reads two empty index ranges. Returns how many convoys were
        planned and how many failed to."""
        memo: dict[tuple[Any, ...], _Planned] = {}  # convoys sharing a plan
        planned, failed = await self._plan_pages(now, memo, expired=False)
        if not changed_only:
            more, more_failed = await self._plan_pages(now, memo, expired=True)
            planned, failed = planned + more, failed + more_failed
        if planned:
            log.info("scheduler planned", convoys=planned)
        metrics.count_scheduler_failures("plan", failed)
        return planned, failed

    async def _plan_pages(
        self, now: datetime, memo: dict[tuple[Any, ...], _Planned], *, expired: bool
    ) -> tuple[int, int]:
        """One set of :meth:`_plan`, a page at a time.

        A convoy whose plan only ran out (``expired``: its settings did not change) still has the cycles
        its last plan kept — ``cycles_to_keep`` at any time before that plan's ``planned_until``, by
        ``plan_horizon``'s definition — so only the cycles added since are sent (issue #21: at a busy
        slot one new cycle per convoy instead of three to encode and compare).
        """
        missing: dict[tuple[Any, ...], list[plan_.PlannedCycle]] = {}
        after_id = uuid.UUID(int=0)
        after_until = repo.EXPIRED_FROM
        planned = failed = 0
        while True:
            async with self.rt.db.connection() as conn:
                if expired:
                    rows = await repo.convoys_expired(conn, now, after_until, PLAN_PAGE)
                else:
                    rows = await repo.convoys_changed(conn, after_id, PLAN_PAGE)
            if not rows:
                break
            after_id = rows[-1]["convoy_id"]
            if expired:
                after_until = (rows[-1]["planned_until"], after_id)
            owners: list[uuid.UUID] = []
            kept: list[plan_.PlannedCycle] = []
            convoys: list[uuid.UUID] = []
            versions: list[int] = []
            until: list[datetime] = []
            changed: list[uuid.UUID] = []
            for row in rows:
                key = (row["timezone"], row["cadence"], row["start_date"], row["holiday_region"], row["holiday_policy"])
                try:
                    if key not in memo:
                        plan = plan_of(row)
                        memo[key] = (plan, plan_.cycles_to_keep(plan, now), plan_.plan_horizon(plan, now))
                    plan, keep, horizon = memo[key]
                    if expired:
                        since = (*key, row["planned_until"])
                        if since not in missing:
                            before = plan_.cycles_to_keep(plan, row["planned_until"] - timedelta(microseconds=1))
                            known = {c.index for c in before}
                            missing[since] = [c for c in keep if c.index not in known]
                        keep = missing[since]
                except Exception as exc:  # one broken convoy must not stop the others
                    log.error("planning failed for a convoy", convoy_id=str(row["convoy_id"]), error=repr(exc))
                    failed += 1
                    continue
                owners += [row["convoy_id"]] * len(keep)
                kept += keep
                convoys.append(row["convoy_id"])
                versions.append(row["plan_version"])
                until.append(horizon)
                if row["planned_version"] != row["plan_version"]:
                    changed.append(row["convoy_id"])
            try:
                async with self.rt.db.transaction() as conn:
                    await repo.keep_cycles(conn, owners, kept)
                    if changed:
                        await repo.forget_next_at(conn, changed)
                    await repo.mark_planned(conn, convoys, versions, until)
                planned += len(convoys)
            except Exception as exc:  # e.g. a deadlock with a request: these convoys are planned next tick
                log.error("planning failed for a batch of convoys", convoys=len(convoys), error=repr(exc))
                failed += len(convoys)
            if len(rows) < PLAN_PAGE:
                break
        return planned, failed

    async def _fire_due(self, now: datetime) -> tuple[list[str], int]:
        """Fire every due cycle: batches of whole convoys, a few transactions at a time. Returns what
        was fired and how many convoys failed to (their cycles stay due: the next tick retries)."""
        async with self.rt.db.connection() as conn:
            due = await repo.due_cycles(conn, now)
        batches: list[list[tuple[uuid.UUID, int]]] = []
        batch: list[tuple[uuid.UUID, int]] = []
        for row in due:
            key = (row["convoy_id"], row["cycle_index"])
            if len(batch) >= FIRE_BATCH and batch[-1][0] != key[0]:  # a convoy's cycles stay in one batch
                batches.append(batch)
                batch = []
            batch.append(key)
        if batch:
            batches.append(batch)
        del due
        gate = asyncio.Semaphore(FIRE_CONCURRENCY)
        failed = 0

        async def fire(keys: list[tuple[uuid.UUID, int]]) -> list[str]:
            nonlocal failed
            async with gate:
                try:
                    return await self._fire_batch(keys, now)
                except Exception as exc:
                    log.error("tick failed for a batch; firing its convoys one by one", error=repr(exc))
            done: list[str] = []
            for convoy_id in dict.fromkeys(k[0] for k in keys):
                try:
                    async with gate:
                        done += await self._fire_batch([k for k in keys if k[0] == convoy_id], now)
                except Exception as exc:  # one broken convoy must not stop the others
                    log.error("tick failed for a convoy", convoy_id=str(convoy_id), error=repr(exc))
                    failed += 1
            return done

        results = await asyncio.gather(*(fire(b) for b in batches))
        metrics.count_scheduler_failures("fire", failed)
        return [action for done in results for action in done], failed

    async def _fire_batch(self, keys: list[tuple[uuid.UUID, int]], now: datetime) -> list[str]:
        """One transaction: lock the cycles, record what is due, write the events (exactly once).

        Per fired cycle this is the slot's hot path (400,000 fires at 1,000,000 convoys, issue #21):
        the rows' columns are read once, a fire's name (``convoy:cycle:kind:nudge``) is both what the
        tick reports and the name of its deterministic event id, unchanged cycles are not rewritten.
        """
        done: list[str] = []
        kinds: list[str] = []
        event_ids: list[uuid.UUID] = []
        subjects: list[str] = []
        data: list[bytes] = []
        saved: tuple[list[Any], ...] = ([], [], [], [], [], [])
        ids, indexes, opened_at, nudges_done, closed_at, next_at = saved
        async with self.rt.db.transaction() as conn:
            rows = await repo.lock_cycles(conn, [k[0] for k in keys], [k[1] for k in keys])
            todo = []
            for row in rows:
                offsets = tuple(row["nudge_offsets"])
                state = state_of(row)
                actions = plan_.due_actions(state, offsets, now)
                new = plan_.after(state, actions)
                following = plan_.next_action_at(new, offsets)
                if not actions and following == row["next_at"]:
                    continue  # nothing to record
                ids.append(row["convoy_id"])
                indexes.append(row["cycle_index"])
                opened_at.append(row["opened_at"] or (now if new.opened else None))
                nudges_done.append(new.nudges_done)
                closed_at.append(row["closed_at"] or (now if new.closed else None))
                next_at.append(following)
                if actions:
                    todo.append((row, actions))
            sending = list(
                {row["convoy_id"] for row, actions in todo if any(not a.kind.startswith("drop") for a in actions)}
            )
            absences: dict[uuid.UUID, list[asyncpg.Record]] = {}
            for a in await repo.absences_of(conn, sending) if sending else []:
                absences.setdefault(a["convoy_id"], []).append(a)
            # The round boundary: services/milestones seals the cycles before this close commits, so
            # a report from now on is late (a failed seal fails the batch: retried at the next tick).
            await self._seal(
                [(c["convoy_id"], a.cycle_index) for c, actions in todo for a in actions if a.kind == "close"]
            )
            producer, of = self.rt.name, self.rt.subjects.of
            correlation_id, causation_id = correlation.current(), correlation.causation()
            last_id: uuid.UUID | None = None
            key = ""
            for c, actions in todo:
                convoy_id = c["convoy_id"]
                if convoy_id != last_id:  # a convoy's cycles are consecutive: its id is formatted once
                    last_id, key = convoy_id, str(convoy_id)
                found = absences.get(convoy_id)
                cycle_absences = _absences_of(c, c["timezone"], found) if found else []
                for action in actions:
                    name = f"{key}:{action.cycle_index}:{action.kind}:{action.nudge}"
                    done.append(name)
                    kinds.append(action.kind)
                    event = _event(c, action, cycle_absences)
                    if event is None:
                        continue
                    envelope = env.new_envelope(
                        event,
                        producer=producer,
                        correlation_id=correlation_id,
                        causation_id=causation_id,
                        event_id=_fire_uuid(name),  # fire_id(convoy_id, index, kind, nudge)
                    )
                    event_ids.append(envelope.id)
                    subjects.append(of(type(event)))
                    data.append(env.encode(envelope))
            if ids:
                await repo.save_cycles(conn, *saved)
            if event_ids:
                # the relay's wake-up, as outbox.add sends it
                await repo.add_outbox(conn, event_ids, subjects, data, outbox.wake_channel(self.rt.name))
        if done:
            log.info("scheduler fired", actions=len(done), events=len(event_ids), cycles=len(ids))
            metrics.count_fires(kinds)  # committed
        return done

    async def _facilitator_digest(self, now: datetime) -> list[str]:
        """Once a week (Monday 07:00 Berlin, or at the first tick after it): the facilitator digest."""
        period = plan_.facilitator_digest_due(now)
        if period is None:
            return []
        async with self.rt.db.transaction() as conn:
            if not await repo.claim_facilitator_digest(conn, period, now):
                return []
            await self.rt.emit(
                conn,
                ev.FacilitatorDigestDue(period=period, at=now),
                event_id=uuid.uuid5(FIRE_NAMESPACE, f"facilitator_digest:{period}"),
            )
        log.info("scheduler fired", kind="facilitator_digest", period=period)
        metrics.count_fires(["facilitator_digest"])
        return [f"facilitator_digest:{period}"]

    async def _apply(self, convoy_id: uuid.UUID, action: plan_.Action, now: datetime) -> bool:
        async with self.rt.db.transaction() as conn:
            c = await repo.cycle(conn, convoy_id, action.cycle_index, lock=True)
            if c is None:
                return False
            absences = await self._absences(conn, convoy_id, c)
            if action.kind in ("open", "drop_open"):
                if not await repo.mark(conn, convoy_id, c["cycle_index"], "opened_at", now):
                    return False
                if action.kind == "open":
                    await self.rt.emit(
                        conn,
                        ev.CycleOpened(
                            convoy_id=convoy_id,
                            cycle_index=c["cycle_index"],
                            opens_at=c["opens_at"],
                            due_at=c["due_at"],
                            closes_at=c["closes_at"],
                            absences=absences,
                        ),
                        event_id=fire_id(convoy_id, c["cycle_index"], "open"),
                    )
            elif action.kind in ("nudge", "drop_nudge"):
                if not await repo.mark(conn, convoy_id, c["cycle_index"], "nudges_done", action.nudge):
                    return False
                if action.kind == "nudge":
                    await self.rt.emit(
                        conn,
                        ev.NudgeDue(
                            convoy_id=convoy_id,
                            cycle_index=c["cycle_index"],
                            nudge=action.nudge,
                            due_at=c["due_at"],
                            absences=absences,
                        ),
                        event_id=fire_id(convoy_id, c["cycle_index"], "nudge", action.nudge),
                    )
            elif action.kind == "close":
                if c["closed_at"] is not None:
                    return False
                await self._seal([(convoy_id, c["cycle_index"])])
                if not await repo.mark(conn, convoy_id, c["cycle_index"], "closed_at", now):
                    return False
                await self.rt.emit(
                    conn,
                    ev.CycleClosed(
                        convoy_id=convoy_id,
                        cycle_index=c["cycle_index"],
                        opens_at=c["opens_at"],
                        closes_at=c["closes_at"],
                        absences=absences,
                    ),
                    event_id=fire_id(convoy_id, c["cycle_index"], "close"),
                )
            log.info(
                "scheduler fired",
                convoy_id=str(convoy_id),
                cycle=c["cycle_index"],
                kind=action.kind,
                nudge=action.nudge,
            )
            return True

    async def _seal(self, rounds: list[tuple[uuid.UUID, int]]) -> None:
        """Seal cycles in services/milestones (idempotent) before their close is recorded here."""
        for i in range(0, len(rounds), SEAL_CHUNK):
            await self.rt.rpc.call(
                Milestones.ROUNDS_SEAL,
                api.SealRounds(
                    rounds=[api.RoundRef(convoy_id=c, cycle_index=n) for c, n in rounds[i : i + SEAL_CHUNK]]
                ),
            )

    async def _absences(self, conn: asyncpg.Connection, convoy_id: uuid.UUID, c: asyncpg.Record) -> list[ev.Absence]:
        convoy = await repo.convoy(conn, convoy_id)
        assert convoy is not None
        return _absences_of(c, convoy["timezone"], await repo.absences(conn, convoy_id))

    # --- requests --------------------------------------------------------------------------------
    async def _convoy(self, conn: asyncpg.Connection, convoy_id: uuid.UUID) -> asyncpg.Record:
        row = await repo.convoy(conn, convoy_id)
        if row is not None:
            return row
        convoy = await self.rt.rpc.call(Convoys.CONVOY_GET, api.GetConvoy(actor=api.SYSTEM, convoy_id=convoy_id))
        await repo.upsert_convoy(
            conn,
            convoy_id=convoy.id,
            name=convoy.name,
            timezone=convoy.timezone,
            language=convoy.language,
            cadence=convoy.cadence,
            start_date=convoy.start_date or convoy.created_at.date(),
            status=convoy.status,
        )
        for company in convoy.companies:
            await repo.upsert_company(conn, company.id, convoy.id, company.name)
        row = await repo.convoy(conn, convoy_id)
        assert row is not None
        return row

    @Reminders.SCHEDULE
    async def schedule(self, req: api.AskSchedule) -> api.Schedule:
        await self.access.reader(req.actor, req.convoy_id)
        now = datetime.now(UTC)
        async with self.rt.db.transaction() as conn:
            row = await self._convoy(conn, req.convoy_id)
            plan = plan_of(row)
            for c in plan_.cycles_to_keep(plan, now, ahead=req.upcoming):
                await repo.keep_cycle(conn, req.convoy_id, c)
            rows = await repo.upcoming(conn, req.convoy_id, now, req.upcoming)
            absences = await repo.absences(conn, req.convoy_id)
        return api.Schedule(
            convoy_id=req.convoy_id,
            timezone=row["timezone"],
            status=row["status"],
            settings=api.ScheduleSettings(
                holiday_region=row["holiday_region"],
                holiday_policy=row["holiday_policy"],
                nudge_offsets_hours=list(row["nudge_offsets"]),
            ),
            cycles=[
                struct(r, api.ScheduledCycle, opened=r["opened_at"] is not None, closed=r["closed_at"] is not None)
                for r in rows
            ],
            absences=structs(absences, api.AbsenceInfo),
        )

    @Reminders.CALENDAR_ROUNDS
    async def calendar_rounds(self, req: api.AskCalendarRounds) -> api.CalendarRounds:
        """The rounds of several convoys around now, for calendar feeds (system callers: the API's feed).

        A round is what the scheduler stored for it (times fixed once it opened, skips) or else what it
        will store: :func:`schedule.plan_cycle`, the same plan and holiday rules. Cancelled: a holiday or a
        facilitator's skip, and every round not opened while the convoy is paused. Left out: rounds that
        closed without ever opening (before the convoy started) and, once a convoy is completed, those it
        never opened. Read-only: nothing is materialised for a feed.
        """
        self.access.system(req.actor, "calendar rounds are for the calendar feed only")
        now = datetime.now(UTC)
        ids = list(dict.fromkeys(req.convoy_ids))
        async with self.rt.db.connection() as conn:
            rows = {r["convoy_id"]: r for r in await repo.convoys_by_id(conn, ids)}
        for convoy_id in [c for c in ids if c not in rows]:  # events still in flight: read through once
            try:
                async with self.rt.db.transaction() as conn:
                    await self._convoy(conn, convoy_id)
                    found = await repo.convoys_by_id(conn, [convoy_id])
                rows[convoy_id] = found[0]
            except NotFound:
                continue
        plans: dict[uuid.UUID, tuple[plan_.Plan, range]] = {}
        for convoy_id, row in rows.items():
            try:
                plan = plan_of(row)
            except Exception as exc:  # one broken convoy must not empty everybody's calendar
                log.error("calendar: no plan for a convoy", convoy_id=str(convoy_id), error=repr(exc))
                continue
            plans[convoy_id] = (plan, plan_.calendar_indexes(plan, now, req.past, req.ahead))
        async with self.rt.db.connection() as conn:
            stored = {
                (r["convoy_id"], r["cycle_index"]): r
                for r in await repo.cycles_in(
                    conn,
                    list(plans),
                    [span.start for _, span in plans.values()],
                    [span.stop - 1 for _, span in plans.values()],
                )
            }
        out = []
        for convoy_id in ids:
            if convoy_id not in plans:
                continue
            row = rows[convoy_id]
            plan, span = plans[convoy_id]
            rounds = []
            for index in span:
                r = _calendar_round(plan_.plan_cycle(plan, index), stored.get((convoy_id, index)), row["status"], now)
                if r is not None:
                    rounds.append(r)
            out.append(
                struct(
                    row, api.CalendarConvoy, version=row["plan_version"], changed_at=row["updated_at"], rounds=rounds
                )
            )
        return api.CalendarRounds(convoys=out)

    @Reminders.SCHEDULE_SETTINGS
    async def put_settings(self, req: api.PutScheduleSettings) -> api.Schedule:
        await self.access.facilitator(req.actor, req.convoy_id)
        async with self.rt.db.transaction() as conn:
            await self._convoy(conn, req.convoy_id)
            await repo.update_settings(conn, req.convoy_id, req.settings)
        return await self.schedule(api.AskSchedule(actor=req.actor, convoy_id=req.convoy_id))

    @Reminders.CYCLE_SKIP
    async def skip_cycle(self, req: api.SkipCycle) -> api.Schedule:
        await self.access.facilitator(req.actor, req.convoy_id)
        async with self.rt.db.transaction() as conn:
            row = await self._convoy(conn, req.convoy_id)
            c = plan_.plan_cycle(plan_of(row), req.cycle_index)
            await repo.keep_cycle(conn, req.convoy_id, c)
            stored = await repo.cycle(conn, req.convoy_id, req.cycle_index, lock=True)
            assert stored is not None
            if stored["opened_at"] is not None:
                raise Conflict("this cycle has already opened; it can no longer be skipped")
            await repo.skip_cycle(conn, req.convoy_id, req.cycle_index, req.skip.reason or "ausgesetzt")
        return await self.schedule(api.AskSchedule(actor=req.actor, convoy_id=req.convoy_id))

    @Reminders.COMPANY_AWAY
    async def mark_away(self, req: api.MarkAway) -> api.Schedule:
        await self.access.facilitator(req.actor, req.convoy_id)
        if req.away.until_date < req.away.from_date:
            raise InvalidInput("`until_date`: before `from_date`")
        async with self.rt.db.transaction() as conn:
            await self._convoy(conn, req.convoy_id)
            company = await repo.company(conn, req.company_id)
            if company is None or company["convoy_id"] != req.convoy_id:
                raise NotFound("no such company in this convoy")
            await repo.insert_absence(
                conn,
                convoy_id=req.convoy_id,
                company_id=req.company_id,
                kind="away",
                from_date=req.away.from_date,
                until_date=req.away.until_date,
                cycle_index=None,
                reason=req.away.reason,
                created_by=req.actor.person_id,
            )
        return await self.schedule(api.AskSchedule(actor=req.actor, convoy_id=req.convoy_id))

    @Reminders.COMPANY_SKIP
    async def skip_for_company(self, req: api.SkipForCompany) -> api.Schedule:
        await self.access.representative(req.actor, req.convoy_id, req.company_id)
        async with self.rt.db.transaction() as conn:
            await self._convoy(conn, req.convoy_id)
            await repo.insert_absence(
                conn,
                convoy_id=req.convoy_id,
                company_id=req.company_id,
                kind="skipped",
                from_date=None,
                until_date=None,
                cycle_index=req.skip.cycle_index,
                reason=req.skip.reason,
                created_by=req.actor.person_id,
            )
        return await self.schedule(api.AskSchedule(actor=req.actor, convoy_id=req.convoy_id))

    async def _fire_now(self, req: api.FireNow, kind: str) -> api.Fired:
        await self.access.facilitator(req.actor, req.convoy_id)
        now = datetime.now(UTC)
        async with self.rt.db.transaction() as conn:
            row = await self._convoy(conn, req.convoy_id)
            if row["status"] != "active":
                raise Conflict("the convoy is not active")
            for c in plan_.cycles_to_keep(plan_of(row), now):
                await repo.keep_cycle(conn, req.convoy_id, c)
            current = await repo.current_cycle(conn, req.convoy_id, now)
            if current is None:
                # Before the first check-in: "prompt now" kicks the first round off early (its prompt
                # goes out now; its due time, nudges, close and every later round stay as scheduled,
                # and the scheduled check-in sends no second prompt). "Close now" needs it started.
                current = await repo.cycle(conn, req.convoy_id, 0)
                if current is None or (kind == "close" and current["opened_at"] is None):
                    raise Conflict("the convoy's first check-in has not come yet; open the first round first")
        if kind == "close" and current["opened_at"] is None:
            await self._apply(req.convoy_id, plan_.Action("open", current["cycle_index"]), now)
        done = await self._apply(req.convoy_id, plan_.Action(kind, current["cycle_index"]), now)  # type: ignore[arg-type]
        if done:
            metrics.count_fires([kind])
        return api.Fired(actions=[f"{kind} cycle {current['cycle_index']}"] if done else [])

    @Reminders.PROMPT_NOW
    async def prompt_now(self, req: api.FireNow) -> api.Fired:
        return await self._fire_now(req, "open")

    @Reminders.CLOSE_NOW
    async def close_now(self, req: api.FireNow) -> api.Fired:
        return await self._fire_now(req, "close")

    @Reminders.TICK
    async def manual_tick(self, req: api.Tick) -> api.Fired:
        """Tests' clock: tick as if it were ``now`` (only the leader fires, as with the real clock)."""
        if not self.rt.settings.reminders_manual_clock:
            raise Forbidden("the scheduler runs on the real clock (CONVOY_REMINDERS_MANUAL_CLOCK is off)")
        if req.now.tzinfo is None:
            raise InvalidInput("`now`: give a time zone")
        if not self.leader:
            return api.Fired(actions=[], leader=False)
        done, failed = await self.tick(req.now)
        return api.Fired(actions=[] if req.summary else done, leader=True, count=len(done), failed=failed)


def _calendar_round(
    planned: plan_.PlannedCycle, stored: asyncpg.Record | None, status: str, now: datetime
) -> api.CalendarRound | None:
    """One round of a feed (see ``Scheduler.calendar_rounds``); None when it is left out."""
    opened = stored is not None and stored["opened_at"] is not None
    source: Any = stored if opened else None
    opens_at = source["opens_at"] if source else planned.opens_at
    due_at = source["due_at"] if source else planned.due_at
    closes_at = source["closes_at"] if source else planned.closes_at
    reason: Any = ""
    note = planned.skip_reason
    if not opened and planned.skipped:
        reason = "holiday"
    elif not opened and stored is not None and stored["skipped"]:
        reason, note = "skipped", stored["skip_reason"]
    elif not opened and status == "paused":
        reason = "paused"
    elif not opened and (status == "completed" or closes_at <= now):
        return None  # never happened: before the convoy started, or after it ended
    return api.CalendarRound(
        cycle_index=planned.index,
        opens_at=opens_at,
        due_at=due_at,
        closes_at=closes_at,
        cancelled=bool(reason),
        reason=reason,
        note=note,
        opened=opened,
        closed=stored is not None and stored["closed_at"] is not None,
    )


def _absences_of(c: asyncpg.Record, timezone: str, rows: list[asyncpg.Record]) -> list[ev.Absence]:
    """The companies not expected in cycle ``c``: away on its opening day (local), or skipping it."""
    day = c["opens_at"].astimezone(ZoneInfo(timezone)).date()
    out = []
    for a in rows:
        if a["kind"] == "away" and a["from_date"] <= day <= a["until_date"]:
            out.append(ev.Absence(company_id=a["company_id"], kind="away", reason=a["reason"]))
        elif a["kind"] == "skipped" and a["cycle_index"] == c["cycle_index"]:
            out.append(ev.Absence(company_id=a["company_id"], kind="skipped", reason=a["reason"]))
    return out


def _event(c: asyncpg.Record, action: plan_.Action, absences: list[ev.Absence]) -> ev.Event | None:
    """The event of a fire (None for the drops: recorded, not sent); its id is :func:`fire_id`."""
    convoy_id, index = c["convoy_id"], c["cycle_index"]
    if action.kind == "open":
        opened = ev.CycleOpened(
            convoy_id=convoy_id,
            cycle_index=index,
            opens_at=c["opens_at"],
            due_at=c["due_at"],
            closes_at=c["closes_at"],
            absences=absences,
        )
        return opened
    if action.kind == "nudge":
        nudge = ev.NudgeDue(
            convoy_id=convoy_id, cycle_index=index, nudge=action.nudge, due_at=c["due_at"], absences=absences
        )
        return nudge
    if action.kind == "close":
        closed = ev.CycleClosed(
            convoy_id=convoy_id,
            cycle_index=index,
            opens_at=c["opens_at"],
            closes_at=c["closes_at"],
            absences=absences,
        )
        return closed
    return None
