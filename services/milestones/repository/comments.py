"""Comments, kudos and help offers on reports."""

from __future__ import annotations

import uuid

import asyncpg

Conn = asyncpg.Connection

VISIBLE_COMMENT = (
    # A comment members see: not hidden, and not an answer to a hidden comment (a hidden thread).
    "{k}.hidden_at IS NULL AND NOT EXISTS (SELECT 1 FROM comments hp WHERE hp.id = {k}.parent_id"
    " AND hp.hidden_at IS NOT NULL)"
)


async def insert_comment(
    conn: Conn,
    *,
    report_id: uuid.UUID,
    convoy_id: uuid.UUID,
    parent_id: uuid.UUID | None,
    author_id: uuid.UUID,
    body: str,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        "INSERT INTO comments (id, report_id, convoy_id, parent_id, author_id, body) VALUES ($1, $2, $3, $4, $5, $6)"
        " RETURNING *",
        uuid.uuid4(),
        report_id,
        convoy_id,
        parent_id,
        author_id,
        body,
    )
    assert row is not None
    return row


async def comment_row(conn: Conn, comment_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM comments WHERE id = $1", comment_id)


async def comment_for_update(conn: Conn, comment_id: uuid.UUID) -> asyncpg.Record | None:
    """The comment (row locked) with its report's lock and visibility, whether its parent is hidden and
    whether it has answers that are not deleted."""
    return await conn.fetchrow(
        "SELECT k.*, r.comments_locked_at, r.hidden_at AS report_hidden_at,"
        " (SELECT p.hidden_at FROM comments p WHERE p.id = k.parent_id) AS parent_hidden_at,"
        " EXISTS (SELECT 1 FROM comments a WHERE a.parent_id = k.id AND a.deleted_at IS NULL) AS answered"
        " FROM comments k JOIN reports r ON r.id = k.report_id WHERE k.id = $1 FOR UPDATE OF k",
        comment_id,
    )


async def edit_comment(conn: Conn, comment_id: uuid.UUID, body: str) -> asyncpg.Record:
    row = await conn.fetchrow(
        "UPDATE comments SET body = $2, edited_at = now() WHERE id = $1 RETURNING *", comment_id, body
    )
    assert row is not None
    return row


async def delete_comment(conn: Conn, comment_id: uuid.UUID) -> asyncpg.Record:
    """The text goes; the row stays as a placeholder for its answers (lists leave it out without any)."""
    row = await conn.fetchrow("UPDATE comments SET body = '', deleted_at = now() WHERE id = $1 RETURNING *", comment_id)
    assert row is not None
    return row


async def comments_of(conn: Conn, report_id: uuid.UUID, *, hidden: bool) -> list[asyncpg.Record]:
    """A report's comments; with ``hidden`` false only those members see (see VISIBLE_COMMENT)."""
    return await conn.fetch(
        "SELECT * FROM comments c WHERE c.report_id = $1 AND ($2 OR " + VISIBLE_COMMENT.format(k="c") + ")"
        " ORDER BY c.created_at",
        report_id,
        hidden,
    )


# A kudos and its event in one statement (one round trip): the outbox row and the relay's wake-up (sent at
# commit) only when the kudos was given (taken back) by this statement, not when it already was (was not).
GIVE_KUDOS = (
    "WITH k AS (INSERT INTO kudos (report_id, person_id, convoy_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
    " RETURNING 1),"
    " o AS (INSERT INTO outbox (event_id, subject, data) SELECT $4, $5, $6 FROM k ON CONFLICT (event_id) DO NOTHING)"
    " SELECT pg_notify($7, '') IS NULL FROM k"
)
TAKE_BACK_KUDOS = (
    "WITH k AS (DELETE FROM kudos WHERE report_id = $1 AND person_id = $2 RETURNING 1),"
    " o AS (INSERT INTO outbox (event_id, subject, data) SELECT $3, $4, $5 FROM k ON CONFLICT (event_id) DO NOTHING)"
    " SELECT pg_notify($6, '') IS NULL FROM k"
)


async def give_kudos(
    conn: Conn,
    report_id: uuid.UUID,
    person_id: uuid.UUID,
    convoy_id: uuid.UUID,
    event: tuple[uuid.UUID, str, bytes],
    wake_channel: str,
) -> bool:
    """Give kudos, with ``event`` (an outbox row: id, subject, data) when they were not given already."""
    row = await conn.fetchrow(GIVE_KUDOS, report_id, person_id, convoy_id, *event, wake_channel)
    return row is not None


async def take_back_kudos(
    conn: Conn, report_id: uuid.UUID, person_id: uuid.UUID, event: tuple[uuid.UUID, str, bytes], wake_channel: str
) -> bool:
    """Take kudos back, with ``event`` (an outbox row) when they were given."""
    row = await conn.fetchrow(TAKE_BACK_KUDOS, report_id, person_id, *event, wake_channel)
    return row is not None


async def insert_help_offer(
    conn: Conn, *, report_id: uuid.UUID, person_id: uuid.UUID, company_id: uuid.UUID, message: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "INSERT INTO help_offers (id, report_id, person_id, company_id, message) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (report_id, person_id) DO NOTHING RETURNING *",
        uuid.uuid4(),
        report_id,
        person_id,
        company_id,
        message,
    )


async def companies_that_completed(
    conn: Conn, convoy_id: uuid.UUID, catalogue_key: str, but: uuid.UUID
) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT DISTINCT c.company_id, c.name FROM milestones m JOIN companies c ON c.company_id = m.company_id"
        " WHERE m.convoy_id = $1 AND m.catalogue_key = $2 AND m.status = 'done' AND m.removed_at IS NULL"
        " AND c.active AND c.company_id <> $3 ORDER BY c.name",
        convoy_id,
        catalogue_key,
        but,
    )
