"""Projects and their milestones."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

import asyncpg

from schemas import api
from services.runtime.db import struct, structs

Conn = asyncpg.Connection


async def project(conn: Conn, company_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM projects WHERE company_id = $1", company_id)


async def upsert_project(conn: Conn, convoy_id: uuid.UUID, company_id: uuid.UUID, p: api.ProjectIn) -> asyncpg.Record:
    row = await conn.fetchrow(
        "INSERT INTO projects (id, convoy_id, company_id, title, goal, project_type) VALUES ($1, $2, $3, $4, $5, $6)"
        " ON CONFLICT (company_id) DO UPDATE SET title = excluded.title, goal = excluded.goal,"
        " project_type = coalesce(excluded.project_type, projects.project_type), updated_at = now() RETURNING *",
        uuid.uuid4(),
        convoy_id,
        company_id,
        p.title,
        p.goal,
        p.project_type,
    )
    assert row is not None
    return row


async def milestones_of(conn: Conn, project_id: uuid.UUID) -> list[api.Milestone]:
    rows = await conn.fetch(
        "SELECT * FROM milestones WHERE project_id = $1 AND removed_at IS NULL ORDER BY position", project_id
    )
    return structs(rows, api.Milestone)


async def count_milestones(conn: Conn, project_id: uuid.UUID) -> int:
    value = await conn.fetchval(
        "SELECT count(*) FROM milestones WHERE project_id = $1 AND removed_at IS NULL", project_id
    )
    return int(value)


async def insert_milestone(
    conn: Conn,
    project: asyncpg.Record,
    *,
    title: str,
    target_date: date | None,
    weight: int,
    catalogue_key: str | None,
) -> api.Milestone:
    row = await conn.fetchrow(
        "INSERT INTO milestones (id, project_id, convoy_id, company_id, title, target_date, weight, position,"
        " catalogue_key) VALUES ($1, $2, $3, $4, $5, $6, $7,"
        " (SELECT coalesce(max(position), -1) + 1 FROM milestones WHERE project_id = $2), $8) RETURNING *",
        uuid.uuid4(),
        project["id"],
        project["convoy_id"],
        project["company_id"],
        title,
        target_date,
        weight,
        catalogue_key,
    )
    return milestone(row)


async def milestone_row(conn: Conn, milestone_id: uuid.UUID, *, lock: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM milestones WHERE id = $1 AND removed_at IS NULL" + (" FOR UPDATE" if lock else ""),
        milestone_id,
    )


async def update_milestone(conn: Conn, milestone_id: uuid.UUID, changes: dict[str, Any]) -> api.Milestone:
    if "status" in changes:
        changes["completed_at"] = datetime.now().astimezone() if changes["status"] == "done" else None
    sets = ", ".join(f"{column} = ${i}" for i, column in enumerate(changes, start=2))
    row = await conn.fetchrow(
        f"UPDATE milestones SET {sets} WHERE id = $1 RETURNING *", milestone_id, *changes.values()
    )
    return milestone(row)


async def reorder(conn: Conn, project_id: uuid.UUID, ids: list[uuid.UUID]) -> None:
    await conn.execute(
        "UPDATE milestones m SET position = o.position - 1 FROM unnest($2::uuid[]) WITH ORDINALITY AS o(id, position)"
        " WHERE m.id = o.id AND m.project_id = $1",
        project_id,
        ids,
    )


def milestone(row: asyncpg.Record | None) -> api.Milestone:
    assert row is not None
    return struct(row, api.Milestone)


def progress(milestones: list[api.Milestone]) -> float:
    total = sum(m.weight for m in milestones)
    return round(sum(m.weight for m in milestones if m.status == "done") / total, 4) if total else 0.0
