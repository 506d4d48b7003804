"""The comment thread in Chromium (Playwright, Debian's /usr/bin/chromium), on a phone (390 px) and a desktop
(1280 px), on the real stack (issue #18): errors inline in German (empty 422, locked 409) with the typed text
kept, a signed-out send (401) kept through the sign-in, the counter updating without a reload, a reply under
its parent, edit ("bearbeitet") and delete of one's own comment (a placeholder keeps the answer's context),
and flag/hide in a small menu per comment. Every state is audited by axe-core; the thread scrolls nothing
sideways at 390 px. Screenshots go to artifacts/screenshots/."""

from __future__ import annotations

import re

import httpx
from playwright.async_api import Browser, BrowserContext, Dialog, Locator, Page, expect

from tests import test_calendar_browser as calendar_browser
from tests.browser_checks import record_csp_violations
from tests.conftest import SmtpSink
from tests.test_pages_browser import Shots
from tests.world import ADMIN, build_world, sign_in

# The same stack, site and Chromium as the calendar's browser test (the API on a known port, cookies set directly).
pytestmark = calendar_browser.pytestmark
web_port = calendar_browser.web_port
settings = calendar_browser.settings
site = calendar_browser.site
browser = calendar_browser.browser
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


async def session_of(site: str, sink: SmtpSink, email: str) -> str:
    async with httpx.AsyncClient(base_url=site, timeout=20) as person:
        await sign_in(person, sink, email)
        session = person.cookies.get("convoy_session")
    assert session
    return session


CSP_REFUSED: list[str] = []
"""What the pages' Content-Security-Policy refused in any page opened by :func:`open_as` (htmx, convoy.js)."""


async def open_as(browser: Browser, site: str, session: str, viewport: dict[str, int]) -> tuple[BrowserContext, Page]:
    context = await browser.new_context(viewport=viewport, locale="de-DE")  # type: ignore[arg-type]
    await context.add_cookies([{"name": "convoy_session", "value": session, "url": site}])
    page = await context.new_page()
    record_csp_violations(page, CSP_REFUSED)
    return context, page


async def fits(thread: Locator) -> None:
    """The report card with its thread scrolls nothing sideways (the rest of the page is other tests' care)."""
    assert await thread.evaluate("e => e.scrollWidth <= e.clientWidth && e.getBoundingClientRect().right <= innerWidth")


async def test_the_comment_thread_on_a_phone_and_a_desktop(site: str, browser: Browser, smtp_sink: SmtpSink) -> None:
    shots = Shots()
    CSP_REFUSED.clear()
    async with httpx.AsyncClient(base_url=site, timeout=20) as client:
        world = await build_world(client, smtp_sink, companies=3)
        r = await client.post(
            f"/api/v1/convoys/{world.convoy_id}/reports",
            json={"done": "Online-Terminbuchung ist live", "mood": 4},
            headers=world.reps["a"].auth,
        )
        assert r.status_code == 201, r.text
        report_id = r.json()["id"]
        facilitator_email = (await client.get("/api/v1/me", headers=world.facilitator)).json()["person"]["email"]
        sessions = {
            "clara": await session_of(site, smtp_sink, world.reps["c"].email),
            "anna": await session_of(site, smtp_sink, world.reps["a"].email),
            "frieda": await session_of(site, smtp_sink, facilitator_email),
        }
        convoy_url = f"{site}/convoys/{world.convoy_id}"
        report_url = f"{site}/reports/{report_id}"

        # Clara, on a phone, in the convoy page's inline thread: an empty comment is refused at the field,
        # a sent one appears and the counter follows without a reload.
        clara_ctx, clara = await open_as(browser, site, sessions["clara"], PHONE)
        response = await clara.goto(convoy_url)
        assert response is not None
        assert "script-src 'self';" in (await response.header_value("content-security-policy") or "")
        card = clara.locator("article.report", has_text="Online-Terminbuchung")
        await card.get_by_role("button", name="0 Kommentare").click()
        await card.get_by_role("button", name="Kommentieren").click()
        await expect(card.locator(f"#err-comment-{report_id}")).to_have_text("Bitte füllen Sie dieses Feld aus.")
        await card.get_by_label("Ihr Kommentar").fill("Glückwunsch! Welches Tol nutzt ihr?")
        await card.get_by_role("button", name="Kommentieren").click()
        await expect(card.locator(".comment")).to_have_count(1)
        await expect(card.get_by_role("button", name="1 Kommentar", exact=True)).to_be_visible()
        await fits(card)
        await shots.take(clara, "comments-phone-first")

        # Anna, on a desktop, answers on the report page: the answer sits under its parent.
        anna_ctx, anna = await open_as(browser, site, sessions["anna"], DESKTOP)
        await anna.goto(report_url)
        question = anna.locator(".comment", has_text="Welches Tol")
        await question.locator("details.reply > summary").click()
        await question.get_by_label("Ihre Antwort").fill("Wir nutzen ein Buchungstool aus der Region.")
        await question.get_by_role("button", name="Antwort senden").click()
        await expect(question.locator(".replies .comment")).to_contain_text("Buchungstool aus der Region")
        await expect(anna.get_by_role("button", name="2 Kommentare", exact=True)).to_be_visible()
        # Not hers: no edit or delete on Clara's comment, a flag in its menu instead.
        own = question.locator(":scope > .comment-actions")
        await expect(own.get_by_text("Bearbeiten")).to_have_count(0)
        await own.locator("details.menu > summary").click()
        await expect(own.get_by_role("button", name="An die Moderation senden")).to_be_visible()
        # The report's own flag sits in the card's menu too, not below the thread.
        await expect(anna.locator("article.report > .actions > details.menu")).to_have_count(1)
        await expect(anna.locator("details.flag")).to_have_count(0)
        await shots.take(anna, "comments-desktop-reply")

        # Clara corrects his typo ("bearbeitet"), then deletes the comment: a placeholder keeps Anna's answer.
        await clara.goto(convoy_url)
        await card.get_by_role("button", name="2 Kommentare").click()
        mine = card.locator(".comment", has_text="Welches Tol").first
        await mine.locator(":scope > .comment-actions details.edit > summary").click()
        await mine.get_by_label("Kommentar ändern").fill("Glückwunsch! Welches Tool nutzt ihr?")
        await mine.get_by_role("button", name="Speichern").click()
        edited = card.locator(".comment", has_text="Welches Tool nutzt")
        await expect(edited.locator(":scope > .muted.small").first).to_contain_text("bearbeitet")
        await fits(card)
        await shots.take(clara, "comments-phone-edited")

        async def confirm(dialog: Dialog) -> None:
            assert dialog.message == "Diesen Kommentar löschen? Das lässt sich nicht rückgängig machen."
            await dialog.accept()

        clara.once("dialog", confirm)
        await edited.locator(":scope > .comment-actions").get_by_role("button", name="Löschen").click()
        await expect(card.locator(".comment.is-deleted")).to_contain_text(
            "Kommentar von der verfassenden Person gelöscht."
        )
        await expect(card.locator(".comment.is-deleted .replies")).to_contain_text("Buchungstool aus der Region")
        await expect(card.get_by_role("button", name="1 Kommentar", exact=True)).to_be_visible()
        await shots.take(clara, "comments-phone-deleted")

        # Frieda, on a phone, hides the answer from the comment's menu (a reason is asked for, inline).
        frieda_ctx, frieda = await open_as(browser, site, sessions["frieda"], PHONE)
        await frieda.goto(report_url)
        answer = frieda.locator(".comment", has_text="Buchungstool aus der Region")
        await answer.locator("details.menu > summary").click()
        await answer.get_by_role("button", name="Kommentar ausblenden").click()
        await expect(answer.locator("details.menu [role=alert]")).to_have_text(
            "Bitte nennen Sie einen Grund: Er wird der Person mitgeteilt."
        )
        await answer.get_by_label("Grund").fill("Werbung für einen Anbieter")
        await answer.get_by_role("button", name="Kommentar ausblenden").click()
        await expect(frieda.locator(".comment.is-hidden")).to_contain_text("Werbung für einen Anbieter")
        await fits(frieda.locator("article.report"))
        await shots.take(frieda, "comments-phone-facilitator-menu")

        # Locked while Clara's page still shows the form: 409, said at the form, her text kept.
        r = await client.put(
            f"/api/v1/reports/{report_id}/comment-lock", json={"reason": "Pause"}, headers=world.facilitator
        )
        assert r.status_code == 200, r.text
        await clara.get_by_label("Ihr Kommentar").fill("Noch eine Frage")
        await clara.get_by_role("button", name="Kommentieren").click()
        await expect(clara.locator(f"#err-comment-{report_id}")).to_have_text(
            "Die Moderation hat die Kommentare zu diesem Bericht gesperrt."
        )
        await expect(clara.get_by_label("Ihr Kommentar")).to_have_value("Noch eine Frage")
        r = await client.delete(f"/api/v1/reports/{report_id}/comment-lock", headers=world.facilitator)
        assert r.status_code == 200, r.text

        # Signed out meanwhile (401): off to sign in, and back on the page the text is in the same form again
        # (static/convoy.js keeps it through the sign-in and reopens the thread).
        await clara_ctx.clear_cookies()
        await clara.get_by_role("button", name="Kommentieren").click()
        await expect(clara).to_have_url(re.compile(r"/sign-in\?next="))
        await shots.take(clara, "comments-phone-signed-out")
        await clara_ctx.add_cookies([{"name": "convoy_session", "value": sessions["clara"], "url": site}])
        await clara.goto(convoy_url)
        await expect(clara.get_by_label("Ihr Kommentar")).to_have_value("Noch eine Frage")
        await clara.get_by_role("button", name="Kommentieren").click()
        await expect(card.locator(".comment", has_text="Noch eine Frage")).to_have_count(1)

        # The API agrees with what the pages showed.
        thread = (await client.get(f"/api/v1/reports/{report_id}/comments", headers=ADMIN)).json()["comments"]
        assert [c["deleted"] for c in thread] == [True, False] and thread[0]["replies"][0]["hidden"] is True
        for ctx in (clara_ctx, anna_ctx, frieda_ctx):
            await ctx.close()
    assert shots.violations == [], "\n".join(shots.violations)
    assert CSP_REFUSED == [], "\n".join(CSP_REFUSED)  # htmx and convoy.js work under the policy
