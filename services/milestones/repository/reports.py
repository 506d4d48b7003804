"""Reports (with their milestone updates and commitments), search and the progress board."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

import asyncpg
import msgspec

from schemas import api
from services.milestones.repository.comments import VISIBLE_COMMENT
from services.runtime.db import structs

Conn = asyncpg.Connection


REPORT_COLUMNS = (
    # the report's own columns but its search vector (as long as its text, and never shown)
    "r.id, r.convoy_id, r.company_id, r.author_id, r.cycle_index, r.late, r.done, r.next, r.blockers,"
    " r.help_wanted, r.help_topic, r.help_milestone_id, r.mood, r.facilitator_note, r.version, r.submitted_at,"
    " r.updated_at, r.hidden_at, r.hidden_reason, r.comments_locked_at, r.digest_cycle,"
    " c.name AS company_name,"
    " (SELECT count(*) FROM comments k WHERE k.report_id = r.id AND k.deleted_at IS NULL AND "
    + VISIBLE_COMMENT.format(k="k")
    + ") AS comment_count,"
    # what hangs off each report, in the same statement (each an index lookup per report):
    # milestones touched, commitments made and reviewed (JSON arrays: see DETAIL_TYPES), kudos, erased author
    " (SELECT json_agg(json_build_array(rm.milestone_id, m.title, rm.status) ORDER BY m.position)"
    "  FROM report_milestones rm JOIN milestones m ON m.id = rm.milestone_id WHERE rm.report_id = r.id) AS touched,"
    " (SELECT json_agg(json_build_array(cm.id, cm.text, cm.outcome, cm.outcome_note) ORDER BY cm.position)"
    "  FROM commitments cm WHERE cm.report_id = r.id) AS made,"
    " (SELECT json_agg(json_build_array(cm.id, cm.text, cm.outcome, cm.outcome_note)"
    "  ORDER BY cm.cycle_index, cm.position) FROM commitments cm WHERE cm.reviewed_in = r.id) AS reviewed,"
    " ARRAY(SELECT kd.person_id FROM kudos kd WHERE kd.report_id = r.id ORDER BY kd.given_at) AS kudos_by,"
    " EXISTS (SELECT 1 FROM former_authors f WHERE f.person_id = r.author_id AND f.convoy_id = r.convoy_id)"
    " AS author_erased"
)

_touched = msgspec.json.Decoder(list[tuple[uuid.UUID, str, str]])
_commitments = msgspec.json.Decoder(list[tuple[uuid.UUID, str, str | None, str]])


def touched_milestones(row: asyncpg.Record) -> list[api.TouchedMilestone]:
    """A :func:`report_rows` row's milestones touched, in the project's order."""
    found = row["touched"]
    if found is None:
        return []
    return [api.TouchedMilestone(milestone_id=m, title=t, status=s) for m, t, s in _touched.decode(found)]


def commitments(row: asyncpg.Record, column: str) -> list[api.Commitment]:
    """A :func:`report_rows` row's commitments ``made`` (in order) or ``reviewed`` in it (by round, in order)."""
    found = row[column]
    if found is None:
        return []
    return [api.Commitment(id=c, text=t, outcome=o, note=n) for c, t, o, n in _commitments.decode(found)]


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


class ReportContext(msgspec.Struct, frozen=True):
    """What a new report needs to know once the convoy's round lock is held (:func:`report_context`)."""

    sealed_through: int
    """The convoy's newest sealed cycle, -1 if none."""
    now: datetime
    """The transaction's timestamp: the report's ``submitted_at`` and ``updated_at``."""
    company_name: str | None
    """From the projection; None when it does not know the company (yet)."""
    milestones: dict[uuid.UUID, asyncpg.Record]
    """The milestones asked for, by id (removed ones left out)."""
    open_commitments: dict[uuid.UUID, asyncpg.Record]
    """The company's commitments of earlier cycles not reviewed yet (only when asked for)."""


async def report_context(
    conn: Conn, convoy_id: uuid.UUID, company_id: uuid.UUID, milestone_ids: list[uuid.UUID], open_before: int | None
) -> ReportContext:
    """In one round trip: the newest seal, the transaction's time, the company's name, the named milestones
    and (``open_before``: the report's cycle) the company's open commitments of earlier cycles.

    Read in a statement after the one that took the round lock (repository.digests.lock_round): a
    statement's snapshot is taken before it waits for a lock, so a seal committed while the lock was
    awaited is seen here."""
    # The parts a report does not need are left out of the statement rather than skipped by a condition
    # on a parameter: each shape is then planned once (a generic plan) instead of on every report.
    args: list[Any] = [convoy_id, company_id]
    sql = (
        "SELECT (SELECT coalesce(max(cycle_index), -1) FROM round_seals WHERE convoy_id = $1) AS sealed_through,"
        " now() AS now, (SELECT c.name FROM companies c WHERE c.company_id = $2) AS company_name"
    )
    if milestone_ids:
        args.append(milestone_ids)
        sql += (
            f", ARRAY(SELECT m FROM milestones m WHERE m.id = ANY(${len(args)}::uuid[]) AND m.removed_at IS NULL)"
            " AS milestones"
        )
    if open_before is not None:
        args.append(open_before)
        sql += (
            ", ARRAY(SELECT k FROM commitments k"
            f" WHERE k.company_id = $2 AND k.cycle_index < ${len(args)} AND k.reviewed_in IS NULL) AS open_commitments"
        )
    row = await conn.fetchrow(sql, *args)
    assert row is not None
    return ReportContext(
        sealed_through=row["sealed_through"],
        now=row["now"],
        company_name=row["company_name"],
        milestones={m["id"]: m for m in row.get("milestones") or ()},
        open_commitments={k["id"]: k for k in row.get("open_commitments") or ()},
    )


NEW_REPORT_VERSION = 1

WRITE_REPORT = (
    # The report and everything it writes in one statement (one round trip): its commitments, the
    # milestone statuses it reports (a changed status is set on the milestone), the reviews of
    # earlier commitments, its events in the outbox and the relay's wake-up (sent at commit).
    # Nothing but the report when the company has one for this cycle already (no row comes back).
    # The foreign keys to the new report are checked at the end of the statement, when it is there.
    "WITH r AS ("
    " INSERT INTO reports (id, convoy_id, company_id, author_id, cycle_index, late, done, next, blockers,"
    "  help_wanted, help_topic, help_milestone_id, mood, facilitator_note, ts_config, submitted_at, updated_at,"
    "  version)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15::regconfig, $16, $16, $17)"
    " ON CONFLICT DO NOTHING RETURNING id"
    "), made AS ("
    " INSERT INTO commitments (id, report_id, convoy_id, company_id, cycle_index, position, text)"
    " SELECT c.id, r.id, $2, $3, $5, c.n - 1, c.text FROM r,"
    "  unnest($18::uuid[], $19::text[]) WITH ORDINALITY AS c(id, text, n)"
    "), touched AS ("
    " INSERT INTO report_milestones (report_id, milestone_id, status)"
    " SELECT r.id, t.id, t.status FROM r, unnest($20::uuid[], $21::text[]) AS t(id, status)"
    "), moved AS ("
    " UPDATE milestones m SET status = t.status, completed_at = CASE WHEN t.status = 'done' THEN now() END"
    " FROM r, unnest($22::uuid[], $23::text[]) AS t(id, status) WHERE m.id = t.id"
    "), reviewed AS ("
    " UPDATE commitments k SET outcome = v.outcome, outcome_note = v.note, reviewed_in = r.id"
    " FROM r, unnest($24::uuid[], $25::text[], $26::text[]) AS v(id, outcome, note) WHERE k.id = v.id"
    "), announced AS ("
    " INSERT INTO outbox (event_id, subject, data)"
    " SELECT e.event_id, e.subject, e.data FROM r,"
    "  unnest($27::uuid[], $28::text[], $29::bytea[]) WITH ORDINALITY AS e(event_id, subject, data, n)"
    " ORDER BY e.n ON CONFLICT (event_id) DO NOTHING"
    ") SELECT CASE WHEN cardinality($27::uuid[]) > 0 THEN pg_notify($30, '') END FROM r"
)


async def write_report(
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
    submitted_at: datetime,
    commitment_ids: list[uuid.UUID],
    status_changes: list[api.MilestoneUpdate],
    events: list[tuple[uuid.UUID, str, bytes]],
    wake_channel: str,
) -> bool:
    """A new report with its commitments (``commitment_ids``: one per ``r.commitments``), milestone updates
    (``status_changes``: those of ``r.milestones`` that change the milestone's status), commitment
    reviews and outbox rows (``events``, then ``pg_notify(wake_channel)``), in one statement.

    False (and nothing written) when the company has a report for this cycle already."""
    reviews = {c.commitment_id: c for c in r.commitment_reviews}  # reviewed twice: the last one counts
    row = await conn.fetchrow(
        WRITE_REPORT,
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
        NEW_REPORT_VERSION,
        commitment_ids,
        list(r.commitments),
        [u.milestone_id for u in r.milestones],
        [u.status for u in r.milestones],
        [u.milestone_id for u in status_changes],
        [u.status for u in status_changes],
        list(reviews),
        [c.outcome for c in reviews.values()],
        [c.note for c in reviews.values()],
        [e[0] for e in events],
        [e[1] for e in events],
        [e[2] for e in events],
        wake_channel,
    )
    return row is not None


async def report_row(conn: Conn, report_id: uuid.UUID, *, lock: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM reports WHERE id = $1" + (" FOR UPDATE" if lock else ""), report_id)


async def feedback_rows(conn: Conn, report_ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    """What a feedback email needs of each report (``api.FeedbackReport``): company, whether it is
    hidden, who gives kudos now (in the order given, as ``REPORT_COLUMNS``); reports that do not
    exist are left out."""
    return await conn.fetch(
        "SELECT r.id, r.convoy_id, r.company_id, c.name AS company_name, r.hidden_at IS NOT NULL AS hidden,"
        " ARRAY(SELECT kd.person_id FROM kudos kd WHERE kd.report_id = r.id ORDER BY kd.given_at) AS kudos_by"
        " FROM reports r JOIN companies c ON c.company_id = r.company_id WHERE r.id = ANY($1::uuid[])",
        report_ids,
    )


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
    """Reports with company names, comment counts and what hangs off them (:data:`REPORT_COLUMNS`), in one
    statement for any number of reports; ``where`` uses only bound parameters."""
    return await conn.fetch(
        f"SELECT {REPORT_COLUMNS} FROM reports r JOIN companies c ON c.company_id = r.company_id"
        f" WHERE {where} ORDER BY {order} LIMIT {int(limit)}",
        *args,
    )


async def search(
    conn: Conn, convoy_id: uuid.UUID, ts_config: str, q: str, limit: int, *, hidden: bool
) -> list[api.SearchHit]:
    # Every match is ranked, but only the page is sorted with its bodies, joined to its company and
    # given a headline (ts_headline re-parses the text): the inner query sorts narrow rows.
    rows = await conn.fetch(
        "SELECT r.id AS report_id, c.name AS company_name, r.cycle_index, r.submitted_at,"
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
    return structs(rows, api.SearchHit)


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
