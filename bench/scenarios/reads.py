"""reads: timeline page, progress board and search on a convoy with 5 years of weekly reports from
10 companies, under 32 concurrent readers (HTTP → API → milestones → PostgreSQL).

Baseline: one report by id (``GET /api/v1/reports/{id}``: a primary-key SELECT plus its four
small set queries) through the same path, at the same concurrency, in the same run.
"""

from __future__ import annotations

import time
from datetime import date

from bench import data
from bench.measure import Result, Row, closed_loop, cpu_delta, expect, http_session, pct
from bench.stack import Stack

READERS = 32
WEEKS = 5 * 52
COMPANIES = 10


def sizes(scale: float) -> int:
    """Requests per kind of page."""
    return max(READERS * 4, round(3000 * scale))


async def run(stack: Stack, scale: float) -> Result:
    per_kind = sizes(scale)
    result = Result("reads", scale)
    assert stack.pool is not None
    begun = time.perf_counter()
    cpu0 = stack.cpu_seconds()
    convoys = await data.create_convoys(stack.pool, 1, companies=COMPANIES, start_date=date.today())
    convoy_id = convoys.ids[0]
    total = await data.insert_history(stack.pool, convoy_id, convoys.companies[convoy_id], WEEKS)
    report_id = await data.any_report(stack.pool, convoy_id)
    reader = convoys.reps[0]
    base = f"{stack.http}/api/v1/convoys/{convoy_id}"
    pages = {
        "timeline": (f"{base}/timeline", {"limit": "20"}),
        "board": (f"{base}/board", {}),
        "search": (f"{base}/search", {"q": "Webshop", "limit": "20"}),
    }
    baseline_url = f"{stack.http}/api/v1/reports/{report_id}"
    await stack.wait_until_quiet()
    session = http_session(READERS * 2)
    lat: dict[str, list[float]] = {}
    rates: dict[str, float] = {}
    try:
        for kind, (url, params) in [*pages.items(), ("report by id", (baseline_url, {}))]:

            async def get(_: int, url: str = url, params: dict[str, str] = params) -> None:
                async with session.get(url, params=params, headers=reader.auth) as r:
                    await expect(r, 200)

            await get(0)  # warm: token cache, prepared statements
            lat[kind], elapsed = await closed_loop(READERS, range(per_kind), get)
            rates[kind] = per_kind / elapsed
    finally:
        await session.close()
    base99 = pct(lat["report by id"], 99) * 1000
    for kind in pages:
        p99 = pct(lat[kind], 99) * 1000
        result.rows.append(
            Row(
                "reads",
                f"{kind}, p99 ms, {READERS} readers",
                p99,
                base99,
                "ms",
                "< 50 ms",
                p99 < 50,
                note=f"p50 {pct(lat[kind], 50) * 1000:.0f} ms, {rates[kind]:.0f}/s",
            )
        )
    result.details = {
        "reports_in_convoy": total,
        "requests_per_kind": per_kind,
        **{
            kind: {
                "p50_ms": round(pct(v, 50) * 1000, 1),
                "p99_ms": round(pct(v, 99) * 1000, 1),
                "per_s": round(rates[kind], 1),
            }
            for kind, v in lat.items()
        },
    }
    result.cpu_seconds = cpu_delta(cpu0, stack.cpu_seconds())
    result.wall_seconds = time.perf_counter() - begun
    return result
