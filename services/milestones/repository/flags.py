"""Flags: members flag content, facilitators resolve the flags (services/milestones/flags.py)."""

from __future__ import annotations

import uuid

import asyncpg

Conn = asyncpg.Connection


async def comment_target(conn: Conn, comment_id: uuid.UUID) -> asyncpg.Record | None:
    """A comment with its report's company and visibility, and whether its parent is hidden."""
    return await conn.fetchrow(
        "SELECT k.*, r.company_id, r.hidden_at AS report_hidden_at,"
        " (SELECT p.hidden_at FROM comments p WHERE p.id = k.parent_id) AS parent_hidden_at"
        " FROM comments k JOIN reports r ON r.id = k.report_id WHERE k.id = $1",
        comment_id,
    )


async def insert_flag(
    conn: Conn,
    *,
    convoy_id: uuid.UUID,
    object_type: str,
    object_id: uuid.UUID,
    report_id: uuid.UUID,
    comment_id: uuid.UUID | None,
    flagged_by: uuid.UUID,
    reason: str,
    note: str,
) -> asyncpg.Record | None:
    """A new open flag, or None when this person's flag on the object is still open (nothing changes)."""
    return await conn.fetchrow(
        "INSERT INTO flags (id, convoy_id, object_type, object_id, report_id, comment_id, flagged_by, reason, note)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        " ON CONFLICT (object_id, flagged_by) WHERE resolved_at IS NULL DO NOTHING RETURNING *",
        uuid.uuid4(),
        convoy_id,
        object_type,
        object_id,
        report_id,
        comment_id,
        flagged_by,
        reason,
        note,
    )


async def open_flag_of(conn: Conn, object_id: uuid.UUID, person_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM flags WHERE object_id = $1 AND flagged_by = $2 AND resolved_at IS NULL", object_id, person_id
    )


async def flag_row(conn: Conn, flag_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM flags WHERE id = $1", flag_id)


async def open_flags_for_update(conn: Conn, object_id: uuid.UUID) -> list[uuid.UUID]:
    """The open flags on an object, locked (two facilitators resolving at once: the second finds none)."""
    rows = await conn.fetch(
        "SELECT id FROM flags WHERE object_id = $1 AND resolved_at IS NULL ORDER BY created_at, id FOR UPDATE",
        object_id,
    )
    return [r["id"] for r in rows]


async def resolve_flags(
    conn: Conn, flag_ids: list[uuid.UUID], *, resolution: str, resolved_by: uuid.UUID | None, note: str
) -> None:
    await conn.execute(
        "UPDATE flags SET resolved_at = now(), resolution = $2, resolved_by = $3, resolution_note = $4"
        " WHERE id = ANY($1::uuid[]) AND resolved_at IS NULL",
        flag_ids,
        resolution,
        resolved_by,
        note,
    )


async def open_flags(conn: Conn, convoy_id: uuid.UUID, limit: int = 1000) -> list[asyncpg.Record]:
    """A convoy's open flags with what they are about, oldest first, in one query.

    Per flag: the object's company (name), author, text and visibility (a comment counts as hidden
    when it, its parent or its report is), and the company the flagger represents in the convoy.
    """
    return await conn.fetch(
        "SELECT f.id, f.object_type, f.object_id, f.report_id, f.flagged_by, f.reason, f.note, f.created_at,"
        " r.company_id, c.name AS company_name,"
        " CASE WHEN f.object_type = 'comment' THEN k.author_id ELSE r.author_id END AS author_id,"
        " CASE WHEN f.object_type = 'comment' THEN k.body ELSE r.done END AS text,"
        " CASE WHEN f.object_type = 'comment'"
        "   THEN k.hidden_at IS NOT NULL OR r.hidden_at IS NOT NULL"
        "     OR EXISTS (SELECT 1 FROM comments p WHERE p.id = k.parent_id AND p.hidden_at IS NOT NULL)"
        "   ELSE r.hidden_at IS NOT NULL END AS hidden,"
        " fc.company_id AS flagged_by_company_id, coalesce(fc.name, '') AS flagged_by_company_name"
        " FROM flags f JOIN reports r ON r.id = f.report_id JOIN companies c ON c.company_id = r.company_id"
        " LEFT JOIN comments k ON k.id = f.comment_id"
        " LEFT JOIN LATERAL (SELECT mc.company_id, mc.name FROM members m"
        "   JOIN companies mc ON mc.company_id = m.company_id"
        "   WHERE m.person_id = f.flagged_by AND m.convoy_id = f.convoy_id ORDER BY mc.name LIMIT 1) fc ON true"
        " WHERE f.convoy_id = $1 AND f.resolved_at IS NULL ORDER BY f.created_at, f.id LIMIT $2",
        convoy_id,
        limit,
    )
