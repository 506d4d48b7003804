"""latency: a report posted → the peer's email in the SMTP sink and the Slack post at the stand-in.

A steady rate (100 reports/s at scale 1 for 60 s; the duration scales). Each report is posted in
a convoy of its own (two companies, one representative each, a Slack webhook with "post each
report" on), so the email and the post are matched to the report by the convoy id (List-Id, the
webhook path). Baseline: NATS core request/reply round trip on the same server.
"""

from __future__ import annotations

import asyncio
import time
from datetime import date, timedelta

import nats

from bench import data
from bench.measure import Failures, Result, Row, cpu_delta, expect, http_session, open_loop, pct
from bench.stack import Stack

RATE = 100.0
BODY = {"done": "Kalender angebunden", "next": "Zahlungen", "mood": 4}


def sizes(scale: float) -> tuple[float, float]:
    """(reports per second, seconds)."""
    return RATE, max(5.0, 60 * scale)


async def nats_round_trip(url: str, count: int) -> list[float]:
    responder, requester = await nats.connect(url), await nats.connect(url)
    try:

        async def answer(msg: nats.aio.msg.Msg) -> None:
            await msg.respond(msg.data)

        await responder.subscribe("_bench.echo", cb=answer)
        await responder.flush()
        out = []
        for _ in range(count):
            t0 = time.perf_counter()
            await requester.request("_bench.echo", b"x" * 200, timeout=5)
            out.append(time.perf_counter() - t0)
        return out
    finally:
        await responder.close()
        await requester.close()


async def run(stack: Stack, scale: float) -> Result:
    rate, seconds = sizes(scale)
    count = int(rate * seconds)
    result = Result("latency", scale)
    assert stack.pool is not None
    begun = time.perf_counter()
    cpu0 = stack.cpu_seconds()
    convoys = await data.create_convoys(
        stack.pool,
        count,
        companies=2,
        start_date=date.today() - timedelta(weeks=3),
        slack_base=stack.slack_base,
        slack_post_reports=True,
    )
    posters = {}
    for rep in convoys.reps:  # the first company's representative posts; the second is the peer
        if rep.company_id == convoys.companies[rep.convoy_id][0]:
            posters[rep.convoy_id] = rep
    jobs = list(posters.values())[:count]
    await stack.wait_until_quiet()
    session = http_session(200)
    try:
        await stack.sink_reset(session)
        posted: dict[str, float] = {}
        errors: list[str] = []

        async def post(rep: data.Rep) -> None:
            posted[str(rep.convoy_id)] = time.monotonic()
            async with session.post(
                f"{stack.http}/api/v1/convoys/{rep.convoy_id}/reports", json=BODY, headers=rep.auth
            ) as r:
                try:
                    await expect(r, 201)
                except Failures as exc:  # overload answers 503 after the request timeout: counted, not fatal
                    errors.append(str(exc))
                    posted.pop(str(rep.convoy_id), None)

        lat, elapsed, _ = await open_loop(rate, jobs, post)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            s = await stack.sink_stats(session)
            if s["mails"] >= len(posted) and s["slack"] >= len(posted):
                break
            await asyncio.sleep(0.5)
        arrivals = await stack.sink_arrivals(session)
    finally:
        await session.close()
    mail = [t - posted[c] for t, c, _ in arrivals["mails"] if c in posted]
    slack = [t - posted[path.rsplit("/", 1)[-1]] for t, path in arrivals["slack"] if path.rsplit("/", 1)[-1] in posted]
    both = {}
    for t, c, _ in arrivals["mails"]:
        if c in posted:
            both[c] = max(both.get(c, 0.0), t - posted[c])
    for t, path in arrivals["slack"]:
        c = path.rsplit("/", 1)[-1]
        if c in posted and c in both:
            both[c] = max(both[c], t - posted[c])
    rtt = await nats_round_trip(stack.settings.nats_url, 2000)
    rtt99 = pct(rtt, 99) * 1000
    p99_mail, p99_slack, p99_both = pct(mail, 99) * 1000, pct(slack, 99) * 1000, pct(list(both.values()), 99) * 1000
    result.rows += [
        Row(
            "latency",
            f"posted → email and Slack post, p99 ms at {rate:.0f}/s for {seconds:.0f} s",
            p99_both,
            rtt99,
            "ms",
            "< 100 ms",
            p99_both < 100,
            note=f"p50 {pct(list(both.values()), 50) * 1000:.0f} ms; {len(both)}/{len(jobs)} complete,"
            f" {len(errors)} errors",
        ),
        Row(
            "latency",
            "posted → email in the sink, p99 ms",
            p99_mail,
            rtt99,
            "ms",
            note=f"p50 {pct(mail, 50) * 1000:.0f}",
        ),
        Row("latency", "posted → Slack post, p99 ms", p99_slack, rtt99, "ms", note=f"p50 {pct(slack, 50) * 1000:.0f}"),
    ]
    result.details = {
        "reports": len(jobs),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "achieved_rate": round(len(lat) / elapsed, 1),
        "post_p50_ms": round(pct(lat, 50) * 1000, 1),
        "post_p99_ms": round(pct(lat, 99) * 1000, 1),
        "emails": len(mail),
        "slack_posts": len(slack),
        "mail_p50_ms": round(pct(mail, 50) * 1000, 1),
        "mail_p99_ms": round(p99_mail, 1),
        "mail_max_ms": round(max(mail, default=0) * 1000, 1),
        "slack_p50_ms": round(pct(slack, 50) * 1000, 1),
        "slack_p99_ms": round(p99_slack, 1),
        "nats_rtt_p50_ms": round(pct(rtt, 50) * 1000, 3),
        "nats_rtt_p99_ms": round(rtt99, 3),
    }
    result.cpu_seconds = cpu_delta(cpu0, stack.cpu_seconds())
    result.wall_seconds = time.perf_counter() - begun
    return result
