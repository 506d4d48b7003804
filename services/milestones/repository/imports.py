"""History brought in by the admin import: reports of past cycles with their historic times
(services/milestones/imports.py)."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

Conn = asyncpg.Connection


async def company_row(conn: Conn, company_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM companies WHERE company_id = $1", company_id)


async def report_id_for_cycle(conn: Conn, company_id: uuid.UUID, cycle_index: int) -> uuid.UUID | None:
    value = await conn.fetchval(
        "SELECT id FROM reports WHERE company_id = $1 AND cycle_index = $2", company_id, cycle_index
    )
    return value  # type: ignore[no-any-return]


async def set_milestone_status_at(conn: Conn, milestone_id: uuid.UUID, status: str, at: datetime) -> None:
    """A status as of ``at`` (completed then, when done)."""
    await conn.execute(
        "UPDATE milestones SET status = $2, completed_at = CASE WHEN $2::text = 'done' THEN $3::timestamptz END"
        " WHERE id = $1",
        milestone_id,
        status,
        at,
    )


async def insert_comment_at(
    conn: Conn, *, report_id: uuid.UUID, convoy_id: uuid.UUID, author_id: uuid.UUID, body: str, at: datetime
) -> None:
    await conn.execute(
        "INSERT INTO comments (id, report_id, convoy_id, author_id, body, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        uuid.uuid4(),
        report_id,
        convoy_id,
        author_id,
        body,
        at,
    )


async def give_kudos_at(
    conn: Conn, report_id: uuid.UUID, person_ids: list[uuid.UUID], convoy_id: uuid.UUID, at: datetime
) -> None:
    await conn.executemany(
        "INSERT INTO kudos (report_id, person_id, convoy_id, given_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        [(report_id, p, convoy_id, at) for p in person_ids],
    )
