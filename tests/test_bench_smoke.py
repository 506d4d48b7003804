"""The benchmark code still fits the system: its set-up SQL matches the services' tables, a
representative it creates can post a report through the real API, and the table is written.

Structure and counts only, never timing (``make bench`` measures; see docs/performance.md).
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from bench import data, run
from bench.measure import Result, Row, closed_loop, pct
from bench.scenarios import fanout
from schemas import events as ev
from schemas.subjects import Subjects


async def test_bench_setup_and_one_report(
    client: httpx.AsyncClient, settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        convoys = await data.create_convoys(
            pool, 3, companies=2, reps_per_company=2, start_date=date.today() - timedelta(weeks=2), in_reminders=True
        )
        assert len(convoys.ids) == 3 and len(convoys.reps) == 12
        convoy_id = convoys.ids[0]
        assert await data.insert_history(pool, convoy_id, convoys.companies[convoy_id], 4) == 8
        p = fanout.plan()
        await data.insert_cycles(pool, convoys.ids, p, [(9, False, True, True, 2), (10, False, True, False, 2)])
        assert await data.insert_reports(pool, convoys, cycle_index=10, submitted_at=p.start_date) == 6  # type: ignore[arg-type]
        await data.create_baseline_tables(pool)
        async with pool.acquire() as conn:
            await data.report_transaction(conn, uuid.uuid4(), Subjects().of(ev.ReportSubmitted), b"{}")
            assert await conn.fetchval("SELECT count(*) FROM reminders.cycles") == 6
            assert await conn.fetchval("SELECT count(*) FROM bench.outbox") == 1
    finally:
        await pool.close()

    async def post(rep: data.Rep) -> None:
        r = await client.post(
            f"/api/v1/convoys/{rep.convoy_id}/reports", json={"done": "x", "mood": 3}, headers=rep.auth
        )
        assert r.status_code == 201, r.text

    one_per_company = list({rep.company_id: rep for rep in convoys.reps}.values())[:2]
    latencies, _ = await closed_loop(2, one_per_company, post)
    assert len(latencies) == 2 and pct(latencies, 99) >= pct(latencies, 50) > 0

    doc = tmp_path / "performance.md"
    result = Result("ingest", 0.0, rows=[Row("ingest", "reports/s", 10.0, 20.0, "/s", "≥ 0.5", True)])
    result.cpu_seconds, result.wall_seconds = {"runner": 1.0, "api": 2.0}, 3.0
    monkeypatch.setattr(run, "DOC", doc)
    run.write_doc([result], run.machine(), 3.0)
    text = doc.read_text()
    assert run.BEGIN in text and "| ingest | reports/s | 10.0 /s | 20.0 /s | 0.50 | ≥ 0.5 | yes |" in text


async def test_one_process_baseline_posts_a_report_with_the_services_code(settings: Any) -> None:
    """Baseline (c) (bench/baseline_app.py): the same POST, the same token lookup and checks, in one process,
    writing into its own copy of milestones' tables."""
    from litestar.testing import AsyncTestClient

    from bench import baseline_app

    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        convoys = await data.create_convoys(pool, 2, companies=1, start_date=date.today() - timedelta(weeks=2))
        await data.create_monolith(settings.database_url)
        await data.copy_to_monolith(pool, convoys.ids)
        rep, other = convoys.reps
        path = f"/api/v1/convoys/{rep.convoy_id}/reports"
        async with AsyncTestClient(app=baseline_app.create_app(settings)) as c:
            r = await c.post(path, json={"done": "Kalender **live**", "mood": 4}, headers=rep.auth)
            assert r.status_code == 201, r.text
            assert r.json()["company_id"] == str(rep.company_id) and r.json()["done_html"]
            assert r.headers["x-content-type-options"] == "nosniff"  # the same edge hooks as the API
            again = await c.post(path, json={"done": "noch mal", "mood": 4}, headers=rep.auth)
            assert again.status_code == 409  # one report per company and cycle, as in milestones
            assert (await c.post(path, json={"done": "x", "mood": 4})).status_code == 401
            assert (await c.post(path, json={"done": "x", "mood": 4}, headers=other.auth)).status_code == 404
            assert (await c.post(path, json={"mood": 9}, headers=rep.auth)).status_code == 400
        async with pool.acquire() as conn:
            count = "SELECT count(*) FROM {}.reports WHERE convoy_id = $1"
            assert await conn.fetchval(count.format("monolith"), rep.convoy_id) == 1
            assert await conn.fetchval("SELECT count(*) FROM monolith.outbox") >= 1
            assert await conn.fetchval(count.format("milestones"), rep.convoy_id) == 0  # the services' tables untouched
    finally:
        await pool.close()
