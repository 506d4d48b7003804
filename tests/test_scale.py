"""Five years of weekly reports from ten companies: pages stay set-based and use their indexes.

No timing assertions (the machines are small and noisy); the test checks the answers on a
realistic amount of data and that PostgreSQL plans the timeline page and the board with their indexes.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

import asyncpg
import httpx

from services.milestones import repository as repo
from tests.conftest import SmtpSink
from tests.world import build_world

CYCLES = 5 * 52
EXTRA_COMPANIES = 9


async def test_five_years_of_reports(client: httpx.AsyncClient, smtp_sink: SmtpSink, settings: Any) -> None:
    world = await build_world(client, smtp_sink, companies=1)
    conn = await asyncpg.connect(settings.database_url)
    try:
        convoy = uuid.UUID(world.convoy_id)
        author = uuid.UUID(world.reps["a"].person_id)
        companies = [uuid.UUID(world.reps["a"].company_id)] + [uuid.uuid4() for _ in range(EXTRA_COMPANIES)]
        await conn.executemany(
            "INSERT INTO milestones.companies (company_id, convoy_id, name) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            [(c, convoy, f"Firma {i}") for i, c in enumerate(companies)],
        )
        await conn.execute(
            "INSERT INTO milestones.reports (id, convoy_id, company_id, author_id, cycle_index, done, next, blockers,"
            " help_wanted, mood, submitted_at, ts_config)"
            " SELECT gen_random_uuid(), $1, c.id, $2, -1 - w, 'Woche ' || w || ': Kalender und Webshop weiter',"
            "   'weiter', CASE WHEN w % 7 = 0 THEN 'Lieferant' ELSE '' END, w % 11 = 0, 1 + w % 5,"
            "   now() - make_interval(weeks => w + 1), 'german'"
            " FROM generate_series(0, $3 - 1) AS w, unnest($4::uuid[]) AS c(id)",
            convoy,
            author,
            CYCLES,
            companies,
        )
        await conn.execute("ANALYZE milestones.reports")
        total = await conn.fetchval("SELECT count(*) FROM milestones.reports WHERE convoy_id = $1", convoy)
        assert total == CYCLES * len(companies)
        plan = "\n".join(
            r[0]
            for r in await conn.fetch(
                "EXPLAIN SELECT * FROM milestones.reports r WHERE r.convoy_id = $1 AND r.hidden_at IS NULL"
                " ORDER BY r.submitted_at DESC, r.id DESC LIMIT 21",
                convoy,
            )
        )
        assert "reports_timeline" in plan, plan
        # The board aggregates per company from its covering index, never reading the reports themselves.
        await conn.execute("SET search_path TO milestones")
        board_plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + repo.reports.BOARD, convoy, date.today(), 3))
        assert "reports_board" in board_plan and "Seq Scan on reports" not in board_plan, board_plan
        # Search ranks every match but gives only the page a headline: the same hits as the plain query.
        expected = {
            q: [
                (str(r["id"]), r["snippet"])
                for r in await conn.fetch(
                    "SELECT r.id, ts_headline('german', r.done || ' ' || r.next || ' ' || r.blockers || ' '"
                    " || r.help_topic, query, 'StartSel=«, StopSel=», MaxFragments=2, MaxWords=20, MinWords=5')"
                    " AS snippet FROM reports r, websearch_to_tsquery('german', $2) AS query"
                    " WHERE r.convoy_id = $1 AND r.search @@ query AND r.hidden_at IS NULL"
                    " ORDER BY ts_rank(r.search, query) DESC, r.submitted_at DESC, r.id DESC LIMIT 20",
                    convoy,
                    q,
                )
            ]
            for q in ("Webshop", "Lieferant", "Woche 7")
        }
    finally:
        await conn.close()

    anna = world.reps["a"].auth
    url = f"/api/v1/convoys/{world.convoy_id}"
    seen, cursor = 0, None
    for _ in range(3):  # the first pages, by cursor
        params: dict[str, Any] = {"limit": 50, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(f"{url}/timeline", params=params, headers=anna)).json()
        seen += len(page["reports"])
        cursor = page["next_cursor"]
    assert seen == 150 and cursor
    blockers = (await client.get(f"{url}/timeline", params={"blockers": "true", "limit": 50}, headers=anna)).json()
    assert len(blockers["reports"]) == 50 and all(r["blockers"] == "Lieferant" for r in blockers["reports"])
    hits = (await client.get(f"{url}/search", params={"q": "Webshop", "limit": 20}, headers=anna)).json()["hits"]
    assert len(hits) == 20 and all("«Webshop»" in h["snippet"] for h in hits)
    for q, want in expected.items():
        got = (await client.get(f"{url}/search", params={"q": q, "limit": 20}, headers=anna)).json()["hits"]
        assert [(h["report_id"], h["snippet"]) for h in got] == want and want, q
    board = (await client.get(f"{url}/board", headers=anna)).json()
    assert len(board["companies"]) == len(companies)
    assert sum(c["reports"] for c in board["companies"]) == total
    export = (await client.get(f"{url}/export.json", headers=anna)).json()
    assert len(export["reports"]) == total
