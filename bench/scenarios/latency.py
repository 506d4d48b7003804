"""latency: a report posted → the peer's email in the SMTP sink and the Slack post at the stand-in.

A steady rate (100 reports/s at scale 1 for 60 s; the duration scales). Each report is posted in
a convoy of its own (two companies, one representative each, a Slack webhook with "post each
report" on), so the email and the post are matched to the report by the convoy id (List-Id, the
webhook path). Baseline: NATS core request/reply round trip on the same server.

Two phases, each on convoys of its own: the reports alone (issue #21's "still met"), then with
the feedback emails on (issue #17): the peer gives kudos as soon as the report is accepted, so the
notifier also collects and sends one feedback email per report (window ``stack.FEEDBACK_WINDOW_S``)
while the notices are measured. The report notice goes to the peer (company 1), the feedback email
to the poster (company 0): the sink tells them apart by the recipient. ``BENCH_LATENCY_FEEDBACK=0``
runs only the first phase, ``=1`` only the second.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from datetime import date, timedelta
from typing import Any

import nats

from bench import data
from bench.measure import Failures, Result, Row, cpu_delta, expect, http_session, open_loop, pct
from bench.stack import FEEDBACK_WINDOW_S, Stack

RATE = 100.0
BODY = {"done": "Kalender angebunden", "next": "Zahlungen", "mood": 4}
COMPANY_OF = re.compile(r"-(\d+)-\d+@bench\.example>?$")
"""bench.data's addresses: p<tag>-<convoy>-<company>-<rep>@bench.example."""


def company_index(rcpt: str) -> int:
    match = COMPANY_OF.search(rcpt)
    return int(match.group(1)) if match else -1


def sizes(scale: float) -> tuple[float, float]:
    """(reports per second, seconds)."""
    return RATE, max(5.0, 60 * scale)


async def nats_round_trip(url: str, login: tuple[str, str], count: int) -> list[float]:
    user, password = login
    responder = await nats.connect(url, user=user, password=password)
    requester = await nats.connect(url, user=user, password=password)
    try:

        async def answer(msg: nats.aio.msg.Msg) -> None:
            await msg.respond(msg.data)

        await responder.subscribe("_bench.echo", cb=answer)
        await responder.flush()
        for _ in range(50):  # the interest reaches the requester's side of the server (seen late under load)
            try:
                await requester.request("_bench.echo", b"x", timeout=5)
                break
            except nats.errors.NoRespondersError:
                await asyncio.sleep(0.1)
        out = []
        for _ in range(count):
            t0 = time.perf_counter()
            await requester.request("_bench.echo", b"x" * 200, timeout=5)
            out.append(time.perf_counter() - t0)
        return out
    finally:
        await responder.close()
        await requester.close()


PHASES = {"0": (False,), "1": (True,)}
"""``BENCH_LATENCY_FEEDBACK``: 0 measures only the reports, 1 only the reports with their kudos; unset, both."""


async def run(stack: Stack, scale: float) -> Result:
    rate, seconds = sizes(scale)
    count = int(rate * seconds)
    result = Result("latency", scale)
    assert stack.pool is not None
    begun = time.perf_counter()
    cpu0 = stack.cpu_seconds()
    phases = PHASES.get(os.environ.get("BENCH_LATENCY_FEEDBACK", ""), (False, True))
    convoys = await data.create_convoys(
        stack.pool,
        count * len(phases),
        companies=2,
        start_date=date.today() - timedelta(weeks=3),
        slack_base=stack.slack_base,
        slack_post_reports=True,
    )
    posters, peers = {}, {}
    for rep in convoys.reps:  # the first company's representative posts; the second is the peer
        if rep.company_id == convoys.companies[rep.convoy_id][0]:
            posters[rep.convoy_id] = rep
        else:
            peers[rep.convoy_id] = rep
    everyone = list(posters.values())
    rtt = await nats_round_trip(stack.settings.nats_url, stack.nats_login, 2000)
    for i, feedback in enumerate(phases):
        rows, details = await phase(stack, everyone[i * count : (i + 1) * count], peers, feedback, rate, rtt)
        result.rows += rows
        result.details["with_kudos" if feedback else "reports_only"] = details
    result.cpu_seconds = cpu_delta(cpu0, stack.cpu_seconds())
    result.wall_seconds = time.perf_counter() - begun
    return result


async def phase(
    stack: Stack, jobs: list[data.Rep], peers: dict[Any, data.Rep], feedback: bool, rate: float, rtt: list[float]
) -> tuple[list[Row], dict[str, Any]]:
    """``jobs``' reports at ``rate``, each in its own convoy; with ``feedback`` the peer's kudos on each."""
    seconds = len(jobs) / rate
    kudos: dict[str, float] = {}
    await stack.wait_until_quiet()
    cpu_run0 = stack.cpu_seconds()  # the reports and what follows them, not the setup
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
                    body = await expect(r, 201)
                    report_id = json.loads(body)["id"] if feedback else None
                except Failures as exc:  # overload answers 503 after the request timeout: counted, not fatal
                    errors.append(str(exc))
                    posted.pop(str(rep.convoy_id), None)
                    return
            if report_id is not None:  # the peer's kudos: a feedback email to the poster after the window
                async with session.put(
                    f"{stack.http}/api/v1/reports/{report_id}/kudos", headers=peers[rep.convoy_id].auth
                ) as k:
                    try:
                        await expect(k, 200)
                        kudos[str(rep.convoy_id)] = time.monotonic()
                    except Failures as exc:
                        errors.append(f"kudos: {exc}")

        lat, elapsed, _ = await open_loop(rate, jobs, post)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            s = await stack.sink_stats(session)
            if s["mails"] >= len(posted) + len(kudos) and s["slack"] >= len(posted):
                break
            await asyncio.sleep(0.5)
        cpu_run = cpu_delta(cpu_run0, stack.cpu_seconds())
        arrivals = await stack.sink_arrivals(session)
    finally:
        await session.close()
    notices = [(t, c) for t, c, _, rcpt in arrivals["mails"] if company_index(rcpt) != 0]
    feedback_mail = [t - kudos[c] for t, c, _, rcpt in arrivals["mails"] if company_index(rcpt) == 0 and c in kudos]
    mail = [t - posted[c] for t, c in notices if c in posted]
    slack = [t - posted[path.rsplit("/", 1)[-1]] for t, path in arrivals["slack"] if path.rsplit("/", 1)[-1] in posted]
    both = {}
    for t, c in notices:
        if c in posted:
            both[c] = max(both.get(c, 0.0), t - posted[c])
    for t, path in arrivals["slack"]:
        c = path.rsplit("/", 1)[-1]
        if c in posted and c in both:
            both[c] = max(both[c], t - posted[c])
    rtt99 = pct(rtt, 99) * 1000
    what = "with a kudos on every report" if feedback else "reports only"
    p99_mail, p99_slack, p99_both = pct(mail, 99) * 1000, pct(slack, 99) * 1000, pct(list(both.values()), 99) * 1000
    rows = [
        Row(
            "latency",
            f"{what}: posted → email and Slack post, p99 ms at {rate:.0f} reports/s for {seconds:.0f} s",
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
            f"{what}: posted → email in the sink, p99 ms",
            p99_mail,
            rtt99,
            "ms",
            note=f"p50 {pct(mail, 50) * 1000:.0f}",
        ),
        Row(
            "latency",
            f"{what}: posted → Slack post, p99 ms",
            p99_slack,
            rtt99,
            "ms",
            note=f"p50 {pct(slack, 50) * 1000:.0f}",
        ),
    ]
    if feedback:
        rows.append(
            Row(
                "latency",
                f"kudos → feedback email, p99 s (collected for {FEEDBACK_WINDOW_S:.0f} s)",
                pct(feedback_mail, 99),
                None,
                "s",
                note=f"p50 {pct(feedback_mail, 50):.1f} s; {len(feedback_mail)}/{len(kudos)} arrived",
            )
        )
    details = {
        "reports": len(jobs),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "achieved_rate": round(len(lat) / elapsed, 1),
        "post_p50_ms": round(pct(lat, 50) * 1000, 1),
        "post_p99_ms": round(pct(lat, 99) * 1000, 1),
        "emails": len(mail),
        "kudos": len(kudos),
        "feedback_emails": len(feedback_mail),
        "slack_posts": len(slack),
        "mail_p50_ms": round(pct(mail, 50) * 1000, 1),
        "mail_p99_ms": round(p99_mail, 1),
        "mail_max_ms": round(max(mail, default=0) * 1000, 1),
        "slack_p50_ms": round(pct(slack, 50) * 1000, 1),
        "slack_p99_ms": round(p99_slack, 1),
        "nats_rtt_p50_ms": round(pct(rtt, 50) * 1000, 3),
        "nats_rtt_p99_ms": round(rtt99, 3),
        "cpu_s_during_run": {k: round(v, 1) for k, v in cpu_run.items()},
        "cpu_ms_per_report": {k: round(1000 * v / max(1, len(posted)), 2) for k, v in cpu_run.items()},
    }
    return rows, details
