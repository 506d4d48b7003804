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


async def convoy_for(conn: Conn, convoy_id: uuid.UUID, person_id: uuid.UUID | None) -> asyncpg.Record | None:
    """The convoy with the person's part in it, in one round trip: the columns of :func:`convoy`,
    then ``access_companies`` (the companies they represent here), ``access_facilitator`` and
    ``access_observer`` (an observer seat: reads, writes nothing)."""
    return await conn.fetchrow(
        "SELECT c.*,"
        " ARRAY(SELECT m.company_id FROM members m WHERE m.convoy_id = $1 AND m.person_id = $2) AS access_companies,"
        " EXISTS (SELECT 1 FROM facilitators f WHERE f.convoy_id = $1 AND f.person_id = $2) AS access_facilitator,"
        " EXISTS (SELECT 1 FROM observers o WHERE o.convoy_id = $1 AND o.person_id = $2) AS access_observer"
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


async def add_member(conn: Conn, person_id: uuid.UUID, company_id: uuid.UUID, convoy_id: uuid.UUID) -> None:
    await conn.execute(
        "INSERT INTO members (person_id, company_id, convoy_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        person_id,
        company_id,
        convoy_id,
    )


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
