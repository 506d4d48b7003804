"""The whole journey in a real browser (Playwright driving Debian's /usr/bin/chromium).

A facilitator signs in through the mail viewer, creates a convoy with two companies and invites
their representatives; each accepts from the mail viewer and posts a report; a peer comments and
gives kudos; the facilitator closes the cycle and the digest appears in the mail viewer; the
facilitator hides a comment and it disappears for members. Screenshots of every page go to
artifacts/screenshots/ (kept by CI as artifacts; README.md shows one of them).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from services import embedded, mailsink
from services.runtime.settings import Settings
from tests.browser_checks import load_axe
from tests.conftest import ADMIN_TOKEN, Stack, eventually

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


# --- the stack, with a Maildir mail sink and the API on a known port --------------------------------
@pytest.fixture
async def maildir_port(tmp_path: Path) -> AsyncIterator[int]:
    port = embedded.free_port()
    stop = asyncio.Event()
    task = asyncio.create_task(mailsink.serve("127.0.0.1", port, tmp_path / "mail", stop))
    await eventually(lambda: _listening(port))
    yield port
    stop.set()
    await task


async def _listening(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    return True


@pytest.fixture
def web_port() -> int:
    return embedded.free_port()


@pytest.fixture
def settings(settings: Settings, maildir_port: int, web_port: int, tmp_path: Path) -> Settings:
    return settings.with_(
        smtp_url=f"smtp://127.0.0.1:{maildir_port}",
        dev_mail_viewer=True,
        data_dir=str(tmp_path),
        public_url=f"http://127.0.0.1:{web_port}",
        client_requests_per_minute=1000,
    )


@pytest.fixture
async def site(stack: Stack, web_port: int) -> AsyncIterator[str]:
    import uvicorn

    from convoy_api.app import create_app

    server = uvicorn.Server(
        uvicorn.Config(create_app(stack.settings), host="127.0.0.1", port=web_port, log_config=None, lifespan="on")
    )
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    await eventually(lambda: _started(server))
    yield f"http://127.0.0.1:{web_port}"
    server.should_exit = True
    await asyncio.wait_for(task, 15)


async def _started(server: Any) -> bool:
    return bool(server.started)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not await asyncio.to_thread(Path(CHROMIUM).exists):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium with apt-get")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        await b.close()


# --- helpers ------------------------------------------------------------------------------------------
class Shots:
    """A screenshot of every page, and an accessibility audit of it (axe-core, WCAG 2.1 A and AA)."""

    def __init__(self) -> None:
        self.n = 0
        self.violations: list[str] = []
        SHOTS.mkdir(parents=True, exist_ok=True)

    async def take(self, page: Page, name: str) -> None:
        self.n += 1
        await page.screenshot(path=str(SHOTS / f"{self.n:02d}-{name}.png"), full_page=True)
        await load_axe(page)
        found = await page.evaluate(
            """async () => (await axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}))
                 .violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
                 .map(v => v.id + ': ' + v.help + ' — '
                      + v.nodes.map(n => n.target.join(' ')).slice(0, 3).join(', '))"""
        )
        self.violations += [f"{name}: {v}" for v in found]


async def person(browser: Browser, lang: str = "de-DE") -> BrowserContext:
    return await browser.new_context(locale=lang, viewport={"width": 1000, "height": 900})


async def open_newest_mail(page: Page, site: str, to: str, subject_part: str) -> None:
    """Open the mail viewer filtered to ``to`` and wait for a message whose subject has ``subject_part``."""
    for _ in range(150):
        await page.goto(f"{site}/dev/mail?to={to}")
        link = page.get_by_role("link", name=subject_part).first
        if await link.count():
            await link.click()
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"no mail to {to} with {subject_part!r}")


async def sign_in(page: Page, site: str, email: str, shots: Shots | None = None) -> None:
    await page.goto(f"{site}/")
    await expect(page).to_have_url(f"{site}/sign-in")
    if shots:  # by keyboard only: the skip link comes first, then the form is reachable and Enter sends it
        await page.keyboard.press("Tab")
        assert await page.evaluate("() => document.activeElement.textContent") == "Zum Inhalt springen"
        await page.get_by_label("E-Mail-Adresse").focus()
        await page.keyboard.type(email)
        await page.keyboard.press("Enter")
    else:
        await page.get_by_label("E-Mail-Adresse").fill(email)
        await page.get_by_role("button", name="Anmeldelink senden").click()
    await expect(page.get_by_role("status")).to_contain_text(email)
    if shots:
        await shots.take(page, "sign-in-sent")
    await page.get_by_role("link", name="Mail-Ansicht öffnen").click()
    await open_newest_mail(page, site, email, "Anmeld")
    if shots:
        await shots.take(page, "mail-viewer-sign-in")
    await page.locator("ul.mail-links a", has_text="/sign-in/").first.click()
    await page.get_by_role("button", name="Jetzt anmelden").click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text("Hallo")


async def accept_invitation(page: Page, site: str, email: str, name: str) -> None:
    await open_newest_mail(page, site, email, "Einladung")
    await page.locator("ul.mail-links a", has_text="/invitations/").first.click()
    await page.get_by_label("Ihr Name").fill(name)
    await page.get_by_role("button", name="Annehmen und beitreten").click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text(name)


async def write_report(page: Page, convoy_url: str, done: str, mood: str) -> None:
    await page.goto(convoy_url)
    await page.get_by_role("link", name="Bericht schreiben").first.click()
    await page.get_by_label("Was haben Sie geschafft?").fill(done)
    await page.get_by_role("button", name="Vorschau").click()
    await expect(page.locator("#preview")).to_contain_text(done.replace("**", ""))
    await page.get_by_label(mood, exact=True).check()
    await page.get_by_role("button", name="Bericht senden").click()
    await expect(page.get_by_role("status")).to_contain_text("gespeichert")


# --- the journey ----------------------------------------------------------------------------------------
async def test_the_whole_journey_in_a_browser(site: str, browser: Browser, stack: Stack) -> None:
    shots = Shots()
    async with httpx.AsyncClient(base_url=site) as api:
        r = await api.post(
            "/api/v1/facilitators/",
            json={"name": "Miriam Kessler", "email": "miriam@kompetenzzentrum.example"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        assert r.status_code == 201, r.text

    # The facilitator signs in through the mail viewer and creates a convoy.
    fac_ctx = await person(browser)
    fac = await fac_ctx.new_page()
    await sign_in(fac, site, "miriam@kompetenzzentrum.example", shots)
    await shots.take(fac, "dashboard-empty")
    await fac.get_by_role("link", name="Konvoi anlegen").first.click()
    await fac.get_by_role("button", name="Konvoi anlegen").click()  # empty name: the error sits at the field
    await expect(fac.locator("#e-name")).to_have_text("Bitte füllen Sie dieses Feld aus.")
    await fac.get_by_label("Name", exact=True).fill("Digital im Handwerk <Nord>")
    await fac.get_by_label("Thema").fill("Online-Terminbuchung")
    await fac.get_by_label("Startdatum").fill((date.today() - timedelta(days=14)).isoformat())
    await shots.take(fac, "convoy-new")
    await fac.get_by_role("button", name="Konvoi anlegen").click()
    await expect(fac.get_by_role("heading", level=1)).to_contain_text("Digital im Handwerk <Nord>")
    manage_url = fac.url
    convoy_url = manage_url.removesuffix("/manage")

    for company in ("Sanitär Brandt GmbH", "Modehaus Lindner"):
        await fac.get_by_label("Firmenname").fill(company)
        await fac.get_by_role("button", name="Firma hinzufügen").click()
        await expect(fac.get_by_role("heading", name=company)).to_be_visible()
    reps = {"Sanitär Brandt GmbH": "anna@brandt.example", "Modehaus Lindner": "lena@lindner.example"}
    for company, email in reps.items():
        card = fac.locator(".company", has=fac.get_by_role("heading", name=company))
        await card.get_by_label("Per E-Mail einladen").fill(email)
        await card.get_by_role("button", name="Einladung senden").click()
        await expect(fac.get_by_role("status")).to_contain_text("Einladung")
    await fac.get_by_label("Ändern zu").select_option("active")
    await fac.get_by_role("button", name="Status ändern").click()
    await expect(fac.get_by_role("status")).to_be_visible()
    await shots.take(fac, "convoy-manage")

    # Each representative accepts from the mail viewer and reports.
    anna_ctx, lena_ctx = await person(browser), await person(browser)
    anna, lena = await anna_ctx.new_page(), await lena_ctx.new_page()
    await accept_invitation(anna, site, reps["Sanitär Brandt GmbH"], "Anna Brandt")
    await shots.take(anna, "dashboard-representative")
    await accept_invitation(lena, site, reps["Modehaus Lindner"], "Lena Lindner")
    await write_report(anna, convoy_url, "**Buchungsseite** ist online <script>alert(1)</script>", "4")
    await shots.take(anna, "convoy-after-report")
    await write_report(lena, convoy_url, "Produktfotos für den Shop gemacht", "3")

    # A peer comments and gives kudos, inline (htmx).
    await lena.goto(convoy_url)
    anna_report = lena.locator("article.report", has_text="Buchungsseite")
    await anna_report.get_by_role("button", name="Kudos geben").click()
    await expect(anna_report.get_by_role("button", name="Kudos · 1")).to_be_visible()
    await anna_report.get_by_role("button", name="0 Kommentare").click()
    await anna_report.get_by_label("Ihr Kommentar").fill("Glückwunsch! Welches Tool nutzt ihr?")
    await anna_report.get_by_role("button", name="Kommentieren").click()
    await expect(anna_report.locator(".comment")).to_contain_text("Welches Tool")
    await lena.get_by_label("Ihr Kommentar").first.fill("Unpassender Kommentar mit Werbung")
    await lena.get_by_role("button", name="Kommentieren").first.click()
    await expect(anna_report.locator(".comment")).to_have_count(2)
    await shots.take(lena, "timeline-comments")
    assert await anna.evaluate("() => window.alerted === undefined")  # the <script> was never run
    await anna.goto(convoy_url)
    await expect(anna.locator("article.report", has_text="Buchungsseite")).to_contain_text("<script>alert(1)</script>")
    await shots.take(anna, "progress-board")

    # The facilitator closes the cycle; the digest appears in the mail viewer.
    await fac.goto(f"{convoy_url}/schedule")
    await shots.take(fac, "schedule")
    await fac.get_by_role("link", name="Runde jetzt schließen").click()  # a confirmation page asks first
    await fac.get_by_role("button", name="Ja, Runde jetzt schließen").click()
    await expect(fac.get_by_role("status")).to_contain_text("Digest")
    await open_newest_mail(anna, site, reps["Sanitär Brandt GmbH"], "Digest")
    await expect(anna.locator("pre")).to_contain_text("Produktfotos")
    await shots.take(anna, "mail-digest")

    # The facilitator hides a comment: gone for members, marked for the facilitator, in the audit log.
    await fac.goto(convoy_url)
    report = fac.locator("article.report", has_text="Buchungsseite")
    await report.get_by_role("button", name="2 Kommentare").click()
    ad = report.locator(".comment", has_text="Werbung")
    await ad.locator("details.menu > summary").click()  # hide sits in the comment's small menu
    await ad.get_by_label("Grund").fill("Werbung ist hier nicht erlaubt")
    await ad.get_by_role("button", name="Kommentar ausblenden").click()
    await expect(fac.locator(".comment", has_text="Werbung").locator(".badge.hidden")).to_be_visible()
    await shots.take(fac, "moderation")
    await anna.goto(convoy_url)
    mine = anna.locator("article.report", has_text="Buchungsseite")
    await mine.get_by_role("button", name="1 Kommentar").click()
    await expect(mine.locator(".comment")).to_have_count(1)
    await expect(mine).not_to_contain_text("Werbung")
    await fac.goto(f"{convoy_url}/audit")
    await expect(fac.locator("table")).to_contain_text("Werbung ist hier nicht erlaubt")
    await shots.take(fac, "audit-log")

    # English on request, and the profile page.
    await anna.goto(f"{site}/profile")
    await anna.get_by_role("button", name="English").click()
    await expect(anna.get_by_role("heading", level=1)).to_have_text("Profile")
    await shots.take(anna, "profile-english")
    for ctx in (fac_ctx, anna_ctx, lena_ctx):
        await ctx.close()
    assert shots.violations == [], "\n".join(shots.violations)
    shutil.copy(SHOTS / "07-convoy-after-report.png", SHOTS / "readme.png")
