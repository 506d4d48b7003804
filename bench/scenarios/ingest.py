"""ingest: reports POSTed end to end (HTTP → API → milestones → report + outbox row committed → 201).

Closed loop at 1, 8, 32 and 64 concurrent clients, then an open loop at half the best rate for
the p99 target. Each report is a different company's (one report per company and cycle), posted
with its representative's access token. The ingest convoys have one company each, so no peer is
emailed (fan-out and latency measure that); the notifier still consumes every report.submitted.

Baselines, same PostgreSQL, same concurrency, same run: (a) single-row INSERT commits/s,
(b) the report + outbox row + pg_notify transaction issued directly with asyncpg, (c) the same
``POST /reports`` served by one Litestar process running the same controller and service code
in-process (bench/baseline_app.py): what the microservice shape costs on this machine. (c) runs
first at each level, before Convoy's run leaves work for its relay and consumers.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import time
import uuid
from datetime import date, timedelta

import asyncpg
import msgspec

from bench import data
from bench.measure import Result, Row, closed_loop, cpu_delta, expect, http_session, open_loop, pct
from bench.stack import Stack
from schemas import events as ev
from services import embedded

LEVELS = (1, 8, 32, 64)
TARGET_LEVEL = 32
BODY = {"done": "Buchungsseite ist **live**", "next": "Kalender anbinden", "mood": 4, "commitments": ["Kalender"]}


def sizes(scale: float) -> tuple[int, float, float]:
    """(at most this many reports per concurrency level, seconds per level, seconds of the half-rate run).

    Each level (and each of its baselines) runs for a fixed time or until its reports are used up,
    so the scenario takes about as long on a slow machine as on a fast one.
    """
    return max(64 * 3, round(4000 * scale)), max(4.0, 20 * scale), max(5.0, 30 * scale)


async def run(stack: Stack, scale: float) -> Result:
    per_level, level_seconds, half_seconds = sizes(scale)
    result = Result("ingest", scale)
    assert stack.pool is not None
    started = time.perf_counter()
    cpu0 = stack.cpu_seconds()
    await data.create_baseline_tables(stack.pool)
    half_budget = int(per_level * 1.5)
    convoys = await data.create_convoys(
        stack.pool,
        per_level * len(LEVELS) + half_budget,
        companies=1,
        start_date=date.today() - timedelta(weeks=3),
    )
    reps = convoys.reps
    await data.create_monolith(stack.settings.database_url)
    await data.copy_to_monolith(stack.pool, convoys.ids)
    monolith = await _start_monolith(stack)
    subject = stack.subjects.of(ev.ReportSubmitted)
    payload = msgspec.json.encode({"type": "report.submitted", "payload": {"x": "y" * 200}})
    best_rate = 0.0
    session = http_session(100)
    try:
        for level in LEVELS:
            batch, reps = reps[:per_level], reps[per_level:]

            async def post(rep: data.Rep) -> None:
                async with session.post(
                    f"{stack.http}/api/v1/convoys/{rep.convoy_id}/reports", json=BODY, headers=rep.auth
                ) as r:
                    await expect(r, 201)

            async def post_c(rep: data.Rep) -> None:
                async with session.post(
                    f"{monolith}/api/v1/convoys/{rep.convoy_id}/reports", json=BODY, headers=rep.auth
                ) as r:
                    await expect(r, 201)

            await stack.wait_until_quiet()
            cpu_c0 = stack.cpu_seconds()
            one_lat, one_elapsed = await closed_loop(level, batch, post_c, level_seconds)
            cpu_c1 = stack.cpu_seconds()
            one_rate = len(one_lat) / one_elapsed

            cpu_a = stack.cpu_seconds()
            lat, elapsed = await closed_loop(level, batch, post, level_seconds)
            cpu_b = stack.cpu_seconds()
            rate = len(lat) / elapsed
            best_rate = max(best_rate, rate)

            raw_pool = await asyncpg.create_pool(stack.settings.database_url, min_size=level, max_size=level)
            try:
                raw_lat, raw_elapsed = await closed_loop(
                    level, range(per_level), functools.partial(_raw_value, raw_pool), level_seconds
                )
                tx_lat, tx_elapsed = await closed_loop(
                    level, batch, functools.partial(_tx_rep, raw_pool, subject, payload), level_seconds
                )
            finally:
                await raw_pool.close()
            raw_rate = len(raw_lat) / raw_elapsed
            tx_rate = len(tx_lat) / tx_elapsed
            targeted = level == TARGET_LEVEL  # issue #21: ≥ 0.25 of (b) and ≥ 0.5 of (c) at 32 clients
            result.rows.append(
                Row("ingest", f"{level} clients: reports/s vs (a) raw INSERT commits/s", rate, raw_rate, "/s")
            )
            result.rows.append(
                Row(
                    "ingest",
                    f"{level} clients: reports/s vs (b) report+outbox tx direct",
                    rate,
                    tx_rate,
                    "/s",
                    "≥ 0.25 of (b)" if targeted else "",
                    (rate / tx_rate >= 0.25) if targeted else None,
                )
            )
            result.rows.append(
                Row(
                    "ingest",
                    f"{level} clients: reports/s vs (c) the same POST in one process",
                    rate,
                    one_rate,
                    "/s",
                    "≥ 0.5 of (c)" if targeted else "",
                    (rate / one_rate >= 0.5) if targeted else None,
                )
            )
            convoy_cpu = cpu_delta(cpu_a, cpu_b)
            one_cpu = cpu_delta(cpu_c0, cpu_c1)
            result.details[f"c{level}"] = {
                "reports": len(lat),
                "reports_per_s": round(rate, 1),
                "p50_ms": round(pct(lat, 50) * 1000, 1),
                "p99_ms": round(pct(lat, 99) * 1000, 1),
                "raw_insert_per_s": round(raw_rate, 1),
                "raw_p50_ms": round(pct(raw_lat, 50) * 1000, 2),
                "report_tx_per_s": round(tx_rate, 1),
                "report_tx_p50_ms": round(pct(tx_lat, 50) * 1000, 2),
                "cpu_s": {k: round(v, 1) for k, v in convoy_cpu.items()},
                "cpu_ms_per_report": {k: round(v * 1000 / max(1, len(lat)), 2) for k, v in convoy_cpu.items()},
                "one_process_per_s": round(one_rate, 1),
                "one_process_p50_ms": round(pct(one_lat, 50) * 1000, 1),
                "one_process_p99_ms": round(pct(one_lat, 99) * 1000, 1),
                "one_process_cpu_ms_per_report": {
                    k: round(v * 1000 / max(1, len(one_lat)), 2)
                    for k, v in one_cpu.items()
                    if k in ("monolith", "postgres", "runner")
                },
            }
            result.rows.append(
                Row(
                    "ingest",
                    f"{level} clients: p50 / p99 ms (p99 is the figure)",
                    pct(lat, 99) * 1000,
                    None,
                    "ms",
                    note=f"p50 {pct(lat, 50) * 1000:.1f} ms",
                )
            )

        # p99 at half the best rate, open loop
        half = best_rate / 2
        count = min(len(reps), max(50, int(half * half_seconds)))
        batch = reps[:count]

        async def post_half(rep: data.Rep) -> None:
            async with session.post(
                f"{stack.http}/api/v1/convoys/{rep.convoy_id}/reports", json=BODY, headers=rep.auth
            ) as r:
                await expect(r, 201)

        await stack.wait_until_quiet()
        lat, elapsed, _ = await open_loop(half, batch, post_half)
        p99 = pct(lat, 99) * 1000
        result.rows.append(
            Row(
                "ingest",
                f"p99 ms at half the best rate ({half:.0f}/s, open loop)",
                p99,
                None,
                "ms",
                "< 50 ms",
                p99 < 50,
                note=f"p50 {pct(lat, 50) * 1000:.1f} ms, {len(lat)} reports",
            )
        )
        result.details["half_rate"] = {
            "rate_per_s": round(half, 1),
            "reports": len(lat),
            "achieved_per_s": round(len(lat) / elapsed, 1),
            "p50_ms": round(pct(lat, 50) * 1000, 1),
            "p99_ms": round(p99, 1),
        }
    finally:
        await session.close()
        stack.stop_process("monolith")
    result.cpu_seconds = cpu_delta(cpu0, stack.cpu_seconds())
    result.wall_seconds = time.perf_counter() - started
    return result


async def _start_monolith(stack: Stack) -> str:
    """Baseline (c) as a process of its own (bench/baseline_app.py); its base URL."""
    port = embedded.free_port()
    argv = [sys.executable, "-m", "bench.baseline_app", str(port)]
    if "monolith" in os.environ.get("BENCH_PROFILE", ""):
        argv[1:1] = [
            "-m",
            "pyinstrument",
            "-r",
            "text",
            "--show-all",
            "-o",
            str(stack.folder / "logs" / "monolith.pyinstrument.txt"),
        ]
    stack.spawn("monolith", argv)
    await asyncio.to_thread(embedded.wait_for_port, "127.0.0.1", port, 60, stack.procs["monolith"])
    return f"http://127.0.0.1:{port}"


async def _raw(pool: asyncpg.Pool, value: str) -> None:
    async with pool.acquire() as conn:
        await conn.execute(data.RAW_INSERT, value)


async def _tx(pool: asyncpg.Pool, convoy_id: uuid.UUID, subject: str, payload: bytes) -> None:
    async with pool.acquire() as conn:
        await data.report_transaction(conn, convoy_id, subject, payload)


async def _raw_value(pool: asyncpg.Pool, i: int) -> None:
    await _raw(pool, str(i))


async def _tx_rep(pool: asyncpg.Pool, subject: str, payload: bytes, rep: data.Rep) -> None:
    await _tx(pool, rep.convoy_id, subject, payload)
