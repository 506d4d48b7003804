"""Where a company stands in the round, as the dashboard and convoy page say it (a pure function)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec

from convoy_api.web.pages.convoy import round_state
from schemas import api

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


def schedule(*, opened: bool, closed: bool = False) -> api.Schedule:
    cycle = api.ScheduledCycle(
        cycle_index=4,
        opens_at=NOW - timedelta(hours=1),
        due_at=NOW + timedelta(days=3),
        closes_at=NOW + timedelta(days=7),
        skipped=False,
        skip_reason="",
        opened=opened,
        nudges_done=0,
        closed=closed,
    )
    settings = msgspec.convert({}, api.ScheduleSettings)
    return api.Schedule(
        convoy_id=uuid.uuid4(),
        timezone="Europe/Berlin",
        status="active",
        settings=settings,
        cycles=[cycle],
        absences=[],
    )


def report(cycle_index: int, *, digest_cycle: int | None = None) -> api.Report:
    return msgspec.convert(
        {
            "id": str(uuid.uuid4()),
            "convoy_id": str(uuid.uuid4()),
            "company_id": str(uuid.uuid4()),
            "company_name": "Sanitär Müller",
            "author_id": str(uuid.uuid4()),
            "cycle_index": cycle_index,
            "late": False,
            "version": 1,
            "submitted_at": NOW.isoformat(),
            "updated_at": NOW.isoformat(),
            "done": "x",
            "done_html": "<p>x</p>",
            "next": "",
            "next_html": "",
            "blockers": "",
            "blockers_html": "",
            "help_wanted": False,
            "help_topic": "",
            "help_milestone_id": None,
            "mood": None,
            "digest_cycle": digest_cycle,
            "editable_until": (NOW + timedelta(days=7)).isoformat(),
        },
        api.Report,
    )


def test_sent_shows_even_before_the_prompt_went_out() -> None:
    # The scheduler has not opened the round yet (its next tick), but the company already reported in it.
    assert round_state(schedule(opened=False), report(4), NOW).kind == "sent"
    assert round_state(schedule(opened=True), report(4), NOW).kind == "sent"
    assert round_state(schedule(opened=True), report(3), NOW).kind == "open"
    assert round_state(schedule(opened=False), report(3), NOW).kind == ""
    assert round_state(schedule(opened=True), report(4, digest_cycle=4), NOW).kind == "in_digest"
