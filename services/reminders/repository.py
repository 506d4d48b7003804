"""All SQL of services/reminders."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import msgspec

from schemas import api
from services.reminders.schedule import PlannedCycle

Conn = asyncpg.Connection


async def upsert_convoy(
    conn: Conn,
    *,
    convoy_id: uuid.UUID,
    name: str,
    timezone: str,
    language: str,
    cadence: Any,
    start_date: date,
    status: str | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO convoys (convoy_id, name, timezone, language, cadence, start_date, status)"
        " VALUES ($1, $2, $3, $4, $5::jsonb, $6, coalesce($7, 'forming'))"
        " ON CONFLICT (convoy_id) DO UPDATE SET name = excluded.name, timezone = excluded.timezone,"
        " language = excluded.language, cadence = excluded.cadence, start_date = excluded.start_date,"
        " status = coalesce($7, convoys.status), updated_at = now(), plan_version = convoys.plan_version + 1",
        convoy_id,
        name,
        timezone,
        language,
        msgspec.json.encode(cadence).decode(),
        start_date,
        status,
    )


async def set_status(conn: Conn, convoy_id: uuid.UUID, status: str) -> None:
    await conn.execute(
        "UPDATE convoys SET status = $2, updated_at = now(), plan_version = plan_version + 1 WHERE convoy_id = $1",
        convoy_id,
        status,
    )


async def convoy(conn: Conn, convoy_id: uuid.UUID, *, lock: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM convoys WHERE convoy_id = $1" + (" FOR UPDATE" if lock else ""), convoy_id
    )


async def update_settings(conn: Conn, convoy_id: uuid.UUID, s: api.ScheduleSettings) -> None:
    await conn.execute(
        "UPDATE convoys SET holiday_region = $2, holiday_policy = $3, nudge_offsets = $4, updated_at = now(),"
        " plan_version = plan_version + 1 WHERE convoy_id = $1",
        convoy_id,
        s.holiday_region,
        s.holiday_policy,
        list(s.nudge_offsets_hours),
    )


async def upsert_company(conn: Conn, company_id: uuid.UUID, convoy_id: uuid.UUID, name: str) -> None:
    await conn.execute(
        "INSERT INTO companies (company_id, convoy_id, name) VALUES ($1, $2, $3)"
        " ON CONFLICT (company_id) DO UPDATE SET name = excluded.name, active = true",
        company_id,
        convoy_id,
        name,
    )


async def deactivate_company(conn: Conn, company_id: uuid.UUID) -> None:
    await conn.execute("UPDATE companies SET active = false WHERE company_id = $1", company_id)


async def company(conn: Conn, company_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM companies WHERE company_id = $1 AND active", company_id)


# --- cycles ----------------------------------------------------------------------------------------
async def keep_cycle(conn: Conn, convoy_id: uuid.UUID, c: PlannedCycle) -> None:
    """Insert a planned cycle, or bring a not-yet-opened one up to date with the plan (schedule changes)."""
    await conn.execute(
        "INSERT INTO cycles (convoy_id, cycle_index, opens_at, due_at, closes_at, skipped, skip_reason, next_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $3)"
        " ON CONFLICT (convoy_id, cycle_index) DO UPDATE SET opens_at = excluded.opens_at,"
        " due_at = excluded.due_at, closes_at = excluded.closes_at, next_at = excluded.opens_at,"
        " skipped = cycles.skipped OR excluded.skipped,"
        " skip_reason = CASE WHEN cycles.skipped THEN cycles.skip_reason ELSE excluded.skip_reason END"
        " WHERE cycles.opened_at IS NULL"
        # unchanged rows are not rewritten: every tick keeps every convoy's cycles, and a rewrite
        # is a WAL record and a commit flush per convoy per tick (bench: scheduler)
        " AND (excluded.opens_at, excluded.due_at, excluded.closes_at, cycles.skipped OR excluded.skipped,"
        " CASE WHEN cycles.skipped THEN cycles.skip_reason ELSE excluded.skip_reason END)"
        " IS DISTINCT FROM (cycles.opens_at, cycles.due_at, cycles.closes_at, cycles.skipped, cycles.skip_reason)",
        convoy_id,
        c.index,
        c.opens_at,
        c.due_at,
        c.closes_at,
        c.skipped,
        c.skip_reason,
    )


# --- the set-based tick ----------------------------------------------------------------------------
PLAN_COLUMNS = (
    "convoy_id, timezone, cadence::text AS cadence, start_date, holiday_region, holiday_policy, nudge_offsets,"
    " plan_version,"
    " planned_version"
)
CONVOYS_CHANGED = (
    # convoys_unplanned holds only the active convoys not planned at their current version
    f"SELECT {PLAN_COLUMNS} FROM convoys WHERE status = 'active' AND planned_version IS DISTINCT FROM plan_version"
    " AND convoy_id > $1 ORDER BY convoy_id LIMIT $2"
)
CONVOYS_EXPIRED = (
    # convoys_plan_expiry (0004) in its own order, paged by (planned_until, convoy_id): an idle tick
    # reads an empty index range, a busy slot reads each expired convoy once (issue #21: a UNION ALL
    # with the changed convoys under one ORDER BY convoy_id was planned as a parallel scan of every
    # convoy — `IS DISTINCT FROM` between two columns has no statistics — and, paged by convoy_id,
    # re-read and re-sorted the whole expired range for every page).
    f"SELECT {PLAN_COLUMNS}, planned_until FROM convoys WHERE status = 'active' AND planned_until <= $1"
    " AND planned_version = plan_version AND (planned_until, convoy_id) > ($2, $3)"
    " ORDER BY planned_until, convoy_id LIMIT $4"
)
DUE_CYCLES = (
    # cycles_next_at (0004): only cycles with something to do at $1. next_at is a plain column with
    # statistics, so the planner expects the few rows an ordinary tick finds and takes each one's
    # convoy by its key (a nested loop), rather than hashing every convoy (issue #21).
    "SELECT c.convoy_id, c.cycle_index FROM cycles c JOIN convoys v ON v.convoy_id = c.convoy_id"
    " WHERE c.next_at <= $1 AND c.closed_at IS NULL AND NOT c.skipped"
    " AND v.status = 'active' ORDER BY c.convoy_id, c.cycle_index"
)


async def convoys_changed(conn: Conn, after: uuid.UUID, limit: int) -> list[asyncpg.Record]:
    """Active convoys whose plan changed since it was last planned; by id, after ``after``."""
    return await conn.fetch(CONVOYS_CHANGED, after, limit)


EXPIRED_FROM = (datetime(1, 1, 1, tzinfo=UTC), uuid.UUID(int=0))
"""The key before every convoy in :func:`convoys_expired`."""


async def convoys_expired(
    conn: Conn, now: datetime, after: tuple[datetime, uuid.UUID], limit: int
) -> list[asyncpg.Record]:
    """Active convoys planned at their current version whose plan ran out at ``now``; by
    (planned_until, convoy_id), after ``after``."""
    return await conn.fetch(CONVOYS_EXPIRED, now, after[0], after[1], limit)


async def keep_cycles(
    conn: Conn,
    convoy_ids: list[uuid.UUID],
    cycles: list[PlannedCycle],
) -> None:
    """:func:`keep_cycle` for many cycles in one statement (``convoy_ids[i]`` owns ``cycles[i]``)."""
    await conn.execute(
        "INSERT INTO cycles AS c (convoy_id, cycle_index, opens_at, due_at, closes_at, skipped, skip_reason, next_at)"
        " SELECT x.*, x.opens_at FROM unnest($1::uuid[], $2::int[], $3::timestamptz[], $4::timestamptz[],"
        " $5::timestamptz[], $6::bool[], $7::text[]) AS x(convoy_id, cycle_index, opens_at, due_at, closes_at,"
        " skipped, skip_reason)"
        " ON CONFLICT (convoy_id, cycle_index) DO UPDATE SET opens_at = excluded.opens_at,"
        " due_at = excluded.due_at, closes_at = excluded.closes_at, next_at = excluded.opens_at,"
        " skipped = c.skipped OR excluded.skipped,"
        " skip_reason = CASE WHEN c.skipped THEN c.skip_reason ELSE excluded.skip_reason END"
        " WHERE c.opened_at IS NULL"
        " AND (excluded.opens_at, excluded.due_at, excluded.closes_at, c.skipped OR excluded.skipped,"
        " CASE WHEN c.skipped THEN c.skip_reason ELSE excluded.skip_reason END)"
        " IS DISTINCT FROM (c.opens_at, c.due_at, c.closes_at, c.skipped, c.skip_reason)",
        convoy_ids,
        [x.index for x in cycles],
        [x.opens_at for x in cycles],
        [x.due_at for x in cycles],
        [x.closes_at for x in cycles],
        [x.skipped for x in cycles],
        [x.skip_reason for x in cycles],
    )


async def forget_next_at(conn: Conn, convoy_ids: list[uuid.UUID]) -> None:
    """A schedule change (e.g. nudge offsets) may move what is next in cycles already open: look again."""
    await conn.execute(
        "UPDATE cycles SET next_at = opens_at WHERE convoy_id = ANY($1::uuid[]) AND closed_at IS NULL"
        " AND NOT skipped AND next_at IS DISTINCT FROM opens_at",
        convoy_ids,
    )


async def mark_planned(conn: Conn, convoy_ids: list[uuid.UUID], versions: list[int], until: list[datetime]) -> None:
    """Record what was planned; a convoy changed meanwhile keeps its new version and is planned again."""
    await conn.execute(
        "UPDATE convoys v SET planned_version = x.version, planned_until = x.until"
        " FROM unnest($1::uuid[], $2::bigint[], $3::timestamptz[]) AS x(convoy_id, version, until)"
        " WHERE v.convoy_id = x.convoy_id AND v.plan_version = x.version",
        convoy_ids,
        versions,
        until,
    )


async def due_cycles(conn: Conn, now: datetime) -> list[asyncpg.Record]:
    """(convoy_id, cycle_index) of every cycle of an active convoy with something due at ``now``."""
    return await conn.fetch(DUE_CYCLES, now)


async def lock_cycles(conn: Conn, convoy_ids: list[uuid.UUID], indexes: list[int]) -> list[asyncpg.Record]:
    """The given cycles, still open and of an active convoy, locked, with their convoy's settings."""
    return await conn.fetch(
        "SELECT c.*, v.timezone, v.nudge_offsets FROM cycles c"
        " JOIN unnest($1::uuid[], $2::int[]) AS k(convoy_id, cycle_index)"
        " ON k.convoy_id = c.convoy_id AND k.cycle_index = c.cycle_index"
        " JOIN convoys v ON v.convoy_id = c.convoy_id"
        " WHERE c.closed_at IS NULL AND NOT c.skipped AND v.status = 'active'"
        " ORDER BY c.convoy_id, c.cycle_index FOR UPDATE OF c",
        convoy_ids,
        indexes,
    )


async def save_cycles(
    conn: Conn,
    convoy_ids: list[uuid.UUID],
    indexes: list[int],
    opened_at: list[datetime | None],
    nudges_done: list[int],
    closed_at: list[datetime | None],
    next_at: list[datetime | None],
) -> None:
    """Record fires of cycles locked by :func:`lock_cycles` in this transaction, and their next time."""
    await conn.execute(
        "UPDATE cycles c SET opened_at = x.opened_at, nudges_done = x.nudges_done, closed_at = x.closed_at,"
        " next_at = x.next_at"
        " FROM unnest($1::uuid[], $2::int[], $3::timestamptz[], $4::int[], $5::timestamptz[], $6::timestamptz[])"
        " AS x(convoy_id, cycle_index, opened_at, nudges_done, closed_at, next_at)"
        " WHERE c.convoy_id = x.convoy_id AND c.cycle_index = x.cycle_index",
        convoy_ids,
        indexes,
        opened_at,
        nudges_done,
        closed_at,
        next_at,
    )


async def add_outbox(
    conn: Conn, event_ids: list[uuid.UUID], subjects: list[str], data: list[bytes], channel: str
) -> None:
    """Many outbox rows in one statement (as services/runtime/outbox.py:add writes one), one wake-up."""
    await conn.execute(
        "INSERT INTO outbox (event_id, subject, data)"
        " SELECT x.event_id, x.subject, x.data"
        " FROM unnest($1::uuid[], $2::text[], $3::bytea[]) WITH ORDINALITY AS x(event_id, subject, data, n)"
        " ORDER BY x.n ON CONFLICT (event_id) DO NOTHING",
        event_ids,
        subjects,
        data,
    )
    await conn.execute("SELECT pg_notify($1, '')", channel)


async def cycle(conn: Conn, convoy_id: uuid.UUID, index: int, *, lock: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM cycles WHERE convoy_id = $1 AND cycle_index = $2" + (" FOR UPDATE" if lock else ""),
        convoy_id,
        index,
    )


async def current_cycle(conn: Conn, convoy_id: uuid.UUID, now: datetime) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM cycles WHERE convoy_id = $1 AND opens_at <= $2 ORDER BY cycle_index DESC LIMIT 1",
        convoy_id,
        now,
    )


async def mark(conn: Conn, convoy_id: uuid.UUID, index: int, column: str, value: Any) -> bool:
    """Record a fire once: only the first of two racing fires changes the row."""
    if column == "opened_at":
        sql = "UPDATE cycles SET opened_at = $3, next_at = opens_at WHERE convoy_id = $1 AND cycle_index = $2"
        sql += " AND opened_at IS NULL"
    elif column == "closed_at":
        sql = "UPDATE cycles SET closed_at = $3, next_at = NULL WHERE convoy_id = $1 AND cycle_index = $2"
        sql += " AND closed_at IS NULL"
    elif column == "nudges_done":
        sql = "UPDATE cycles SET nudges_done = $3, next_at = opens_at WHERE convoy_id = $1 AND cycle_index = $2"
        sql += " AND nudges_done < $3"
    else:
        raise ValueError(column)
    return str(await conn.execute(sql, convoy_id, index, value)).endswith(" 1")


async def skip_cycle(conn: Conn, convoy_id: uuid.UUID, index: int, reason: str) -> None:
    await conn.execute(
        "UPDATE cycles SET skipped = true, skip_reason = $3 WHERE convoy_id = $1 AND cycle_index = $2",
        convoy_id,
        index,
        reason,
    )
    # A skip changes the convoy's schedule like any setting: calendar feeds take plan_version as the
    # events' SEQUENCE and updated_at as their LAST-MODIFIED (the re-plan it causes changes nothing).
    await conn.execute(
        "UPDATE convoys SET updated_at = now(), plan_version = plan_version + 1 WHERE convoy_id = $1", convoy_id
    )


async def convoys_by_id(conn: Conn, convoy_ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT convoy_id, name, timezone, cadence::text AS cadence, start_date, holiday_region, holiday_policy,"
        " nudge_offsets, status, plan_version, updated_at FROM convoys WHERE convoy_id = ANY($1::uuid[])",
        convoy_ids,
    )


async def cycles_in(conn: Conn, convoy_ids: list[uuid.UUID], first: list[int], last: list[int]) -> list[asyncpg.Record]:
    """The stored cycles of each convoy with ``first[i] <= cycle_index <= last[i]`` (one query)."""
    return await conn.fetch(
        "SELECT c.* FROM cycles c JOIN unnest($1::uuid[], $2::int[], $3::int[]) AS k(convoy_id, first, last)"
        " ON c.convoy_id = k.convoy_id AND c.cycle_index BETWEEN k.first AND k.last",
        convoy_ids,
        first,
        last,
    )


async def upcoming(conn: Conn, convoy_id: uuid.UUID, since: datetime, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT * FROM cycles WHERE convoy_id = $1 AND closes_at > $2 ORDER BY cycle_index LIMIT $3",
        convoy_id,
        since,
        limit,
    )


async def claim_facilitator_digest(conn: Conn, period: str, now: datetime) -> bool:
    return bool(
        await conn.fetchval(
            "INSERT INTO facilitator_digests (period, fired_at) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
            period,
            now,
        )
    )


# --- absences --------------------------------------------------------------------------------------
async def insert_absence(
    conn: Conn,
    *,
    convoy_id: uuid.UUID,
    company_id: uuid.UUID,
    kind: str,
    from_date: date | None,
    until_date: date | None,
    cycle_index: int | None,
    reason: str,
    created_by: uuid.UUID | None,
) -> None:
    await conn.execute(
        "INSERT INTO absences (id, convoy_id, company_id, kind, from_date, until_date, cycle_index, reason,"
        " created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        uuid.uuid4(),
        convoy_id,
        company_id,
        kind,
        from_date,
        until_date,
        cycle_index,
        reason,
        created_by,
    )


async def absences(conn: Conn, convoy_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM absences WHERE convoy_id = $1 ORDER BY created_at", convoy_id)


async def absences_of(conn: Conn, convoy_ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT * FROM absences WHERE convoy_id = ANY($1::uuid[]) ORDER BY convoy_id, created_at", convoy_ids
    )


# --- data protection -------------------------------------------------------------------------------
async def absences_created_by(conn: Conn, person_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT id, convoy_id, company_id, kind, from_date, until_date, cycle_index, reason, created_at"
        " FROM absences WHERE created_by = $1 ORDER BY created_at",
        person_id,
    )
    return [dict(r) for r in rows]


async def forget_person(conn: Conn, person_id: uuid.UUID) -> None:
    """The only personal data here: who marked an absence. The absence (a company's) stays."""
    await conn.execute("UPDATE absences SET created_by = NULL WHERE created_by = $1", person_id)
