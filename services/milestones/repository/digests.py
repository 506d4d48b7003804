"""The round boundary (seals) and what the notifier and services/reminders ask per cycle: who
reported, prompt contexts, a cycle's digest, the facilitators' weekly digest (services/milestones/digests.py)."""

from __future__ import annotations

import uuid
from datetime import date, datetime

import asyncpg

Conn = asyncpg.Connection


def round_lock_key(convoy_id: uuid.UUID) -> int:
    """The advisory lock of a convoy's round boundary (a signed 64-bit key from the id)."""
    return int.from_bytes(convoy_id.bytes[:8], "big", signed=True) ^ 0x726F756E64  # "round"


async def enter_round(conn: Conn, convoy_id: uuid.UUID) -> int:
    """Take the convoy's round lock shared (until the transaction ends); the newest sealed cycle, -1 if none.

    Report inserts hold it shared, a seal exclusive: a report is either committed before the seal
    (and the seal assigns it to that digest) or it sees the seal (and is late).
    """
    # Two statements: a statement's snapshot is taken before it waits for the lock, so a read in
    # the locking statement itself would miss a seal committed while it waited.
    await lock_round(conn, convoy_id)
    return await sealed_through(conn, convoy_id)


async def lock_round(conn: Conn, convoy_id: uuid.UUID) -> None:
    """:func:`enter_round`'s lock alone, for a caller that reads the seal in a statement of its own after it
    (services/milestones' report_context: the seal with what else a new report needs)."""
    await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", round_lock_key(convoy_id))


async def seal_rounds(conn: Conn, convoy_ids: list[uuid.UUID], cycle_indexes: list[int]) -> int:
    """Seal cycles (parallel arrays; cycles of a convoy close in order); returns how many were new.

    Idempotent: a cycle at or below the convoy's newest seal is left as it is (a retry, or an old
    close) and takes no reports. A new seal assigns every report of the convoy not yet in a digest
    whose cycle is at or below it to the smallest new seal at or above its own cycle.
    """
    # All the convoys' locks in one statement, in key order (two seals never wait on each other in a cycle).
    await conn.execute(
        "SELECT pg_advisory_xact_lock(k) FROM (SELECT k FROM unnest($1::bigint[]) AS k ORDER BY k) AS keys",
        sorted({round_lock_key(c) for c in convoy_ids}),
    )
    fresh = await conn.fetch(
        "INSERT INTO round_seals (convoy_id, cycle_index)"
        " SELECT w.convoy_id, w.cycle_index FROM unnest($1::uuid[], $2::int[]) AS w(convoy_id, cycle_index)"
        " WHERE w.cycle_index > coalesce((SELECT max(s.cycle_index) FROM round_seals s"
        "   WHERE s.convoy_id = w.convoy_id), -1)"
        " ON CONFLICT DO NOTHING RETURNING convoy_id, cycle_index",
        convoy_ids,
        cycle_indexes,
    )
    if fresh:
        # A join of the new seals with the convoys' unsealed reports, each report to its smallest seal at
        # or above its cycle (not two subqueries over every seal per report: quadratic in a tick that
        # closes many convoys at once, 0.08 s of PostgreSQL at 250 convoys, ~1.3 s at 1,000).
        await conn.execute(
            "UPDATE reports r SET digest_cycle = x.cycle_index FROM ("
            "   SELECT s.id, min(f.cycle_index) AS cycle_index"
            "   FROM unnest($1::uuid[], $2::int[]) AS f(convoy_id, cycle_index)"
            "   JOIN reports s ON s.convoy_id = f.convoy_id AND s.digest_cycle IS NULL"
            "   AND s.cycle_index <= f.cycle_index"
            "   GROUP BY s.id"
            " ) AS x WHERE r.id = x.id AND r.digest_cycle IS NULL",
            [f["convoy_id"] for f in fresh],
            [f["cycle_index"] for f in fresh],
        )
    return len(fresh)


async def sealed_through(conn: Conn, convoy_id: uuid.UUID) -> int:
    """The convoy's newest sealed cycle; -1 if none (cycles are sealed in order)."""
    value: int = await conn.fetchval(
        "SELECT coalesce(max(cycle_index), -1) FROM round_seals WHERE convoy_id = $1", convoy_id
    )
    return value


# --- check-in cycles (asked by the notifier) ------------------------------------------------------
async def cycle_reporters(conn: Conn, convoy_id: uuid.UUID, cycle_index: int) -> list[uuid.UUID] | None:
    """Companies with a visible report for the cycle, in one query; None if the convoy is not projected."""
    row = await conn.fetchrow(
        "SELECT array(SELECT r.company_id FROM reports r WHERE r.convoy_id = v.convoy_id AND r.cycle_index = $2"
        " AND r.hidden_at IS NULL ORDER BY r.company_id) AS company_ids FROM convoys v WHERE v.convoy_id = $1",
        convoy_id,
        cycle_index,
    )
    return None if row is None else list(row["company_ids"])


async def prompt_rows(
    conn: Conn, convoy_id: uuid.UUID, cycle_index: int, due_date: date
) -> dict[str, list[asyncpg.Record]]:
    """Three set-based queries for a whole convoy: active companies with the "next" of their latest
    visible report before the cycle, their due milestones, their open commitments."""
    companies = await conn.fetch(
        "SELECT c.company_id, coalesce(last.next, '') AS last_next FROM companies c"
        " LEFT JOIN LATERAL (SELECT r.next FROM reports r WHERE r.company_id = c.company_id"
        "   AND r.cycle_index < $2 AND r.hidden_at IS NULL ORDER BY r.cycle_index DESC LIMIT 1) last ON true"
        " WHERE c.convoy_id = $1 AND c.active ORDER BY c.name, c.company_id",
        convoy_id,
        cycle_index,
    )
    milestones = await conn.fetch(
        "SELECT company_id, title, target_date FROM milestones"
        " WHERE convoy_id = $1 AND removed_at IS NULL AND status <> 'done' AND target_date <= $2"
        " ORDER BY company_id, target_date, position, id",
        convoy_id,
        due_date,
    )
    commitments = await conn.fetch(
        "SELECT k.company_id, k.text FROM commitments k JOIN reports r ON r.id = k.report_id"
        " WHERE k.convoy_id = $1 AND k.cycle_index < $2 AND k.reviewed_in IS NULL AND r.hidden_at IS NULL"
        " ORDER BY k.company_id, k.cycle_index, k.position, k.id",
        convoy_id,
        cycle_index,
    )
    return {"companies": companies, "milestones": milestones, "commitments": commitments}


DIGEST_REPORT_COLUMNS = (
    # The peer view: never facilitator_note, never hidden reports (filtered in the WHERE clause).
    "r.id, r.company_id, r.cycle_index, r.late, r.done, r.next, r.blockers, r.help_wanted, r.help_topic,"
    " r.mood, r.submitted_at,"
    " array(SELECT k.person_id FROM kudos k WHERE k.report_id = r.id ORDER BY k.given_at, k.person_id) AS kudos_by"
)


async def digest_rows(
    conn: Conn, convoy_id: uuid.UUID, cycle_index: int, opens_at: datetime, closes_at: datetime, *, sealed_through: int
) -> dict[str, list[asyncpg.Record]]:
    """Four set-based queries for a whole convoy's digest of one cycle (active companies only).

    - companies: active companies with their done and total milestone weight (progress);
    - reports: the visible reports the cycle's seal assigned to its digest (``digest_cycle``): those
      of the cycle that were in before it closed, and late addenda, reports of earlier cycles that
      arrived after their own cycle's seal. Every report is assigned once, so every visible report
      lies in exactly one digest, however often digests are computed. A cycle after ``sealed_through``
      (the newest seal) gets a preview: its own reports, and for the next cycle to seal the late ones
      waiting for it;
    - touched: the milestones those reports touched, with titles;
    - completed: milestones done with ``completed_at`` in ``[opens_at, closes_at)``.
    """
    companies = await conn.fetch(
        "SELECT c.company_id, c.name, coalesce(sum(m.weight) FILTER (WHERE m.status = 'done'), 0) AS done_weight,"
        " coalesce(sum(m.weight), 0) AS total_weight FROM companies c"
        " LEFT JOIN milestones m ON m.company_id = c.company_id AND m.removed_at IS NULL"
        " WHERE c.convoy_id = $1 AND c.active GROUP BY c.company_id, c.name ORDER BY c.name, c.company_id",
        convoy_id,
    )
    reports = await conn.fetch(
        # c.convoy_id = r.convoy_id (a company is in one convoy): the convoy's companies by index, not
        # every company of every convoy hashed for each digest
        f"SELECT {DIGEST_REPORT_COLUMNS} FROM reports r"
        " JOIN companies c ON c.company_id = r.company_id AND c.convoy_id = r.convoy_id AND c.active"
        " WHERE r.convoy_id = $1 AND r.hidden_at IS NULL AND CASE WHEN $2::int <= $3::int"
        "   THEN r.digest_cycle = $2"
        "   ELSE r.digest_cycle IS NULL AND (r.cycle_index = $2 OR r.cycle_index <= $3) END"
        " ORDER BY r.submitted_at, r.id",
        convoy_id,
        cycle_index,
        sealed_through,
    )
    touched = await conn.fetch(
        "SELECT rm.report_id, rm.status, m.title FROM report_milestones rm JOIN milestones m ON m.id = rm.milestone_id"
        " WHERE rm.report_id = ANY($1::uuid[]) ORDER BY m.position, m.id",
        [r["id"] for r in reports],
    )
    completed = await conn.fetch(
        "SELECT m.company_id, c.name AS company_name, m.title, m.status FROM milestones m"
        " JOIN companies c ON c.company_id = m.company_id AND c.convoy_id = m.convoy_id AND c.active"
        " WHERE m.convoy_id = $1 AND m.removed_at IS NULL AND m.status = 'done'"
        " AND m.completed_at >= $2 AND m.completed_at < $3 ORDER BY c.name, m.company_id, m.position, m.id",
        convoy_id,
        opens_at,
        closes_at,
    )
    return {"companies": companies, "reports": reports, "touched": touched, "completed": completed}


# --- facilitator digest (asked weekly by the notifier) --------------------------------------------
async def facilitator_digest_rows(
    conn: Conn,
    convoy_ids: list[uuid.UUID],
    horizons: list[int],
    currents: list[int],
    todays: list[date],
    at: datetime | None = None,
) -> dict[str, list[asyncpg.Record]]:
    """Five set-based queries for any number of convoys (the convoys themselves are read before).

    Per convoy (the arrays are parallel): ``horizons`` is the newest cycle whose reports count
    (the current one; 0 before the first check-in, where early reports are filed), ``currents``
    the current cycle (-1 before the first check-in: no cycle-bound rows), ``todays`` the local
    date at the moment asked. Only active companies and visible (not hidden) reports count.

    - companies: active companies with their latest visible report up to the horizon (if any);
    - milestones: not removed, not done, target date before the local date (stalled);
    - help: visible help requests of the current and previous cycle without any help offer;
    - moods: average mood (2 decimals) per convoy and cycle of the last four cycles;
    - flags: per convoy, the flags open at ``at`` (raised at or before it, not resolved by then).
    """
    convoys = "unnest($1::uuid[], $2::int[], $3::int[], $4::date[]) AS v(convoy_id, horizon, cur, today)"
    args = (convoy_ids, horizons, currents, todays)
    companies = await conn.fetch(
        "SELECT c.convoy_id, c.company_id, c.name, v.cur, last.id AS report_id, last.cycle_index,"
        " last.blockers FROM " + convoys + " JOIN companies c ON c.convoy_id = v.convoy_id AND c.active"
        " LEFT JOIN LATERAL (SELECT r.id, r.cycle_index, r.blockers FROM reports r"
        "   WHERE r.company_id = c.company_id AND r.convoy_id = c.convoy_id AND r.cycle_index <= v.horizon"
        "   AND r.hidden_at IS NULL ORDER BY r.cycle_index DESC LIMIT 1) last ON true"
        " ORDER BY c.convoy_id, c.name, c.company_id",
        *args,
    )
    milestones = await conn.fetch(
        "SELECT m.convoy_id, c.name AS company_name, m.title, m.target_date, m.status FROM "
        + convoys
        + " JOIN milestones m ON m.convoy_id = v.convoy_id AND m.removed_at IS NULL"
        " JOIN companies c ON c.company_id = m.company_id AND c.active"
        " WHERE m.status <> 'done' AND m.target_date < v.today"
        " ORDER BY m.convoy_id, m.target_date, c.name, m.position, m.id",
        *args,
    )
    help_ = await conn.fetch(
        "SELECT r.convoy_id, c.name AS company_name, r.id AS report_id, r.help_topic FROM "
        + convoys
        + " JOIN reports r ON r.convoy_id = v.convoy_id AND r.cycle_index BETWEEN v.cur - 1 AND v.cur"
        " JOIN companies c ON c.company_id = r.company_id AND c.active"
        " WHERE v.cur >= 0 AND r.hidden_at IS NULL AND r.help_wanted"
        " AND NOT EXISTS (SELECT 1 FROM help_offers h WHERE h.report_id = r.id)"
        " ORDER BY r.convoy_id, r.cycle_index, r.submitted_at, r.id",
        *args,
    )
    moods = await conn.fetch(
        "SELECT r.convoy_id, r.cycle_index, round(avg(r.mood), 2) AS mood FROM "
        + convoys
        + " JOIN reports r ON r.convoy_id = v.convoy_id AND r.cycle_index BETWEEN v.cur - 3 AND v.cur"
        " JOIN companies c ON c.company_id = r.company_id AND c.active"
        " WHERE v.cur >= 0 AND r.hidden_at IS NULL AND r.mood IS NOT NULL"
        " GROUP BY r.convoy_id, r.cycle_index",
        *args,
    )
    flags = await conn.fetch(
        "SELECT f.convoy_id, count(*) AS flags FROM flags f WHERE f.convoy_id = ANY($1::uuid[])"
        " AND f.created_at <= $2 AND (f.resolved_at IS NULL OR f.resolved_at > $2) GROUP BY f.convoy_id",
        convoy_ids,
        at if at is not None else datetime.now().astimezone(),
    )
    return {"companies": companies, "milestones": milestones, "help": help_, "moods": moods, "flags": flags}


async def convoys(conn: Conn, convoy_ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM convoys WHERE convoy_id = ANY($1::uuid[])", convoy_ids)
