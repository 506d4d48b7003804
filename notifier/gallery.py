"""Every email Convoy sends, rendered with sample data in German and English: ``make emails``.

    python -m notifier.gallery [--out DIR] [--no-screenshots]

writes, for each sample and language, ``<name>.<lang>.html`` (the HTML part with the footer
``send_email`` adds), ``<name>.<lang>.txt`` (the text part), a 390-px and a 1280-px full-page PNG
screenshot (Chromium through Playwright, launched like the browser tests) and an ``index.html``
linking them all. ``tests/test_email_layout.py`` renders the same samples in Chromium and checks
that none scrolls sideways on a phone.

Adding an email kind is one entry: a function from the language to a ``Rendered``, decorated with
``@sample(name, kind=...)`` (``kind`` is the delivery key's kind: it picks the footer's "why" line
and whether the footer carries a one-click unsubscribe link).
"""

from __future__ import annotations

import argparse
import asyncio
import html
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import msgspec

from notifier import cycles, facilitation, facilitator, feedback, i18n, render
from notifier.render import Rendered
from schemas import api
from schemas import events as ev

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu")
"""How the browser tests launch Debian's chromium (tests/test_pages_browser.py)."""
LANGUAGES = ("de", "en")
WIDTHS = (390, 1280)
"""A phone and a desktop mail client, in CSS px."""
DEFAULT_OUT = Path("build/emails")
PUBLIC_URL = "https://convoy.example.org"
SETTINGS_URL = f"{PUBLIC_URL}/profile/#notifications"
UNSUBSCRIBE_URL = (
    f"{PUBLIC_URL}/unsubscribe/eyJwIjoiNWQ2ZjE4YzAtOWIxMi00YjE2LWE3YjItYzEwZGU4MjNkZTRiIiwiayI6InJlcG9ydCJ9.ZcB1xT"
)

Render = Callable[[str], Rendered]


@dataclass(frozen=True)
class Sample:
    name: str
    """File name stem, e.g. ``report`` or ``message-sign_in``."""
    kind: str
    """The delivery key's kind (``message`` for sign-in links and invitations)."""
    render: Render


SAMPLES: dict[str, Sample] = {}


def sample(name: str, *, kind: str) -> Callable[[Render], Render]:
    """Register ``render(lang) -> Rendered`` as the sample email ``name``."""

    def register(fn: Render) -> Render:
        if name in SAMPLES:
            raise ValueError(f"sample email {name!r} registered twice")
        SAMPLES[name] = Sample(name=name, kind=kind, render=fn)
        return fn

    return register


def email(s: Sample, lang: str) -> Rendered:
    """The sample as ``send_email`` sends it: rendered, then the footer added."""
    rendered = s.render(lang)
    unsubscribe = None if render.is_message(s.kind) else UNSUBSCRIBE_URL
    return render.with_footer(rendered, kind=s.kind, settings_url=SETTINGS_URL, unsubscribe_url=unsubscribe)


# --- sample data: realistic, with long German compounds, long links and Markdown ---------------------
def _id(n: int) -> uuid.UUID:
    return uuid.UUID(int=0x5EED_0000_0000_0000_0000_0000_0000_0000 + n)


CONVOY = "Digitalisierungspartnerschaft Terminvergabe Nord"
COMPANY = "Sanitär- und Heizungsbaumeisterbetrieb Müller GmbH & Co. KG"
PEER = "Metallbau Stahl"
DONE = (
    "Die Online-Buchungsseite ist **live** und die ersten 14 Termine kamen darüber herein.\n\n"
    "- Kundenterminverwaltungssoftwareschnittstelle eingerichtet\n"
    "- Erinnerungs-SMS getestet (*zwei Tage* vorher)\n"
    "- Anleitung: https://hilfe.example.org/kalender/synchronisation/google-workspace-und-outlook-365"
    "?quelle=convoy-bericht&abschnitt=einrichtung\n"
)
NEXT = "Mit dem Team die **Rückrufliste** ablösen; `Kalender-Sync` auf alle drei Monteurs-Handys bringen."
BLOCKERS = "Der Internetanschluss in der Werkstatt fällt mehrmals täglich aus > 10 Minuten."
HELP_TOPIC = "Kalendersynchronisationsprobleme zwischen Handwerkersoftware und Outlook"
DUE = datetime(2025, 3, 31, 7, 0, tzinfo=UTC)

MESSAGE_PARAMS = {
    "convoy": CONVOY,
    "company": COMPANY,
    "inviter": "Fiona Facil (Mittelstand-Digital Zentrum Hamburg)",
    "expires": "31.12.2026",
    "minutes": "15",
    "contact": "Ben Schmidt",
    "message": "Wir möchten gern mitmachen.\nUnsere Terminplanung läuft noch über Papier und Whiteboard.",
    "reason": "Der Konvoi ist bereits voll; im Herbst startet ein neuer zum selben Thema.",
    "helper": "Clara Stahl",
    "topic": HELP_TOPIC,
    "what": "einen Kommentar zum Bericht",
    "category": "vertrauliche Informationen",
    "note": "Nennt Kundennamen und Adressen.",
    "theme": "Online-Terminbuchung",
    "link": f"{PUBLIC_URL}/invitations/cvi_Q2hlY2tJbkxpbmtXaXRoQVZlcnlMb25nVG9rZW5UaGF0RG9lc05vdFdyYXA",
}
MESSAGE_OVERRIDES: dict[str, dict[str, str]] = {
    "sign_in": {"link": f"{PUBLIC_URL}/sign-in/cvl_U2lnbkluTGlua1dpdGhBVmVyeUxvbmdUb2tlblRoYXREb2VzTm90V3JhcA"},
    "facilitator_appointed": {"link": f"{PUBLIC_URL}/sign-in"},
    "join_request_received": {"link": f"{PUBLIC_URL}/convoys/{{convoy_id}}/manage"},
    "help_offered": {
        "message": "Wir hatten genau dasselbe Problem mit Outlook.\nRufen Sie mich gern an: 040 123 456 78.",
        "link": f"{PUBLIC_URL}/reports/{{report_id}}",
    },
    "slack_disabled": {"reason": "410 Gone: invalid_token (the webhook was revoked)", "link": "{convoy}"},
    "chat_disabled": {
        "channel": "Microsoft Teams",
        "reason": "404 Not Found: WorkflowNotFound (the workflow was deleted)",
        "link": "{convoy}",
    },
    "comment_hidden": {"link": f"{PUBLIC_URL}/reports/{{report_id}}"},
    "content_flagged": {"link": f"{PUBLIC_URL}/convoys/{{convoy_id}}/flags"},
    "pool_request_received": {"link": f"{PUBLIC_URL}/pool"},
    "pool_joined": {
        "link": f"{PUBLIC_URL}/check/withdraw/eyJyIjoiMDAwMDAwMDAtMDAwMC0wMDAwLTAwMDAtMDAwMDAwMDAwMDA5In0.Z1x2Yw.c2ln",
        "days": "180",
    },
}
"""Params that differ from MESSAGE_PARAMS per template ({convoy_id}, {report_id}, {convoy}: sample links)."""
MESSAGE_KINDS = {"help_offered": "help_offered", "pool_joined": "message:pool_joined"}
"""Messages sent under a notification kind (the rest are ``message``: always sent, no unsubscribe)."""


def _recipient(lang: str) -> api.Recipient:
    return api.Recipient(
        person_id=_id(1),
        company_id=_id(2),
        company_name=PEER,
        name="Anna Müller-Lüdenscheidt" if lang == "de" else "Anna Miller",
        email="anna@example.org",
        language=lang,
    )


def _message(template: str) -> Render:
    def one(lang: str) -> Rendered:
        name = "Anna Müller-Lüdenscheidt" if lang == "de" else "Anna Miller"
        links = {"convoy_id": _id(11), "report_id": _id(10), "convoy": f"{PUBLIC_URL}/convoys/{_id(11)}"}
        overrides = {k: v.format(**links) for k, v in MESSAGE_OVERRIDES.get(template, {}).items()}
        return render.message(template, lang, {**MESSAGE_PARAMS, **overrides}, name=name)

    return one


for _template in render.MESSAGE_TEMPLATES:
    sample(f"message-{_template}", kind=MESSAGE_KINDS.get(_template, "message"))(_message(_template))


def sample_report(*, replies: bool = True) -> api.Report:
    at = datetime(2025, 3, 28, 15, 30, tzinfo=UTC)
    return api.Report(
        id=_id(10),
        convoy_id=_id(11),
        company_id=_id(12),
        company_name=COMPANY,
        author_id=_id(13),
        cycle_index=3,
        late=False,
        version=1,
        submitted_at=at,
        updated_at=at,
        done=DONE,
        done_html="",
        next=NEXT,
        next_html="",
        blockers=BLOCKERS,
        blockers_html="",
        help_wanted=True,
        help_topic=HELP_TOPIC,
        help_milestone_id=None,
        mood=4,
        milestones=[
            api.TouchedMilestone(milestone_id=_id(14), title="Online-Terminbuchung freigeschaltet", status="done"),
            api.TouchedMilestone(milestone_id=_id(15), title="Kalender-Synchronisation", status="in_progress"),
        ],
    )


@sample("report", kind="report")
def _report(lang: str) -> Rendered:
    return render.report_submitted(
        recipient=_recipient(lang),
        company=COMPANY,
        convoy=CONVOY,
        report=msgspec.convert(
            sample_report(), ev.ReportSnapshot, from_attributes=True
        ),  # as report.submitted carries it
        link=f"{PUBLIC_URL}/convoys/{_id(11)}",
        report_link=f"{PUBLIC_URL}/reports/{_id(10)}",
        replies_enabled=True,
    )


def _prompt(lang: str, nudge: int) -> Rendered:
    context = api.PromptContext(
        company_id=_id(2),
        milestones_due=[
            api.DueMilestone(title="Online-Terminbuchung freigeschaltet", target_date=date(2025, 3, 28)),
            api.DueMilestone(title="Digitale Auftragsdokumentationsmappe", target_date=None),
        ],
        last_next_steps=NEXT,
        open_commitments=["Ben zeigt Clara die Kalenderfreigabe", "Angebotsvorlagen vereinheitlichen"],
    )
    return cycles.prompt(
        recipient=_recipient(lang),
        convoy=CONVOY,
        cycle_index=3,
        due_at=DUE,
        timezone="Europe/Berlin",
        link=f"{PUBLIC_URL}/convoys/{_id(11)}/report",
        context=context if not nudge else None,
        nudge=nudge,
        now=datetime(2025, 3, 30, tzinfo=UTC),
        replies_enabled=True,
        calendar_link=f"{PUBLIC_URL}/profile/#calendar",
    )


@sample("prompt", kind="prompt")
def _cycle_prompt(lang: str) -> Rendered:
    return _prompt(lang, 0)


@sample("nudge", kind="nudge")
def _nudge(lang: str) -> Rendered:
    return _prompt(lang, 1)


def _digest_report(company: str, n: int, **kw: object) -> api.DigestReport:
    fields: dict[str, object] = {
        "report_id": _id(100 + n),
        "company_id": _id(200 + n),
        "company_name": company,
        "cycle_index": 3,
        "late": False,
        "done": DONE,
        "next": NEXT,
        "blockers": "",
        "help_wanted": False,
        "help_topic": "",
        "mood": 4,
        "progress": 0.6,
        "milestone_changes": [],
        "kudos_by": [],
    }
    fields.update(kw)
    return api.DigestReport(**fields)  # type: ignore[arg-type]


def digest_data() -> api.Digest:
    moved = api.DigestMilestone(
        company_id=_id(201), company_name=COMPANY, title="Online-Terminbuchung freigeschaltet", status="done"
    )
    first = _digest_report(
        COMPANY,
        1,
        blockers=BLOCKERS,
        help_wanted=True,
        help_topic=HELP_TOPIC,
        milestone_changes=[moved],
        kudos_by=[_id(301), _id(302)],
    )
    second = _digest_report(
        PEER, 2, done="Angebote gehen jetzt als **PDF** raus.", next="", mood=3, progress=0.25, late=True
    )
    d = api.Digest(
        convoy_id=_id(11),
        convoy_name=CONVOY,
        cycle_index=3,
        completed_milestones=[moved],
        help_requests=[first],
        reports=[first, second],
        late_addenda=[_digest_report("Bäckerei Korn", 3, cycle_index=2, late=True, done="Nachgereicht: Kasse läuft.")],
        silent_company_ids=[_id(401), _id(402)],
        progress=0.45,
        participation=0.5,
    )
    return d


DIGEST_PEOPLE = {_id(301): "Ben Schmidt"}
DIGEST_COMPANIES = {_id(401): "Werkstatt Leer", _id(402): "Elektroinstallationsfachbetrieb Schleswig-Holstein"}
DIGEST_ABSENCES = [ev.Absence(company_id=_id(402), kind="skipped", reason="Betriebsferien")]


@sample("digest", kind="digest")
def _digest(lang: str) -> Rendered:
    return cycles.digest(
        recipient=_recipient(lang),
        d=digest_data(),
        people=DIGEST_PEOPLE,
        companies=DIGEST_COMPANIES,
        absences=DIGEST_ABSENCES,
        link=f"{PUBLIC_URL}/convoys/{_id(11)}",
        report_link=f"{PUBLIC_URL}/reports/{{report_id}}",
    )


def _facilitator(lang: str) -> api.FacilitatorContact:
    return api.FacilitatorContact(
        person_id=_id(500), name="Fiona Facil", email="fiona@example.org", language=lang, timezone="Europe/Berlin"
    )


@sample("facilitator_cycle", kind="facilitator_cycle")
def _round_summary(lang: str) -> Rendered:
    digests = cycles.DigestRenderer(
        d=digest_data(),
        people=DIGEST_PEOPLE,
        companies=DIGEST_COMPANIES,
        absences=DIGEST_ABSENCES,
        link=f"{PUBLIC_URL}/convoys/{_id(11)}",
        report_link=f"{PUBLIC_URL}/reports/{{report_id}}",
    )
    summary = facilitation.RoundSummary(
        digests=digests,
        link=f"{PUBLIC_URL}/convoys/{_id(11)}",
        schedule_link=f"{PUBLIC_URL}/convoys/{_id(11)}/schedule",
    )
    return summary.render(_facilitator(lang))


@sample("help_requested", kind="help_requested")
def _help_requested(lang: str) -> Rendered:
    return facilitation.help_requested(
        facilitator=_facilitator(lang),
        convoy=CONVOY,
        report=sample_report(),
        milestone="Kalender-Synchronisation",
        link=f"{PUBLIC_URL}/reports/{_id(10)}",
    )


def _feedback_lines(lang: str) -> list[feedback.Line]:
    _ = i18n.Words(lang)
    return [
        feedback.Line(
            who=_("%(who)s writes:", who="Ben Schmidt (Laden Schmidt)"),
            text="Großartig! Welches Tool nutzt ihr für die Kalendersynchronisation mit den Monteurs-Handys?",
        ),
        feedback.Line(
            who=_("%(who)s answers %(parent)s:", who=f"Clara Stahl ({PEER})", parent="Ben Schmidt"),
            text="Wir nutzen das gleiche, siehe https://hilfe.example.org/kalender/synchronisation/google-workspace"
            "-und-outlook-365?quelle=convoy",
        ),
        feedback.Line(
            who=_("%(who)s writes:", who=f"Fiona Facil ({_('facilitator')})"),
            text="Schön zu sehen, wie es vorangeht. Bringt das doch nächste Woche in die Runde ein.",
        ),
    ]


@sample("feedback", kind="feedback")
def _feedback(lang: str) -> Rendered:
    return feedback.render_batch(
        "feedback",
        language=lang,
        name="Anna Müller-Lüdenscheidt" if lang == "de" else "Anna Miller",
        convoy=CONVOY,
        company=COMPANY,
        lines=_feedback_lines(lang),
        kudos=["Ben Schmidt (Laden Schmidt)", f"Clara Stahl ({PEER})"],
        link=f"{PUBLIC_URL}/reports/{_id(10)}",
        reply_hint="hint_comment",
    )


@sample("reply", kind="reply")
def _reply(lang: str) -> Rendered:
    return feedback.render_batch(
        "reply",
        language=lang,
        name="Ben Schmidt",
        convoy=CONVOY,
        company=COMPANY,
        lines=_feedback_lines(lang)[1:2],
        kudos=[],
        link=f"{PUBLIC_URL}/reports/{_id(10)}",
        reply_hint=None,
    )


@sample("facilitator_digest", kind="facilitator_digest")
def _facilitator_digest(lang: str) -> Rendered:
    busy = api.ConvoyHealth(
        convoy_id=_id(11),
        convoy_name=CONVOY,
        cycle_index=3,
        silent_companies=[api.SilentCompany(company_id=_id(401), name="Werkstatt Leer", cycles_silent=3)],
        stalled_milestones=[
            api.StalledMilestone(
                company_name=PEER, title="Digitale Auftragsdokumentationsmappe", target_date=date(2025, 3, 1), status=""
            )
        ],
        open_blockers=[api.OpenItem(company_name=COMPANY, report_id=_id(101), text=BLOCKERS)],
        unanswered_help=[api.OpenItem(company_name=COMPANY, report_id=_id(101), text=HELP_TOPIC)],
        mood_trend=[3.5, None, 3.0, 2.4],
        flags_waiting=1,
    )
    quiet = api.ConvoyHealth(
        convoy_id=_id(12),
        convoy_name="Konvoi Kassensysteme Süd",
        cycle_index=1,
        silent_companies=[],
        stalled_milestones=[],
        open_blockers=[],
        unanswered_help=[],
        mood_trend=[4.0, 4.2],
    )
    rendered = facilitator.facilitator_digest(
        facilitator=api.FacilitatorConvoys(
            person_id=_id(500),
            name="Fiona Facil",
            email="fiona@example.org",
            language=lang,
            timezone="Europe/Berlin",
            convoy_ids=[_id(11), _id(12)],
        ),
        digest=api.FacilitatorDigest(convoys=[busy, quiet]),
        period="2025-W14",
        at=datetime(2025, 3, 31, 6, 0, tzinfo=UTC),
        public_url=PUBLIC_URL,
    )
    assert rendered is not None
    return rendered


# --- writing the gallery ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Written:
    sample: Sample
    lang: str
    html: Path
    text: Path
    shots: tuple[Path, ...]


def write(out: Path, names: Sequence[str] | None = None) -> list[Written]:
    """Write every sample's HTML and text parts (both languages) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for s in (SAMPLES[n] for n in (names or SAMPLES)):
        for lang in LANGUAGES:
            rendered = email(s, lang)
            stem = f"{s.name}.{lang}"
            (out / f"{stem}.html").write_text(rendered.html, encoding="utf-8")
            (out / f"{stem}.txt").write_text(f"Subject: {rendered.subject}\n\n{rendered.text}", encoding="utf-8")
            shots = tuple(out / f"{stem}.{w}.png" for w in WIDTHS)
            written.append(Written(s, lang, out / f"{stem}.html", out / f"{stem}.txt", shots))
    return written


async def screenshot(written: Sequence[Written]) -> None:
    """A full-page PNG of each HTML file at each of ``WIDTHS`` (a phone is a mobile viewport)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
        try:
            for width, shot in zip(WIDTHS, range(len(WIDTHS)), strict=True):
                phone = width < 600
                context = await browser.new_context(
                    viewport={"width": width, "height": 844 if phone else 900},
                    is_mobile=phone,
                    has_touch=phone,
                    device_scale_factor=1,
                )
                page = await context.new_page()
                for w in written:
                    await page.goto(w.html.resolve().as_uri())
                    await page.screenshot(path=str(w.shots[shot]), full_page=True)
                await context.close()
        finally:
            await browser.close()


def index(out: Path, written: Sequence[Written], *, shots: bool) -> Path:
    rows = []
    for w in written:
        rendered_subject = w.html.read_text(encoding="utf-8").split("<title>", 1)[-1].split("</title>", 1)[0]
        cells = [
            f"<td><code>{html.escape(w.sample.name)}</code><br><small>{html.escape(w.sample.kind)}</small></td>",
            f"<td>{w.lang}</td>",
            f"<td>{rendered_subject}</td>",  # already escaped by the template
            f'<td><a href="{w.html.name}">HTML</a> · <a href="{w.text.name}">text</a></td>',
        ]
        if shots:
            cells += [f'<td><a href="{p.name}"><img src="{p.name}" alt="" loading="lazy"></a></td>' for p in w.shots]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    head = "".join(f"<th>{w} px</th>" for w in WIDTHS) if shots else ""
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Convoy emails</title>
<style>body{{font-family:Arial,sans-serif;margin:16px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:6px;vertical-align:top;text-align:left}}
img{{width:160px;max-height:320px;object-fit:cover;object-position:top}}</style></head>
<body><h1>Convoy emails ({len(SAMPLES)} kinds, {" and ".join(LANGUAGES)})</h1>
<p>Rendered by <code>make emails</code> (<code>python -m notifier.gallery</code>) from sample data,
with the footer that <code>send_email</code> adds.</p>
<table><thead><tr><th>email</th><th>lang</th><th>subject</th><th>parts</th>{head}</tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table></body></html>
"""
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m notifier.gallery", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"folder to write into (default {DEFAULT_OUT})")
    parser.add_argument("--no-screenshots", action="store_true", help="HTML and text only, no Chromium")
    parser.add_argument("names", nargs="*", help=f"only these samples (of {', '.join(SAMPLES)})")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in SAMPLES]
    if unknown:
        parser.error(f"unknown samples {unknown}")
    written = write(args.out, args.names)
    if not args.no_screenshots:
        asyncio.run(screenshot(written))
    path = index(args.out, written, shots=not args.no_screenshots)
    print(f"{len(written)} emails ({len(SAMPLES)} kinds in {len(LANGUAGES)} languages): {path}")


if __name__ == "__main__":
    main()
