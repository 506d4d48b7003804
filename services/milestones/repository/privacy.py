"""Data protection: erased authors, a person's export, the retention rule (services/milestones/privacy.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

Conn = asyncpg.Connection


async def former_authors(conn: Conn, person_ids: list[uuid.UUID]) -> dict[tuple[uuid.UUID, uuid.UUID], str | None]:
    """(person, convoy) of authors who deleted their account -> the company they represented there
    (None: they facilitated the convoy)."""
    if not person_ids:
        return {}
    rows = await conn.fetch(
        "SELECT f.person_id, f.convoy_id, c.name FROM former_authors f"
        " LEFT JOIN companies c ON c.company_id = f.company_id WHERE f.person_id = ANY($1::uuid[])",
        list(set(person_ids)),
    )
    return {(r["person_id"], r["convoy_id"]): r["name"] for r in rows}


async def record_former_author(
    conn: Conn, person_id: uuid.UUID, convoy_id: uuid.UUID, company_id: uuid.UUID | None
) -> None:
    """Idempotent; a representative's company wins over a facilitator role in the same convoy."""
    await conn.execute(
        "INSERT INTO former_authors (person_id, convoy_id, company_id) VALUES ($1, $2, $3)"
        " ON CONFLICT (person_id, convoy_id) DO UPDATE SET company_id = coalesce(excluded.company_id,"
        " former_authors.company_id)",
        person_id,
        convoy_id,
        company_id,
    )


async def forget_person(conn: Conn, person_id: uuid.UUID) -> None:
    """Drop an erased person from the projections that authorize (they can do nothing any more)."""
    await conn.execute("DELETE FROM members WHERE person_id = $1", person_id)
    await conn.execute("DELETE FROM facilitators WHERE person_id = $1", person_id)
    await conn.execute("DELETE FROM observers WHERE person_id = $1", person_id)
    await conn.execute("DELETE FROM revoked_members WHERE person_id = $1", person_id)


def _records(rows: list[asyncpg.Record]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        record = dict(r)
        if isinstance(record.get("body"), str) and "version" in record:
            record["body"] = msgspec.json.decode(record["body"])
        out.append(record)
    return out


async def personal_records(conn: Conn, person_id: uuid.UUID) -> dict[str, list[dict[str, Any]]]:
    """A person's reports (with earlier versions), comments, kudos given, help offers and flags."""
    reports = await conn.fetch(
        "SELECT r.id, r.convoy_id, r.company_id, c.name AS company_name, r.cycle_index, r.late, r.done, r.next,"
        " r.blockers, r.help_wanted, r.help_topic, r.mood, r.facilitator_note, r.version, r.submitted_at,"
        " r.updated_at, r.hidden_at IS NOT NULL AS hidden"
        " FROM reports r JOIN companies c ON c.company_id = r.company_id WHERE r.author_id = $1"
        " ORDER BY r.submitted_at, r.id",
        person_id,
    )
    versions = await conn.fetch(
        "SELECT v.report_id, v.version, v.editor_id, v.saved_at, v.body FROM report_versions v"
        " JOIN reports r ON r.id = v.report_id WHERE r.author_id = $1 OR v.editor_id = $1"
        " ORDER BY v.report_id, v.version",
        person_id,
    )
    comments = await conn.fetch(
        "SELECT id, report_id, convoy_id, parent_id, body, created_at, edited_at, deleted_at,"
        " hidden_at IS NOT NULL AS hidden FROM comments WHERE author_id = $1 ORDER BY created_at, id",
        person_id,
    )
    kudos = await conn.fetch(
        "SELECT report_id, convoy_id, given_at FROM kudos WHERE person_id = $1 ORDER BY given_at", person_id
    )
    help_offers = await conn.fetch(
        "SELECT id, report_id, company_id, message, created_at FROM help_offers WHERE person_id = $1"
        " ORDER BY created_at",
        person_id,
    )
    flags = await conn.fetch(
        "SELECT id, convoy_id, object_type, object_id, reason, note, created_at, resolved_at, resolution"
        " FROM flags WHERE flagged_by = $1 ORDER BY created_at",
        person_id,
    )
    return {
        "reports": _records(reports),
        "report_versions": _records(versions),
        "comments": _records(comments),
        "kudos_given": _records(kudos),
        "help_offers": _records(help_offers),
        "flags": _records(flags),
    }


async def companies_due_for_purge(conn: Conn, now: datetime) -> list[asyncpg.Record]:
    """Companies that left longer ago than their convoy keeps content, not purged yet."""
    return await conn.fetch(
        "SELECT c.company_id, c.convoy_id, c.left_at FROM companies c JOIN convoys v ON v.convoy_id = c.convoy_id"
        " WHERE c.left_at IS NOT NULL AND c.purged_at IS NULL AND v.retention_days IS NOT NULL"
        " AND c.left_at + make_interval(days => v.retention_days) <= $1"
        " ORDER BY c.left_at FOR UPDATE OF c SKIP LOCKED",
        now,
    )


async def purge_company(
    conn: Conn, company_id: uuid.UUID, convoy_id: uuid.UUID, left_at: datetime, now: datetime
) -> tuple[int, int]:
    """Remove a departed company's content: its reports (with everything on them), its project and
    milestones, and the comments, kudos and help offers its representatives gave in the convoy until
    it left. Returns (reports, comments) removed."""
    reports = [r["id"] for r in await conn.fetch("SELECT id FROM reports WHERE company_id = $1 FOR UPDATE", company_id)]
    people = [
        r["person_id"]
        for r in await conn.fetch("SELECT person_id FROM departed_members WHERE company_id = $1", company_id)
    ]
    comments = await conn.fetch(
        "SELECT id FROM comments WHERE report_id = ANY($1::uuid[])"
        " OR (convoy_id = $2 AND author_id = ANY($3::uuid[]) AND created_at <= $4)",
        reports,
        convoy_id,
        people,
        left_at,
    )
    comment_ids = [r["id"] for r in comments]
    # Answers to removed comments go with them (one level of threading).
    answers = await conn.fetch(
        "SELECT id FROM comments WHERE parent_id = ANY($1::uuid[]) AND NOT id = ANY($1::uuid[])", comment_ids
    )
    comment_ids += [r["id"] for r in answers]
    await conn.execute("DELETE FROM comments WHERE id = ANY($1::uuid[]) AND parent_id IS NOT NULL", comment_ids)
    await conn.execute("DELETE FROM comments WHERE id = ANY($1::uuid[])", comment_ids)
    await conn.execute(
        "DELETE FROM kudos WHERE report_id = ANY($1::uuid[])"
        " OR (convoy_id = $2 AND person_id = ANY($3::uuid[]) AND given_at <= $4)",
        reports,
        convoy_id,
        people,
        left_at,
    )
    await conn.execute(
        "DELETE FROM help_offers WHERE report_id = ANY($1::uuid[]) OR company_id = $2", reports, company_id
    )
    await conn.execute("DELETE FROM report_milestones WHERE report_id = ANY($1::uuid[])", reports)
    await conn.execute("DELETE FROM report_versions WHERE report_id = ANY($1::uuid[])", reports)
    await conn.execute("UPDATE commitments SET reviewed_in = NULL WHERE reviewed_in = ANY($1::uuid[])", reports)
    await conn.execute(
        "DELETE FROM commitments WHERE report_id = ANY($1::uuid[]) OR company_id = $2", reports, company_id
    )
    await conn.execute("DELETE FROM reports WHERE id = ANY($1::uuid[])", reports)
    await conn.execute("DELETE FROM milestones WHERE company_id = $1", company_id)
    await conn.execute("DELETE FROM projects WHERE company_id = $1", company_id)
    await conn.execute("DELETE FROM departed_members WHERE company_id = $1", company_id)
    await conn.execute("UPDATE companies SET purged_at = $2 WHERE company_id = $1", company_id, now)
    return len(reports), len(comment_ids)
