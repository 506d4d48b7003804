"""The convoys' change counters (migration 0011): read for a page's ETag and for the API's announcements."""

from __future__ import annotations

import uuid

import asyncpg

Conn = asyncpg.Connection


async def version(conn: Conn, convoy_id: uuid.UUID) -> int:
    """The convoy's change counter; 0 before its first change."""
    return int(await conn.fetchval("SELECT version FROM convoy_versions WHERE convoy_id = $1", convoy_id) or 0)


async def versions(conn: Conn, convoy_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    rows = await conn.fetch(
        "SELECT convoy_id, version FROM convoy_versions WHERE convoy_id = ANY($1::uuid[])", convoy_ids
    )
    return {r["convoy_id"]: r["version"] for r in rows}
