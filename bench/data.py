"""Setup of the benchmark data: every SQL statement of bench/ is in this module.

Set-based inserts straight into the services' tables (convoys, and the projections that
services/milestones and services/reminders would have built from its events), because building
tens of thousands of convoys through invitations would take longer than the benchmark. This is
setup, never the measured path.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import asyncpg
import msgspec

from schemas.values import Cadence
from services.reminders import schedule

WEEKLY_MONDAY_9 = Cadence(frequency="weekly", weekday="mon", local_time="09:00", window_hours=72)
TIMEZONE = "Europe/Berlin"


@dataclass
class Rep:
    person_id: uuid.UUID
    company_id: uuid.UUID
    convoy_id: uuid.UUID
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Convoys:
    ids: list[uuid.UUID] = field(default_factory=list)
    companies: dict[uuid.UUID, list[uuid.UUID]] = field(default_factory=dict)
    reps: list[Rep] = field(default_factory=list)


async def create_convoys(
    pool: asyncpg.Pool,
    count: int,
    *,
    companies: int,
    reps_per_company: int = 1,
    tokens: bool = True,
    start_date: date,
    cadence: Cadence = WEEKLY_MONDAY_9,
    language: str = "de",
    slack_base: str | None = None,
    slack_post_reports: bool = False,
    in_reminders: bool = False,
    tag: str = "",
) -> Convoys:
    """``count`` active convoys with ``companies`` companies of ``reps_per_company`` representatives each."""
    tag = tag or uuid.uuid4().hex[:6]
    out = Convoys(ids=[uuid.uuid4() for _ in range(count)])
    convoy_rows, company_rows, people_rows, member_rows, session_rows = [], [], [], [], []
    cadence_json = msgspec.json.encode(cadence).decode()
    for i, convoy_id in enumerate(out.ids):
        webhook = f"{slack_base}/{convoy_id}" if slack_base else None
        convoy_rows.append((convoy_id, f"Bench-Konvoi {tag} {i}", webhook))
        out.companies[convoy_id] = []
        for j in range(companies):
            company_id = uuid.uuid4()
            out.companies[convoy_id].append(company_id)
            company_rows.append((company_id, convoy_id, f"Firma {j} ({i})"))
            for k in range(reps_per_company):
                person_id = uuid.uuid4()
                people_rows.append((person_id, f"Person {i}-{j}-{k}", f"p{tag}-{i}-{j}-{k}@bench.example"))
                member_rows.append((person_id, company_id, convoy_id))
                if tokens:
                    token = "cva_" + secrets.token_urlsafe(32)
                    session_rows.append((uuid.uuid4(), hashlib.sha256(token.encode()).digest(), person_id))
                    out.reps.append(Rep(person_id, company_id, convoy_id, token))
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO convoys.convoys (id, name, timezone, language, cadence, start_date, status)"
            " SELECT id, name, $3, $4, $5::jsonb, $6, 'active'"
            " FROM unnest($1::uuid[], $2::text[]) AS t(id, name)",
            [r[0] for r in convoy_rows],
            [r[1] for r in convoy_rows],
            TIMEZONE,
            language,
            cadence_json,
            start_date,
        )
        await conn.execute(
            "INSERT INTO convoys.chat_webhooks (convoy_id, channel, webhook_url, post_reports)"
            " SELECT id, 'slack', hook, $3 FROM unnest($1::uuid[], $2::text[]) AS t(id, hook) WHERE hook IS NOT NULL",
            [r[0] for r in convoy_rows],
            [r[2] for r in convoy_rows],
            slack_post_reports,
        )
        await conn.execute(
            "INSERT INTO convoys.companies (id, convoy_id, name)"
            " SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[])",
            *_columns(company_rows, 3),
        )
        await conn.execute(
            "INSERT INTO convoys.people (id, name, email, language)"
            " SELECT id, name, email, $4 FROM unnest($1::uuid[], $2::text[], $3::text[]) AS t(id, name, email)",
            *_columns(people_rows, 3),
            language,
        )
        await conn.execute(
            "INSERT INTO convoys.memberships (person_id, company_id, convoy_id)"
            " SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[])",
            *_columns(member_rows, 3),
        )
        if await _has_column(conn, "convoys", "memberships", "charter_version"):  # accepted the convoy's charter
            await conn.execute(
                "UPDATE convoys.memberships m SET charter_version = c.charter_version, charter_accepted_at = now()"
                " FROM convoys.convoys c WHERE c.id = m.convoy_id AND m.convoy_id = ANY($1::uuid[])",
                out.ids,
            )
        if session_rows:
            await conn.execute(
                "INSERT INTO convoys.sessions (id, token_hash, person_id, kind, expires_at)"
                " SELECT id, hash, person, 'access', now() + interval '1 day'"
                " FROM unnest($1::uuid[], $2::bytea[], $3::uuid[]) AS t(id, hash, person)",
                *_columns(session_rows, 3),
            )
        # Set-up, not measured: the projection rows of up to a million convoys go in without milestones'
        # convoy-version triggers (a row each at the commit; a convoy without a version row has version 0).
        await conn.execute("SET LOCAL session_replication_role = replica")
        # The projection of charters as the events leave it (version 1, accepted with the invitation).
        charters = await _has_column(conn, "milestones", "members", "charter_version")
        charter_column, charter_value = (", charter_version", ", 1") if charters else ("", "")
        await conn.execute(
            "INSERT INTO milestones.convoys (convoy_id, name, timezone, language, cadence, start_date, status"
            + charter_column
            + ") SELECT id, name, $3, $4, $5::jsonb, $6, 'active'"
            + charter_value
            + " FROM unnest($1::uuid[], $2::text[]) AS t(id, name)",
            [r[0] for r in convoy_rows],
            [r[1] for r in convoy_rows],
            TIMEZONE,
            language,
            cadence_json,
            start_date,
        )
        await conn.execute(
            "INSERT INTO milestones.companies (company_id, convoy_id, name)"
            " SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[])",
            *_columns(company_rows, 3),
        )
        await conn.execute(
            "INSERT INTO milestones.members (person_id, company_id, convoy_id"
            + charter_column
            + ") SELECT *"
            + charter_value
            + " FROM unnest($1::uuid[], $2::uuid[], $3::uuid[])",
            *_columns(member_rows, 3),
        )
        await conn.execute("SET LOCAL session_replication_role = DEFAULT")
        if in_reminders:
            await conn.execute(
                "INSERT INTO reminders.convoys (convoy_id, name, timezone, language, cadence, start_date, status)"
                " SELECT id, name, $3, $4, $5::jsonb, $6, 'active' FROM unnest($1::uuid[], $2::text[]) AS t(id, name)",
                [r[0] for r in convoy_rows],
                [r[1] for r in convoy_rows],
                TIMEZONE,
                language,
                cadence_json,
                start_date,
            )
            await conn.execute(
                "INSERT INTO reminders.companies (company_id, convoy_id, name)"
                " SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[])",
                *_columns(company_rows, 3),
            )
    await analyze(pool)
    return out


def _columns(rows: list[tuple[object, ...]], n: int) -> list[list[object]]:
    return [[r[i] for r in rows] for i in range(n)]


async def _has_column(conn: asyncpg.Connection, schema: str, table: str, column: str) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT 1 FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 AND column_name = $3",
            schema,
            table,
            column,
        )
    )


async def analyze(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        for schema in ("convoys", "milestones", "reminders"):
            await conn.execute(f"ANALYZE {schema}.convoys")  # the planner should see the new rows
        await conn.execute("ANALYZE")


async def vacuum(pool: asyncpg.Pool, tables: list[str]) -> None:
    """VACUUM (ANALYZE) ``tables``, as autovacuum keeps them: after a bulk UPDATE, the old row
    versions' entries would otherwise stay in partial indexes a query walks (e.g. every convoy in
    ``reminders.convoys_unplanned`` until :func:`mark_planned`'s old versions are vacuumed)."""
    async with pool.acquire() as conn:
        for table in tables:
            await conn.execute(f"VACUUM (ANALYZE) {table}")


async def insert_reports(
    pool: asyncpg.Pool, convoys: Convoys, *, cycle_index: int, submitted_at: datetime, language: str = "de"
) -> int:
    """One report per company of every convoy in ``cycle_index`` (authored by its first representative)."""
    author = {r.company_id: r.person_id for r in reversed(convoys.reps)}
    rows = [
        (uuid.uuid4(), convoy_id, company_id, author.get(company_id, uuid.uuid4()))
        for convoy_id, companies in convoys.companies.items()
        for company_id in companies
    ]
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO milestones.reports (id, convoy_id, company_id, author_id, cycle_index, done, next, mood,"
            " submitted_at, ts_config)"
            " SELECT id, convoy, company, author, $5, 'Buchungsseite ist **live**, Kalender angebunden',"
            "   'Zahlungen anbinden', 4, $6, $7::regconfig"
            " FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[]) AS t(id, convoy, company, author)",
            *_columns(rows, 4),
            cycle_index,
            submitted_at,
            "german" if language == "de" else "english",
        )
    return len(rows)


async def insert_history(pool: asyncpg.Pool, convoy_id: uuid.UUID, companies: list[uuid.UUID], weeks: int) -> int:
    """``weeks`` of weekly reports of every company before today (as tests/test_scale.py does)."""
    async with pool.acquire() as conn:
        author = await conn.fetchval("SELECT person_id FROM milestones.members WHERE convoy_id = $1 LIMIT 1", convoy_id)
        await conn.execute(
            "INSERT INTO milestones.reports (id, convoy_id, company_id, author_id, cycle_index, done, next, blockers,"
            " help_wanted, mood, submitted_at, ts_config)"
            " SELECT gen_random_uuid(), $1, c.id, $2, -1 - w, 'Woche ' || w || ': Kalender und Webshop weiter',"
            "   'weiter', CASE WHEN w % 7 = 0 THEN 'Lieferant' ELSE '' END, w % 11 = 0, 1 + w % 5,"
            "   now() - make_interval(weeks => w + 1), 'german'"
            " FROM generate_series(0, $3 - 1) AS w, unnest($4::uuid[]) AS c(id)",
            convoy_id,
            author,
            weeks,
            companies,
        )
        await conn.execute("ANALYZE milestones.reports")
        return int(await conn.fetchval("SELECT count(*) FROM milestones.reports WHERE convoy_id = $1", convoy_id))


async def any_report(pool: asyncpg.Pool, convoy_id: uuid.UUID) -> uuid.UUID:
    async with pool.acquire() as conn:
        return uuid.UUID(
            str(await conn.fetchval("SELECT id FROM milestones.reports WHERE convoy_id = $1 LIMIT 1", convoy_id))
        )


async def touch_convoy(pool: asyncpg.Pool, convoy_id: uuid.UUID) -> None:
    """A change that alters nothing shown but moves the convoy's version (its triggers run as for any change):
    the pages' ETags from before it are stale from then on (the reads scenario's "changed" pages)."""
    async with pool.acquire() as conn:
        await conn.execute("UPDATE milestones.convoys SET name = name WHERE convoy_id = $1", convoy_id)


# --- the scheduler's materialised cycles ------------------------------------------------------------
async def insert_cycles(
    pool: asyncpg.Pool,
    convoy_ids: list[uuid.UUID],
    plan: schedule.Plan,
    rows: list[tuple[int, bool, bool, bool, int]],
    offsets: tuple[int, ...] = (24, 2),
) -> None:
    """Cycles of ``plan`` for every convoy: (index, skipped, opened, closed, nudges_done) each.

    Opened/closed cycles get their own opening/closing time as the time they were fired; ``next_at``
    is what the scheduler would have stored (``schedule.next_action_at`` with the convoys' nudge
    ``offsets``, the default ones unless given).
    """
    async with pool.acquire() as conn, conn.transaction():
        for index, skipped, opened, closed, nudges in rows:
            c = schedule.plan_cycle(plan, index)
            state = schedule.CycleState(
                index=index,
                opens_at=c.opens_at,
                due_at=c.due_at,
                closes_at=c.closes_at,
                skipped=skipped,
                opened=opened,
                nudges_done=nudges,
                closed=closed,
            )
            await conn.execute(
                "INSERT INTO reminders.cycles (convoy_id, cycle_index, opens_at, due_at, closes_at, skipped,"
                " skip_reason, opened_at, nudges_done, closed_at, next_at)"
                " SELECT id, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 FROM unnest($1::uuid[]) AS t(id)",
                convoy_ids,
                index,
                c.opens_at,
                c.due_at,
                c.closes_at,
                skipped,
                "Bench: ausgesetzt" if skipped else "",
                c.opens_at if opened else None,
                nudges,
                c.closes_at if closed else None,
                schedule.next_action_at(state, offsets),
            )


async def mark_planned(pool: asyncpg.Pool, convoy_ids: list[uuid.UUID], plan: schedule.Plan, now: datetime) -> None:
    """Record the convoys as planned at ``now`` with ``plan``, as a tick would have left them (so the
    first tick of a scenario is not the one-off planning of every convoy the bench just inserted)."""
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE reminders.convoys SET planned_version = plan_version, planned_until = $2"
            " WHERE convoy_id = ANY($1::uuid[])",
            convoy_ids,
            schedule.plan_horizon(plan, now),
        )


async def set_nudges(pool: asyncpg.Pool, convoy_ids: list[uuid.UUID], offsets: list[int]) -> None:
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE reminders.convoys SET nudge_offsets = $2 WHERE convoy_id = ANY($1::uuid[])", convoy_ids, offsets
        )


async def set_cadence(pool: asyncpg.Pool, convoy_ids: list[uuid.UUID], cadence: Cadence) -> None:
    encoded = msgspec.json.encode(cadence).decode()
    async with pool.acquire() as conn:
        for schema in ("convoys", "milestones", "reminders"):
            key = "id" if schema == "convoys" else "convoy_id"
            await conn.execute(
                f"UPDATE {schema}.convoys SET cadence = $2::jsonb WHERE {key} = ANY($1::uuid[])", convoy_ids, encoded
            )


# --- baselines ---------------------------------------------------------------------------------------
async def create_baseline_tables(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.execute("CREATE SCHEMA IF NOT EXISTS bench")
        await conn.execute("CREATE TABLE IF NOT EXISTS bench.raw (id bigint GENERATED ALWAYS AS IDENTITY, v text)")
        await conn.execute("CREATE TABLE IF NOT EXISTS bench.reports (LIKE milestones.reports INCLUDING ALL)")
        await conn.execute("CREATE TABLE IF NOT EXISTS bench.outbox (LIKE milestones.outbox INCLUDING ALL)")


RAW_INSERT = "INSERT INTO bench.raw (v) VALUES ($1)"
"""(a) the durable-write limit: one single-row INSERT, committed (autocommit)."""

REPORT_INSERT = (
    "INSERT INTO bench.reports (id, convoy_id, company_id, author_id, cycle_index, late, done, next, mood, ts_config)"
    " VALUES ($1, $2, $3, $4, $5, false, $6, $7, $8, 'german')"
)
OUTBOX_INSERT = "INSERT INTO bench.outbox (event_id, subject, data) VALUES ($1, $2, $3)"
NOTIFY = "SELECT pg_notify('bench_outbox', '')"


async def report_transaction(conn: asyncpg.Connection, convoy_id: uuid.UUID, subject: str, data: bytes) -> None:
    """(b) what a posted report commits, issued directly: the report row, its outbox row, the notify."""
    async with conn.transaction():
        await conn.execute(REPORT_INSERT, uuid.uuid4(), convoy_id, uuid.uuid4(), uuid.uuid4(), 0, "done", "next", 4)
        await conn.execute(OUTBOX_INSERT, uuid.uuid4(), subject, data)
        await conn.execute(NOTIFY)


MONOLITH = "monolith"
"""Baseline (c)'s copy of milestones' tables (bench/baseline_app.py)."""


async def create_monolith(database_url: str) -> None:
    """Milestones' tables once more, in the schema ``monolith``, by milestones' own migrations."""
    from services import milestones
    from services.runtime import db

    await db.migrate(database_url, MONOLITH, milestones.MIGRATIONS)


async def copy_to_monolith(pool: asyncpg.Pool, convoy_ids: list[uuid.UUID]) -> None:
    """The projection rows of these convoys (convoys, companies, members) into the copy."""
    async with pool.acquire() as conn, conn.transaction():
        for table in ("convoys", "companies", "members"):
            await conn.execute(
                f"INSERT INTO {MONOLITH}.{table} SELECT * FROM milestones.{table} WHERE convoy_id = ANY($1::uuid[])",
                convoy_ids,
            )
        await conn.execute(f"ANALYZE {MONOLITH}.convoys")
        await conn.execute(f"ANALYZE {MONOLITH}.companies")
        await conn.execute(f"ANALYZE {MONOLITH}.members")


def monday_9(day: date) -> datetime:
    from zoneinfo import ZoneInfo

    return datetime(day.year, day.month, day.day, 9, 0, tzinfo=ZoneInfo(TIMEZONE))


def last_monday(before: date) -> date:
    return before - timedelta(days=before.weekday())


async def outbox_rows(pool: asyncpg.Pool, schemas: list[str]) -> int:
    """Events written but not yet relayed, over every service's outbox."""
    async with pool.acquire() as conn:
        return sum([int(await conn.fetchval(f"SELECT count(*) FROM {schema}.outbox")) for schema in schemas])
