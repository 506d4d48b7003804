"""The facilitator's part of the weekly loop (issue #17): a help request reaches each facilitator of
the convoy at once, and at close each facilitator gets the round summary (participation, the silent
companies, who is away or skipping, help requests, mood, the reports as the digest shows them).

Rendering is tested with hand-made replies; the end-to-end tests build convoys over HTTP, close the
round with ``close-now`` as a facilitator does, and read the SMTP sink.
"""

from __future__ import annotations

import html
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import httpx
import msgspec

from notifier import cycles, facilitation
from schemas import api
from schemas import events as ev
from services.reminders.service import fire_id
from tests.conftest import SmtpSink, Stack, eventually, html_of, text_of
from tests.test_cycle_mail import digest_report, processed, publish, query
from tests.test_reports import XSS, assert_harmless, post_report, project, schedule
from tests.world import ADMIN, World, appoint_facilitator, build_world

BASE = "http://convoy.test"


def contact(language: str = "de", name: str = "Frieda Berater") -> api.FacilitatorContact:
    return api.FacilitatorContact(
        person_id=uuid.uuid4(), name=name, email="frieda@zentrum.example", language=language, timezone="Europe/Berlin"
    )


# --- rendering ------------------------------------------------------------------------------------
def test_the_help_request_email_names_company_topic_milestone_and_blockers_escaped() -> None:
    now = datetime.now(UTC)
    report = api.Report(
        id=uuid.uuid4(),
        convoy_id=uuid.uuid4(),
        company_id=uuid.uuid4(),
        company_name="Sanitär <Müller>",
        author_id=uuid.uuid4(),
        cycle_index=3,
        late=False,
        version=1,
        submitted_at=now,
        updated_at=now,
        done="",
        done_html="",
        next="",
        next_html="",
        blockers=f"Die **Schnittstelle** fehlt {XSS}",
        blockers_html="",
        help_wanted=True,
        help_topic="Kalender <sync>",
        help_milestone_id=None,
        mood=None,
    )
    link = f"{BASE}/reports/{report.id}"
    de = facilitation.help_requested(
        facilitator=contact(), convoy="Nord", report=report, milestone="Seite <live>", link=link
    )
    assert de.subject == "Hilfegesuch von Sanitär <Müller> in „Nord“" and de.lang == "de"
    assert "Thema: Kalender <sync>" in de.text and "Meilenstein: Seite <live>" in de.text
    assert "Die Schnittstelle fehlt" in de.text and "Runde 4" in de.text and link in de.text
    assert "Sanitär &lt;Müller&gt;" in de.html and "Kalender &lt;sync&gt;" in de.html
    assert "Seite &lt;live&gt;" in de.html and "<strong>Schnittstelle</strong>" in de.html
    assert f'href="{link}"' in de.html and '{% extends "_layout.html" %}' not in de.html
    assert_harmless(de.html)

    bare = msgspec.structs.replace(report, help_topic="", blockers="")
    en = facilitation.help_requested(facilitator=contact("en"), convoy="Nord", report=bare, milestone="", link=link)
    assert en.subject == 'Help request from Sanitär <Müller> in "Nord"' and en.lang == "en"
    assert "Topic: (no topic given)" in en.text and "Milestone" not in en.text and "Blockers" not in en.text


def test_the_round_summary_counts_participation_and_keeps_silent_and_excused_apart() -> None:
    silent, away, skipped = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    on_time = digest_report("Sanitär Müller", mood=4, help_wanted=True, help_topic="Kalender", done="Seite **live**")
    late = digest_report("Laden Schmidt", mood=3, late=True, done=XSS)
    d = api.Digest(
        convoy_id=uuid.uuid4(),
        convoy_name="Terminvergabe Nord",
        cycle_index=3,
        completed_milestones=[],
        help_requests=[on_time],
        reports=[on_time, late],
        late_addenda=[digest_report("Bäckerei Korn", cycle_index=2, late=True, done="Nachgereicht")],
        silent_company_ids=[silent, away, skipped],
        progress=0.25,
        participation=0.4,
    )
    digests = cycles.DigestRenderer(
        d=d,
        people={},
        companies={silent: "Werkstatt Leer", away: "Metallbau Stahl", skipped: "Friseur Schnitt"},
        absences=[
            ev.Absence(company_id=away, kind="away"),
            ev.Absence(company_id=skipped, kind="skipped", reason="Betriebsferien"),
        ],
        link=f"{BASE}/convoys/c",
        report_link=BASE + "/reports/{report_id}",
    )
    summary = facilitation.RoundSummary(
        digests=digests, link=f"{BASE}/convoys/c", schedule_link=f"{BASE}/convoys/c/schedule"
    )
    de = summary.render(contact())
    assert de.subject == "Runde 4 in „Terminvergabe Nord“: 2 von 5 haben berichtet"
    assert "2 von 5 Unternehmen haben berichtet (1 pünktlich, 1 verspätet)." in de.text
    silent_part = section(de.text, "# Ohne Bericht")
    assert silent_part == ["- Werkstatt Leer"]
    assert section(de.text, "# Abwesend oder ausgesetzt") == [
        "- Metallbau Stahl (abwesend)",
        "- Friseur Schnitt (ausgesetzt: Betriebsferien)",
    ]
    assert f"- Sanitär Müller: Kalender ({BASE}/reports/{on_time.report_id})" in de.text
    assert "Stimmung: 3,5 von 5 (Durchschnitt aus 2 Angaben)" in de.text
    assert "## Laden Schmidt (verspätet)" in de.text and "## Bäckerei Korn (Runde 3)" in de.text
    assert f"{BASE}/convoys/c/schedule" in de.text
    # The report cards are the digest's own (the same partial renders both).
    members = digests.render(api.Recipient(**{**recipient_fields(), "language": "de"}))
    card = f'<a href="{BASE}/reports/{late.report_id}" style="color:#1d4ed8;">Zum Bericht</a>'
    assert card in de.html and card in members.html
    assert "Seite <strong>live</strong>" in de.html and html.escape("<script>") in de.html
    assert_harmless(de.html)

    en = summary.render(contact("en", name="Fred Coach"))
    assert en.subject == 'Round 4 in "Terminvergabe Nord": 2 of 5 reported' and en.lang == "en"
    assert "Hello Fred Coach," in en.text and "Mood: 3.5 of 5 (average of 2 ratings)" in en.text

    nobody = msgspec.structs.replace(d, reports=[], help_requests=[], late_addenda=[], participation=0.0)
    quiet = facilitation.RoundSummary(
        digests=cycles.DigestRenderer(
            d=nobody, people={}, companies={}, absences=[], link="l", report_link="r/{report_id}"
        ),
        link="l",
        schedule_link="s",
    ).render(contact("en"))
    assert quiet.subject == 'Round 4 in "Terminvergabe Nord": nobody reported'
    assert "Nobody reported this round." in quiet.text and "Mood: no ratings" in quiet.text


def recipient_fields() -> dict[str, Any]:
    return {
        "person_id": uuid.uuid4(),
        "company_id": uuid.uuid4(),
        "company_name": "Sanitär Müller",
        "name": "Anna",
        "email": "anna@mueller.example",
    }


def section(text: str, heading: str) -> list[str]:
    """The lines under a ``# heading`` of a text part, up to the next blank line."""
    lines = text.splitlines()
    start = lines.index(heading) + 1
    out = []
    for line in lines[start:]:
        if not line.strip():
            break
        out.append(line)
    return out


# --- end to end -----------------------------------------------------------------------------------
async def me(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    r = await client.get("/api/v1/me", headers=headers)
    assert r.status_code == 200, r.text
    person: dict[str, Any] = r.json()["person"]
    return person


async def co_facilitator(client: httpx.AsyncClient, world: World, name: str, language: str) -> dict[str, Any]:
    """Appoint another facilitator (no sign-in needed to receive email) and add them to the convoy."""
    email = f"{name.split()[0].lower()}-{uuid.uuid4().hex[:8]}@zentrum.example"
    r = await client.post(
        "/api/v1/facilitators", json={"name": name, "email": email, "language": language}, headers=ADMIN
    )
    assert r.status_code == 201, r.text
    person: dict[str, Any] = r.json()
    r = await client.post(
        f"/api/v1/convoys/{world.convoy_id}/facilitators", json={"person_id": person["id"]}, headers=world.facilitator
    )
    assert r.status_code == 201, r.text
    return person


async def activate(client: httpx.AsyncClient, world: World) -> None:
    r = await client.post(
        f"/api/v1/convoys/{world.convoy_id}/status", json={"status": "active"}, headers=world.facilitator
    )
    assert r.status_code == 200, r.text

    async def scheduler_knows() -> bool:
        r = await client.get(f"/api/v1/convoys/{world.convoy_id}/schedule", headers=world.facilitator)
        return r.status_code == 200 and r.json()["status"] == "active"

    await eventually(scheduler_knows)


def help_mails(sink: SmtpSink, address: str) -> list[EmailMessage]:
    return [m for m in sink.to(address) if str(m["Subject"]).startswith(("Hilfegesuch", "Help request"))]


def summaries(sink: SmtpSink, address: str) -> list[EmailMessage]:
    return [m for m in sink.to(address) if "berichtet" in str(m["Subject"]) or "reported" in str(m["Subject"])]


async def unsubscribe(client: httpx.AsyncClient, mail: EmailMessage) -> None:
    link = str(mail["List-Unsubscribe"]).strip("<>")
    assert link.startswith(f"{BASE}/unsubscribe/"), link
    r = await client.post(
        link.removeprefix(BASE),
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200, r.text


async def test_help_requests_reach_the_convoys_facilitators_and_the_round_summary_follows_at_close(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    world = await build_world(client, smtp_sink, companies=3, lang_b="en")
    frieda = await me(client, world.facilitator)
    fred = await co_facilitator(client, world, "Fred Coach", "en")
    # A facilitator of another convoy only: hears nothing of this one.
    other_email = f"olga-{uuid.uuid4().hex[:8]}@zentrum.example"
    other = await appoint_facilitator(client, smtp_sink, other_email)
    r = await client.post("/api/v1/convoys", json={"name": "Webshop Süd", "theme": "Webshop"}, headers=other)
    assert r.status_code == 201, r.text
    r = await client.post(
        f"/api/v1/convoys/{world.convoy_id}/companies", json={"name": "Werkstatt Leer"}, headers=world.facilitator
    )
    assert r.status_code == 201, r.text  # a company nobody represents: silent
    await schedule(client, world)  # cycle 10 opened two days ago, due in 100 hours
    await activate(client, world)

    p = await project(client, world, "a")
    milestone = p["milestones"][1]
    r = await post_report(
        client,
        world,
        "a",
        done="Buchungsseite ist **live**",
        blockers=f"Die **Schnittstelle** fehlt {XSS}",
        help_wanted=True,
        help_topic="Kalender-Sync <Outlook>",
        help_milestone_id=milestone["id"],
        mood=4,
    )
    assert r.status_code == 201, r.text
    report_a = r.json()
    cycle = report_a["cycle_index"]
    assert cycle == 10

    # --- the help request, at once, to each facilitator of this convoy in their language
    de = await smtp_sink.wait_for_subject(frieda["email"], "Hilfegesuch")
    en = await smtp_sink.wait_for_subject(fred["email"], "Help request")
    assert de["Subject"] == "Hilfegesuch von Sanitär Müller in „Terminvergabe Nord“"
    assert en["Subject"] == 'Help request from Sanitär Müller in "Terminvergabe Nord"'
    link = f"{BASE}/reports/{report_a['id']}"
    text, markup = text_of(de), html_of(de)
    assert "Thema: Kalender-Sync <Outlook>" in text and f"Meilenstein: {milestone['title']}" in text
    assert "Die Schnittstelle fehlt" in text and link in text
    assert "Kalender-Sync &lt;Outlook&gt;" in markup and "<strong>Schnittstelle</strong>" in markup
    assert f'href="{link}"' in markup
    assert_harmless(markup)
    assert "Topic: Kalender-Sync <Outlook>" in text_of(en) and f"Milestone: {milestone['title']}" in text_of(en)
    assert de["List-Unsubscribe"] is not None

    # --- the help request is sent once, whatever is redelivered
    again = await publish(
        stack,
        ev.HelpRequested(
            convoy_id=uuid.UUID(world.convoy_id),
            company_id=uuid.UUID(world.reps["a"].company_id),
            report_id=uuid.UUID(report_a["id"]),
            milestone_id=uuid.UUID(milestone["id"]),
        ),
    )
    await processed(stack, again)
    keys = await query(
        stack, "SELECT key FROM notifier.deliveries WHERE key LIKE $1", f"help_requested:{report_a['id']}:%"
    )
    assert {k["key"] for k in keys} == {
        facilitation.help_key(uuid.UUID(report_a["id"]), uuid.UUID(p_id)) for p_id in (frieda["id"], fred["id"])
    }

    # --- Frieda switches help requests off with one click: only that kind stops
    await unsubscribe(client, de)
    r = await post_report(client, world, "b", done="Shop-Entwurf fertig", help_wanted=True, help_topic="Zahlungen")
    assert r.status_code == 201, r.text
    link_b = f"{BASE}/reports/{r.json()['id']}"
    second = await smtp_sink.wait_for_subject(fred["email"], "Laden Schmidt")
    assert second["Subject"] == 'Help request from Laden Schmidt in "Terminvergabe Nord"'

    # Company c skips this round, with a reason.
    r = await client.post(
        f"/api/v1/convoys/{world.convoy_id}/companies/{world.reps['c'].company_id}/skips",
        json={"cycle_index": cycle, "reason": "Betriebsferien"},
        headers=world.reps["c"].auth,
    )
    assert r.status_code == 200, r.text

    # --- close-now: each facilitator gets exactly one round summary, in their language
    r = await client.post(f"/api/v1/convoys/{world.convoy_id}/close-now", headers=world.facilitator)
    assert r.status_code == 200 and r.json()["actions"] == [f"close cycle {cycle}"], r.text
    round_ = cycle + 1
    mine = await smtp_sink.wait_for_subject(frieda["email"], f"Runde {round_}")
    his = await smtp_sink.wait_for_subject(fred["email"], f"Round {round_}")
    assert mine["Subject"] == f"Runde {round_} in „Terminvergabe Nord“: 2 von 4 haben berichtet"
    assert his["Subject"] == f'Round {round_} in "Terminvergabe Nord": 2 of 4 reported'
    text, markup = text_of(mine), html_of(mine)
    assert "2 von 4 Unternehmen haben berichtet (2 pünktlich, 0 verspätet)." in text
    assert section(text, "# Ohne Bericht") == ["- Werkstatt Leer"]
    assert section(text, "# Abwesend oder ausgesetzt") == ["- Metallbau Stahl (ausgesetzt: Betriebsferien)"]
    assert sorted(section(text, "# Hilfegesuche")) == [
        f"- Laden Schmidt: Zahlungen ({link_b})",
        f"- Sanitär Müller: Kalender-Sync <Outlook> ({link})",
    ]
    assert "Stimmung: 4,0 von 5 (eine Angabe)" in text
    assert "Buchungsseite ist live" in text and "Shop-Entwurf fertig" in text
    assert f"{BASE}/convoys/{world.convoy_id}/schedule" in text
    assert "<strong>live</strong>" in markup and html.escape("<script>") in markup
    assert f'href="{BASE}/convoys/{world.convoy_id}/schedule"' in markup
    assert_harmless(markup)
    assert "2 of 4 companies reported (2 on time, 0 late)." in text_of(his)
    assert "- Metallbau Stahl (skipped: Betriebsferien)" in text_of(his)

    # The members' digest went out as before; the representatives get no summary and no help request.
    await smtp_sink.wait_for_subject(world.reps["a"].email, "Konvoi-Digest")
    for key in "abc":
        assert summaries(smtp_sink, world.reps[key].email) == [], key
        assert help_mails(smtp_sink, world.reps[key].email) == [], key
    assert help_mails(smtp_sink, other_email) == [] and summaries(smtp_sink, other_email) == []
    # Unsubscribed from help requests only: no second help request, but the summary came.
    assert len(help_mails(smtp_sink, frieda["email"])) == 1 and len(help_mails(smtp_sink, fred["email"])) == 2

    # --- a redelivered cycle.closed (and the scheduler firing twice) sends nothing twice
    closed = ev.CycleClosed(
        convoy_id=uuid.UUID(world.convoy_id),
        cycle_index=cycle,
        opens_at=datetime(2025, 3, 24, 8, 0, tzinfo=UTC),
        closes_at=datetime(2025, 3, 31, 7, 0, tzinfo=UTC),
        absences=[
            ev.Absence(company_id=uuid.UUID(world.reps["c"].company_id), kind="skipped", reason="Betriebsferien")
        ],
    )
    first_fire = fire_id(uuid.UUID(world.convoy_id), cycle, "close")
    await processed_id(stack, first_fire)
    again_closed = await publish(stack, closed)
    await processed(stack, again_closed)
    assert len(summaries(smtp_sink, frieda["email"])) == 1 and len(summaries(smtp_sink, fred["email"])) == 1
    assert len([m for m in smtp_sink.to(world.reps["a"].email) if "Konvoi-Digest" in str(m["Subject"])]) == 1
    keys = await query(
        stack, "SELECT key, status FROM notifier.deliveries WHERE key LIKE $1", f"facilitator_cycle:{world.convoy_id}:%"
    )
    assert sorted(k["key"] for k in keys) == sorted(
        facilitation.summary_key(uuid.UUID(world.convoy_id), cycle, uuid.UUID(p_id))
        for p_id in (frieda["id"], fred["id"])
    )
    assert {k["status"] for k in keys} == {"sent"}


async def processed_id(stack: Stack, event_id: uuid.UUID) -> None:
    async def done() -> bool:
        return bool(await query(stack, "SELECT 1 FROM notifier.processed_events WHERE event_id = $1", event_id))

    await eventually(done)


async def test_a_round_nobody_reported_still_gives_the_facilitator_a_summary(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    world = await build_world(client, smtp_sink, companies=2, lang_b="en")
    frieda = await me(client, world.facilitator)
    await schedule(client, world)
    await activate(client, world)
    r = await client.post(f"/api/v1/convoys/{world.convoy_id}/close-now", headers=world.facilitator)
    assert r.status_code == 200 and r.json()["actions"] == ["close cycle 10"], r.text
    mail = await smtp_sink.wait_for_subject(frieda["email"], "Runde 11")
    assert mail["Subject"] == "Runde 11 in „Terminvergabe Nord“: niemand hat berichtet"
    text = text_of(mail)
    assert "In dieser Runde hat niemand berichtet." in text and "Stimmung: keine Angaben" in text
    assert sorted(section(text, "# Ohne Bericht")) == ["- Laden Schmidt", "- Sanitär Müller"]
    await processed_id(stack, fire_id(uuid.UUID(world.convoy_id), 10, "close"))
    for key in "ab":  # the members' digest is skipped: nothing happened
        assert not [m for m in smtp_sink.to(world.reps[key].email) if "igest" in str(m["Subject"])], key


async def test_a_report_hidden_before_its_help_request_is_handled_asks_nobody(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    world = await build_world(client, smtp_sink, companies=2)
    frieda = await me(client, world.facilitator)
    await schedule(client, world)
    await stack.stop_service("notifier")
    try:
        r = await post_report(client, world, "a", help_wanted=True, help_topic="Vertraulich")
        assert r.status_code == 201, r.text
        r = await client.post(
            f"/api/v1/reports/{r.json()['id']}/hide", json={"reason": "Interna"}, headers=world.facilitator
        )
        assert r.status_code == 200, r.text
        r = await post_report(client, world, "b", help_wanted=True, help_topic="Kasse")
        assert r.status_code == 201, r.text
    finally:
        await stack.start_service("notifier")
    # Handled in order per convoy: when b's request arrives, a's was handled before it.
    await smtp_sink.wait_for_subject(frieda["email"], "Hilfegesuch von Laden Schmidt")
    assert [str(m["Subject"]) for m in help_mails(smtp_sink, frieda["email"])] == [
        "Hilfegesuch von Laden Schmidt in „Terminvergabe Nord“"
    ]
