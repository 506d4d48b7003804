"""reads: timeline page, progress board and search on a convoy with 5 years of weekly reports from
10 companies, under 32 concurrent readers (HTTP → API → milestones → PostgreSQL).

Each page kind is measured twice (issue #21, conditional GETs):
- *revalidated*: every request sends ``If-None-Match`` with the page's current ETag and gets ``304``,
  answered by the API from the convoy version it holds, without asking milestones;
- *changed*: every request sends an ETag from before a change to the convoy (its version moved), so the
  API asks milestones and answers the whole page: the path's own cost for a page that changed.

Baseline: one report by id (``GET /api/v1/reports/{id}``: a primary-key SELECT plus its four
small set queries) through the same path, at the same concurrency, in the same run.
"""

from __future__ import annotations

import asyncio
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
    cpu_ms: dict[str, dict[str, float]] = {}

    async def etag_of(url: str, params: dict[str, str]) -> str:
        async with session.get(url, params=params, headers=reader.auth) as r:
            await expect(r, 200)
            return r.headers["ETag"]

    async def status_with(url: str, params: dict[str, str], tag: str) -> int:
        async with session.get(url, params=params, headers={**reader.auth, "If-None-Match": tag}) as r:
            await r.read()
            return r.status

    async def measure(name: str, url: str, params: dict[str, str], tag: str | None, status: int) -> None:
        headers = reader.auth if tag is None else {**reader.auth, "If-None-Match": tag}

        async def get(_: int) -> None:
            async with session.get(url, params=params, headers=headers) as r:
                await expect(r, status)

        await get(0)  # warm: token cache, prepared statements
        before = stack.cpu_seconds()
        lat[name], elapsed = await closed_loop(READERS, range(per_kind), get)
        rates[name] = per_kind / elapsed
        used = cpu_delta(before, stack.cpu_seconds())
        # CPU per request moves much less with the machine's other load than latency does.
        cpu_ms[name] = {proc: round(used.get(proc, 0.0) / per_kind * 1000, 3) for proc in ("api", "milestones", "nats")}

    try:
        stale: dict[str, str] = {kind: await etag_of(url, params) for kind, (url, params) in pages.items()}
        await data.touch_convoy(stack.pool, convoy_id)  # the version moves: the tags above are stale now
        for kind, (url, params) in pages.items():
            for _ in range(200):  # the new version reaches the API over NATS a moment after the commit
                if await status_with(url, params, stale[kind]) == 200:
                    break
                await asyncio.sleep(0.01)
            else:
                raise RuntimeError(f"{kind}: the convoy's new version never reached the API")
        for kind, (url, params) in pages.items():
            await measure(f"{kind} revalidated", url, params, await etag_of(url, params), 304)
            await measure(f"{kind} changed", url, params, stale[kind], 200)
        await measure("report by id", baseline_url, {}, None, 200)
    finally:
        await session.close()
    base99 = pct(lat["report by id"], 99) * 1000
    for kind in pages:
        for mode, what, target in (
            ("revalidated", "revalidated (If-None-Match: 304)", True),
            ("changed", "changed (stale ETag: 200)", False),
        ):
            name = f"{kind} {mode}"
            p99 = pct(lat[name], 99) * 1000
            result.rows.append(
                Row(
                    "reads",
                    f"{kind} {what}, p99 ms, {READERS} readers",
                    p99,
                    base99,
                    "ms",
                    "< 50 ms" if target else "",
                    p99 < 50 if target else None,
                    note=(
                        f"p50 {pct(lat[name], 50) * 1000:.1f} ms, {rates[name]:.0f}/s;"
                        f" CPU ms a request: api {cpu_ms[name]['api']:.2f}, milestones {cpu_ms[name]['milestones']:.2f}"
                    ),
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
                "cpu_ms_per_request": cpu_ms[kind],
            }
            for kind, v in lat.items()
        },
    }
    result.cpu_seconds = cpu_delta(cpu0, stack.cpu_seconds())
    result.wall_seconds = time.perf_counter() - begun
    return result
