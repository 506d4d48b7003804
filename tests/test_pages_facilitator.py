"""Issue #18, the facilitator's pages in a real browser (Chromium), on the real stack, desktop and 390-px phone.

One journey: a facilitator creates a convoy (and "back + resubmit" lands on the same convoy), follows the
forming checklist on the manage page and the convoy page, resends one pending invitation and withdraws another
(the old links stop working; both audited), starts the convoy, and closes a round only after a confirmation
page. Then every facilitator page is opened on a 390-px phone: nothing scrolls sideways, the header is one
line, tables are stacked rows, chart labels render at 12 px or more, the charts' figures are there as tables;
axe-core finds no serious WCAG 2.1 AA violation. Screenshots go to artifacts/screenshots/facilitator/.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser_checks import load_axe
from tests.conftest import ADMIN_TOKEN, Stack
from tests.test_pages_browser import (  # noqa: F401 (fixtures)
    browser,
    maildir_port,
    open_newest_mail,
    settings,
    sign_in,
    site,
    web_port,
    write_report,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]
SHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots" / "facilitator"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


async def audit(page: Page, name: str, violations: list[str]) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    width = page.viewport_size["width"] if page.viewport_size else 0
    await page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
    await load_axe(page)
    found = await page.evaluate(
        """async () => (await axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}))
             .violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
             .map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).slice(0, 3).join(', '))"""
    )
    violations += [f"{name} at {width}: {v}" for v in found]


async def fits_a_phone(page: Page, name: str) -> None:
    """No sideways scrolling, a one-line header, stacked tables, chart text of 12 px or more."""
    width = await page.evaluate("() => document.scrollingElement.scrollWidth")
    assert width <= 390, f"{name}: {width} px wide at 390"
    lines = await page.evaluate(
        """() => new Set([...document.querySelector('header.top .bar').children]
                 .map(e => Math.round(e.getBoundingClientRect().top / 8))).size"""
    )
    overlaps = await page.evaluate(
        """() => { const boxes = [...document.querySelectorAll('header.top .bar > *, header.top nav > a')]
                     .filter(e => e.offsetParent !== null && !e.matches('nav'))
                     .map(e => e.getBoundingClientRect()).sort((a, b) => a.left - b.left);
                   return boxes.slice(1).filter((b, i) => b.left < boxes[i].right - 0.5).length; }"""
    )
    assert overlaps == 0, f"{name}: {overlaps} header items overlap"
    header = await page.evaluate("() => document.querySelector('header.top').getBoundingClientRect().height")
    assert lines == 1 and header < 56, f"{name}: the header takes {lines} lines ({header} px)"
    heads = await page.evaluate(
        "() => [...document.querySelectorAll('table.stack thead')].map(t => t.getBoundingClientRect().height)"
    )
    assert all(h <= 1 for h in heads), f"{name}: a table head is still shown on the phone"
    labels = await page.evaluate(
        """() => [...document.querySelectorAll('table.stack td[data-label]')].slice(0, 3)
                 .map(td => getComputedStyle(td, '::before').content)"""
    )
    assert all(label not in ("none", "normal", '""') for label in labels), f"{name}: {labels}"
    smallest = await page.evaluate(
        """() => Math.min(999, ...[...document.querySelectorAll('svg.chart text')].map(t =>
                 parseFloat(getComputedStyle(t).fontSize) * t.closest('svg').getScreenCTM().a))"""
    )
    assert smallest >= 12, f"{name}: chart text renders at {smallest:.1f} px"


async def test_the_facilitator_journey_on_desktop_and_phone(site: str, browser: Browser, stack: Stack) -> None:  # noqa: F811
    violations: list[str] = []
    async with httpx.AsyncClient(base_url=site) as api:
        r = await api.post(
            "/api/v1/facilitators/",
            json={"name": "Miriam Kessler", "email": "miriam@kompetenzzentrum.example"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        assert r.status_code == 201, r.text
    desk = await browser.new_context(locale="de-DE", viewport=DESKTOP)
    fac = await desk.new_page()
    await sign_in(fac, site, "miriam@kompetenzzentrum.example")

    # Create a convoy; "back" and "Konvoi anlegen" again land on the same convoy, no second one.
    await fac.goto(f"{site}/convoys/new")
    await fac.get_by_label("Name", exact=True).fill("Digital im Handwerk Süd")
    sent_key = await fac.locator("input[name=form_key]").input_value()
    await fac.get_by_role("button", name="Konvoi anlegen").click()
    await expect(fac.get_by_role("heading", level=1)).to_contain_text("Digital im Handwerk Süd")
    manage_url = fac.url
    convoy_id = manage_url.split("/")[-2]
    await fac.go_back()
    await expect(fac.get_by_label("Name", exact=True)).to_have_value("Digital im Handwerk Süd")
    await expect(fac.locator("input[name=form_key]")).to_have_value(sent_key)
    await fac.get_by_role("button", name="Konvoi anlegen").click()
    await expect(fac).to_have_url(manage_url)
    async with httpx.AsyncClient(base_url=site, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as api:
        audit_log = (await api.get(f"/api/v1/convoys/{convoy_id}/audit")).json()["entries"]
        assert [e["action"] for e in audit_log].count("convoy.created") == 1
    me = await fac.request.get(f"{site}/api/v1/me")
    assert [c["name"] for c in (await me.json())["convoys"]].count("Digital im Handwerk Süd") == 1

    # The checklist of a forming convoy: nothing done yet; companies and invitations tick their steps.
    checklist = fac.locator("section.checklist")
    await expect(checklist.get_by_role("heading")).to_have_text("Diesen Konvoi starten")
    await expect(checklist.locator("li.done")).to_have_count(0)
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
    await expect(checklist.locator("li[data-step=companies]")).to_have_class("done")
    await expect(checklist.locator("li[data-step=invited]")).to_have_class("done")
    await expect(checklist.locator("li[data-step=accepted]")).to_have_class("open")
    await expect(checklist.locator("li[data-step=schedule]")).to_have_class("open")

    # Pending invitations: resend Anna's (a new link; the old one stops working), withdraw Lena's.
    pending = fac.locator("#invitations-h + p + table tbody tr")
    await expect(pending).to_have_count(2)
    await fac.get_by_role("button", name="Einladung an anna@brandt.example erneut senden").click()
    await expect(fac.get_by_role("status")).to_contain_text("neue Einladung")
    await expect(pending).to_have_count(2)
    await fac.get_by_role("button", name="Einladung an lena@lindner.example zurückziehen").click()
    await expect(fac.get_by_role("status")).to_contain_text("zurückgezogen")
    await expect(pending).to_have_count(1)
    await expect(pending).to_contain_text("anna@brandt.example")
    await audit(fac, "manage-forming", violations)

    anna_ctx = await browser.new_context(locale="de-DE", viewport=PHONE)
    anna = await anna_ctx.new_page()
    await anna.goto(f"{site}/dev/mail?to=anna@brandt.example")
    invitations = anna.get_by_role("link", name="Einladung")
    await expect(invitations).to_have_count(2)
    # Both emails arrive within a second, so the viewer's order is no proof of which is older: open
    # each link (a GET never spends an invitation); exactly one still works, the resent one.
    links = []
    for i in range(2):
        await anna.goto(f"{site}/dev/mail?to=anna@brandt.example")
        await anna.get_by_role("link", name="Einladung").nth(i).click()
        href = await anna.locator("ul.mail-links a", has_text="/invitations/").first.get_attribute("href")
        assert href
        links.append(href)
    working = []
    for href in links:
        await anna.goto(href)
        if await anna.get_by_role("alert").count() == 0:
            working.append(href)
    assert len(working) == 1, working  # the earlier link no longer works
    await open_newest_mail(anna, site, "lena@lindner.example", "Einladung")
    await anna.locator("ul.mail-links a", has_text="/invitations/").first.click()
    await expect(anna.get_by_role("alert")).to_be_visible()  # withdrawn
    await anna.goto(working[0])
    await anna.get_by_label("Ihr Name").fill("Anna Brandt")
    await anna.get_by_role("button", name="Annehmen und beitreten").click()
    await expect(anna.get_by_role("heading", level=1)).to_contain_text("Anna Brandt")

    await fac.goto(f"{site}/convoys/{convoy_id}/audit")
    await expect(fac.locator("table")).to_contain_text("hat eine Einladung erneut verschickt")
    await expect(fac.locator("table")).to_contain_text("hat eine Einladung zurückgezogen.")

    # The checklist on the convoy page too; a start date ticks the schedule; starting the convoy ends it.
    await fac.goto(f"{site}/convoys/{convoy_id}")
    await expect(checklist.locator("li[data-step=accepted]")).to_have_class("open")
    await expect(checklist.locator("li[data-step=accepted]")).to_contain_text("1 von 2")
    await checklist.get_by_role("link", name="Startdatum und Rhythmus festlegen").click()
    await expect(fac).to_have_url(f"{manage_url}#settings-h")
    await fac.get_by_label("Startdatum").fill((date.today() - timedelta(days=14)).isoformat())
    await fac.locator("form[action$='/manage/settings']").get_by_role("button", name="Speichern").click()
    await expect(checklist.locator("li[data-step=schedule]")).to_have_class("done")
    await checklist.get_by_role("button", name="Konvoi jetzt starten").click()
    await expect(fac.get_by_role("heading", level=3, name="Status: aktiv")).to_be_visible()
    await expect(checklist).to_have_count(0)

    # Anna reports, so the charts have something to draw.
    await write_report(anna, f"{site}/convoys/{convoy_id}", "Buchungsseite ist online", "4")

    # Closing a round asks first: cancel changes nothing, a form without the confirmation only asks again.
    async def closed_rounds() -> int:
        answer = await fac.request.get(f"{site}/api/v1/convoys/{convoy_id}/schedule")
        return sum(1 for c in (await answer.json())["cycles"] if c["closed"])

    closed_before = await closed_rounds()
    await fac.goto(f"{site}/convoys/{convoy_id}/schedule")
    await fac.get_by_role("link", name="Runde jetzt schließen (Digest senden)").click()
    await expect(fac.get_by_role("heading", level=1)).to_have_text("Runde jetzt schließen?")
    await audit(fac, "close-confirm", violations)
    await fac.get_by_role("link", name="Abbrechen").click()
    await expect(fac).to_have_url(f"{site}/convoys/{convoy_id}/schedule")
    await expect(fac.get_by_role("status")).to_have_count(0)
    csrf = await fac.locator("input[name=_csrf]").first.get_attribute("value")
    unconfirmed = await fac.request.post(
        f"{site}/convoys/{convoy_id}/schedule/close-now", form={"_csrf": csrf or ""}, max_redirects=0
    )
    assert unconfirmed.status == 303
    assert unconfirmed.headers["location"] == f"/convoys/{convoy_id}/schedule/close-now"
    assert await closed_rounds() == closed_before  # neither the cancel nor the unconfirmed form closed it
    await fac.get_by_role("link", name="Runde jetzt schließen (Digest senden)").click()
    await fac.get_by_role("button", name="Ja, Runde jetzt schließen").click()
    await expect(fac.get_by_role("status")).to_contain_text("Digest")
    await expect(fac).to_have_url(f"{site}/convoys/{convoy_id}/schedule?done=closed")
    assert await closed_rounds() == closed_before + 1
    await fac.get_by_role("link", name="Runde jetzt öffnen (Aufforderungen senden)").click()
    await expect(fac.get_by_role("heading", level=1)).to_have_text("Runde jetzt öffnen?")
    await expect(fac.get_by_role("button", name="Ja, Runde jetzt öffnen")).to_be_visible()

    # The charts: axes, values, legends, and their figures as a table.
    await fac.goto(f"{site}/convoys/{convoy_id}")
    progress = fac.locator("svg.chart").first
    await expect(progress.locator("text.value")).to_have_text(["0 %", "0 %"])
    await expect(progress.locator("text", has_text="100 %")).to_have_count(1)  # the axis
    await expect(fac.locator("figure.chart figcaption.legend")).to_have_count(3)
    data = fac.locator("details.chart-data")
    await expect(data.locator("table")).not_to_be_visible()
    await data.locator("summary").click()
    await expect(data.locator("tbody tr").last).to_contain_text("50 %")  # one of two companies reported
    await expect(data.locator("tbody tr").last).to_contain_text("4,0")
    await expect(fac.locator("#per-company-caption")).to_be_visible()
    await audit(fac, "convoy-charts", violations)
    await fac.goto(f"{site}/facilitate")
    spark = fac.locator("svg.spark")
    await expect(spark).to_have_count(1)
    await expect(spark.locator("text.value")).to_have_text(["4,0"])
    await fac.locator("details.chart-data summary").click()
    await expect(fac.locator("details.chart-data table")).to_contain_text("Digital im Handwerk Süd")
    await audit(fac, "facilitate", violations)

    # Every facilitator page on a 390-px phone.
    phone_ctx = await browser.new_context(locale="de-DE", viewport=PHONE)
    await phone_ctx.add_cookies(await desk.cookies())
    phone = await phone_ctx.new_page()
    pages = {
        "facilitate": "/facilitate",
        "convoy": f"/convoys/{convoy_id}",
        "manage": f"/convoys/{convoy_id}/manage",
        "schedule": f"/convoys/{convoy_id}/schedule",
        "confirm": f"/convoys/{convoy_id}/schedule/close-now",
        "audit": f"/convoys/{convoy_id}/audit",
        "flags": f"/convoys/{convoy_id}/flags",
        "pool": "/pool",
        "programme": "/programme",
        "new": "/convoys/new",
    }
    for name, path in pages.items():
        await phone.goto(site + path)
        await expect(phone.get_by_role("heading", level=1)).to_be_visible()
        await fits_a_phone(phone, name)
        if name in ("facilitate", "convoy", "manage", "schedule", "programme"):
            await audit(phone, name, violations)
    # a stacked row reads as label and value
    await phone.goto(f"{site}/convoys/{convoy_id}/schedule")
    first = phone.locator("table.stack tbody tr").first.locator("td").first
    assert "Runde" in await first.evaluate("td => getComputedStyle(td, '::before').content")
    await phone.goto(f"{site}/convoys/{convoy_id}")
    await phone.locator("details.chart-data summary").click()
    await fits_a_phone(phone, "convoy with the chart table open")

    # English words are longer here and there: the header still takes one line.
    await phone_ctx.add_cookies([{"name": "convoy_lang", "value": "en", "url": site}])
    for path in ("/facilitate", f"/convoys/{convoy_id}/manage"):
        await phone.goto(site + path)
        await expect(phone.locator("html")).to_have_attribute("lang", "en")
        await fits_a_phone(phone, f"{path} in English")

    for ctx in (desk, anna_ctx, phone_ctx):
        await ctx.close()
    assert violations == [], "\n".join(violations)
