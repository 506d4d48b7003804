"""SQL of sign-in, sessions and tokens in services/convoys: sign-in links and their rate limit, browser
sessions and access tokens, personal API tokens, calendar feeds (services/convoys/auth.py uses it)."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from schemas import api
from services.runtime.db import struct

Conn = asyncpg.Connection


# --- sign-in, sessions, tokens -------------------------------------------------------------------
async def record_sign_in_request(conn: Conn, email_hash: bytes, client_hash: bytes, since: datetime) -> int:
    """Record one request for this address from this client; return how many this client made for the address
    since ``since`` (this one included)."""
    await conn.execute(
        "INSERT INTO sign_in_requests (email_hash, client_hash) VALUES ($1, $2)", email_hash, client_hash
    )
    count = await conn.fetchval(
        "SELECT count(*) FROM sign_in_requests WHERE email_hash = $1 AND client_hash = $2 AND requested_at > $3",
        email_hash,
        client_hash,
        since,
    )
    return int(count)


async def insert_sign_in_link(conn: Conn, token_hash: bytes, person_id: uuid.UUID, expires_at: datetime) -> None:
    await conn.execute(
        "INSERT INTO sign_in_links (token_hash, person_id, expires_at) VALUES ($1, $2, $3)",
        token_hash,
        person_id,
        expires_at,
    )


async def use_sign_in_link(conn: Conn, token_hash: bytes) -> uuid.UUID | None:
    """Mark an unused, unexpired link used (atomically: a link works once); return its person."""
    value = await conn.fetchval(
        "UPDATE sign_in_links SET used_at = now() WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()"
        " RETURNING person_id",
        token_hash,
    )
    return value  # type: ignore[no-any-return]


async def insert_session(
    conn: Conn,
    *,
    token_hash: bytes,
    person_id: uuid.UUID,
    kind: str,
    csrf_token: str | None,
    expires_at: datetime,
) -> None:
    await conn.execute(
        "INSERT INTO sessions (id, token_hash, person_id, kind, csrf_token, expires_at)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        uuid.uuid4(),
        token_hash,
        person_id,
        kind,
        csrf_token,
        expires_at,
    )


async def cap_sessions(conn: Conn, person_id: uuid.UUID, keep: int) -> None:
    """End all but the newest ``keep`` live sessions of a person (the store is bounded)."""
    await conn.execute(
        "UPDATE sessions SET revoked_at = now() WHERE id IN ("
        " SELECT id FROM sessions WHERE person_id = $1 AND revoked_at IS NULL AND expires_at > now()"
        " ORDER BY created_at DESC OFFSET $2)",
        person_id,
        keep,
    )


async def revoke_session(conn: Conn, token_hash: bytes) -> bool:
    done = await conn.fetchval(
        "UPDATE sessions SET revoked_at = now() WHERE token_hash = $1 AND revoked_at IS NULL RETURNING true",
        token_hash,
    )
    return bool(done)


async def purge_expired(conn: Conn) -> None:
    """Forget sessions, links and rate-limit records nobody can use any more."""
    await conn.execute(
        "DELETE FROM sessions WHERE expires_at < now() - interval '1 day' OR revoked_at < now() - interval '1 day'"
    )
    await conn.execute("DELETE FROM sign_in_links WHERE expires_at < now() - interval '1 day'")
    await conn.execute("DELETE FROM sign_in_requests WHERE requested_at < now() - interval '1 day'")


async def insert_api_token(
    conn: Conn, token_hash: bytes, person_id: uuid.UUID, name: str, scope: str, expires_at: datetime
) -> api.ApiToken:
    row = await conn.fetchrow(
        "INSERT INTO api_tokens (id, token_hash, person_id, name, scope, expires_at) VALUES ($1, $2, $3, $4, $5, $6)"
        " RETURNING *",
        uuid.uuid4(),
        token_hash,
        person_id,
        name,
        scope,
        expires_at,
    )
    return api_token(row)


LAST_USED_EVERY = "5 minutes"
"""``last_used_at`` is written when it is older than this: a date for the profile, not a write per request."""


async def session_principals(conn: Conn, token_hashes: list[bytes]) -> list[asyncpg.Record]:
    """The owners of live sessions or access tokens (with each row's ``token_hash`` and the session's ``kind``)."""
    return await conn.fetch(
        "SELECT s.token_hash, s.person_id, s.kind, s.csrf_token, s.expires_at, p.is_admin, p.is_facilitator"
        " FROM sessions s JOIN people p ON p.id = s.person_id"
        " WHERE s.token_hash = ANY($1::bytea[]) AND s.revoked_at IS NULL AND s.expires_at > now()",
        token_hashes,
    )


async def api_token_principals(conn: Conn, token_hashes: list[bytes]) -> list[asyncpg.Record]:
    """The owners of live API tokens (with each row's ``token_hash``); ``last_used_at`` is touched at most every
    ``LAST_USED_EVERY``."""
    return await conn.fetch(
        "WITH t AS (SELECT t.id, t.token_hash, t.person_id, t.scope, t.expires_at, t.last_used_at, p.is_admin,"
        " p.is_facilitator FROM api_tokens t JOIN people p ON p.id = t.person_id"
        " WHERE t.token_hash = ANY($1::bytea[]) AND t.revoked_at IS NULL AND t.expires_at > now()),"
        " touched AS (UPDATE api_tokens SET last_used_at = now() WHERE id IN (SELECT id FROM t)"
        f" AND (last_used_at IS NULL OR last_used_at < now() - interval '{LAST_USED_EVERY}'))"
        " SELECT token_hash, person_id, is_admin, is_facilitator, scope, expires_at FROM t",
        token_hashes,
    )


async def list_api_tokens(conn: Conn, person_id: uuid.UUID) -> list[api.ApiToken]:
    rows = await conn.fetch(
        "SELECT * FROM api_tokens WHERE person_id = $1 AND revoked_at IS NULL AND expires_at > now()"
        " ORDER BY created_at",
        person_id,
    )
    return [api_token(r) for r in rows]


async def revoke_api_token(conn: Conn, person_id: uuid.UUID, token_id: uuid.UUID) -> bool:
    done = await conn.fetchval(
        "UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND person_id = $2 AND revoked_at IS NULL"
        " RETURNING true",
        token_id,
        person_id,
    )
    return bool(done)


# --- calendar feeds (issue #22) --------------------------------------------------------------------
def calendar_feed(row: asyncpg.Record | None) -> api.CalendarFeed:
    if row is None:
        return api.CalendarFeed(active=False)
    return struct(row, api.CalendarFeed, active=True)


async def live_calendar_feed(conn: Conn, person_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM calendar_feeds WHERE person_id = $1 AND revoked_at IS NULL", person_id)


async def revoke_calendar_feeds(conn: Conn, person_id: uuid.UUID) -> bool:
    """Revoke the person's live feed; whether there was one."""
    status = await conn.execute(
        "UPDATE calendar_feeds SET revoked_at = now() WHERE person_id = $1 AND revoked_at IS NULL", person_id
    )
    return not str(status).endswith(" 0")


async def insert_calendar_feed(conn: Conn, token_hash: bytes, person_id: uuid.UUID) -> asyncpg.Record:
    row = await conn.fetchrow(
        "INSERT INTO calendar_feeds (id, token_hash, person_id) VALUES ($1, $2, $3) RETURNING *",
        uuid.uuid4(),
        token_hash,
        person_id,
    )
    assert row is not None
    return row


async def calendar_feed_owner(conn: Conn, token_hash: bytes) -> asyncpg.Record | None:
    """The live feed's person (and mark the fetch), or None for an unknown, revoked or erased one."""
    return await conn.fetchrow(
        "UPDATE calendar_feeds f SET last_used_at = now() FROM people p"
        " WHERE f.token_hash = $1 AND f.revoked_at IS NULL AND p.id = f.person_id AND p.erased_at IS NULL"
        " RETURNING p.id AS person_id, p.name, p.language, p.timezone",
        token_hash,
    )


def api_token(row: asyncpg.Record | None) -> api.ApiToken:
    assert row is not None
    return struct(row, api.ApiToken)
