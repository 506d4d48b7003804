"""Moderation: facilitators hide and restore reports and comments, lock comments
(services/milestones/moderation.py)."""

from __future__ import annotations

import uuid

import asyncpg

Conn = asyncpg.Connection


async def comment_row_for_update(conn: Conn, comment_id: uuid.UUID) -> asyncpg.Record | None:
    """The comment (locked) with its report's convoy, company and visibility."""
    return await conn.fetchrow(
        "SELECT k.*, r.company_id, r.hidden_at AS report_hidden_at FROM comments k JOIN reports r ON r.id = k.report_id"
        " WHERE k.id = $1 FOR UPDATE OF k",
        comment_id,
    )


async def set_report_hidden(conn: Conn, report_id: uuid.UUID, hidden: bool, reason: str) -> None:
    await conn.execute(
        "UPDATE reports SET hidden_at = CASE WHEN $2 THEN now() END, hidden_reason = $3 WHERE id = $1",
        report_id,
        hidden,
        reason if hidden else "",
    )


async def set_comment_hidden(conn: Conn, comment_id: uuid.UUID, hidden: bool, reason: str) -> asyncpg.Record:
    row = await conn.fetchrow(
        "UPDATE comments SET hidden_at = CASE WHEN $2 THEN now() END, hidden_reason = $3 WHERE id = $1 RETURNING *",
        comment_id,
        hidden,
        reason if hidden else "",
    )
    assert row is not None
    return row


async def set_comments_locked(conn: Conn, report_id: uuid.UUID, locked: bool) -> None:
    await conn.execute(
        "UPDATE reports SET comments_locked_at = CASE WHEN $2 THEN now() END WHERE id = $1", report_id, locked
    )
