"""Every email reads well on a phone, and every body says why it came and how to stop it.

The layout test renders each email kind of the gallery (notifier.gallery, ``make emails``) in
Chromium at phone widths; the footer test reads what the notifier really sent through SMTP.
"""

from __future__ import annotations

import asyncio
import html
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from markupsafe import escape
from playwright.async_api import Browser, async_playwright

from notifier import gallery, render
from schemas import events as ev
from tests.conftest import SmtpSink, Stack, html_of, text_of
from tests.test_cycle_mail import DUE, publish
from tests.test_pages import signed_in
from tests.test_reports import post_report, schedule
from tests.world import build_world

SETTINGS = "http://convoy.test/profile/#notifications"
CASES = [(name, lang) for name in gallery.SAMPLES for lang in gallery.LANGUAGES]


# --- the samples alone ---------------------------------------------------------------------------------
def test_the_gallery_has_every_kind_of_email() -> None:
    names = set(gallery.SAMPLES)
    assert {f"message-{t}" for t in render.MESSAGE_TEMPLATES} <= names
    assert {"report", "prompt", "nudge", "digest", "facilitator_digest"} <= names
    for name, lang in CASES:
        rendered = gallery.email(gallery.SAMPLES[name], lang)
        assert rendered.lang == lang, name
        assert f'<html lang="{lang}">' in rendered.html, name
        assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in rendered.html, name
        # no fixed layout widths: width attributes in percent, pixel widths only for small marks (mood bars)
        assert not re.search(r'\swidth="\d+"', rendered.html), name
        assert not re.search(r"(?<![-\w])width:\s*\d{3,}px", rendered.html), name
        assert render.why(gallery.SAMPLES[name].kind, lang) in rendered.text, name
        assert render.FOOTER_MARK not in rendered.html, name  # replaced by the footer


def test_the_report_email_renders_markdown_and_flattens_it_in_the_text_part() -> None:
    for lang in gallery.LANGUAGES:
        rendered = gallery.email(gallery.SAMPLES["report"], lang)
        assert "**" not in rendered.html and "**" not in rendered.text
        assert "<strong>live</strong>" in rendered.html and "<li>" in rendered.html
        assert "Die Online-Buchungsseite ist live" in rendered.text
        report_link = f"{gallery.PUBLIC_URL}/reports/{gallery.sample_report().id}"
        assert f'href="{report_link}"' in rendered.html and f'href="{report_link}#help"' in rendered.html
        assert f"{report_link}#help" in rendered.text
    de = gallery.email(gallery.SAMPLES["report"], "de")
    assert "Online-Terminbuchung freigeschaltet: erledigt" in de.text
    assert "Kalender-Synchronisation: in Arbeit" in de.text and "Stimmung: 4/5" in de.text
    assert "Ich kann helfen" in de.html and "alle Mitglieder des Konvois sehen" in de.text
    en = gallery.email(gallery.SAMPLES["report"], "en")
    assert "I can help" in en.html and "every member of the convoy sees it" in en.text
    assert "Kalender-Synchronisation: in progress" in en.text and "Mood: 4/5" in en.text


def test_the_gallery_writes_html_text_and_an_index(tmp_path: Path) -> None:
    written = gallery.write(tmp_path, ["report", "message-sign_in"])
    page = gallery.index(tmp_path, written, shots=False).read_text(encoding="utf-8")
    for w in written:
        assert w.html.exists() and w.text.exists()
        assert f'href="{w.html.name}"' in page
    assert len(written) == 2 * len(gallery.LANGUAGES)


# --- in a browser --------------------------------------------------------------------------------------
@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not await asyncio.to_thread(Path(gallery.CHROMIUM).exists):
        pytest.fail(f"{gallery.CHROMIUM} is missing: `make test` installs Debian's chromium with apt-get")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=gallery.CHROMIUM, args=list(gallery.CHROMIUM_ARGS))
        yield b
        await b.close()


@pytest.mark.browser
@pytest.mark.timeout(300)
async def test_no_email_scrolls_sideways_on_a_phone(browser: Browser) -> None:
    too_wide = []
    for width in (390, 320):
        context = await browser.new_context(
            viewport={"width": width, "height": 844}, is_mobile=True, has_touch=True, device_scale_factor=1
        )
        page = await context.new_page()
        for name, lang in CASES:
            await page.set_content(gallery.email(gallery.SAMPLES[name], lang).html)
            scroll = await page.evaluate("document.scrollingElement.scrollWidth")
            if scroll > width:
                too_wide.append(f"{name}.{lang} at {width} px: {scroll} px wide")
            if width == 390 and name == "report":
                text = await page.evaluate("document.body.innerText")
                assert "**" not in text and "live" in text
        await context.close()
    assert too_wide == []
    # The check can fail: the old fixed 600-px table inside padding is wider than a phone.
    context = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = await context.new_page()
    await page.set_content(
        '<!DOCTYPE html><html><head><meta name="viewport" content="width=device-width, initial-scale=1"></head>'
        '<body><table width="100%"><tr><td style="padding:24px"><table width="600"><tr><td>x</td></tr></table>'
        "</td></tr></table></body></html>"
    )
    assert await page.evaluate("document.scrollingElement.scrollWidth") > 390
    await context.close()


# --- what the notifier sends ------------------------------------------------------------------------
def assert_footer(message: EmailMessage, kind: str, lang: str) -> None:
    """The footer in both parts: why (in the recipient's language), and for notifications the settings
    link and the one-click unsubscribe URL of the List-Unsubscribe header."""
    text, markup = text_of(message), html_of(message)
    subject = message["Subject"]
    footer = text.rsplit("\n-- \n", 1)[-1]
    assert render.why(kind, lang) in " ".join(footer.split()), (subject, footer)
    assert str(escape(render.why(kind, lang))) in " ".join(markup.split()), subject
    if kind == "message":
        assert message["List-Unsubscribe"] is None
        assert "/unsubscribe/" not in text and "/unsubscribe/" not in markup, subject
        return
    unsubscribe = str(message["List-Unsubscribe"]).strip("<>")
    assert unsubscribe.startswith("http://convoy.test/unsubscribe/"), subject
    assert SETTINGS in footer and unsubscribe in footer, (subject, footer)
    assert f'href="{html.escape(SETTINGS)}"' in markup and f'href="{html.escape(unsubscribe)}"' in markup, subject
    assert markup.index(f'href="{html.escape(unsubscribe)}"') > markup.index("</h1>"), subject  # below the content


async def test_every_email_body_carries_the_footer(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    world = await build_world(client, smtp_sink, companies=2, lang_b="en")
    anna, ben = world.reps["a"], world.reps["b"]
    # invitations (message: keys) arrived while the world was built: the why line only
    invitation = await smtp_sink.wait_for_subject(ben.email, "Invitation")
    assert_footer(invitation, "message", "en")
    assert_footer(await smtp_sink.wait_for_subject(anna.email, "Einladung"), "message", "de")

    await schedule(client, world)
    r = await post_report(
        client, world, "a", done="Seite ist **live**", help_wanted=True, help_topic="Kalender-Sync", mood=4
    )
    assert r.status_code == 201, r.text
    report = r.json()
    notice = await smtp_sink.wait_for_subject(ben.email, "new progress report")
    assert_footer(notice, "report", "en")
    text, markup = text_of(notice), html_of(notice)
    assert "**" not in text and "**" not in markup and "<strong>live</strong>" in markup
    assert f"http://convoy.test/reports/{report['id']}#help" in text  # "I can help"
    assert "every member of the convoy sees it" in text  # replies are on in the test stack

    r = await client.post(f"/api/v1/reports/{report['id']}/help-offers", json={"message": "Ruf an"}, headers=ben.auth)
    assert r.status_code in (200, 201), r.text
    assert_footer(await smtp_sink.wait_for_subject(anna.email, "bietet Hilfe an"), "help_offered", "de")

    convoy_id, cycle = uuid.UUID(world.convoy_id), report["cycle_index"]
    await publish(
        stack,
        ev.CycleOpened(
            convoy_id=convoy_id,
            cycle_index=cycle + 1,
            opens_at=datetime(2025, 3, 28, 8, 0, tzinfo=UTC),
            due_at=DUE,
            closes_at=datetime(2025, 4, 4, 7, 0, tzinfo=UTC),
            absences=[],
        ),
    )
    assert_footer(await smtp_sink.wait_for_subject(ben.email, "Check-in"), "prompt", "en")
    await publish(
        stack,
        ev.CycleClosed(
            convoy_id=convoy_id,
            cycle_index=cycle,
            opens_at=datetime(2025, 3, 24, 8, 0, tzinfo=UTC),
            closes_at=datetime(2025, 3, 31, 7, 0, tzinfo=UTC),
            absences=[],
        ),
    )
    assert_footer(await smtp_sink.wait_for_subject(anna.email, "Konvoi-Digest"), "digest", "de")
    assert_footer(await smtp_sink.wait_for_subject(ben.email, "Convoy digest"), "digest", "en")


async def test_i_can_help_from_the_report_email_reaches_the_author(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, browsers: list[httpx.AsyncClient]
) -> None:
    """The report email's "I can help" opens the report page at #help; its form tells the author."""
    world = await build_world(client, smtp_sink, companies=2, lang_b="en")
    anna, ben = world.reps["a"], world.reps["b"]
    r = await post_report(client, world, "a", help_wanted=True, help_topic="Kalender-Sync")
    assert r.status_code == 201, r.text
    report_id = r.json()["id"]
    notice = await smtp_sink.wait_for_subject(ben.email, "new progress report")
    help_link = f"http://convoy.test/reports/{report_id}#help"
    assert f'href="{help_link}"' in html_of(notice)

    page_of_ben, csrf = await signed_in(client, smtp_sink, browsers, ben.email)
    page = await page_of_ben.get(f"/reports/{report_id}")
    assert page.status_code == 200 and 'id="help"' in page.text and f'action="/reports/{report_id}/help"' in page.text
    page_of_anna, anna_csrf = await signed_in(client, smtp_sink, browsers, anna.email)
    own = await page_of_anna.get(f"/reports/{report_id}")
    assert own.status_code == 200 and 'id="help"' not in own.text  # nobody offers help to themselves

    r = await page_of_ben.post(f"/reports/{report_id}/help", data={"message": "Ruf mich an: 040 123", "_csrf": csrf})
    assert r.status_code == 303 and r.headers["location"] == f"/reports/{report_id}?offered=1#help"
    offer = await smtp_sink.wait_for_subject(anna.email, "bietet Hilfe an")
    assert "Ruf mich an: 040 123" in text_of(offer)
    r = await page_of_anna.post(f"/reports/{report_id}/help", data={"message": "selbst", "_csrf": anna_csrf})
    assert r.status_code >= 400 and 'role="alert"' in r.text  # the service refuses the author's own offer
