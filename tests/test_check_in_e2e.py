"""A convoy through check-in cycles end to end: scheduler → events → notifier (with content from
milestones) → SMTP sink, each prompt, nudge and digest exactly once (fake clock)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx

from tests.conftest import SmtpSink, Stack, settled
from tests.test_reports import post_report, sql
from tests.test_scheduler import active_convoy, tick


def subjects_to(sink: SmtpSink, address: str) -> list[str]:
    return [str(m["Subject"]) for m in sink.to(address)]


def count(subjects: list[str], *starts: str) -> int:
    return sum(1 for s in subjects if s.startswith(starts))


async def test_prompts_nudges_and_digests_arrive_once_each(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack, settings: Any
) -> None:
    world = await active_convoy(client, smtp_sink)  # Anna writes German, Ben English
    anna, ben = world.reps["a"], world.reps["b"]
    smtp_sink.messages.clear()

    # Cycle 0 opens: both are prompted.
    await tick(stack, "2026-10-19T09:00:30+02:00")
    await smtp_sink.wait_for_subject(anna.email, "Check-in: Ihr Bericht")
    await smtp_sink.wait_for_subject(ben.email, "Check-in: your report")

    # Anna reports in cycle 0 (the fake clock is the scheduler's: place the report in that cycle).
    r = await post_report(client, world, "a", done="Buchungsseite ist online", help_wanted=True, help_topic="Kalender")
    assert r.status_code == 201, r.text
    await sql(
        settings,
        "UPDATE milestones.reports SET cycle_index = 0, submitted_at = $2 WHERE id = $1",
        uuid.UUID(r.json()["id"]),
        datetime.fromisoformat("2026-10-20T10:00+02:00"),
    )
    await smtp_sink.wait_for_subject(ben.email, "Sanitär Müller: new progress report")

    # The first nudge reaches only Ben, whose company has not reported.
    await tick(stack, "2026-10-21T09:00+02:00")
    await smtp_sink.wait_for_subject(ben.email, "Reminder: your report")

    # Cycle 0 closes (after the DST change) and cycle 1 opens: a digest each, prompts again.
    await tick(stack, "2026-10-26T09:00:30+01:00")
    digest = await smtp_sink.wait_for_subject(ben.email, 'Convoy digest "Terminvergabe Nord"')
    await smtp_sink.wait_for_subject(anna.email, "Konvoi-Digest „Terminvergabe Nord“")
    assert "Buchungsseite ist online" in str(digest.get_body(("html",)).get_content())  # type: ignore[union-attr]

    # Ticking again, or at the same moment twice, sends nothing more.
    await tick(stack, "2026-10-26T09:00:30+01:00")
    await tick(stack, "2026-10-26T09:05+01:00")
    await settled(stack)
    a, b = subjects_to(smtp_sink, anna.email), subjects_to(smtp_sink, ben.email)
    assert count(a, "Check-in") == 2 and count(b, "Check-in") == 2  # cycles 0 and 1
    assert count(a, "Erinnerung") == 0 and count(b, "Reminder") == 1
    assert count(a, "Konvoi-Digest") == 1 and count(b, "Convoy digest") == 1
    assert len(a) == 3 and len(b) == 5  # Ben also got Anna's report notification
