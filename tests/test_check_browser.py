"""The digitalisation check in a real browser (Playwright driving Debian's /usr/bin/chromium).

An anonymous visitor finds the check from the sign-in page, answers it (on a phone-sized screen),
sees the result and asks to join a convoy, consent first; a facilitator forms a convoy from the
formation pool; the programme report counts it. Screenshots go to artifacts/screenshots/ (prefixed
``check-``) and every page passes the axe-core audit without serious or critical violations.
"""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from services import mailsink
from tests.conftest import ADMIN_TOKEN, Stack, eventually
from tests.test_pages_browser import (  # noqa: F401  (fixtures)
    SHOTS,
    Shots,
    browser,
    maildir_port,
    open_newest_mail,
    person,
    settings,
    sign_in,
    site,
    web_port,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]
GOLDEN = Path(__file__).resolve().parent / "golden" / "check-v1" / "plumber-hamburg.json"


class CheckShots(Shots):
    async def take(self, page: Page, name: str) -> None:
        await super().take(page, f"check-{name}")


async def answer_every_question(page: Page, answers: dict[str, Any]) -> None:
    for question, chosen in answers.items():
        for option in [chosen] if isinstance(chosen, str) else chosen:
            await page.locator(f"#a-{question}-{option}").check()


async def test_check_join_form_and_report_in_a_browser(site: str, browser: Browser, stack: Stack) -> None:  # noqa: F811
    shots = CheckShots()
    plumber = json.loads(GOLDEN.read_text())["answers"]
    async with httpx.AsyncClient(base_url=site) as api:
        r = await api.post(
            "/api/v1/facilitators/",
            json={"name": "Miriam Kessler", "email": "miriam@kompetenzzentrum.example"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        assert r.status_code == 201, r.text
        # Three companies took the check earlier and wait for a convoy on online booking.
        check_id = (await api.post("/api/v1/check/", json=plumber)).json()["id"]
        for company, trade, region in [("Friseur Kamm", "Friseur", "HH"), ("Physio Fit", "Physiotherapie", "SH"),
                                       ("Kfz Rad", "Kfz-Werkstatt", "NI")]:  # fmt: skip
            r = await api.post(
                f"/api/v1/check/{check_id}/join",
                json={
                    "theme": "online_booking",
                    "company": {"name": company, "sector": trade, "region": region},
                    "contact_name": f"Inhaber {company}",
                    "contact_email": f"info@{company.split()[1].lower()}.example",
                    "consent": True,
                },
            )
            assert r.status_code == 202, r.text

    # An anonymous visitor, on a phone, finds the check from the sign-in page.
    visitor_ctx = await browser.new_context(locale="de-DE", viewport={"width": 390, "height": 844})
    visitor = await visitor_ctx.new_page()
    await visitor.goto(f"{site}/sign-in")
    await visitor.get_by_role("link", name="Machen Sie den Digitalisierungscheck").click()
    await expect(visitor.get_by_role("heading", level=1)).to_have_text("Digitalisierungscheck")
    await visitor.get_by_role("button", name="Mein Ergebnis anzeigen").click()  # nothing answered
    await expect(visitor.get_by_role("alert")).to_contain_text("20 Fragen")
    await expect(visitor.locator("#e-cc_website")).to_have_text("Bitte wählen Sie eine Antwort.")
    await shots.take(visitor, "form-errors")
    await visitor.get_by_label("Branche", exact=True).select_option("trades")
    await visitor.get_by_label("Beschäftigte", exact=True).select_option("10-49")
    await visitor.get_by_label("Bundesland", exact=True).select_option("HH")
    await answer_every_question(visitor, plumber["answers"])
    await visitor.get_by_role("button", name="Mein Ergebnis anzeigen").click()

    # The result: a profile per area, the strongest potentials with typical projects; then the join form.
    await expect(visitor.get_by_role("heading", level=1)).to_have_text("Ihr Digitalisierungsprofil")
    potentials = visitor.locator("section", has=visitor.get_by_role("heading", name="Ihre größten Potenziale"))
    await expect(potentials.get_by_role("heading", level=3).first).to_contain_text("Termine und Aufträge")
    await expect(potentials).to_contain_text("Online-Terminbuchung")
    await shots.take(visitor, "result")
    await visitor.get_by_label("Firmenname").fill("Sanitär Brandt GmbH")
    await visitor.get_by_label("Gewerk oder Branche").fill("Sanitär und Heizung")
    await visitor.get_by_label("Ihr Name").fill("Anna Brandt")
    await visitor.get_by_label("E-Mail-Adresse").fill("anna@brandt.example")
    await visitor.get_by_role("button", name="Teilnahme an einem Konvoi anfragen").click()  # no consent yet
    await expect(visitor.locator("#e-consent")).to_contain_text("Bitte stimmen Sie zu")
    await visitor.get_by_label("Ich bin einverstanden").check()
    await visitor.get_by_role("button", name="Teilnahme an einem Konvoi anfragen").click()
    await expect(visitor.get_by_role("status")).to_contain_text("anna@brandt.example")
    await shots.take(visitor, "joined")

    # The facilitator hears of it, and forms a convoy from the suggested group in the pool.
    fac_ctx = await person(browser)
    fac = await fac_ctx.new_page()
    await sign_in(fac, site, "miriam@kompetenzzentrum.example")
    # The email names the theme and links to the pool, never what the visitor typed (issue #19).
    await open_newest_mail(fac, site, "miriam@kompetenzzentrum.example", "Online-Terminbuchung")
    await fac.goto(f"{site}/facilitate")
    await fac.get_by_role("link", name="Formierungspool").click()
    await expect(fac.get_by_role("heading", level=1)).to_have_text("Formierungspool")
    await expect(fac.locator("table")).to_contain_text("Sanitär Brandt GmbH")
    await shots.take(fac, "pool")
    await fac.get_by_role("link", name="Diese Gruppe auswählen").click()
    await expect(fac.get_by_label("Sanitär Brandt GmbH auswählen")).to_be_checked()
    await expect(fac.get_by_label("Thema", exact=True)).to_have_value("Online-Terminbuchung")
    await fac.get_by_label("Name des Konvois").fill("Online-Termine Nord")
    await fac.get_by_label("Startdatum").fill(date.today().isoformat())
    await shots.take(fac, "pool-selected")
    await fac.get_by_role("button", name="Konvoi bilden und einladen").click()
    await expect(fac.get_by_role("status")).to_contain_text("Der Konvoi ist gebildet")
    await expect(fac.get_by_role("heading", name="Sanitär Brandt GmbH")).to_be_visible()
    await shots.take(fac, "formed")
    await open_newest_mail(fac, site, "anna@brandt.example", "Einladung")

    # The programme report counts it, printable, and as CSV.
    await fac.goto(f"{site}/programme")
    await expect(fac.get_by_role("heading", level=1)).to_have_text("Programmbericht")
    row = fac.locator("tr", has_text="Online-Termine Nord")
    await expect(row).to_contain_text("aus dem Pool")
    await expect(row.locator("td").nth(2)).to_have_text("4")
    await expect(fac.locator(".card", has_text="abgeschlossene Checks").locator(".figure")).to_have_text("2")
    await fac.emulate_media(media="print")
    await shots.take(fac, "programme-print")
    await fac.emulate_media(media="screen")
    async with fac.expect_download() as download:
        await fac.get_by_role("link", name="Als CSV herunterladen").click()
    csv = Path(await (await download.value).path()).read_text()  # noqa: ASYNC240  (small, just written)
    assert "Online-Termine Nord" in csv and "@" not in csv

    for ctx in (visitor_ctx, fac_ctx):
        await ctx.close()
    assert shots.violations == [], "\n".join(shots.violations)
    assert (SHOTS / "05-check-pool.png").exists() or any(SHOTS.glob("*-check-pool.png"))


async def test_a_pool_contact_withdraws_by_the_link_in_the_confirmation_on_a_phone(
    site: str,  # noqa: F811
    browser: Browser,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Issue #19: the confirmation's link opens a page that changes nothing until its button is pressed;
    the contact is gone after it. On a 390-px phone, audited with axe-core."""
    shots = CheckShots()
    plumber = json.loads(GOLDEN.read_text())["answers"]
    email = "info@zoegerlich.example"
    async with httpx.AsyncClient(base_url=site) as api:
        check_id = (await api.post("/api/v1/check/", json=plumber)).json()["id"]
        r = await api.post(
            f"/api/v1/check/{check_id}/join",
            json={
                "theme": "online_booking",
                "company": {"name": "Zögerlich Sanitär", "sector": "Sanitär", "region": "HH"},
                "contact_name": "Zora Zögerlich",
                "contact_email": email,
                "consent": True,
            },
        )
        assert r.status_code == 202, r.text

    async def link() -> str:
        for item in mailsink.list_messages(tmp_path / "mail", 100, email):
            found = re.search(r"https?://\S+/check/withdraw/[A-Za-z0-9_.\-]+", item["text"])
            if found:
                return found.group(0)
        return ""

    url = await eventually(link)
    ctx = await browser.new_context(locale="de-DE", viewport={"width": 390, "height": 844})
    try:
        page = await ctx.new_page()
        await page.goto(url)
        await expect(page.get_by_role("heading", level=1)).to_have_text("Anfrage zurückziehen")
        await shots.take(page, "withdraw-confirm")
        await page.get_by_role("button", name="Anfrage zurückziehen").click()
        await expect(page.locator("#withdrawn")).to_contain_text("gelöscht")
        await shots.take(page, "withdraw-done")
        assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    finally:
        await ctx.close()
    assert shots.violations == [], "\n".join(shots.violations)
