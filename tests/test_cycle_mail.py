"""Check-in cycle emails: prompts, nudges and digests from the scheduler's cycle events.

Rendering is tested with hand-made replies; the end-to-end tests publish the cycle events to
JetStream the way services/reminders will, on a convoy built over HTTP, and read the SMTP sink.
"""

from __future__ import annotations

import html
import re
import uuid
from datetime import UTC, date, datetime
from email.message import EmailMessage
from typing import Any

import asyncpg
import httpx

from notifier import cycles
from schemas import api
from schemas import envelope as env
from schemas import events as ev
from tests.conftest import SmtpSink, Stack, eventually, html_of, settled, text_of
from tests.test_reports import XSS, assert_harmless, post_report, project, schedule
from tests.world import World, build_world

DUE = datetime(2025, 3, 31, 7, 0, tzinfo=UTC)  # 09:00 in Berlin (summer time since 30 March)


def recipient(name: str = "Anna Müller", language: str = "de", company: str = "Sanitär Müller") -> api.Recipient:
    return api.Recipient(
        person_id=uuid.uuid4(),
        company_id=uuid.uuid4(),
        company_name=company,
        name=name,
        email="anna@mueller.example",
        language=language,
    )


def digest_report(company: str, **kw: Any) -> api.DigestReport:
    fields: dict[str, Any] = {
        "report_id": uuid.uuid4(),
        "company_id": uuid.uuid4(),
        "company_name": company,
        "cycle_index": 3,
        "late": False,
        "done": "Fertig",
        "next": "",
        "blockers": "",
        "help_wanted": False,
        "help_topic": "",
        "mood": None,
        "progress": 0.0,
        "milestone_changes": [],
        "kudos_by": [],
    }
    fields.update(kw)
    return api.DigestReport(**fields)


# --- rendering ------------------------------------------------------------------------------------
def test_prompt_renders_due_time_context_and_escapes() -> None:
    context = api.PromptContext(
        company_id=uuid.uuid4(),
        milestones_due=[api.DueMilestone(title="Buchungsseite <b>live</b>", target_date=date(2025, 3, 28))],
        last_next_steps=f"**Kalender** anbinden {XSS}",
        open_commitments=["Testlauf <i>mit</i> Kunden"],
    )
    link = "http://convoy.test/convoys/x/report"
    de = cycles.prompt(
        recipient=recipient(),
        convoy="Nord <Konvoi>",
        cycle_index=3,
        due_at=DUE,
        timezone="Europe/Berlin",
        link=link,
        context=context,
    )
    assert de.subject == "Check-in: Ihr Bericht für „Nord <Konvoi>“ bis 31.03.2025, 09:00 Uhr"
    assert "Montag, 31. März 2025, 09:00 Uhr" in de.text and "Runde 4" in de.text
    assert "Europe/Berlin" in de.text and link in de.text
    assert "Buchungsseite <b>live</b> (Ziel: 28. März 2025)" in de.text
    assert "Kalender anbinden" in de.text and "Testlauf <i>mit</i> Kunden" in de.text
    assert "Nord &lt;Konvoi&gt;" in de.html and "Buchungsseite &lt;b&gt;live&lt;/b&gt;" in de.html
    assert "<strong>Kalender</strong> anbinden" in de.html and "Testlauf &lt;i&gt;mit&lt;/i&gt; Kunden" in de.html
    assert f'href="{link}"' in de.html
    assert_harmless(de.html)

    en = cycles.prompt(
        recipient=recipient(language="en-GB"),
        convoy="Nord",
        cycle_index=3,
        due_at=DUE,
        timezone="America/New_York",
        link=link,
        context=None,
        nudge=2,
        now=datetime(2025, 4, 1, tzinfo=UTC),
    )
    assert en.subject == 'Reminder: your report for "Nord" by 31 Mar 2025, 03:00'
    assert "It was due by Monday, 31 March 2025, 03:00" in en.text and "America/New_York" in en.text
    # An unknown zone falls back to Berlin and says so.
    fallback = cycles.prompt(
        recipient=recipient(), convoy="Nord", cycle_index=0, due_at=DUE, timezone="Mars/Base", link=link
    )
    assert "09:00 Uhr" in fallback.subject and "Europe/Berlin" in fallback.text


def test_digest_renders_sections_in_order_with_names_absences_and_addenda() -> None:
    ben, gone = uuid.uuid4(), uuid.uuid4()
    silent, away, skipped = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    report = digest_report(
        "Sanitär Müller",
        done=f"Seite **live** {XSS}",
        next="Kalender",
        blockers="Zeit",
        help_wanted=True,
        help_topic="Kalender <sync>",
        mood=4,
        progress=0.4,
        milestone_changes=[
            api.DigestMilestone(
                company_id=uuid.uuid4(), company_name="Sanitär Müller", title="Seite live", status="done"
            )
        ],
        kudos_by=[ben, gone],
    )
    d = api.Digest(
        convoy_id=uuid.uuid4(),
        convoy_name="Terminvergabe Nord",
        cycle_index=3,
        completed_milestones=[
            api.DigestMilestone(
                company_id=uuid.uuid4(), company_name="Sanitär Müller", title="Seite live", status="done"
            )
        ],
        help_requests=[report],
        reports=[report],
        late_addenda=[digest_report("Laden Schmidt", cycle_index=2, late=True, done="Nachgereicht")],
        silent_company_ids=[silent, away],
        progress=0.25,
        participation=0.5,
    )
    companies = {silent: "Werkstatt Leer", away: "Metallbau Stahl", skipped: "Bäckerei Korn"}
    absences = [
        ev.Absence(company_id=away, kind="away"),
        ev.Absence(company_id=skipped, kind="skipped", reason="Betriebsferien"),
    ]
    kw: dict[str, Any] = {
        "d": d,
        "people": {ben: "Ben Schmidt"},
        "companies": companies,
        "absences": absences,
        "link": "http://convoy.test/convoys/c",
        "report_link": "http://convoy.test/reports/{report_id}",
    }
    de = cycles.digest(recipient=recipient(), **kw)
    assert de.subject == "Konvoi-Digest „Terminvergabe Nord“ \N{EN DASH} Runde 4"
    order = [
        "Erreichte Meilensteine",
        "Wer Unterstützung sucht",
        "Die Berichte",
        "Ohne Bericht",
        "Der Konvoi insgesamt",
        "Nachträge",
    ]
    for body in (de.text, de.html):
        positions = [body.index(h) for h in order]
        assert positions == sorted(positions), body
    assert "Werkstatt Leer" in de.text and "Metallbau Stahl (abwesend)" in de.text
    assert "Bäckerei Korn (ausgesetzt: Betriebsferien)" in de.text
    assert "Kudos von: Ben Schmidt, 1 weiteren" in de.text
    assert "Seite live: erledigt" in de.text and "Fortschritt: 40 %" in de.text
    assert "Beteiligung: 50 %" in de.text and "Laden Schmidt (Runde 3)" in de.text
    assert f"http://convoy.test/reports/{report.report_id}" in de.text
    assert "Kalender &lt;sync&gt;" in de.html and "<strong>live</strong>" in de.html
    assert 'width="40%"' in de.html and 'width="60%"' in de.html  # the progress bar, a table
    assert_harmless(de.html)

    en = cycles.digest(recipient=recipient(language="en"), **kw)
    assert en.subject == 'Convoy digest "Terminvergabe Nord" \N{EN DASH} round 4'
    assert "Metallbau Stahl (away)" in en.text and "Bäckerei Korn (skipped: Betriebsferien)" in en.text
    assert "Late reports" in en.text and "Kudos from: Ben Schmidt, 1 more" in en.text

    assert not cycles.digest_is_empty(d)
    empty = api.Digest(
        convoy_id=d.convoy_id,
        convoy_name="x",
        cycle_index=0,
        completed_milestones=[],
        help_requests=[],
        reports=[],
        late_addenda=[],
        silent_company_ids=[silent],
        progress=0.0,
        participation=0.0,
    )
    assert cycles.digest_is_empty(empty)


# --- end to end -----------------------------------------------------------------------------------
async def publish(stack: Stack, event: ev.Event, envelope: env.Envelope | None = None) -> env.Envelope:
    """Publish as the scheduler will (each publish a fresh Nats-Msg-Id, so JetStream keeps it)."""
    envelope = envelope or env.new_envelope(event, producer="reminders")
    ack = await stack.nc.jetstream().publish(
        stack.subjects.of(type(event)), env.encode(envelope), headers={"Nats-Msg-Id": str(uuid.uuid4())}
    )
    assert not ack.duplicate
    return envelope


async def query(stack: Stack, statement: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(stack.settings.database_url)
    try:
        return await conn.fetch(statement, *args)
    finally:
        await conn.close()


async def processed(stack: Stack, envelope: env.Envelope) -> None:
    async def done() -> bool:
        return bool(await query(stack, "SELECT 1 FROM notifier.processed_events WHERE event_id = $1", envelope.id))

    await eventually(done)


def with_subject(sink: SmtpSink, address: str, part: str) -> list[EmailMessage]:
    return [m for m in sink.to(address) if part in str(m["Subject"])]


def email(world: World, key: str) -> str:
    return world.reps[key].email


async def test_prompts_go_to_every_representative_but_the_absent_in_their_language(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    world = await build_world(client, smtp_sink, companies=3, lang_b="en")
    await schedule(client, world)
    p = await project(client, world, "a")
    first = p["milestones"][0]
    today = datetime.now(UTC).date().isoformat()
    r = await client.patch(
        f"/api/v1/milestones/{first['id']}", json={"target_date": today}, headers=world.reps["a"].auth
    )
    assert r.status_code == 200, r.text
    r = await post_report(client, world, "a", next=f"**Kalender** anbinden {XSS}", commitments=["Testlauf machen"])
    assert r.status_code == 201, r.text
    cycle = r.json()["cycle_index"] + 1  # the next cycle opens: Anna's report is "last cycle"
    convoy_id = uuid.UUID(world.convoy_id)
    c_id = uuid.UUID(world.reps["c"].company_id)
    opened = ev.CycleOpened(
        convoy_id=convoy_id,
        cycle_index=cycle,
        opens_at=datetime(2025, 3, 28, 8, 0, tzinfo=UTC),
        due_at=DUE,
        closes_at=datetime(2025, 4, 4, 7, 0, tzinfo=UTC),
        absences=[ev.Absence(company_id=c_id, kind="away")],
    )
    envelope = await publish(stack, opened)

    anna = await smtp_sink.wait_for_subject(email(world, "a"), "Check-in")
    ben = await smtp_sink.wait_for_subject(email(world, "b"), "Check-in")
    assert anna["Subject"] == "Check-in: Ihr Bericht für „Terminvergabe Nord“ bis 31.03.2025, 09:00 Uhr"
    assert ben["Subject"] == 'Check-in: your report for "Terminvergabe Nord" by 31 Mar 2025, 09:00'
    link = f"http://convoy.test/convoys/{world.convoy_id}/report"
    text, markup = text_of(anna), html_of(anna)
    assert "Montag, 31. März 2025, 09:00 Uhr" in text and "Europe/Berlin" in text and link in text
    assert first["title"] in text and "Kalender anbinden" in text and "Testlauf machen" in text
    assert f'href="{link}"' in markup and "<strong>Kalender</strong> anbinden" in markup
    assert_harmless(markup)
    assert "Monday, 31 March 2025, 09:00" in text_of(ben) and "Kalender" not in text_of(ben)

    await publish(stack, opened, envelope)  # redelivered as is
    again = await publish(stack, opened)  # the scheduler fired twice: a new event, the same cycle
    await processed(stack, again)
    await settled(stack)
    assert len(with_subject(smtp_sink, email(world, "a"), "Check-in")) == 1
    assert len(with_subject(smtp_sink, email(world, "b"), "Check-in")) == 1
    assert not with_subject(smtp_sink, email(world, "c"), "Check-in")  # away
    keys = await query(stack, "SELECT key, status FROM notifier.deliveries WHERE key LIKE 'prompt:%'")
    assert {k["key"] for k in keys} == {
        f"prompt:{convoy_id}:{cycle}:{world.reps[x].person_id}" for x in ("a", "b")
    } and {k["status"] for k in keys} == {"sent"}


async def test_a_nudge_skips_companies_that_reported_and_the_absent(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    world = await build_world(client, smtp_sink, companies=3)
    await schedule(client, world)
    r = await post_report(client, world, "b")
    assert r.status_code == 201, r.text
    cycle = r.json()["cycle_index"]
    nudge = ev.NudgeDue(
        convoy_id=uuid.UUID(world.convoy_id),
        cycle_index=cycle,
        nudge=1,
        due_at=datetime(2099, 1, 5, 8, 0, tzinfo=UTC),
        absences=[ev.Absence(company_id=uuid.UUID(world.reps["c"].company_id), kind="skipped", reason="Urlaub")],
    )
    await publish(stack, nudge)
    anna = await smtp_sink.wait_for_subject(email(world, "a"), "Erinnerung")
    assert anna["Subject"] == "Erinnerung: Ihr Bericht für „Terminvergabe Nord“ bis 05.01.2099, 09:00 Uhr"
    assert "Er ist bis Montag, 5. Januar 2099, 09:00 Uhr fällig." in text_of(anna)

    # Anna reports now; the second nudge finds her company done.
    r = await post_report(client, world, "a")
    assert r.status_code == 201, r.text
    second = await publish(stack, ev.NudgeDue(**{**_fields(nudge), "nudge": 2}))
    await publish(stack, nudge)  # nudge 1 once more: nothing new
    await processed(stack, second)
    await settled(stack)
    for key, count in (("a", 1), ("b", 0), ("c", 0)):
        assert len(with_subject(smtp_sink, email(world, key), "Erinnerung")) == count, key
    keys = await query(stack, "SELECT key FROM notifier.deliveries WHERE key LIKE 'nudge:%'")
    assert [k["key"] for k in keys] == [f"nudge:{world.convoy_id}:{cycle}:1:{world.reps['a'].person_id}"]


def _fields(event: ev.Event) -> dict[str, Any]:
    return {f: getattr(event, f) for f in event.__struct_fields__}


async def test_the_digest_reaches_every_member_once(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    world = await build_world(client, smtp_sink, companies=3, lang_b="en")
    await schedule(client, world)
    r = await client.post(
        f"/api/v1/convoys/{world.convoy_id}/companies", json={"name": "Werkstatt Leer"}, headers=world.facilitator
    )
    assert r.status_code == 201, r.text  # a company nobody represents yet: silent
    p = await project(client, world, "a")
    first = p["milestones"][0]
    r = await post_report(
        client,
        world,
        "a",
        done=f"Buchungsseite ist **live** {XSS}",
        next="Kalender anbinden",
        help_wanted=True,
        help_topic="Kalender-Sync",
        mood=4,
        milestones=[{"milestone_id": first["id"], "status": "done"}],
    )
    assert r.status_code == 201, r.text
    report_a = r.json()
    cycle = report_a["cycle_index"]
    r = await client.put(f"/api/v1/reports/{report_a['id']}/kudos", headers=world.reps["b"].auth)
    assert r.status_code in (200, 204), r.text
    r = await post_report(client, world, "b", done="Shop-Entwurf fertig")
    assert r.status_code == 201, r.text

    closed = ev.CycleClosed(
        convoy_id=uuid.UUID(world.convoy_id),
        cycle_index=cycle,
        opens_at=datetime(2025, 3, 24, 8, 0, tzinfo=UTC),
        closes_at=datetime(2025, 3, 31, 7, 0, tzinfo=UTC),
        absences=[ev.Absence(company_id=uuid.UUID(world.reps["c"].company_id), kind="skipped", reason="Urlaub")],
    )
    envelope = await publish(stack, closed)
    round_ = cycle + 1
    anna = await smtp_sink.wait_for_subject(email(world, "a"), "Konvoi-Digest")
    ben = await smtp_sink.wait_for_subject(email(world, "b"), "Convoy digest")
    clara = await smtp_sink.wait_for_subject(email(world, "c"), "Konvoi-Digest")  # absent, still reads
    assert anna["Subject"] == f"Konvoi-Digest „Terminvergabe Nord“ \N{EN DASH} Runde {round_}"
    assert ben["Subject"] == f'Convoy digest "Terminvergabe Nord" \N{EN DASH} round {round_}'

    text, markup = text_of(anna), html_of(anna)
    sections = ["Erreichte Meilensteine", "Wer Unterstützung sucht", "Die Berichte", "Ohne Bericht", "insgesamt"]
    positions = [text.index(s) for s in sections]
    assert positions == sorted(positions), text
    assert f"Sanitär Müller: {first['title']}" in text
    assert "Sanitär Müller: Kalender-Sync" in text
    assert "Buchungsseite ist live" in text and "Shop-Entwurf fertig" in text
    assert "Kudos von: Ben Schmidt" in text
    assert "- Werkstatt Leer" in text and "Metallbau Stahl (ausgesetzt: Urlaub)" in text
    assert f"{first['title']}: erledigt" in text and "Stimmung: 4/5" in text
    assert re.search(r"Beteiligung: \d+ %", text)
    assert "<strong>live</strong>" in markup and html.escape("<script>") in markup
    assert_harmless(markup)
    assert 'role="presentation"' in markup  # table layout; assert_harmless: no images
    assert "Metallbau Stahl (skipped: Urlaub)" in text_of(ben) and "Kudos from: Ben Schmidt" in text_of(ben)
    assert "Nachträge" not in text and clara["Subject"] == anna["Subject"]

    # Redelivered as is, and fired again as a new event: nothing more.
    await publish(stack, closed, envelope)
    again = await publish(stack, closed)
    await processed(stack, again)
    await settled(stack)
    for key in "abc":
        assert len([m for m in smtp_sink.to(email(world, key)) if "igest" in str(m["Subject"])]) == 1, key
    keys = await query(stack, "SELECT key FROM notifier.deliveries WHERE key LIKE 'digest:%'")
    assert len(keys) == 3

    # A cycle where nothing happened: no digest, and no failure.
    quiet = await publish(stack, ev.CycleClosed(**{**_fields(closed), "cycle_index": cycle + 3, "absences": []}))
    await processed(stack, quiet)
    keys = await query(stack, "SELECT key FROM notifier.deliveries WHERE key LIKE 'digest:%'")
    assert len(keys) == 3
