"""All SQL of the notifier: the delivery log."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from schemas import api
from services.runtime.consumer import PROCESSED_CTE
from services.runtime.db import Database


@dataclass(frozen=True)
class Claim:
    """A delivery about to be sent (the arguments of :meth:`Deliveries.claim`)."""

    key: str
    event_id: uuid.UUID
    channel: str
    recipient: str


class Deliveries:
    """The delivery log: claim a key before sending, mark it sent after; a key is sent at most once."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def claim(self, key: str, event_id: uuid.UUID, channel: str, recipient: str) -> bool:
        """True: send it now. False: sent, refused, or an earlier attempt died mid-send (then it is
        marked ``uncertain``: detected, never silently sent twice)."""
        return key in await self.record_and_claim([], [Claim(key, event_id, channel, recipient)])

    async def record_and_claim(self, sent: Sequence[Claim], claims: Sequence[Claim]) -> set[str]:
        """For many sends at once, in one statement (one round trip, one commit): mark the ``sent``
        deliveries sent (as ``finish(key, "sent")``; each as it was claimed) and claim ``claims``, each
        as :meth:`claim` does. The keys must be distinct, and none both recorded and claimed. Returns
        the keys claimed."""
        rows = [*sent, *claims]
        async with self.db.connection() as conn:
            found = await conn.fetch(
                # One INSERT … ON CONFLICT, so every key is found through the primary key whatever the
                # plan (an UPDATE … WHERE key = ANY($1), planned generic while the table was small,
                # scanned the whole table per batch until the next ANALYZE). A claim inserts a new key
                # or takes a 'retrying' one; a 'sending' key (an attempt that died mid-send) is marked
                # uncertain, not claimed; 'sent', 'failed' and 'uncertain' keys are left alone. A
                # record marks its key sent (its row exists: it was claimed; were it gone, the record
                # would write it as sent, with what it was claimed with).
                "INSERT INTO deliveries AS d (key, event_id, channel, recipient, status, attempts, sent_at)"
                " SELECT key, event_id, channel, recipient, status, 1, CASE WHEN status = 'sent' THEN now() END"
                " FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[])"
                " AS c(key, event_id, channel, recipient, status)"
                " ON CONFLICT (key) DO UPDATE SET"
                " status = CASE WHEN excluded.status = 'sent' THEN 'sent'"
                " WHEN d.status = 'retrying' THEN 'sending' ELSE 'uncertain' END,"
                " attempts = CASE WHEN excluded.status = 'sending' AND d.status = 'retrying'"
                " THEN d.attempts + 1 ELSE d.attempts END,"
                " last_error = CASE WHEN excluded.status = 'sent' THEN NULL"
                " WHEN d.status = 'retrying' THEN d.last_error"
                " ELSE 'an earlier attempt ended between claiming and recording' END,"
                " sent_at = CASE WHEN excluded.status = 'sent' THEN now() ELSE d.sent_at END"
                " WHERE excluded.status = 'sent' OR d.status = 'retrying'"
                # 'sending' as the statement found it, as UPDATE would: not a claim committed by another
                # replica while this one waited for it (its send is in flight; this row version is not
                # in the statement's snapshot). Evaluated only for a key found 'sending': rare.
                " OR (d.status = 'sending' AND EXISTS (SELECT FROM deliveries v WHERE v.ctid = d.ctid))"
                " RETURNING key, status",
                [r.key for r in rows],
                [r.event_id for r in rows],
                [r.channel for r in rows],
                [r.recipient for r in rows],
                ["sent"] * len(sent) + ["sending"] * len(claims),
            )
        recorded = {r.key for r in sent}
        return {r["key"] for r in found if r["status"] == "sending" and r["key"] not in recorded}

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


_PREFS_OF = "SELECT * FROM preferences WHERE person_id = ANY($1::uuid[])"


class Preferences:
    """Who wants which email (absent row: everything on)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, person_id: uuid.UUID) -> api.NotificationPrefs:
        async with self.db.connection() as conn:
            row = await conn.fetchrow("SELECT * FROM preferences WHERE person_id = $1", person_id)
        if row is None:
            return api.NotificationPrefs()
        return _prefs(row)

    async def get_many(
        self, person_ids: Iterable[uuid.UUID], conn: asyncpg.Connection | None = None
    ) -> dict[uuid.UUID, api.NotificationPrefs]:
        """Everyone's preferences in one query (absent row: everything on), as :meth:`get` for each.
        ``conn``: a connection the caller holds (a consumer's), instead of one from the pool."""
        ids = list(dict.fromkeys(person_ids))
        if not ids:
            return {}
        if conn is not None:
            rows = await conn.fetch(_PREFS_OF, ids)
        else:
            async with self.db.connection() as pooled:
                rows = await pooled.fetch(_PREFS_OF, ids)
        found = {r["person_id"]: _prefs(r) for r in rows}
        return {p: found.get(p) or api.NotificationPrefs() for p in ids}

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


def _prefs(row: asyncpg.Record) -> api.NotificationPrefs:
    immediate = row["immediate"]
    return api.NotificationPrefs(
        email=row["email"],
        digest=row["digest"],
        immediate=msgspec.json.decode(immediate) if isinstance(immediate, str) else immediate,
    )


# --- feedback batches (notifier/feedback.py) -------------------------------------------------------
@dataclass(frozen=True)
class FeedbackItem:
    event_id: uuid.UUID
    kind: str
    """``comment`` or ``kudos``."""
    actor_id: uuid.UUID
    comment_id: uuid.UUID | None
    parent_id: uuid.UUID | None
    occurred_at: datetime


@dataclass(frozen=True)
class FeedbackBatch:
    id: uuid.UUID
    report_id: uuid.UUID
    convoy_id: uuid.UUID
    attempts: int
    items: list[FeedbackItem]


class FeedbackQueue:
    """Comments and kudos waiting for their report's feedback email."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    async def add(
        conn: asyncpg.Connection,
        *,
        consumer: str,
        event_id: uuid.UUID,
        report_id: uuid.UUID,
        convoy_id: uuid.UUID,
        kind: str,
        actor_id: uuid.UUID,
        comment_id: uuid.UUID | None,
        parent_id: uuid.UUID | None,
        occurred_at: datetime,
        window_s: float,
    ) -> bool:
        """Add an item to its report's open batch (opened now, due after ``window_s``, if none is
        open), and record the event as processed by ``consumer``, in one statement (its own
        transaction: services/runtime/consumer.py ``one_statement``); False: processed before,
        nothing written. The batch row stays locked until the statement commits, so a flusher
        closing the batch either sees the item or leaves the batch open for the next pass."""
        return bool(
            await conn.fetchval(
                f"WITH {PROCESSED_CTE}, batch AS ("
                "  INSERT INTO feedback_batches (id, report_id, convoy_id, due_at)"
                "  SELECT $3::uuid, $4::uuid, $5::uuid, now() + make_interval(secs => $10)"
                "  WHERE EXISTS (SELECT FROM fresh)"
                "  ON CONFLICT (report_id) WHERE closed_at IS NULL DO UPDATE SET report_id = excluded.report_id"
                "  RETURNING id"
                "), item AS ("
                "  INSERT INTO feedback_items (event_id, batch_id, kind, actor_id, comment_id, parent_id, occurred_at)"
                "  SELECT $2::uuid, id, $6::text, $7::uuid, $8::uuid, $9::uuid, $11::timestamptz FROM batch"
                "  ON CONFLICT (event_id) DO NOTHING"
                ") SELECT EXISTS (SELECT FROM fresh)",
                consumer,
                event_id,
                uuid.uuid4(),
                report_id,
                convoy_id,
                kind,
                actor_id,
                comment_id,
                parent_id,
                window_s,
                occurred_at,
            )
        )

    @staticmethod
    async def take_back_kudos(
        conn: asyncpg.Connection, *, consumer: str, event_id: uuid.UUID, report_id: uuid.UUID, person_id: uuid.UUID
    ) -> bool:
        """Kudos taken back while their batch is still open: not announced. Recorded as processed by
        ``consumer`` in the same statement, as :meth:`add`; False: processed before."""
        return bool(
            await conn.fetchval(
                f"WITH {PROCESSED_CTE}, gone AS ("
                "  DELETE FROM feedback_items i USING feedback_batches b"
                "  WHERE EXISTS (SELECT FROM fresh) AND i.batch_id = b.id AND b.report_id = $3"
                "  AND b.closed_at IS NULL AND i.kind = 'kudos' AND i.actor_id = $4"
                ") SELECT EXISTS (SELECT FROM fresh)",
                consumer,
                event_id,
                report_id,
                person_id,
            )
        )

    async def claim_due(self, limit: int, lease_s: float) -> list[FeedbackBatch]:
        """Close and lease up to ``limit`` batches whose window has passed (or whose earlier flusher's
        lease ran out); batches another flusher holds are skipped.

        Two statements, each its own transaction (no BEGIN/COMMIT round trips): the close commits
        first, then the items are read with a snapshot taken after it. A consumer adding to a batch
        holds the batch row until it commits, so its item is either committed before the close
        locked the row (and read here) or, the batch being closed by then, opens a new batch. (One
        statement could not promise that: its snapshot is taken before the rows are locked.) A crash
        between the two leaves the batch leased: taken over when the lease runs out."""
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                "UPDATE feedback_batches SET closed_at = coalesce(closed_at, now()), attempts = attempts + 1,"
                " lease_until = now() + make_interval(secs => $2)"
                " WHERE id IN (SELECT id FROM feedback_batches"
                "  WHERE (closed_at IS NULL AND due_at <= now()) OR (closed_at IS NOT NULL AND lease_until <= now())"
                "  ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED)"
                " RETURNING id, report_id, convoy_id, attempts",
                limit,
                lease_s,
            )
            if not rows:
                return []
            items = await conn.fetch(
                "SELECT batch_id, event_id, kind, actor_id, comment_id, parent_id, occurred_at FROM feedback_items"
                " WHERE batch_id = ANY($1::uuid[]) ORDER BY occurred_at, event_id",
                [r["id"] for r in rows],
            )
        by_batch: dict[uuid.UUID, list[FeedbackItem]] = {}
        for i in items:
            by_batch.setdefault(i["batch_id"], []).append(
                FeedbackItem(
                    event_id=i["event_id"],
                    kind=i["kind"],
                    actor_id=i["actor_id"],
                    comment_id=i["comment_id"],
                    parent_id=i["parent_id"],
                    occurred_at=i["occurred_at"],
                )
            )
        return [
            FeedbackBatch(
                id=r["id"],
                report_id=r["report_id"],
                convoy_id=r["convoy_id"],
                attempts=r["attempts"],
                items=by_batch.get(r["id"], []),
            )
            for r in rows
        ]

    async def done(self, *batch_ids: uuid.UUID) -> None:
        """Every email of these batches is sent (or was not wanted): forget them (one statement)."""
        if not batch_ids:
            return
        async with self.db.connection() as conn:
            await conn.execute("DELETE FROM feedback_batches WHERE id = ANY($1::uuid[])", list(batch_ids))

    async def retry_later(self, batch_id: uuid.UUID, after_s: float, error: str) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE feedback_batches SET lease_until = now() + make_interval(secs => $2), last_error = $3"
                " WHERE id = $1",
                batch_id,
                after_s,
                error[:1000],
            )


# --- data protection -------------------------------------------------------------------------------
ERASED_RECIPIENT = "erased"
"""What a delivery's recipient becomes when its person deletes their account (the key stays)."""


async def erase_person(conn: asyncpg.Connection, person_id: uuid.UUID, email_sha256: bytes, at: datetime) -> None:
    """Forget a person: preferences, their comments and kudos waiting for a feedback email, and the
    address in every delivery to them (keys stay, so nothing is ever sent twice). Idempotent."""
    await conn.execute(
        "INSERT INTO erasures (person_id, email_sha256, erased_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        person_id,
        email_sha256,
        at,
    )
    await conn.execute("DELETE FROM preferences WHERE person_id = $1", person_id)
    await conn.execute("DELETE FROM feedback_items WHERE actor_id = $1", person_id)  # not announced any more
    await conn.execute(
        "UPDATE deliveries SET recipient = $3, last_error = NULL"
        " WHERE channel = 'email' AND (key LIKE '%:' || $1::text"
        " OR sha256(convert_to(lower(btrim(recipient)), 'UTF8')) = $2)",
        str(person_id),
        email_sha256,
        ERASED_RECIPIENT,
    )
    await conn.execute(
        "UPDATE erasures SET email_sha256 = NULL"
        " WHERE email_sha256 IS NOT NULL AND erased_at < now() - interval '2 days'"
    )


async def forget_recipient(conn: asyncpg.Connection, key: str) -> None:
    """The address of one delivery (its key stays, so it is never sent again): a deleted pool contact."""
    await conn.execute("UPDATE deliveries SET recipient = $2, last_error = NULL WHERE key = $1", key, ERASED_RECIPIENT)


async def erased_before(db: Database, person_id: uuid.UUID | None, email_sha256: bytes, at: datetime) -> bool:
    """Whether the person (or the address) was erased after a message to them was asked for at ``at``."""
    async with db.connection() as conn:
        value = await conn.fetchval(
            "SELECT true FROM erasures WHERE (person_id = $1 OR email_sha256 = $2) AND erased_at >= $3 LIMIT 1",
            person_id,
            email_sha256,
            at,
        )
    return bool(value)


async def is_erased(db: Database, person_id: uuid.UUID) -> bool:
    async with db.connection() as conn:
        return bool(await conn.fetchval("SELECT true FROM erasures WHERE person_id = $1", person_id))


async def personal_records(db: Database, person_id: uuid.UUID, email: str) -> dict[str, list[dict[str, Any]]]:
    """A person's preferences and every delivery addressed to them (by key or by address)."""
    async with db.connection() as conn:
        prefs = await conn.fetch(
            "SELECT email, digest, immediate, updated_at FROM preferences WHERE person_id = $1", person_id
        )
        deliveries = await conn.fetch(
            "SELECT key, channel, recipient, status, attempts, created_at, sent_at FROM deliveries"
            " WHERE channel = 'email' AND (key LIKE '%:' || $1::text OR lower(recipient) = lower($2))"
            " ORDER BY created_at",
            str(person_id),
            email,
        )
    preferences = []
    for r in prefs:
        record = dict(r)
        if isinstance(record["immediate"], str):
            record["immediate"] = msgspec.json.decode(record["immediate"])
        preferences.append(record)
    return {"preferences": preferences, "deliveries": [dict(r) for r in deliveries]}
