"""fan-out: one digest cycle for many convoys (1,000 convoys of 8 companies with 2 representatives each at scale 1).

From the cycle's close (a scheduler tick at the closing time) to the last digest email in the
SMTP sink and the last Slack post at the stand-in. Every company reported in the cycle (set up by
SQL), so no digest is empty. The next cycle is marked skipped (as on a holiday), so the tick
closes cycles and sends digests only, no prompts.

Baseline: raw aiosmtplib sending as many messages (samples of the digests the sink received,
byte for byte) over as many connections as the notifier's SMTP pool has, to the same sink.
"""

from __future__ import annotations

import asyncio
import base64
import time
from datetime import date, timedelta

import aiosmtplib

from bench import data
from bench.measure import Result, Row, cpu_delta, http_session
from bench.stack import Stack
from services.reminders import schedule

COMPANIES, REPS = 8, 2
START = date(2024, 1, 1)
CYCLE = 10


def sizes(scale: float) -> int:
    return max(10, round(1000 * scale))


def plan() -> schedule.Plan:
    return schedule.Plan(timezone=data.TIMEZONE, cadence=data.WEEKLY_MONDAY_9, start_date=START)


async def raw_smtp(port: int, messages: list[bytes], connections: int) -> float:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for m in messages:
        queue.put_nowait(m)

    async def sender() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30)
        await client.connect()
        try:
            while True:
                try:
                    message = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                await client.sendmail("convoy@localhost", ["peer@bench.example"], message)
        finally:
            await client.quit()

    t0 = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(connections)))
    return time.perf_counter() - t0


async def run(stack: Stack, scale: float) -> Result:
    n = sizes(scale)
    result = Result("fanout", scale)
    assert stack.pool is not None
    begun = time.perf_counter()
    cpu0 = stack.cpu_seconds()
    convoys = await data.create_convoys(
        stack.pool,
        n,
        companies=COMPANIES,
        reps_per_company=REPS,
        tokens=False,
        start_date=START,
        slack_base=stack.slack_base,
        in_reminders=True,
    )
    p = plan()
    await data.insert_cycles(
        stack.pool,
        convoys.ids,
        p,
        [(CYCLE - 1, False, True, True, 2), (CYCLE, False, True, False, 2), (CYCLE + 1, True, False, False, 0)],
    )
    cycle = schedule.plan_cycle(p, CYCLE)
    reports = await data.insert_reports(
        stack.pool, convoys, cycle_index=CYCLE, submitted_at=cycle.opens_at + timedelta(hours=1)
    )
    emails, posts = n * COMPANIES * REPS, n
    await stack.wait_until_quiet()
    session = http_session(10)
    try:
        await stack.sink_reset(session)
        cpu_tick = stack.cpu_seconds()
        t0 = time.monotonic()
        fired = await stack.tick(cycle.closes_at)
        tick_s = time.monotonic() - t0
        deadline = time.monotonic() + max(300, n * 2)
        stats = await stack.sink_stats(session)
        while time.monotonic() < deadline and (stats["mails"] < emails or stats["slack"] < posts):
            await asyncio.sleep(0.25)
            stats = await stack.sink_stats(session)
        last = max(stats["last_mail"] or t0, stats["last_slack"] or t0)
        convoy_s = last - t0
        mail_s = (stats["last_mail"] or t0) - t0
        samples = [base64.b64decode(s) for s in await (await session.get(f"{stack.control}/samples")).json()]
    finally:
        await session.close()
    cpu1 = stack.cpu_seconds()
    smtp_port = int(stack.settings.smtp_url.rsplit(":", 1)[1])
    prepared = [samples[i % len(samples)] for i in range(emails)] if samples else []
    connections = stack.settings.smtp_pool_size
    base_s = await raw_smtp(smtp_port, prepared, connections) if prepared else 0.0
    convoy_rate, base_rate = stats["mails"] / mail_s if mail_s else 0.0, emails / base_s if base_s else 0.0
    ratio = convoy_rate / base_rate if base_rate else 0.0
    result.rows += [
        Row(
            "fanout",
            f"digest emails/s, {n} convoys: close → last of {emails} emails",
            convoy_rate,
            base_rate,
            "/s",
            "≥ 0.7 of raw SMTP",
            ratio >= 0.7,
            note=f"{convoy_s:.1f} s to the last email or post; raw SMTP {base_s:.1f} s over {connections} connections",
        ),
        Row(
            "fanout",
            f"Slack posts ({posts} webhooks), posts closer than 1 s to the same webhook",
            float(stats["pace_violations"]),
            None,
            "",
            "0 (pacing respected)",
            stats["pace_violations"] == 0 and stats["slack"] >= posts,
            note=f"{stats['slack']}/{posts} posts arrived",
        ),
    ]
    result.details = {
        "convoys": n,
        "emails_expected": emails,
        "emails_arrived": stats["mails"],
        "slack_expected": posts,
        "slack_arrived": stats["slack"],
        "reports_in_cycle": reports,
        "tick_seconds": round(tick_s, 2),
        "fires": len(fired.actions),
        "close_to_last_email_s": round(mail_s, 2),
        "close_to_last_delivery_s": round(convoy_s, 2),
        "raw_smtp_seconds": round(base_s, 2),
        "smtp_connections": connections,
        "mean_email_bytes": round(stats["mail_bytes"] / max(1, stats["mails"])),
        "cpu_s_during_fanout": {k: round(v, 1) for k, v in cpu_delta(cpu0, cpu1).items()},
        # from the tick to the last email and post (the setup's SQL and the raw baseline left out)
        "cpu_ms_per_email_from_tick": {
            k: round(1000 * v / max(1, stats["mails"]), 3) for k, v in cpu_delta(cpu_tick, cpu1).items()
        },
    }
    result.cpu_seconds = cpu_delta(cpu0, stack.cpu_seconds())
    result.wall_seconds = time.perf_counter() - begun
    return result
