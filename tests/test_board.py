"""The progress board is aggregated in SQL (one row per company); it must say exactly what the
row-by-row arithmetic over every report, milestone and commitment said before, on a convoy with
hidden reports, late reports, gaps, cycles before the start, an absent company and one that left.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx

from services.milestones import catalogue as cat
from tests.conftest import SmtpSink
from tests.test_reports import project, schedule
from tests.world import World, build_world

SCORE = {"done": 1.0, "partly": 0.5, "not_yet": 0.0}
RUNGS = [r.key for r in cat.project_type("online_booking").rungs]


def reference_board(
    rows: dict[str, list[asyncpg.Record]], cycle_index: int | None, today: date
) -> list[dict[str, Any]]:
    """The board's companies as the former Python walk over every row computed them."""
    cycles_so_far = cycle_index + 1 if cycle_index is not None else 0
    milestones: dict[uuid.UUID, list[asyncpg.Record]] = {}
    for m in rows["milestones"]:
        milestones.setdefault(m["company_id"], []).append(m)
    reported: dict[uuid.UUID, dict[int, bool]] = {}
    for r in rows["reports"]:
        reported.setdefault(r["company_id"], {})[r["cycle_index"]] = not r["late"]
    kept: dict[uuid.UUID, list[float]] = {}
    for c in rows["commitments"]:
        kept.setdefault(c["company_id"], []).append(SCORE[c["outcome"]])
    out = []
    for c in rows["companies"]:
        ms = milestones.get(c["company_id"], [])
        total = sum(m["weight"] for m in ms)
        done_weight = sum(m["weight"] for m in ms if m["status"] == "done")
        cycles_reported = reported.get(c["company_id"], {})
        streak, k = 0, (cycle_index if cycle_index is not None else -1)
        if k >= 0 and not cycles_reported.get(k):
            k -= 1
        while k >= 0 and cycles_reported.get(k):
            streak, k = streak + 1, k - 1
        ladder = cat.project_type(c["project_type"]) if c["project_type"] else None
        done_keys = {m["catalogue_key"] for m in ms if m["status"] == "done" and m["catalogue_key"]}
        scores = kept.get(c["company_id"], [])
        out.append(
            {
                "company_id": str(c["company_id"]),
                "name": c["name"],
                "project_title": c["title"],
                "project_type": c["project_type"],
                "progress": round(done_weight / total, 4) if total else 0.0,
                "milestones_done": sum(1 for m in ms if m["status"] == "done"),
                "milestones_due": sum(1 for m in ms if m["target_date"] is not None and m["target_date"] <= today),
                "milestones_total": len(ms),
                "reports": len(cycles_reported),
                "participation": round(min(len(cycles_reported) / cycles_so_far, 1.0), 4) if cycles_so_far else 0.0,
                "streak": streak,
                "missed": sum(1 for k in range(cycle_index or 0) if k not in cycles_reported),
                "commitments_kept": round(sum(scores) / len(scores), 4) if scores else None,
                "rung": sum(1 for r in ladder.rungs if r.key in done_keys) if ladder else None,
                "rungs": len(ladder.rungs) if ladder else None,
            }
        )
    return out


async def raw_rows(conn: asyncpg.Connection, convoy_id: uuid.UUID) -> dict[str, list[asyncpg.Record]]:
    """Every row the former board read (its four queries)."""
    return {
        "companies": await conn.fetch(
            "SELECT c.company_id, c.name, p.title, p.project_type FROM milestones.companies c"
            " LEFT JOIN milestones.projects p ON p.company_id = c.company_id"
            " WHERE c.convoy_id = $1 AND c.active ORDER BY c.name",
            convoy_id,
        ),
        "milestones": await conn.fetch(
            "SELECT company_id, weight, status, target_date, catalogue_key FROM milestones.milestones"
            " WHERE convoy_id = $1 AND removed_at IS NULL",
            convoy_id,
        ),
        "reports": await conn.fetch(
            "SELECT company_id, cycle_index, late FROM milestones.reports WHERE convoy_id = $1 AND hidden_at IS NULL",
            convoy_id,
        ),
        "commitments": await conn.fetch(
            "SELECT company_id, outcome FROM milestones.commitments WHERE convoy_id = $1 AND outcome IS NOT NULL",
            convoy_id,
        ),
    }


async def seed(conn: asyncpg.Connection, world: World, projects: dict[str, uuid.UUID]) -> dict[str, uuid.UUID]:
    """Reports, milestones and commitments with every case the board distinguishes."""
    convoy = uuid.UUID(world.convoy_id)
    company = {k: uuid.UUID(world.reps[k].company_id) for k in ("a", "b", "c")}
    company["d"], company["e"], company["left"] = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await conn.executemany(
        "INSERT INTO milestones.companies (company_id, convoy_id, name, active) VALUES ($1, $2, $3, $4)",
        [
            (company["d"], convoy, "Dachdecker Dach", True),  # reports only before the first cycle
            (company["e"], convoy, "Elektro Erb", True),  # never reported
            (company["left"], convoy, "Friseur Fort", False),  # left the convoy, reports stay
        ],
    )
    author = uuid.UUID(world.reps["a"].person_id)
    # (company, cycle, late, hidden); the current cycle is 10
    reports = [
        *[("a", k, k == 3, k == 7) for k in (0, 1, 2, 3, 4, 5, 6, 7, 8, 9)],  # streak 9, 8; 7 hidden
        *[("b", k, False, False) for k in range(5, 11)],  # on time up to the current cycle: streak 6
        ("b", 12, False, False),  # a cycle ahead counts as a report, not for the streak
        ("c", 8, False, False),
        ("c", 9, True, False),  # late: no streak
        ("c", 10, True, False),
        ("c", 4, False, True),  # hidden only
        *[("d", k, False, False) for k in range(-5, 0)],
        *[("left", k, False, False) for k in range(11)],
    ]
    ids: dict[tuple[str, int], uuid.UUID] = {}
    for key, k, late, hidden in reports:
        ids[key, k] = uuid.uuid4()
        await conn.execute(
            "INSERT INTO milestones.reports (id, convoy_id, company_id, author_id, cycle_index, late, done, hidden_at,"
            " ts_config) VALUES ($1, $2, $3, $4, $5, $6, 'Fortschritt', $7, 'german')",
            ids[key, k],
            convoy,
            company[key],
            author,
            k,
            late,
            datetime.now(ZoneInfo("UTC")) if hidden else None,
        )
    today = date.today()
    milestones = [
        # (company, weight, status, catalogue key, target in days, removed)
        ("a", 3, "done", RUNGS[0], -30, False),
        ("a", 2, "done", RUNGS[1], -20, False),
        ("a", 2, "done", "", None, False),
        ("a", 5, "in_progress", RUNGS[2], 30, False),
        ("a", 1, "blocked", None, -40, False),
        ("a", 4, "done", RUNGS[3], -10, True),  # removed: not counted
        ("b", 1, "not_started", None, 40, False),
        ("b", 7, "done", None, None, False),
    ]
    for i, (key, weight, status, catalogue_key, days, removed) in enumerate(milestones):
        await conn.execute(
            "INSERT INTO milestones.milestones (id, project_id, convoy_id, company_id, title, target_date, weight,"
            " position, status, catalogue_key, removed_at) VALUES ($1, $2, $3, $4, 'M', $5, $6, $7, $8, $9, $10)",
            uuid.uuid4(),
            projects[key],
            convoy,
            company[key],
            None if days is None else today + timedelta(days=days),
            weight,
            i,
            status,
            catalogue_key,
            datetime.now(ZoneInfo("UTC")) if removed else None,
        )
    commitments = [
        ("a", 2, "done"),
        ("a", 2, "partly"),
        ("a", 3, "not_yet"),
        ("a", 4, None),  # not reviewed yet
        ("a", 7, "done"),  # made in the hidden report: still reviewed
        ("c", 8, "partly"),
        ("c", 8, "partly"),
        ("c", 8, "not_yet"),
        ("left", 3, "done"),
    ]
    for i, (key, k, outcome) in enumerate(commitments):
        await conn.execute(
            "INSERT INTO milestones.commitments (id, report_id, convoy_id, company_id, cycle_index, position, text,"
            " outcome) VALUES ($1, $2, $3, $4, $5, $6, 'Zusage', $7)",
            uuid.uuid4(),
            ids[key, k],
            convoy,
            company[key],
            k,
            i,
            outcome,
        )
    return company


async def test_the_sql_board_says_what_the_row_by_row_board_said(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, settings: Any
) -> None:
    world = await build_world(client, smtp_sink, companies=3)
    url = f"/api/v1/convoys/{world.convoy_id}/board"
    projects = {
        "a": uuid.UUID((await project(client, world, "a"))["id"]),
        "b": uuid.UUID((await project(client, world, "b", project_type=None))["id"]),
    }
    conn = await asyncpg.connect(settings.database_url)
    try:
        company = await seed(conn, world, projects)
        convoy = uuid.UUID(world.convoy_id)

        timezone = await conn.fetchval("SELECT timezone FROM milestones.convoys WHERE convoy_id = $1", convoy)

        async def same_as_reference(reader: dict[str, str]) -> dict[str, Any]:
            board: dict[str, Any] = (await client.get(url, headers=reader)).json()
            today = datetime.now(ZoneInfo(timezone)).date()
            assert board["companies"] == reference_board(await raw_rows(conn, convoy), board["cycle_index"], today)
            return board

        await same_as_reference(world.reps["a"].auth)  # as the convoy was created (no schedule of ours yet)
        await schedule(client, world)  # the current cycle is 10
        for reader in (world.reps["b"].auth, world.facilitator):  # a member and a facilitator: the same board
            board = await same_as_reference(reader)
            assert board["cycle_index"] == 10 and board["cycles"] == 11
    finally:
        await conn.close()

    by_id = {c["company_id"]: c for c in board["companies"]}
    assert str(company["left"]) not in by_id
    a, b, c, d, e = (by_id[str(company[k])] for k in "abcde")
    assert (a["reports"], a["streak"], a["missed"]) == (9, 2, 1)  # 7 hidden: missed, and it ends the streak
    assert a["commitments_kept"] == round((1 + 0.5 + 0 + 1) / 4, 4)
    # the project started from the catalogue with one milestone per rung, none done
    assert (a["milestones_done"], a["milestones_due"], a["milestones_total"]) == (3, 3, 5 + len(RUNGS))
    assert (a["rung"], a["rungs"]) == (2, len(RUNGS))
    assert (b["reports"], b["streak"], b["missed"], b["participation"]) == (7, 6, 5, round(7 / 11, 4))
    assert (b["rung"], b["rungs"], b["progress"]) == (None, None, 0.875)
    assert (c["reports"], c["streak"], c["missed"], c["commitments_kept"]) == (3, 0, 8, round(1 / 3, 4))
    assert (d["reports"], d["streak"], d["missed"], d["participation"]) == (5, 0, 10, round(5 / 11, 4))
    assert (e["reports"], e["streak"], e["missed"], e["commitments_kept"], e["project_title"]) == (0, 0, 10, None, None)
