"""All SQL of services/milestones. Every list is answered by a fixed number of set-based queries."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

import asyncpg
import msgspec

from schemas import api

Conn = asyncpg.Connection


# --- projections ---------------------------------------------------------------------------------
async def upsert_convoy(
    conn: Conn,
    *,
    convoy_id: uuid.UUID,
    name: str,
    timezone: str,
    language: str,
    cadence: Any,
    start_date: date,
    status: str | None = None,
    retention_days: int | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO convoys (convoy_id, name, timezone, language, cadence, start_date, status, retention_days)"
        " VALUES ($1, $2, $3, $4, $5::jsonb, $6, coalesce($7, 'forming'), $8)"
        " ON CONFLICT (convoy_id) DO UPDATE SET name = excluded.name, timezone = excluded.timezone,"
        " language = excluded.language, cadence = excluded.cadence, start_date = excluded.start_date,"
        " status = coalesce($7, convoys.status), retention_days = excluded.retention_days",
        convoy_id,
        name,
        timezone,
        language,
        msgspec.json.encode(cadence).decode(),
        start_date,
        status,
        retention_days,
    )


async def set_convoy_status(conn: Conn, convoy_id: uuid.UUID, status: str) -> None:
    await conn.execute("UPDATE convoys SET status = $2 WHERE convoy_id = $1", convoy_id, status)


async def convoy(conn: Conn, convoy_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM convoys WHERE convoy_id = $1", convoy_id)


async def convoy_for(conn: Conn, convoy_id: uuid.UUID, person_id: uuid.UUID | None) -> asyncpg.Record | None:
    """The convoy with the person's part in it, in one round trip: the columns of :func:`convoy`,
    then ``access_companies`` (the companies they represent here), ``access_facilitator`` and
    ``access_observer`` (an observer seat: reads, writes nothing)."""
    return await conn.fetchrow(
        "SELECT c.*,"
        " ARRAY(SELECT m.company_id FROM members m WHERE m.convoy_id = $1 AND m.person_id = $2) AS access_companies,"
        " EXISTS (SELECT 1 FROM facilitators f WHERE f.convoy_id = $1 AND f.person_id = $2) AS access_facilitator,"
        " EXISTS (SELECT 1 FROM observers o WHERE o.convoy_id = $1 AND o.person_id = $2) AS access_observer"
        " FROM convoys c WHERE c.convoy_id = $1",
        convoy_id,
        person_id,
    )


async def upsert_company(conn: Conn, company_id: uuid.UUID, convoy_id: uuid.UUID, name: str) -> None:
    await conn.execute(
        "INSERT INTO companies (company_id, convoy_id, name) VALUES ($1, $2, $3)"
        " ON CONFLICT (company_id) DO UPDATE SET name = excluded.name, active = true",
        company_id,
        convoy_id,
        name,
    )


async def ensure_company(conn: Conn, company_id: uuid.UUID, convoy_id: uuid.UUID, name: str) -> None:
    """A company learnt by asking services/convoys before its event arrived (the event still updates it)."""
    await conn.execute(
        "INSERT INTO companies (company_id, convoy_id, name) VALUES ($1, $2, $3) ON CONFLICT (company_id) DO NOTHING",
        company_id,
        convoy_id,
        name,
    )


async def company_name(conn: Conn, company_id: uuid.UUID) -> str | None:
    value = await conn.fetchval("SELECT name FROM companies WHERE company_id = $1", company_id)
    return value  # type: ignore[no-any-return]


async def add_facilitator(conn: Conn, convoy_id: uuid.UUID, person_id: uuid.UUID) -> None:
    await conn.execute(
        "INSERT INTO facilitators (convoy_id, person_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", convoy_id, person_id
    )


async def is_facilitator(conn: Conn, person_id: uuid.UUID, convoy_id: uuid.UUID) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT true FROM facilitators WHERE convoy_id = $1 AND person_id = $2", convoy_id, person_id
        )
    )


async def add_member(conn: Conn, person_id: uuid.UUID, company_id: uuid.UUID, convoy_id: uuid.UUID) -> None:
    await conn.execute(
        "INSERT INTO members (person_id, company_id, convoy_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        person_id,
        company_id,
        convoy_id,
    )


async def add_observer(conn: Conn, person_id: uuid.UUID, convoy_id: uuid.UUID) -> None:
    await conn.execute(
        "INSERT INTO observers (convoy_id, person_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", convoy_id, person_id
    )


async def remove_observer(conn: Conn, person_id: uuid.UUID, convoy_id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM observers WHERE convoy_id = $1 AND person_id = $2", convoy_id, person_id)


async def remove_member(conn: Conn, person_id: uuid.UUID, company_id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM members WHERE person_id = $1 AND company_id = $2", person_id, company_id)


async def remove_company(conn: Conn, company_id: uuid.UUID, left_at: datetime | None = None) -> None:
    """The company left (at ``left_at``): remember who represented it then, for the retention rule."""
    if left_at is not None:
        await conn.execute(
            "INSERT INTO departed_members (person_id, company_id, convoy_id, left_at)"
            " SELECT person_id, company_id, convoy_id, $2 FROM members WHERE company_id = $1 ON CONFLICT DO NOTHING",
            company_id,
            left_at,
        )
    await conn.execute("DELETE FROM members WHERE company_id = $1", company_id)
    await conn.execute(
        "UPDATE companies SET active = false, left_at = coalesce(left_at, $2) WHERE company_id = $1",
        company_id,
        left_at,
    )


# --- projects and milestones ---------------------------------------------------------------------
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
    return [milestone(r) for r in rows]


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
    return api.Milestone(
        id=row["id"],
        title=row["title"],
        target_date=row["target_date"],
        weight=row["weight"],
        position=row["position"],
        status=row["status"],
        catalogue_key=row["catalogue_key"],
        completed_at=row["completed_at"],
    )


def progress(milestones: list[api.Milestone]) -> float:
    total = sum(m.weight for m in milestones)
    return round(sum(m.weight for m in milestones if m.status == "done") / total, 4) if total else 0.0


# --- reports -------------------------------------------------------------------------------------
VISIBLE_COMMENT = (
    # A comment members see: not hidden, and not an answer to a hidden comment (a hidden thread).
    "{k}.hidden_at IS NULL AND NOT EXISTS (SELECT 1 FROM comments hp WHERE hp.id = {k}.parent_id"
    " AND hp.hidden_at IS NOT NULL)"
)
REPORT_COLUMNS = (
    "r.*, c.name AS company_name,"
    " (SELECT count(*) FROM comments k WHERE k.report_id = r.id AND k.deleted_at IS NULL AND "
    + VISIBLE_COMMENT.format(k="k")
    + ")"
    " AS comment_count"
)


async def insert_report(
    conn: Conn,
    *,
    report_id: uuid.UUID,
    convoy_id: uuid.UUID,
    company_id: uuid.UUID,
    author_id: uuid.UUID,
    cycle_index: int,
    late: bool,
    r: api.NewReport,
    ts_config: str,
    submitted_at: datetime | None = None,
    digest_cycle: int | None = None,
) -> asyncpg.Record | None:
    """A new report; ``submitted_at`` only for history brought in by the admin import (default: now),
    ``digest_cycle`` only for history too (a past cycle's digest that carried it).

    Returns what the database set: ``submitted_at``, ``updated_at``, ``version`` and the
    ``company_name`` (from the projection, as :func:`report_rows` joins it; null if it has none);
    None when the company has a report for this cycle already (no error, so no savepoint around it)."""
    return await conn.fetchrow(
        "INSERT INTO reports (id, convoy_id, company_id, author_id, cycle_index, late, done, next, blockers,"
        " help_wanted, help_topic, help_milestone_id, mood, facilitator_note, ts_config, submitted_at, updated_at,"
        " digest_cycle)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15::regconfig,"
        " coalesce($16::timestamptz, now()), coalesce($16::timestamptz, now()), $17) ON CONFLICT DO NOTHING"
        " RETURNING submitted_at, updated_at, version,"
        " (SELECT c.name FROM companies c WHERE c.company_id = $3) AS company_name",
        report_id,
        convoy_id,
        company_id,
        author_id,
        cycle_index,
        late,
        r.done,
        r.next,
        r.blockers,
        r.help_wanted,
        r.help_topic,
        r.help_milestone_id,
        r.mood,
        r.facilitator_note,
        ts_config,
        submitted_at,
        digest_cycle,
    )


async def report_row(conn: Conn, report_id: uuid.UUID, *, lock: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM reports WHERE id = $1" + (" FOR UPDATE" if lock else ""), report_id)


async def save_version(conn: Conn, row: asyncpg.Record, editor_id: uuid.UUID) -> None:
    body = {k: row[k] for k in ("done", "next", "blockers", "help_wanted", "help_topic", "mood", "facilitator_note")}
    await conn.execute(
        "INSERT INTO report_versions (report_id, version, editor_id, body) VALUES ($1, $2, $3, $4::jsonb)",
        row["id"],
        row["version"],
        editor_id,
        msgspec.json.encode(body).decode(),
    )


async def update_report(conn: Conn, report_id: uuid.UUID, changes: dict[str, Any]) -> None:
    sets = "".join(f"{column} = ${i}, " for i, column in enumerate(changes, start=2))
    await conn.execute(
        f"UPDATE reports SET {sets}version = version + 1, updated_at = now() WHERE id = $1",
        report_id,
        *changes.values(),
    )


async def touch_milestones(conn: Conn, report_id: uuid.UUID, updates: list[api.MilestoneUpdate]) -> None:
    await conn.executemany(
        "INSERT INTO report_milestones (report_id, milestone_id, status) VALUES ($1, $2, $3)",
        [(report_id, u.milestone_id, u.status) for u in updates],
    )


async def milestones_by_id(conn: Conn, ids: list[uuid.UUID]) -> dict[uuid.UUID, asyncpg.Record]:
    rows = await conn.fetch("SELECT * FROM milestones WHERE id = ANY($1::uuid[]) AND removed_at IS NULL", ids)
    return {r["id"]: r for r in rows}


async def insert_commitments(
    conn: Conn,
    *,
    report_id: uuid.UUID,
    convoy_id: uuid.UUID,
    company_id: uuid.UUID,
    cycle_index: int,
    texts: list[str],
) -> list[uuid.UUID]:
    """The commitments made in a report, in order; returns their new ids (position = index)."""
    ids = [uuid.uuid4() for _ in texts]
    if texts:
        await conn.executemany(
            "INSERT INTO commitments (id, report_id, convoy_id, company_id, cycle_index, position, text)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
            [(ids[i], report_id, convoy_id, company_id, cycle_index, i, t) for i, t in enumerate(texts)],
        )
    return ids


async def open_commitments(conn: Conn, company_id: uuid.UUID, before_cycle: int) -> dict[uuid.UUID, asyncpg.Record]:
    rows = await conn.fetch(
        "SELECT * FROM commitments WHERE company_id = $1 AND cycle_index < $2 AND reviewed_in IS NULL",
        company_id,
        before_cycle,
    )
    return {r["id"]: r for r in rows}


async def replace_commitments(conn: Conn, row: asyncpg.Record, texts: list[str]) -> None:
    """An edit's new list of the commitments a report makes (reviews of them cannot exist yet: see edit_report)."""
    await conn.execute("DELETE FROM commitments WHERE report_id = $1 AND reviewed_in IS NULL", row["id"])
    await insert_commitments(
        conn,
        report_id=row["id"],
        convoy_id=row["convoy_id"],
        company_id=row["company_id"],
        cycle_index=row["cycle_index"],
        texts=texts,
    )


async def unreview_commitments(conn: Conn, report_id: uuid.UUID) -> None:
    """An edit replaces a report's reviews: the commitments it reviewed are open again first."""
    await conn.execute(
        "UPDATE commitments SET outcome = NULL, outcome_note = '', reviewed_in = NULL WHERE reviewed_in = $1",
        report_id,
    )


async def review_commitments(conn: Conn, report_id: uuid.UUID, reviews: list[api.CommitmentReview]) -> None:
    if not reviews:  # executemany of nothing is still a round trip
        return
    await conn.executemany(
        "UPDATE commitments SET outcome = $2, outcome_note = $3, reviewed_in = $4 WHERE id = $1",
        [(r.commitment_id, r.outcome, r.note, report_id) for r in reviews],
    )


async def report_rows(conn: Conn, where: str, args: list[Any], *, order: str, limit: int) -> list[asyncpg.Record]:
    """Reports with company names and comment counts; ``where`` uses only bound parameters."""
    return await conn.fetch(
        f"SELECT {REPORT_COLUMNS} FROM reports r JOIN companies c ON c.company_id = r.company_id"
        f" WHERE {where} ORDER BY {order} LIMIT {int(limit)}",
        *args,
    )


async def report_details(conn: Conn, ids: list[uuid.UUID]) -> dict[str, Any]:
    """Milestones touched, commitments made and reviewed, kudos: four queries for any number of reports."""
    touched = await conn.fetch(
        "SELECT rm.report_id, rm.milestone_id, rm.status, m.title FROM report_milestones rm"
        " JOIN milestones m ON m.id = rm.milestone_id WHERE rm.report_id = ANY($1::uuid[]) ORDER BY m.position",
        ids,
    )
    made = await conn.fetch("SELECT * FROM commitments WHERE report_id = ANY($1::uuid[]) ORDER BY position", ids)
    reviewed = await conn.fetch(
        "SELECT * FROM commitments WHERE reviewed_in = ANY($1::uuid[]) ORDER BY cycle_index, position", ids
    )
    kudos = await conn.fetch(
        "SELECT report_id, person_id FROM kudos WHERE report_id = ANY($1::uuid[]) ORDER BY given_at", ids
    )
    return {"touched": touched, "made": made, "reviewed": reviewed, "kudos": kudos}


async def search(
    conn: Conn, convoy_id: uuid.UUID, ts_config: str, q: str, limit: int, *, hidden: bool
) -> list[api.SearchHit]:
    # Every match is ranked, but only the page is sorted with its bodies, joined to its company and
    # given a headline (ts_headline re-parses the text): the inner query sorts narrow rows.
    rows = await conn.fetch(
        "SELECT r.id, c.name, r.cycle_index, r.submitted_at,"
        " ts_headline($2::regconfig, r.done || ' ' || r.next || ' ' || r.blockers || ' ' || r.help_topic, h.query,"
        "   'StartSel=«, StopSel=», MaxFragments=2, MaxWords=20, MinWords=5') AS snippet"
        " FROM ("
        "  SELECT r.id, r.submitted_at, query, ts_rank(r.search, query) AS rank"
        "  FROM reports r, websearch_to_tsquery($2::regconfig, $3) AS query"
        "  WHERE r.convoy_id = $1 AND r.search @@ query AND ($5 OR r.hidden_at IS NULL)"
        "  ORDER BY rank DESC, r.submitted_at DESC, r.id DESC LIMIT $4"
        " ) h JOIN reports r ON r.id = h.id JOIN companies c ON c.company_id = r.company_id"
        " ORDER BY h.rank DESC, h.submitted_at DESC, h.id DESC",
        convoy_id,
        ts_config,
        q,
        limit,
        hidden,
    )
    return [
        api.SearchHit(
            report_id=r["id"],
            company_name=r["name"],
            cycle_index=r["cycle_index"],
            submitted_at=r["submitted_at"],
            snippet=r["snippet"],
        )
        for r in rows
    ]


# --- board ---------------------------------------------------------------------------------------
BOARD = (
    # One row per active company with just what the board shows, aggregated here so that years of
    # history do not cross the wire: milestone sums (milestones_convoy), report counts and the
    # on-time streak (index-only scans of reports_board, which holds the visible reports only:
    # hidden reports never count), reviewed commitments per outcome (commitments_company).
    # $3 is the current cycle's index, -1 before the first cycle.
    "SELECT c.company_id, c.name, p.title, p.project_type,"
    " coalesce(m.weight_total, 0) AS weight_total, coalesce(m.weight_done, 0) AS weight_done,"
    " coalesce(m.done, 0) AS milestones_done, coalesce(m.due, 0) AS milestones_due,"
    " coalesce(m.total, 0) AS milestones_total, coalesce(m.done_keys, '{}') AS done_keys,"
    " r.reports, r.reported_closed, s.streak, k.kept_done, k.kept_partly, k.kept_not_yet"
    " FROM companies c LEFT JOIN projects p ON p.company_id = c.company_id"
    " LEFT JOIN ("
    "  SELECT company_id, sum(weight) AS weight_total, sum(weight) FILTER (WHERE status = 'done') AS weight_done,"
    "   count(*) FILTER (WHERE status = 'done') AS done, count(*) FILTER (WHERE target_date <= $2) AS due,"
    "   count(*) AS total,"
    "   array_agg(DISTINCT catalogue_key) FILTER (WHERE status = 'done' AND catalogue_key <> '') AS done_keys"
    "  FROM milestones WHERE convoy_id = $1 AND removed_at IS NULL GROUP BY company_id"
    " ) m ON m.company_id = c.company_id"
    " CROSS JOIN LATERAL ("
    "  SELECT count(*) AS reports, count(*) FILTER (WHERE cycle_index >= 0 AND cycle_index < $3) AS reported_closed"
    "  FROM reports WHERE company_id = c.company_id AND hidden_at IS NULL"
    " ) r"
    # The streak: on-time reports of cycles 0..$3, newest first. It runs from the newest when that
    # is the current cycle or the one before (the current one may still be open), as long as the
    # cycles are consecutive (row n is then cycle newest - n + 1).
    " CROSS JOIN LATERAL ("
    "  SELECT count(*) FILTER (WHERE newest >= $3 - 1 AND cycle_index = newest - n + 1) AS streak FROM ("
    "   SELECT cycle_index, row_number() OVER w AS n, first_value(cycle_index) OVER w AS newest FROM reports"
    "   WHERE company_id = c.company_id AND hidden_at IS NULL AND NOT late AND cycle_index BETWEEN 0 AND $3"
    "   WINDOW w AS (ORDER BY cycle_index DESC)"
    "  ) t"
    " ) s"
    " CROSS JOIN LATERAL ("
    "  SELECT count(*) FILTER (WHERE outcome = 'done') AS kept_done,"
    "   count(*) FILTER (WHERE outcome = 'partly') AS kept_partly,"
    "   count(*) FILTER (WHERE outcome = 'not_yet') AS kept_not_yet"
    "  FROM commitments WHERE company_id = c.company_id AND convoy_id = $1 AND outcome IS NOT NULL"
    " ) k"
    " WHERE c.convoy_id = $1 AND c.active ORDER BY c.name"
)


async def board_rows(conn: Conn, convoy_id: uuid.UUID, today: date, cycle_index: int | None) -> list[asyncpg.Record]:
    """The board's figures per active company (ordered by name), for the current cycle (None: none yet)."""
    return await conn.fetch(BOARD, convoy_id, today, -1 if cycle_index is None else cycle_index)


# --- comments, kudos, help -----------------------------------------------------------------------
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


async def give_kudos(conn: Conn, report_id: uuid.UUID, person_id: uuid.UUID, convoy_id: uuid.UUID) -> bool:
    return bool(
        await conn.fetchval(
            "INSERT INTO kudos (report_id, person_id, convoy_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
            " RETURNING true",
            report_id,
            person_id,
            convoy_id,
        )
    )


async def take_back_kudos(conn: Conn, report_id: uuid.UUID, person_id: uuid.UUID) -> bool:
    return bool(
        await conn.fetchval(
            "DELETE FROM kudos WHERE report_id = $1 AND person_id = $2 RETURNING true", report_id, person_id
        )
    )


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


# --- the round boundary: seals (services/reminders seals a cycle before it closes it) --------------
def _round_lock_key(convoy_id: uuid.UUID) -> int:
    """The advisory lock of a convoy's round boundary (a signed 64-bit key from the id)."""
    return int.from_bytes(convoy_id.bytes[:8], "big", signed=True) ^ 0x726F756E64  # "round"


async def enter_round(conn: Conn, convoy_id: uuid.UUID) -> int:
    """Take the convoy's round lock shared (until the transaction ends); the newest sealed cycle, -1 if none.

    Report inserts hold it shared, a seal exclusive: a report is either committed before the seal
    (and the seal assigns it to that digest) or it sees the seal (and is late).
    """
    # Two statements: a statement's snapshot is taken before it waits for the lock, so a read in
    # the locking statement itself would miss a seal committed while it waited.
    await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", _round_lock_key(convoy_id))
    return await sealed_through(conn, convoy_id)


async def seal_rounds(conn: Conn, convoy_ids: list[uuid.UUID], cycle_indexes: list[int]) -> int:
    """Seal cycles (parallel arrays; cycles of a convoy close in order); returns how many were new.

    Idempotent: a cycle at or below the convoy's newest seal is left as it is (a retry, or an old
    close) and takes no reports. A new seal assigns every report of the convoy not yet in a digest
    whose cycle is at or below it to the smallest new seal at or above its own cycle.
    """
    # All the convoys' locks in one statement, in key order (two seals never wait on each other in a cycle).
    await conn.execute(
        "SELECT pg_advisory_xact_lock(k) FROM (SELECT k FROM unnest($1::bigint[]) AS k ORDER BY k) AS keys",
        sorted({_round_lock_key(c) for c in convoy_ids}),
    )
    fresh = await conn.fetch(
        "INSERT INTO round_seals (convoy_id, cycle_index)"
        " SELECT w.convoy_id, w.cycle_index FROM unnest($1::uuid[], $2::int[]) AS w(convoy_id, cycle_index)"
        " WHERE w.cycle_index > coalesce((SELECT max(s.cycle_index) FROM round_seals s"
        "   WHERE s.convoy_id = w.convoy_id), -1)"
        " ON CONFLICT DO NOTHING RETURNING convoy_id, cycle_index",
        convoy_ids,
        cycle_indexes,
    )
    if fresh:
        await conn.execute(
            "UPDATE reports r SET digest_cycle = ("
            "   SELECT min(f.cycle_index) FROM unnest($1::uuid[], $2::int[]) AS f(convoy_id, cycle_index)"
            "   WHERE f.convoy_id = r.convoy_id AND f.cycle_index >= r.cycle_index)"
            " WHERE r.convoy_id = ANY($1::uuid[]) AND r.digest_cycle IS NULL AND r.cycle_index <= ("
            "   SELECT max(f.cycle_index) FROM unnest($1::uuid[], $2::int[]) AS f(convoy_id, cycle_index)"
            "   WHERE f.convoy_id = r.convoy_id)",
            [f["convoy_id"] for f in fresh],
            [f["cycle_index"] for f in fresh],
        )
    return len(fresh)


async def sealed_through(conn: Conn, convoy_id: uuid.UUID) -> int:
    """The convoy's newest sealed cycle; -1 if none (cycles are sealed in order)."""
    value: int = await conn.fetchval(
        "SELECT coalesce(max(cycle_index), -1) FROM round_seals WHERE convoy_id = $1", convoy_id
    )
    return value


# --- check-in cycles (asked by the notifier) ------------------------------------------------------
async def cycle_reporters(conn: Conn, convoy_id: uuid.UUID, cycle_index: int) -> list[uuid.UUID] | None:
    """Companies with a visible report for the cycle, in one query; None if the convoy is not projected."""
    row = await conn.fetchrow(
        "SELECT array(SELECT r.company_id FROM reports r WHERE r.convoy_id = v.convoy_id AND r.cycle_index = $2"
        " AND r.hidden_at IS NULL ORDER BY r.company_id) AS company_ids FROM convoys v WHERE v.convoy_id = $1",
        convoy_id,
        cycle_index,
    )
    return None if row is None else list(row["company_ids"])


async def prompt_rows(
    conn: Conn, convoy_id: uuid.UUID, cycle_index: int, due_date: date
) -> dict[str, list[asyncpg.Record]]:
    """Three set-based queries for a whole convoy: active companies with the "next" of their latest
    visible report before the cycle, their due milestones, their open commitments."""
    companies = await conn.fetch(
        "SELECT c.company_id, coalesce(last.next, '') AS last_next FROM companies c"
        " LEFT JOIN LATERAL (SELECT r.next FROM reports r WHERE r.company_id = c.company_id"
        "   AND r.cycle_index < $2 AND r.hidden_at IS NULL ORDER BY r.cycle_index DESC LIMIT 1) last ON true"
        " WHERE c.convoy_id = $1 AND c.active ORDER BY c.name, c.company_id",
        convoy_id,
        cycle_index,
    )
    milestones = await conn.fetch(
        "SELECT company_id, title, target_date FROM milestones"
        " WHERE convoy_id = $1 AND removed_at IS NULL AND status <> 'done' AND target_date <= $2"
        " ORDER BY company_id, target_date, position, id",
        convoy_id,
        due_date,
    )
    commitments = await conn.fetch(
        "SELECT k.company_id, k.text FROM commitments k JOIN reports r ON r.id = k.report_id"
        " WHERE k.convoy_id = $1 AND k.cycle_index < $2 AND k.reviewed_in IS NULL AND r.hidden_at IS NULL"
        " ORDER BY k.company_id, k.cycle_index, k.position, k.id",
        convoy_id,
        cycle_index,
    )
    return {"companies": companies, "milestones": milestones, "commitments": commitments}


DIGEST_REPORT_COLUMNS = (
    # The peer view: never facilitator_note, never hidden reports (filtered in the WHERE clause).
    "r.id, r.company_id, r.cycle_index, r.late, r.done, r.next, r.blockers, r.help_wanted, r.help_topic,"
    " r.mood, r.submitted_at,"
    " array(SELECT k.person_id FROM kudos k WHERE k.report_id = r.id ORDER BY k.given_at, k.person_id) AS kudos_by"
)


async def digest_rows(
    conn: Conn, convoy_id: uuid.UUID, cycle_index: int, opens_at: datetime, closes_at: datetime, *, sealed_through: int
) -> dict[str, list[asyncpg.Record]]:
    """Four set-based queries for a whole convoy's digest of one cycle (active companies only).

    - companies: active companies with their done and total milestone weight (progress);
    - reports: the visible reports the cycle's seal assigned to its digest (``digest_cycle``): those
      of the cycle that were in before it closed, and late addenda, reports of earlier cycles that
      arrived after their own cycle's seal. Every report is assigned once, so every visible report
      lies in exactly one digest, however often digests are computed. A cycle after ``sealed_through``
      (the newest seal) gets a preview: its own reports, and for the next cycle to seal the late ones
      waiting for it;
    - touched: the milestones those reports touched, with titles;
    - completed: milestones done with ``completed_at`` in ``[opens_at, closes_at)``.
    """
    companies = await conn.fetch(
        "SELECT c.company_id, c.name, coalesce(sum(m.weight) FILTER (WHERE m.status = 'done'), 0) AS done_weight,"
        " coalesce(sum(m.weight), 0) AS total_weight FROM companies c"
        " LEFT JOIN milestones m ON m.company_id = c.company_id AND m.removed_at IS NULL"
        " WHERE c.convoy_id = $1 AND c.active GROUP BY c.company_id, c.name ORDER BY c.name, c.company_id",
        convoy_id,
    )
    reports = await conn.fetch(
        f"SELECT {DIGEST_REPORT_COLUMNS} FROM reports r JOIN companies c ON c.company_id = r.company_id AND c.active"
        " WHERE r.convoy_id = $1 AND r.hidden_at IS NULL AND CASE WHEN $2::int <= $3::int"
        "   THEN r.digest_cycle = $2"
        "   ELSE r.digest_cycle IS NULL AND (r.cycle_index = $2 OR r.cycle_index <= $3) END"
        " ORDER BY r.submitted_at, r.id",
        convoy_id,
        cycle_index,
        sealed_through,
    )
    touched = await conn.fetch(
        "SELECT rm.report_id, rm.status, m.title FROM report_milestones rm JOIN milestones m ON m.id = rm.milestone_id"
        " WHERE rm.report_id = ANY($1::uuid[]) ORDER BY m.position, m.id",
        [r["id"] for r in reports],
    )
    completed = await conn.fetch(
        "SELECT m.company_id, c.name AS company_name, m.title, m.status FROM milestones m"
        " JOIN companies c ON c.company_id = m.company_id AND c.active"
        " WHERE m.convoy_id = $1 AND m.removed_at IS NULL AND m.status = 'done'"
        " AND m.completed_at >= $2 AND m.completed_at < $3 ORDER BY c.name, m.company_id, m.position, m.id",
        convoy_id,
        opens_at,
        closes_at,
    )
    return {"companies": companies, "reports": reports, "touched": touched, "completed": completed}


# --- facilitator digest (asked weekly by the notifier) --------------------------------------------
async def facilitator_digest_rows(
    conn: Conn,
    convoy_ids: list[uuid.UUID],
    horizons: list[int],
    currents: list[int],
    todays: list[date],
    at: datetime | None = None,
) -> dict[str, list[asyncpg.Record]]:
    """Five set-based queries for any number of convoys (the convoys themselves are read before).

    Per convoy (the arrays are parallel): ``horizons`` is the newest cycle whose reports count
    (the current one; 0 before the first check-in, where early reports are filed), ``currents``
    the current cycle (-1 before the first check-in: no cycle-bound rows), ``todays`` the local
    date at the moment asked. Only active companies and visible (not hidden) reports count.

    - companies: active companies with their latest visible report up to the horizon (if any);
    - milestones: not removed, not done, target date before the local date (stalled);
    - help: visible help requests of the current and previous cycle without any help offer;
    - moods: average mood (2 decimals) per convoy and cycle of the last four cycles;
    - flags: per convoy, the flags open at ``at`` (raised at or before it, not resolved by then).
    """
    convoys = "unnest($1::uuid[], $2::int[], $3::int[], $4::date[]) AS v(convoy_id, horizon, cur, today)"
    args = (convoy_ids, horizons, currents, todays)
    companies = await conn.fetch(
        "SELECT c.convoy_id, c.company_id, c.name, v.cur, last.id AS report_id, last.cycle_index,"
        " last.blockers FROM " + convoys + " JOIN companies c ON c.convoy_id = v.convoy_id AND c.active"
        " LEFT JOIN LATERAL (SELECT r.id, r.cycle_index, r.blockers FROM reports r"
        "   WHERE r.company_id = c.company_id AND r.convoy_id = c.convoy_id AND r.cycle_index <= v.horizon"
        "   AND r.hidden_at IS NULL ORDER BY r.cycle_index DESC LIMIT 1) last ON true"
        " ORDER BY c.convoy_id, c.name, c.company_id",
        *args,
    )
    milestones = await conn.fetch(
        "SELECT m.convoy_id, c.name AS company_name, m.title, m.target_date, m.status FROM "
        + convoys
        + " JOIN milestones m ON m.convoy_id = v.convoy_id AND m.removed_at IS NULL"
        " JOIN companies c ON c.company_id = m.company_id AND c.active"
        " WHERE m.status <> 'done' AND m.target_date < v.today"
        " ORDER BY m.convoy_id, m.target_date, c.name, m.position, m.id",
        *args,
    )
    help_ = await conn.fetch(
        "SELECT r.convoy_id, c.name AS company_name, r.id AS report_id, r.help_topic FROM "
        + convoys
        + " JOIN reports r ON r.convoy_id = v.convoy_id AND r.cycle_index BETWEEN v.cur - 1 AND v.cur"
        " JOIN companies c ON c.company_id = r.company_id AND c.active"
        " WHERE v.cur >= 0 AND r.hidden_at IS NULL AND r.help_wanted"
        " AND NOT EXISTS (SELECT 1 FROM help_offers h WHERE h.report_id = r.id)"
        " ORDER BY r.convoy_id, r.cycle_index, r.submitted_at, r.id",
        *args,
    )
    moods = await conn.fetch(
        "SELECT r.convoy_id, r.cycle_index, round(avg(r.mood), 2) AS mood FROM "
        + convoys
        + " JOIN reports r ON r.convoy_id = v.convoy_id AND r.cycle_index BETWEEN v.cur - 3 AND v.cur"
        " JOIN companies c ON c.company_id = r.company_id AND c.active"
        " WHERE v.cur >= 0 AND r.hidden_at IS NULL AND r.mood IS NOT NULL"
        " GROUP BY r.convoy_id, r.cycle_index",
        *args,
    )
    flags = await conn.fetch(
        "SELECT f.convoy_id, count(*) AS flags FROM flags f WHERE f.convoy_id = ANY($1::uuid[])"
        " AND f.created_at <= $2 AND (f.resolved_at IS NULL OR f.resolved_at > $2) GROUP BY f.convoy_id",
        convoy_ids,
        at if at is not None else datetime.now().astimezone(),
    )
    return {"companies": companies, "milestones": milestones, "help": help_, "moods": moods, "flags": flags}


async def convoys(conn: Conn, convoy_ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM convoys WHERE convoy_id = ANY($1::uuid[])", convoy_ids)


# --- demo / import: reports of past cycles with their historic times ------------------------------
async def company_row(conn: Conn, company_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM companies WHERE company_id = $1", company_id)


async def report_id_for_cycle(conn: Conn, company_id: uuid.UUID, cycle_index: int) -> uuid.UUID | None:
    value = await conn.fetchval(
        "SELECT id FROM reports WHERE company_id = $1 AND cycle_index = $2", company_id, cycle_index
    )
    return value  # type: ignore[no-any-return]


async def set_milestone_status_at(conn: Conn, milestone_id: uuid.UUID, status: str, at: datetime) -> None:
    """A status as of ``at`` (completed then, when done)."""
    await conn.execute(
        "UPDATE milestones SET status = $2, completed_at = CASE WHEN $2::text = 'done' THEN $3::timestamptz END"
        " WHERE id = $1",
        milestone_id,
        status,
        at,
    )


async def insert_comment_at(
    conn: Conn, *, report_id: uuid.UUID, convoy_id: uuid.UUID, author_id: uuid.UUID, body: str, at: datetime
) -> None:
    await conn.execute(
        "INSERT INTO comments (id, report_id, convoy_id, author_id, body, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        uuid.uuid4(),
        report_id,
        convoy_id,
        author_id,
        body,
        at,
    )


async def give_kudos_at(
    conn: Conn, report_id: uuid.UUID, person_ids: list[uuid.UUID], convoy_id: uuid.UUID, at: datetime
) -> None:
    await conn.executemany(
        "INSERT INTO kudos (report_id, person_id, convoy_id, given_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        [(report_id, p, convoy_id, at) for p in person_ids],
    )


# --- moderation: facilitators hide and restore reports and comments, lock comments ---------------
async def comment_row_for_update(conn: Conn, comment_id: uuid.UUID) -> asyncpg.Record | None:
    """The comment (locked) with its report's convoy, company and visibility."""
    return await conn.fetchrow(
        "SELECT k.*, r.company_id, r.hidden_at AS report_hidden_at FROM comments k JOIN reports r ON r.id = k.report_id"
        " WHERE k.id = $1 FOR UPDATE OF k",
        comment_id,
    )


async def set_report_hidden(conn: Conn, report_id: uuid.UUID, hidden: bool, reason: str) -> None:
    await conn.execute(
        "UPDATE reports SET hidden_at = CASE WHEN $2 THEN now() END, hidden_reason = $3 WHERE id = $1",
        report_id,
        hidden,
        reason if hidden else "",
    )


async def set_comment_hidden(conn: Conn, comment_id: uuid.UUID, hidden: bool, reason: str) -> asyncpg.Record:
    row = await conn.fetchrow(
        "UPDATE comments SET hidden_at = CASE WHEN $2 THEN now() END, hidden_reason = $3 WHERE id = $1 RETURNING *",
        comment_id,
        hidden,
        reason if hidden else "",
    )
    assert row is not None
    return row


async def set_comments_locked(conn: Conn, report_id: uuid.UUID, locked: bool) -> None:
    await conn.execute(
        "UPDATE reports SET comments_locked_at = CASE WHEN $2 THEN now() END WHERE id = $1", report_id, locked
    )


# --- flags and charter: members flag content, facilitators resolve the flags ----------------------
async def comment_target(conn: Conn, comment_id: uuid.UUID) -> asyncpg.Record | None:
    """A comment with its report's company and visibility, and whether its parent is hidden."""
    return await conn.fetchrow(
        "SELECT k.*, r.company_id, r.hidden_at AS report_hidden_at,"
        " (SELECT p.hidden_at FROM comments p WHERE p.id = k.parent_id) AS parent_hidden_at"
        " FROM comments k JOIN reports r ON r.id = k.report_id WHERE k.id = $1",
        comment_id,
    )


async def insert_flag(
    conn: Conn,
    *,
    convoy_id: uuid.UUID,
    object_type: str,
    object_id: uuid.UUID,
    report_id: uuid.UUID,
    comment_id: uuid.UUID | None,
    flagged_by: uuid.UUID,
    reason: str,
    note: str,
) -> asyncpg.Record | None:
    """A new open flag, or None when this person's flag on the object is still open (nothing changes)."""
    return await conn.fetchrow(
        "INSERT INTO flags (id, convoy_id, object_type, object_id, report_id, comment_id, flagged_by, reason, note)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        " ON CONFLICT (object_id, flagged_by) WHERE resolved_at IS NULL DO NOTHING RETURNING *",
        uuid.uuid4(),
        convoy_id,
        object_type,
        object_id,
        report_id,
        comment_id,
        flagged_by,
        reason,
        note,
    )


async def open_flag_of(conn: Conn, object_id: uuid.UUID, person_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM flags WHERE object_id = $1 AND flagged_by = $2 AND resolved_at IS NULL", object_id, person_id
    )


async def flag_row(conn: Conn, flag_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM flags WHERE id = $1", flag_id)


async def open_flags_for_update(conn: Conn, object_id: uuid.UUID) -> list[uuid.UUID]:
    """The open flags on an object, locked (two facilitators resolving at once: the second finds none)."""
    rows = await conn.fetch(
        "SELECT id FROM flags WHERE object_id = $1 AND resolved_at IS NULL ORDER BY created_at, id FOR UPDATE",
        object_id,
    )
    return [r["id"] for r in rows]


async def resolve_flags(
    conn: Conn, flag_ids: list[uuid.UUID], *, resolution: str, resolved_by: uuid.UUID | None, note: str
) -> None:
    await conn.execute(
        "UPDATE flags SET resolved_at = now(), resolution = $2, resolved_by = $3, resolution_note = $4"
        " WHERE id = ANY($1::uuid[]) AND resolved_at IS NULL",
        flag_ids,
        resolution,
        resolved_by,
        note,
    )


async def open_flags(conn: Conn, convoy_id: uuid.UUID, limit: int = 1000) -> list[asyncpg.Record]:
    """A convoy's open flags with what they are about, oldest first, in one query.

    Per flag: the object's company (name), author, text and visibility (a comment counts as hidden
    when it, its parent or its report is), and the company the flagger represents in the convoy.
    """
    return await conn.fetch(
        "SELECT f.id, f.object_type, f.object_id, f.report_id, f.flagged_by, f.reason, f.note, f.created_at,"
        " r.company_id, c.name AS company_name,"
        " CASE WHEN f.object_type = 'comment' THEN k.author_id ELSE r.author_id END AS author_id,"
        " CASE WHEN f.object_type = 'comment' THEN k.body ELSE r.done END AS text,"
        " CASE WHEN f.object_type = 'comment'"
        "   THEN k.hidden_at IS NOT NULL OR r.hidden_at IS NOT NULL"
        "     OR EXISTS (SELECT 1 FROM comments p WHERE p.id = k.parent_id AND p.hidden_at IS NOT NULL)"
        "   ELSE r.hidden_at IS NOT NULL END AS hidden,"
        " fc.company_id AS flagger_company_id, fc.name AS flagger_company_name"
        " FROM flags f JOIN reports r ON r.id = f.report_id JOIN companies c ON c.company_id = r.company_id"
        " LEFT JOIN comments k ON k.id = f.comment_id"
        " LEFT JOIN LATERAL (SELECT mc.company_id, mc.name FROM members m"
        "   JOIN companies mc ON mc.company_id = m.company_id"
        "   WHERE m.person_id = f.flagged_by AND m.convoy_id = f.convoy_id ORDER BY mc.name LIMIT 1) fc ON true"
        " WHERE f.convoy_id = $1 AND f.resolved_at IS NULL ORDER BY f.created_at, f.id LIMIT $2",
        convoy_id,
        limit,
    )


# --- data protection: erased authors, a person's export, the retention rule ----------------------
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


# --- digitalisation check: outcomes of project types, aggregated (services/milestones/outcomes.py) --
async def project_type_outcomes(
    conn: Conn,
    convoy_ids: list[uuid.UUID],
    types: list[str],
    go_live_keys: list[str],
    start: date | None,
    end: date | None,
) -> list[asyncpg.Record]:
    """Per project type over the convoys' projects: companies, go-lives (in the period, if any) and the
    median weeks from the convoy's start to go-live. The caller suppresses small groups."""
    return await conn.fetch(
        "WITH k AS (SELECT * FROM unnest($2::text[], $3::text[]) AS k(project_type, go_live_key)),"
        " live AS (SELECT p.project_type, p.company_id,"
        "   greatest(0, extract(epoch FROM min(m.completed_at) - c.start_date::timestamptz) / 604800.0) AS weeks"
        "   FROM projects p JOIN k ON k.project_type = p.project_type JOIN convoys c ON c.convoy_id = p.convoy_id"
        "   JOIN milestones m ON m.project_id = p.id AND m.catalogue_key = k.go_live_key AND m.status = 'done'"
        "     AND m.removed_at IS NULL AND m.completed_at IS NOT NULL"
        "     AND ($4::date IS NULL OR m.completed_at >= $4::date)"
        "     AND ($5::date IS NULL OR m.completed_at < $5::date + 1)"
        "   WHERE p.convoy_id = ANY($1::uuid[]) GROUP BY p.project_type, p.company_id, c.start_date)"
        " SELECT k.project_type,"
        "  (SELECT count(*) FROM projects p WHERE p.convoy_id = ANY($1::uuid[]) AND p.project_type = k.project_type)"
        "    AS companies,"
        "  (SELECT count(*) FROM live WHERE live.project_type = k.project_type) AS went_live,"
        "  (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY weeks) FROM live"
        "    WHERE live.project_type = k.project_type) AS median_weeks"
        " FROM k",
        convoy_ids,
        types,
        go_live_keys,
        start,
        end,
    )


async def convoy_outcomes(
    conn: Conn, convoy_ids: list[uuid.UUID], go_live_keys: list[str], start: date, end: date
) -> list[asyncpg.Record]:
    """Per convoy in the period: active companies, companies that reported, reports, milestones done, go-lives."""
    return await conn.fetch(
        "SELECT c.convoy_id,"
        " (SELECT count(*) FROM companies co WHERE co.convoy_id = c.convoy_id AND co.active) AS companies,"
        " (SELECT count(DISTINCT r.company_id) FROM reports r WHERE r.convoy_id = c.convoy_id AND r.hidden_at IS NULL"
        "   AND r.submitted_at >= $3::date AND r.submitted_at < $4::date + 1) AS companies_reporting,"
        " (SELECT count(*) FROM reports r WHERE r.convoy_id = c.convoy_id AND r.hidden_at IS NULL"
        "   AND r.submitted_at >= $3::date AND r.submitted_at < $4::date + 1) AS reports,"
        " (SELECT count(*) FROM milestones m WHERE m.convoy_id = c.convoy_id AND m.status = 'done'"
        "   AND m.removed_at IS NULL AND m.completed_at >= $3::date AND m.completed_at < $4::date + 1)"
        "   AS milestones_done,"
        " (SELECT count(*) FROM milestones m WHERE m.convoy_id = c.convoy_id AND m.status = 'done'"
        "   AND m.removed_at IS NULL AND m.catalogue_key = ANY($2::text[])"
        "   AND m.completed_at >= $3::date AND m.completed_at < $4::date + 1) AS go_lives"
        " FROM unnest($1::uuid[]) AS c(convoy_id)",
        convoy_ids,
        go_live_keys,
        start,
        end,
    )
