"""All SQL of services/reminders."""

from __future__ import annotations

import asyncpg

from schemas import events as ev


async def upsert_convoy(conn: asyncpg.Connection, event: ev.ConvoyCreated) -> None:
    await conn.execute(
        "INSERT INTO convoys (convoy_id, name, timezone, language) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (convoy_id) DO UPDATE SET name = excluded.name, timezone = excluded.timezone,"
        " language = excluded.language",
        event.convoy_id,
        event.name,
        event.timezone,
        event.language,
    )
