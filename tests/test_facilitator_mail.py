"""The weekly facilitator digest: one email per facilitator about the health of their convoys.

Rendering is tested with hand-made replies; the end-to-end test publishes the weekly event to
JetStream the way services/reminders does, on convoys built over HTTP, and reads the SMTP sink.
"""

from __future__ import annotations

import html
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx

from notifier import facilitator
from schemas import api
from schemas import events as ev
from tests.conftest import SmtpSink, Stack, eventually, html_of, settled, text_of
from tests.test_cycle_mail import processed, publish, query
from tests.test_reports import XSS, assert_harmless, post_report, project, schedule
from tests.world import World, build_world

AT = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)  # Monday 07:00 in Berlin
URL = "http://convoy.test"


def person(
    language: str = "de", timezone: str = "Europe/Berlin", name: str = "Frieda Berater"
) -> api.FacilitatorConvoys:
    return api.FacilitatorConvoys(
        person_id=uuid.uuid4(),
        name=name,
        email="frieda@zentrum.example",
        language=language,
        timezone=timezone,
        convoy_ids=[],
    )


def health(name: str, **kw: Any) -> api.ConvoyHealth:
    fields: dict[str, Any] = {
        "convoy_id": uuid.uuid4(),
        "convoy_name": name,
        "cycle_index": 4,
        "silent_companies": [],
        "stalled_milestones": [],
        "open_blockers": [],
        "unanswered_help": [],
        "mood_trend": [],
        "flags_waiting": 0,
    }
    fields.update(kw)
    return api.ConvoyHealth(**fields)


def busy(name: str = "Terminvergabe Nord") -> api.ConvoyHealth:
    return health(
        name,
        silent_companies=[api.SilentCompany(company_id=uuid.uuid4(), name=f"Werkstatt {XSS}", cycles_silent=3)],
        stalled_milestones=[
            api.StalledMilestone(
                company_name="Sanitär Müller", title="Buchungsseite live", target_date=date(2026, 11, 1), status="open"
            )
        ],
        open_blockers=[api.OpenItem(company_name="Laden Schmidt", report_id=uuid.uuid4(), text=f"Lieferant\n{XSS}")],
        unanswered_help=[api.OpenItem(company_name="Sanitär Müller", report_id=uuid.uuid4(), text="Kalender-Sync")],
        mood_trend=[None, 3.5, 3.0, 2.5],
    )


def render(f: api.FacilitatorConvoys, *convoys: api.ConvoyHealth) -> Any:
    return facilitator.facilitator_digest(
        facilitator=f, digest=api.FacilitatorDigest(convoys=list(convoys)), period="2026-W48", at=AT, public_url=URL
    )


# --- rendering ------------------------------------------------------------------------------------
def test_german_digest_lists_what_needs_attention_per_convoy_and_escapes() -> None:
    nord, quiet = busy(), health("Ruhiger <Konvoi>", mood_trend=[4.0, 4.0])
    de = render(person(), nord, quiet)
    assert de is not None
    assert de.subject == "Moderations-Digest: 2 Konvois \N{EN DASH} Woche 2026-W48"
    text, markup = de.text, de.html
    assert text.startswith("Hallo Frieda Berater,")
    assert "Montag, 23. November 2026, 07:00 Uhr" in text and "Europe/Berlin" in text
    assert "## Terminvergabe Nord (Runde 5)" in text
    assert f"- Werkstatt {XSS} (3 Runden)" in text  # plain text: as typed, on one line
    assert "- Sanitär Müller: Buchungsseite live (Ziel: 1. November 2026)" in text
    blocker = nord.open_blockers[0]
    assert f"- Laden Schmidt: Lieferant {XSS} ({URL}/reports/{blocker.report_id})" in text
    help_ = nord.unanswered_help[0]
    assert f"- Sanitär Müller: Kalender-Sync ({URL}/reports/{help_.report_id})" in text
    assert "Stimmung: \N{EN DASH} → 3,5 → 3,0 → 2,5 ↓" in text
    assert "Gemeldete Beiträge in der Moderation: keine" in text
    assert f"Zum Konvoi: {URL}/convoys/{nord.convoy_id}" in text
    assert "Alles ruhig in: Ruhiger <Konvoi>" in text
    assert "## Ruhiger" not in text and text.count("Stimmung:") == 1

    assert html.escape("<script>") in markup and "Ruhiger &lt;Konvoi&gt;" in markup
    assert_harmless(markup)
    assert f'href="{URL}/reports/{help_.report_id}"' in markup
    assert f'href="{URL}/convoys/{nord.convoy_id}"' in markup and f'href="{URL}/convoys/{quiet.convoy_id}"' in markup
    assert 'role="presentation"' in markup and '<meta name="viewport"' in markup  # the fluid layout
    assert "http" not in markup.replace(URL, "")  # no remote images or styles: only our links
    # The mood bar row: one bar per cycle, 8 px per mood point, a stub for a cycle without ratings.
    assert "height:28px;background:#16a34a" in markup and "height:20px;background:#f59e0b" in markup
    assert "height:2px;background:#cbd2d9" in markup


def test_english_digest_in_the_facilitators_time_zone() -> None:
    nord = busy()
    nord.flags_waiting = 2
    en = render(person(language="en-GB", timezone="America/New_York"), nord)
    assert en is not None
    assert en.subject == "Facilitator digest: 1 convoy \N{EN DASH} week 2026-W48"
    assert "Monday, 23 November 2026, 01:00" in en.text and "America/New_York" in en.text
    assert "## Terminvergabe Nord (round 5)" in en.text
    assert "(3 rounds)" in en.text and "Buchungsseite live (target: 1 November 2026)" in en.text
    assert "Mood: \N{EN DASH} → 3.5 → 3.0 → 2.5 ↓" in en.text
    assert "Flags waiting: 2" in en.text and "All quiet" not in en.text
    assert "Open blockers" in en.text and "Unanswered help requests" in en.text
    assert_harmless(en.html)


def test_quiet_convoys_and_the_all_quiet_skip() -> None:
    quiet = [
        health("A", mood_trend=[3.0, 3.2]),
        health("B", cycle_index=None),
        health("C", mood_trend=[None, 4.0, 3.7]),  # a small dip is no news
    ]
    assert all(facilitator.is_quiet(h) for h in quiet)
    assert render(person(), *quiet) is None
    assert render(person()) is None  # no convoys at all

    # Each of these alone makes a convoy worth a look.
    for noteworthy in (
        health("D", flags_waiting=1),
        health("E", mood_trend=[4.0, 3.0]),  # fell by a whole point
        health("F", mood_trend=[2.0]),  # low
        health("G", unanswered_help=[api.OpenItem(company_name="X", report_id=uuid.uuid4(), text="")]),
    ):
        assert not facilitator.is_quiet(noteworthy), noteworthy.convoy_name
        rendered = render(person(language="en"), *quiet, noteworthy)
        assert rendered is not None
        assert f"## {noteworthy.convoy_name} (round 5)" in rendered.text
        assert "All quiet in: A, B, C" in rendered.text
        assert rendered.subject == "Facilitator digest: 4 convoys \N{EN DASH} week 2026-W48"
    no_topic = api.OpenItem(company_name="X", report_id=uuid.uuid4(), text="")
    g = render(person(language="en"), health("G", unanswered_help=[no_topic]))
    assert g is not None and "- X: (no topic given)" in g.text and "Mood: no ratings" in g.text


def test_mood_line_and_long_texts() -> None:
    assert facilitator.mood_line([], "de") == ""
    assert facilitator.mood_line([None, None], "en") == ""
    assert facilitator.mood_line([3.0], "en") == "3.0"
    assert facilitator.mood_line([2.5, 3.33], "de") == "2,5 → 3,3 ↑"
    assert facilitator.mood_line([3.0, None, 3.0], "en") == "3.0 → \N{EN DASH} → 3.0 →"
    long = health("L", open_blockers=[api.OpenItem(company_name="X", report_id=uuid.uuid4(), text="a " * 500)])
    rendered = render(person(), long)
    assert rendered is not None
    line = next(x for x in rendered.text.splitlines() if x.startswith("- X: "))
    assert "\N{HORIZONTAL ELLIPSIS}" in line and len(line) < 400
    assert facilitator.delivery_key("2026-W48", uuid.UUID(int=1)) == (
        "facilitator_digest:2026-W48:00000000-0000-0000-0000-000000000001"
    )


# --- end to end -----------------------------------------------------------------------------------
async def activate(client: httpx.AsyncClient, world: World) -> None:
    await schedule(client, world)
    r = await client.post(
        f"/api/v1/convoys/{world.convoy_id}/status", json={"status": "active"}, headers=world.facilitator
    )
    assert r.status_code == 200, r.text


async def facilitator_email(client: httpx.AsyncClient, world: World) -> tuple[str, str]:
    r = await client.get("/api/v1/me", headers=world.facilitator)
    assert r.status_code == 200, r.text
    me = r.json()["person"]
    return str(me["id"]), str(me["email"])


async def test_one_digest_per_facilitator_once_per_week(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    nord = await build_world(client, smtp_sink, companies=2)
    await activate(client, nord)
    # A stalled milestone (target date passed, not done) and a blocker in the latest report.
    p = await project(client, nord, "a")
    first = p["milestones"][0]
    last_week = (datetime.now(UTC).date() - timedelta(days=7)).isoformat()
    r = await client.patch(
        f"/api/v1/milestones/{first['id']}", json={"target_date": last_week}, headers=nord.reps["a"].auth
    )
    assert r.status_code == 200, r.text
    r = await post_report(client, nord, "a", blockers=f"Lieferant antwortet nicht {XSS}", mood=2)
    assert r.status_code == 201, r.text
    blocker_report = r.json()["id"]

    sued = await build_world(client, smtp_sink, companies=1)
    await activate(client, sued)
    r = await client.patch("/api/v1/me", json={"language": "en"}, headers=sued.facilitator)
    assert r.status_code == 200, r.text
    r = await post_report(client, sued, "a", help_wanted=True, help_topic="Kalender <sync>", mood=4)
    assert r.status_code == 201, r.text
    help_report = r.json()["id"]

    (frieda_id, frieda), (sven_id, sven) = await facilitator_email(client, nord), await facilitator_email(client, sued)
    due = ev.FacilitatorDigestDue(period="2026-W48", at=datetime.now(UTC))
    envelope = await publish(stack, due)

    de = await smtp_sink.wait_for_subject(frieda, "Moderations-Digest")
    en = await smtp_sink.wait_for_subject(sven, "Facilitator digest")
    assert de["Subject"] == "Moderations-Digest: 1 Konvoi \N{EN DASH} Woche 2026-W48"
    assert en["Subject"] == "Facilitator digest: 1 convoy \N{EN DASH} week 2026-W48"
    text, markup = text_of(de), html_of(de)
    assert "## Terminvergabe Nord (Runde " in text
    assert f"- Sanitär Müller: {first['title']} (Ziel: " in text
    assert f"- Sanitär Müller: Lieferant antwortet nicht {XSS} (http://convoy.test/reports/{blocker_report})" in text
    assert "- Laden Schmidt (" in text  # never reported: silent for many rounds
    assert "Stimmung: " in text and "2,0" in text
    assert "Gemeldete Beiträge in der Moderation: keine" in text
    assert f"http://convoy.test/convoys/{nord.convoy_id}" in text
    assert html.escape("<script>") in markup
    assert_harmless(markup)
    assert sued.convoy_id not in text  # only her own convoys

    en_text = text_of(en)
    assert f"- Sanitär Müller: Kalender <sync> (http://convoy.test/reports/{help_report})" in en_text
    assert "Flags waiting: none" in en_text and "Kalender &lt;sync&gt;" in html_of(en)

    # Redelivered as is, and fired again as a new event for the same week: nothing more.
    await publish(stack, due, envelope)
    again = await publish(stack, due)
    await processed(stack, again)
    await settled(stack)
    assert len([m for m in smtp_sink.to(frieda) if "Digest" in str(m["Subject"])]) == 1
    assert len([m for m in smtp_sink.to(sven) if "digest" in str(m["Subject"])]) == 1

    async def keys() -> set[str]:
        rows = await query(stack, "SELECT key, status FROM notifier.deliveries WHERE key LIKE 'facilitator_digest:%'")
        assert {r["status"] for r in rows} == {"sent"}
        return {r["key"] for r in rows}

    assert await eventually(keys) == {
        f"facilitator_digest:2026-W48:{frieda_id}",
        f"facilitator_digest:2026-W48:{sven_id}",
    }
