"""All SQL of services/milestones."""

from __future__ import annotations

import uuid

import asyncpg

from schemas import api

Conn = asyncpg.Connection


async def add_member(conn: Conn, person_id: uuid.UUID, company_id: uuid.UUID, convoy_id: uuid.UUID) -> None:
    await conn.execute(
        "INSERT INTO members (person_id, company_id, convoy_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        person_id,
        company_id,
        convoy_id,
    )


async def remove_member(conn: Conn, person_id: uuid.UUID, company_id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM members WHERE person_id = $1 AND company_id = $2", person_id, company_id)


async def remove_company(conn: Conn, company_id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM members WHERE company_id = $1", company_id)


async def companies_of(conn: Conn, person_id: uuid.UUID, convoy_id: uuid.UUID) -> list[uuid.UUID]:
    rows = await conn.fetch(
        "SELECT company_id FROM members WHERE person_id = $1 AND convoy_id = $2", person_id, convoy_id
    )
    return [r["company_id"] for r in rows]


async def insert_report(
    conn: Conn,
    report_id: uuid.UUID,
    convoy_id: uuid.UUID,
    company_id: uuid.UUID,
    author_id: uuid.UUID,
    r: api.NewReport,
) -> api.Report:
    row = await conn.fetchrow(
        "INSERT INTO reports (id, convoy_id, company_id, author_id, done, next, blockers, help_wanted, mood)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *",
        report_id,
        convoy_id,
        company_id,
        author_id,
        r.done,
        r.next,
        r.blockers,
        r.help_wanted,
        r.mood,
    )
    assert row is not None
    return _report(row)


async def list_reports(conn: Conn, convoy_id: uuid.UUID, limit: int) -> list[api.Report]:
    rows = await conn.fetch(
        "SELECT * FROM reports WHERE convoy_id = $1 ORDER BY submitted_at DESC, id DESC LIMIT $2",
        convoy_id,
        limit,
    )
    return [_report(r) for r in rows]


async def get_report(conn: Conn, report_id: uuid.UUID) -> api.Report | None:
    row = await conn.fetchrow("SELECT * FROM reports WHERE id = $1", report_id)
    return None if row is None else _report(row)


def _report(row: asyncpg.Record) -> api.Report:
    return api.Report(
        id=row["id"],
        convoy_id=row["convoy_id"],
        company_id=row["company_id"],
        author_id=row["author_id"],
        done=row["done"],
        next=row["next"],
        blockers=row["blockers"],
        help_wanted=row["help_wanted"],
        mood=row["mood"],
        submitted_at=row["submitted_at"],
    )
