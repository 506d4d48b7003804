"""All SQL of the notifier: the delivery log."""

from __future__ import annotations

import uuid

import msgspec

from schemas import api
from services.runtime.db import Database


class Deliveries:
    """The delivery log: claim a key before sending, mark it sent after; a key is sent at most once."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def claim(self, key: str, event_id: uuid.UUID, channel: str, recipient: str) -> bool:
        """True: send it now. False: sent, refused, or an earlier attempt died mid-send (then it is
        marked ``uncertain``: detected, never silently sent twice)."""
        async with self.db.transaction() as conn:
            claimed = await conn.fetchval(
                "INSERT INTO deliveries (key, event_id, channel, recipient, status, attempts)"
                " VALUES ($1, $2, $3, $4, 'sending', 1)"
                " ON CONFLICT (key) DO UPDATE SET status = 'sending', attempts = deliveries.attempts + 1"
                " WHERE deliveries.status = 'retrying' RETURNING true",
                key,
                event_id,
                channel,
                recipient,
            )
            if not claimed:
                await conn.execute(
                    "UPDATE deliveries SET status = 'uncertain',"
                    " last_error = 'an earlier attempt ended between claiming and recording'"
                    " WHERE key = $1 AND status = 'sending'",
                    key,
                )
        return bool(claimed)

    async def finish(self, key: str, status: str, error: str | None = None) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE deliveries SET status = $2, last_error = $3,"
                " sent_at = CASE WHEN $2 = 'sent' THEN now() END WHERE key = $1",
                key,
                status,
                error,
            )

    async def note_error(self, key: str, error: str) -> None:
        """A transient failure: the next attempt may send it."""
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE deliveries SET status = 'retrying', last_error = $2 WHERE key = $1", key, error[:1000]
            )

    async def allow_retry(self, key: str) -> bool:
        """An operator decided: a failed or uncertain delivery may be sent again (when its event is replayed)."""
        async with self.db.transaction() as conn:
            done = await conn.fetchval(
                "UPDATE deliveries SET status = 'retrying' WHERE key = $1 AND status IN ('failed', 'uncertain')"
                " RETURNING true",
                key,
            )
        return bool(done)

    async def needing_attention(self, status: str, limit: int) -> list[dict[str, object]]:
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                "SELECT key, channel, recipient, status, attempts, last_error, created_at FROM deliveries"
                " WHERE status = $1 ORDER BY created_at DESC LIMIT $2",
                status,
                limit,
            )
        return [dict(r) for r in rows]

    async def settled(self, keys: list[str]) -> set[str]:
        """Of ``keys``, those already sent or refused for good (a retry need not prepare them again)."""
        async with self.db.transaction() as conn:
            rows = await conn.fetch(
                "SELECT key FROM deliveries WHERE key = ANY($1::text[]) AND status IN ('sent', 'failed')", keys
            )
        return {r["key"] for r in rows}


class Preferences:
    """Who wants which email (absent row: everything on)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, person_id: uuid.UUID) -> api.NotificationPrefs:
        async with self.db.connection() as conn:
            row = await conn.fetchrow("SELECT * FROM preferences WHERE person_id = $1", person_id)
        if row is None:
            return api.NotificationPrefs()
        immediate = row["immediate"]
        return api.NotificationPrefs(
            email=row["email"],
            digest=row["digest"],
            immediate=msgspec.json.decode(immediate) if isinstance(immediate, str) else immediate,
        )

    async def put(self, person_id: uuid.UUID, prefs: api.NotificationPrefs) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO preferences (person_id, email, digest, immediate) VALUES ($1, $2, $3, $4::jsonb)"
                " ON CONFLICT (person_id) DO UPDATE SET email = excluded.email, digest = excluded.digest,"
                " immediate = excluded.immediate, updated_at = now()",
                person_id,
                prefs.email,
                prefs.digest,
                msgspec.json.encode(prefs.immediate).decode(),
            )
