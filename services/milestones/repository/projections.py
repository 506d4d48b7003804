"""The projections services/milestones authorizes from: convoys, companies, representatives,
facilitators and observers (kept by services/milestones/consumers.py, read by access.py)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

import asyncpg
import msgspec

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
    retention_days: int | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO convoys (convoy_id, name, timezone, language, cadence, start_date, status, retention_days)"
        " VALUES ($1, $2, $3, $4, $5::jsonb, $6, coalesce($7, 'forming'), $8)"
        " ON CONFLICT (convoy_id) DO UPDATE SET name = excluded.name, timezone = excluded.timezone,"
        " language = excluded.language, cadence = excluded.cadence, start_date = excluded.start_date,"
        " status = coalesce($7, convoys.status), retention_days = excluded.retention_days",
        convoy_id,
        name,
        timezone,
        language,
        msgspec.json.encode(cadence).decode(),
        start_date,
        status,
        retention_days,
    )


async def set_convoy_status(conn: Conn, convoy_id: uuid.UUID, status: str) -> None:
    await conn.execute("UPDATE convoys SET status = $2 WHERE convoy_id = $1", convoy_id, status)


async def convoy(conn: Conn, convoy_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM convoys WHERE convoy_id = $1", convoy_id)


async def convoy_for(
    conn: Conn, convoy_id: uuid.UUID, person_id: uuid.UUID | None, *, lock: bool = False, round_lock: int | None = None
) -> asyncpg.Record | None:
    """The convoy with the person's part in it, in one round trip: the columns of :func:`convoy`,
    then ``access_companies`` (the companies they represent here), ``access_facilitator``,
    ``access_observer`` (an observer seat: reads, writes nothing) and ``access_charter_version`` (the
    charter version they accepted as projected: -1 when not known here, None without a membership;
    compared with the convoy's ``charter_version``, None when not known here), and ``round_locked``.

    ``lock`` (inside a writing transaction): the person's membership rows are share-locked until the
    transaction ends, so a removal (:func:`revoke`, which deletes them) waits for a write that was
    authorized by them to commit, and a write after the removal finds none (issue #19).

    ``round_lock`` (with ``lock``: the key of the convoy's round lock, ``digests.round_lock_key``): on the
    common path of a representative's write (they represent a company here and accepted the charter as
    projected) the same statement then takes the round lock shared, *after* the membership rows' share
    lock (the lock's expression reads the locked rows' result, in a subquery that is not flattened), and
    ``round_locked`` is true; else nothing is taken and it is null (the caller takes it later, as before).
    One round trip less per report (issue #21); the seal is still read in a statement after the lock."""
    if round_lock is not None and lock:
        return await conn.fetchrow(
            "SELECT c.*, a.access_companies,"
            " EXISTS (SELECT 1 FROM facilitators f WHERE f.convoy_id = $1 AND f.person_id = $2) AS access_facilitator,"
            " EXISTS (SELECT 1 FROM observers o WHERE o.convoy_id = $1 AND o.person_id = $2) AS access_observer,"
            " a.access_charter_version,"
            " CASE WHEN cardinality(a.access_companies) > 0 AND c.charter_version IS NOT NULL"
            " AND a.access_charter_version >= c.charter_version"
            " THEN (SELECT true FROM (SELECT pg_advisory_xact_lock_shared($3)) l) END AS round_locked"
            " FROM convoys c CROSS JOIN LATERAL (SELECT"
            " ARRAY(SELECT m.company_id FROM members m WHERE m.convoy_id = $1 AND m.person_id = $2 FOR SHARE)"
            " AS access_companies,"
            " (SELECT min(coalesce(m.charter_version, -1)) FROM members m WHERE m.convoy_id = $1 AND m.person_id = $2)"
            " AS access_charter_version OFFSET 0) a"
            " WHERE c.convoy_id = $1",
            convoy_id,
            person_id,
            round_lock,
        )
    return await conn.fetchrow(
        "SELECT c.*,"
        " ARRAY(SELECT m.company_id FROM members m WHERE m.convoy_id = $1 AND m.person_id = $2"
        + (" FOR SHARE" if lock else "")
        + ") AS access_companies,"
        " EXISTS (SELECT 1 FROM facilitators f WHERE f.convoy_id = $1 AND f.person_id = $2) AS access_facilitator,"
        " EXISTS (SELECT 1 FROM observers o WHERE o.convoy_id = $1 AND o.person_id = $2) AS access_observer,"
        " (SELECT min(coalesce(m.charter_version, -1)) FROM members m WHERE m.convoy_id = $1 AND m.person_id = $2)"
        " AS access_charter_version"
        " FROM convoys c WHERE c.convoy_id = $1",
        convoy_id,
        person_id,
    )


async def upsert_company(conn: Conn, company_id: uuid.UUID, convoy_id: uuid.UUID, name: str) -> None:
    await conn.execute(
        "INSERT INTO companies (company_id, convoy_id, name) VALUES ($1, $2, $3)"
        " ON CONFLICT (company_id) DO UPDATE SET name = excluded.name, active = true",
        company_id,
        convoy_id,
        name,
    )


async def ensure_company(conn: Conn, company_id: uuid.UUID, convoy_id: uuid.UUID, name: str) -> None:
    """A company learnt by asking services/convoys before its event arrived (the event still updates it)."""
    await conn.execute(
        "INSERT INTO companies (company_id, convoy_id, name) VALUES ($1, $2, $3) ON CONFLICT (company_id) DO NOTHING",
        company_id,
        convoy_id,
        name,
    )


async def add_facilitator(conn: Conn, convoy_id: uuid.UUID, person_id: uuid.UUID) -> None:
    await conn.execute(
        "INSERT INTO facilitators (convoy_id, person_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", convoy_id, person_id
    )


async def add_member(
    conn: Conn,
    person_id: uuid.UUID,
    company_id: uuid.UUID,
    convoy_id: uuid.UUID,
    joined_at: datetime | None = None,
    charter_version: int | None = None,
) -> None:
    """``joined_at`` (from a ``person.joined`` event): not when a removal answered later was already
    applied here (:func:`revoke`). Without it (an answer of services/convoys, the truth now): always.
    ``charter_version``: the charter version accepted with the membership (``person.joined``; None: not
    known, the charter check then asks services/convoys); only ever raises what is projected."""
    await conn.execute(
        "INSERT INTO members AS m (person_id, company_id, convoy_id, charter_version) SELECT $1, $2, $3, $5"
        " WHERE $4::timestamptz IS NULL OR NOT EXISTS (SELECT 1 FROM revoked_members r"
        " WHERE r.person_id = $1 AND r.company_id = $2 AND r.revoked_at >= $4)"
        + (
            " ON CONFLICT DO NOTHING"
            if charter_version is None
            else " ON CONFLICT (person_id, company_id) DO UPDATE SET charter_version = excluded.charter_version"
            " WHERE m.charter_version IS NULL OR m.charter_version < excluded.charter_version"
        ),
        person_id,
        company_id,
        convoy_id,
        joined_at,
        charter_version,
    )


async def set_charter_version(conn: Conn, convoy_id: uuid.UUID, version: int) -> None:
    """The convoy's current charter version (versions only grow: a late event lowers nothing)."""
    await conn.execute(
        "UPDATE convoys SET charter_version = $2 WHERE convoy_id = $1"
        " AND (charter_version IS NULL OR charter_version < $2)",
        convoy_id,
        version,
    )


async def accept_charter(conn: Conn, person_id: uuid.UUID, convoy_id: uuid.UUID, version: int) -> None:
    """The representative accepted the convoy's charter at ``version`` (``charter.accepted``, or an answer
    of services/convoys that said so); only ever raises what is projected."""
    await conn.execute(
        "UPDATE members SET charter_version = $3 WHERE convoy_id = $1 AND person_id = $2"
        " AND (charter_version IS NULL OR charter_version < $3)",
        convoy_id,
        person_id,
        version,
    )


async def learn_acceptance(conn: Conn, person_id: uuid.UUID, convoy_id: uuid.UUID, version: int) -> None:
    """What a write learnt from services/convoys (they accepted at least ``version``), remembered for the
    next write. Best effort, inside the write's transaction: membership rows another write of theirs
    holds (share-locked, :func:`convoy_for`) are skipped rather than waited for (two writes would
    otherwise wait for each other); the ``charter.accepted`` event or the next write fills them in."""
    await conn.execute(
        "UPDATE members m SET charter_version = $3 FROM (SELECT person_id, company_id FROM members"
        " WHERE convoy_id = $1 AND person_id = $2 AND (charter_version IS NULL OR charter_version < $3)"
        " FOR UPDATE SKIP LOCKED) AS s WHERE m.person_id = s.person_id AND m.company_id = s.company_id",
        convoy_id,
        person_id,
        version,
    )


async def lock_access(conn: Conn, convoy_id: uuid.UUID) -> None:
    """Serialize a read-through (asking services/convoys, then projecting its answer) with :func:`revoke`
    in the same convoy: an answer from before a removal is never projected after the removal was applied.
    Both are rare (a miss; a removal); held until the transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('access:' || $1::uuid::text, 0))", convoy_id)


async def revoke(
    conn: Conn, convoy_id: uuid.UUID, company_id: uuid.UUID, person_id: uuid.UUID | None, at: datetime
) -> int:
    """A removal answered by services/convoys takes effect here first (the event path repeats it,
    idempotently). ``person_id`` None: the company left. Returns the memberships removed."""
    await lock_access(conn, convoy_id)
    who = await conn.fetch(
        "SELECT person_id FROM members WHERE company_id = $1 AND ($2::uuid IS NULL OR person_id = $2)",
        company_id,
        person_id,
    )
    people = {r["person_id"] for r in who} | ({person_id} if person_id else set())
    await conn.execute(
        "INSERT INTO revoked_members (person_id, company_id, convoy_id, revoked_at)"
        " SELECT p, $2, $3, $4 FROM unnest($1::uuid[]) AS p"
        " ON CONFLICT (person_id, company_id) DO UPDATE SET revoked_at = greatest(revoked_members.revoked_at, $4)",
        list(people),
        company_id,
        convoy_id,
        at,
    )
    if person_id is None:
        await remove_company(conn, company_id, left_at=at)
        return len(who)
    # Waits for a write that share-locked this membership (convoy_for(lock=True)) to commit.
    status = await conn.execute("DELETE FROM members WHERE person_id = $1 AND company_id = $2", person_id, company_id)
    return int(status.split()[-1])


async def revoke_observer(conn: Conn, convoy_id: uuid.UUID, person_id: uuid.UUID) -> int:
    """An observer's removal answered by services/convoys takes effect here first (its event repeats it)."""
    await lock_access(conn, convoy_id)
    status = await conn.execute("DELETE FROM observers WHERE convoy_id = $1 AND person_id = $2", convoy_id, person_id)
    return int(status.split()[-1])


async def add_observer(conn: Conn, person_id: uuid.UUID, convoy_id: uuid.UUID) -> None:
    await conn.execute(
        "INSERT INTO observers (convoy_id, person_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", convoy_id, person_id
    )


async def remove_observer(conn: Conn, person_id: uuid.UUID, convoy_id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM observers WHERE convoy_id = $1 AND person_id = $2", convoy_id, person_id)


async def remove_member(conn: Conn, person_id: uuid.UUID, company_id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM members WHERE person_id = $1 AND company_id = $2", person_id, company_id)


async def remove_company(conn: Conn, company_id: uuid.UUID, left_at: datetime | None = None) -> None:
    """The company left (at ``left_at``): remember who represented it then, for the retention rule."""
    if left_at is not None:
        await conn.execute(
            "INSERT INTO departed_members (person_id, company_id, convoy_id, left_at)"
            " SELECT person_id, company_id, convoy_id, $2 FROM members WHERE company_id = $1 ON CONFLICT DO NOTHING",
            company_id,
            left_at,
        )
    await conn.execute("DELETE FROM members WHERE company_id = $1", company_id)
    await conn.execute(
        "UPDATE companies SET active = false, left_at = coalesce(left_at, $2) WHERE company_id = $1",
        company_id,
        left_at,
    )
