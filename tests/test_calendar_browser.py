"""The profile's calendar section in Chromium (Playwright, Debian's /usr/bin/chromium), at 390 px and on a
desktop: create the feed, the address and subscribe links shown, the copy button, no serious accessibility
violation (axe-core). Screenshots go to artifacts/screenshots/ (README.md shows copies in docs/screenshots/)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, async_playwright, expect

from services import embedded
from services.runtime.settings import Settings
from tests.browser_checks import load_axe
from tests.conftest import SmtpSink, Stack, eventually
from tests.world import build_world, sign_in

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


@pytest.fixture
def web_port() -> int:
    return embedded.free_port()


@pytest.fixture
def settings(settings: Settings, web_port: int) -> Settings:
    return settings.with_(public_url=f"http://127.0.0.1:{web_port}", client_requests_per_minute=1000)


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


async def test_the_profile_calendar_section_on_a_phone_and_a_desktop(
    site: str, browser: Browser, smtp_sink: SmtpSink
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with httpx.AsyncClient(base_url=site, timeout=20) as client:
        world = await build_world(client, smtp_sink, companies=1)
        person = httpx.AsyncClient(base_url=site, timeout=20)
        try:
            await sign_in(person, smtp_sink, world.reps["a"].email)
            session = person.cookies.get("convoy_session")
        finally:
            await person.aclose()
        assert session
        # A personal API token, so the profile's token table has a row with every column (issue #19).
        r = await client.post(
            "/api/v1/me/tokens", json={"name": "Tabellen-Export", "scope": "read"}, headers=world.reps["a"].auth
        )
        assert r.status_code == 201, r.text
        for name, viewport in (("390", {"width": 390, "height": 844}), ("desktop", {"width": 1280, "height": 900})):
            context = await browser.new_context(viewport=viewport, locale="de-DE")
            await context.add_cookies([{"name": "convoy_session", "value": session, "url": site}])
            page = await context.new_page()
            await page.goto(f"{site}/profile/#calendar")
            section = page.locator("#calendar")
            button = section.get_by_role("button", name="Meine Kalenderadresse erstellen")
            if await button.count() == 0:  # the second viewport: the feed is on, get a new address
                button = section.get_by_role("button", name="Neue Adresse holen")
            await button.click()
            address = page.locator("#cal-url")
            await expect(address).to_be_visible()
            value = await address.input_value()
            assert value.startswith(f"{site}/calendar/cvc_") and value.endswith(".ics")
            r = await client.get(value.removeprefix(site))
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/calendar")
            await expect(section.get_by_role("link", name="Google Kalender")).to_be_visible()
            webcal = await section.get_by_role(
                "link", name="Apple Kalender oder Outlook am Desktop (webcal)"
            ).get_attribute("href")
            assert webcal == "webcal://" + value.removeprefix("http://")
            # Nothing scrolls sideways on a phone.
            assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            await load_axe(page)
            found = await page.evaluate(
                """async () => (await axe.run('#calendar', {runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}))
                     .violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
                     .map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', '))"""
            )
            assert found == [], found
            await section.screenshot(path=str(SHOTS / f"profile-calendar-{name}.png"))
            tokens = page.locator("section.card", has_text="Persönliche API-Tokens")
            await expect(tokens).to_contain_text("Tabellen-Export")
            await expect(tokens).to_contain_text("Nur lesen")
            await tokens.screenshot(path=str(SHOTS / f"profile-tokens-{name}.png"))
            await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site)
            copy = section.get_by_role("button", name="Kopieren")
            await copy.click()
            await expect(section.get_by_role("button", name="Kopiert")).to_be_visible()
            await context.close()
