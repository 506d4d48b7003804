"""All SQL of the check, the formation pool and the programme figures (schema ``convoys``)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

import asyncpg
import msgspec

from schemas import api

Conn = asyncpg.Connection

_scores = msgspec.json.Decoder(dict[str, int | None])


# --- results (anonymous) ---------------------------------------------------------------------------
async def insert_result(
    conn: Conn,
    *,
    check_id: uuid.UUID,
    version: int,
    answers: dict[str, list[str]],
    scores: dict[str, int | None],
    overall: int | None,
    sector: str,
    size_class: str,
    region: str,
    completed_on: date,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        "INSERT INTO check_results (id, version, answers, scores, overall, sector, size_class, region, completed_on)"
        " VALUES ($1, $2, $3::jsonb, $4::jsonb, $5, $6, $7, $8, $9) RETURNING *",
        check_id,
        version,
        msgspec.json.encode(answers).decode(),
        msgspec.json.encode(scores).decode(),
        overall,
        sector,
        size_class,
        region,
        completed_on,
    )
    assert row is not None
    return row


async def result_row(conn: Conn, check_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM check_results WHERE id = $1", check_id)


def scores_of(row: asyncpg.Record) -> dict[str, int | None]:
    raw = row["scores"]
    return _scores.decode(raw.encode() if isinstance(raw, str) else raw)


async def sharing_convoys(conn: Conn) -> list[uuid.UUID]:
    """Convoys whose facilitators let their outcomes count in the check's aggregated figures."""
    rows = await conn.fetch("SELECT id FROM convoys WHERE share_anonymised_results ORDER BY created_at")
    return [r["id"] for r in rows]


# --- the formation pool ----------------------------------------------------------------------------
async def pool_requests_from(conn: Conn, email: str, since: datetime) -> int:
    n: int = await conn.fetchval(
        "SELECT count(*) FROM pool_requests WHERE lower(contact_email) = lower($1) AND created_at >= $2",
        email,
        since,
    )
    return n


async def withdraw_pool_requests(conn: Conn, check_id: uuid.UUID) -> tuple[list[uuid.UUID], int]:
    """Delete the waiting requests left from a check result; their ids, and how many were formed already."""
    removed = await conn.fetch(
        "DELETE FROM pool_requests WHERE check_id = $1 AND status = 'waiting' RETURNING id", check_id
    )
    formed: int = await conn.fetchval(
        "SELECT count(*) FROM pool_requests WHERE check_id = $1 AND status = 'formed'", check_id
    )
    return [r["id"] for r in removed], formed


async def pool_request_state(conn: Conn, request_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT id, theme, status FROM pool_requests WHERE id = $1", request_id)


async def withdraw_pool_request(conn: Conn, request_id: uuid.UUID) -> bool:
    """Delete one waiting request (the contact with it); false when it is not waiting (any more)."""
    row = await conn.fetchval(
        "DELETE FROM pool_requests WHERE id = $1 AND status = 'waiting' RETURNING true", request_id
    )
    return bool(row)


async def expire_pool_requests(conn: Conn, before: datetime) -> list[uuid.UUID]:
    """Delete the requests still waiting that were made before ``before`` (the contact with them)."""
    rows = await conn.fetch(
        "DELETE FROM pool_requests WHERE status = 'waiting' AND created_at < $1 RETURNING id", before
    )
    return [r["id"] for r in rows]


async def insert_pool_request(conn: Conn, request_id: uuid.UUID, check_id: uuid.UUID, r: api.NewPoolRequest) -> None:
    await conn.execute(
        "INSERT INTO pool_requests (id, check_id, theme, company_name, sector, size_class, region, contact_name,"
        " contact_email, contact_language, message, consent_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, now())",
        request_id,
        check_id,
        r.theme,
        r.company.name,
        r.company.sector,
        r.company.size_class,
        r.company.region,
        r.contact_name,
        r.contact_email,
        r.contact_language,
        r.message,
    )


_POOL = (
    "SELECT p.*, r.scores, r.overall, r.version AS check_version"
    " FROM pool_requests p LEFT JOIN check_results r ON r.id = p.check_id"
)


async def pool_rows(conn: Conn, *, waiting_only: bool = True, limit: int = 500) -> list[asyncpg.Record]:
    return await conn.fetch(
        _POOL + (" WHERE p.status = 'waiting'" if waiting_only else "") + " ORDER BY p.created_at LIMIT $1", limit
    )


async def pool_rows_by_id(conn: Conn, ids: list[uuid.UUID], *, lock: bool = False) -> list[asyncpg.Record]:
    if lock:  # lock the requests themselves (FOR UPDATE cannot apply to the nullable side of a join)
        await conn.execute("SELECT 1 FROM pool_requests WHERE id = ANY($1::uuid[]) FOR UPDATE", ids)
    return await conn.fetch(_POOL + " WHERE p.id = ANY($1::uuid[]) ORDER BY p.created_at", ids)


async def mark_formed(
    conn: Conn, request_id: uuid.UUID, convoy_id: uuid.UUID, company_id: uuid.UUID, by: uuid.UUID | None
) -> None:
    await conn.execute(
        "UPDATE pool_requests SET status = 'formed', convoy_id = $2, company_id = $3, formed_by = $4,"
        " formed_at = now() WHERE id = $1",
        request_id,
        convoy_id,
        company_id,
        by,
    )


async def facilitator_contacts(conn: Conn) -> list[asyncpg.Record]:
    """Every facilitator (not erased): the pool is the centre's, not one convoy's."""
    return await conn.fetch(
        "SELECT id, name, email, language FROM people WHERE is_facilitator AND erased_at IS NULL ORDER BY name"
    )


# --- programme figures (counts only) ---------------------------------------------------------------
# The period's days are ``zone``'s (a check is dated by its company's day): a day starts at its midnight there.
_FROM = "($1::date::timestamp AT TIME ZONE $4)"
_UNTIL = "(($2::date + 1)::timestamp AT TIME ZONE $4)"


async def programme_counts(
    conn: Conn, start: date, end: date, convoy_id: uuid.UUID | None, zone: str
) -> dict[str, Any]:
    row = await conn.fetchrow(
        "SELECT"
        " (SELECT count(*) FROM check_results WHERE completed_on BETWEEN $1 AND $2) AS check_completions,"
        f" (SELECT count(*) FROM pool_requests WHERE created_at >= {_FROM} AND created_at < {_UNTIL})"
        "   AS pool_requests,"
        f" (SELECT count(*) FROM convoys c WHERE c.created_at >= {_FROM} AND c.created_at < {_UNTIL}"
        "   AND ($3::uuid IS NULL OR c.id = $3)) AS convoys_formed,"
        f" (SELECT count(*) FROM convoys c WHERE c.created_at >= {_FROM} AND c.created_at < {_UNTIL}"
        "   AND ($3::uuid IS NULL OR c.id = $3)"
        "   AND EXISTS (SELECT 1 FROM pool_requests p WHERE p.convoy_id = c.id)) AS convoys_formed_from_pool,"
        f" (SELECT count(*) FROM companies co WHERE co.created_at < {_UNTIL}"
        f"   AND (co.removed_at IS NULL OR co.removed_at >= {_FROM}) AND ($3::uuid IS NULL OR co.convoy_id = $3))"
        "   AS companies_reached",
        start,
        end,
        convoy_id,
        zone,
    )
    assert row is not None
    return dict(row)


async def programme_convoys(
    conn: Conn, start: date, end: date, convoy_id: uuid.UUID | None, zone: str
) -> list[asyncpg.Record]:
    """Convoys that existed in the period, with the companies taking part in it."""
    return await conn.fetch(
        "SELECT c.id, c.name, c.status, c.start_date, (c.created_at AT TIME ZONE $4)::date AS created_on,"
        " EXISTS (SELECT 1 FROM pool_requests p WHERE p.convoy_id = c.id) AS formed_from_pool,"
        f" (SELECT count(*) FROM companies co WHERE co.convoy_id = c.id AND co.created_at < {_UNTIL}"
        f"   AND (co.removed_at IS NULL OR co.removed_at >= {_FROM})) AS companies"
        f" FROM convoys c WHERE c.created_at < {_UNTIL} AND ($3::uuid IS NULL OR c.id = $3)"
        " ORDER BY c.created_at, c.name LIMIT 2000",
        start,
        end,
        convoy_id,
        zone,
    )
