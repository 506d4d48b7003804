"""The representative's weekly flow in a real browser (issue #18), on the real stack, phone and desktop.

Anna reports on a phone (390 px), Ben on a desktop (1280 px):

- a new member's dashboard shows the first step (describe your project) and leads to the project page;
- "Bericht schreiben" in the prompt email, opened signed out, lands on the report form after the
  emailed sign-in link (``next`` travels through the sign-in email); an invitation keeps ``next`` too;
- the report form reviews last round's commitments (kept / partly / not yet + why), takes new ones and
  a private note to the facilitators; a reload restores an unsent draft, also while editing;
- once sent, the dashboard and the convoy page say "Gesendet ✓ · bearbeitbar bis …"; after the close
  "the round is closed — your report went out in the digest"; a report after the close is late and
  editable;
- htmx errors appear next to the element in German (an empty comment, a refused kudos), and a comment
  typed when the session had ended survives the sign-in and is back in the form on the same page.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import msgspec
import pytest
from playwright.async_api import Browser, BrowserContext, Page, ViewportSize, expect

from schemas import api
from schemas.milestones import Milestones
from schemas.values import Cadence
from services import mailsink
from services.runtime import claims, cycles
from services.runtime.rpc import RpcClient
from tests import test_pages_browser as journey
from tests.conftest import ADMIN_TOKEN, Stack, eventually

# The browser suite's fixtures: the Maildir mail sink behind the mail viewer, the site on a known port, Chromium.
maildir_port, web_port, settings, site, browser = (
    journey.maildir_port,
    journey.web_port,
    journey.settings,
    journey.site,
    journey.browser,
)
Shots = journey.Shots

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PHONE = ViewportSize(width=390, height=844)
DESKTOP = ViewportSize(width=1280, height=900)


async def token(folder: Path, to: str, prefix: str, seen: set[str] | None = None) -> str:
    """The newest one-time token (cvl_…, cvi_…) in the mail to ``to``, once one not in ``seen`` arrived."""

    async def fresh() -> str:
        found = mailsink.newest_token(folder, to, prefix)
        return found if found and found not in (seen or set()) else ""

    return await eventually(fresh)


def link_in(folder: Path, to: str, pattern: str) -> str:
    for item in reversed(mailsink.list_messages(folder, 10_000, to)):
        found = re.findall(pattern, item["text"])
        if found:
            return str(found[-1])
    raise AssertionError(f"no link like {pattern!r} in the mail to {to}")


async def sign_in_by_mail(page: Page, folder: Path, email: str) -> None:
    """On /sign-in?next=…: ask for the link, open it from the mail, press the button."""
    seen = {t for t in [mailsink.newest_token(folder, email, "cvl_")] if t}
    await page.get_by_label("E-Mail-Adresse").fill(email)
    await page.get_by_role("button", name="Anmeldelink senden").click()
    await expect(page.get_by_role("status")).to_contain_text(email)
    fresh = await token(folder, email, "cvl_", seen)
    link = link_in(folder, email, rf"http://\S+/sign-in/{fresh}\S*")
    await page.goto(link)
    await page.get_by_role("button", name="Jetzt anmelden").click()


async def narrow_enough(page: Page) -> None:
    width = await page.evaluate("() => document.scrollingElement.scrollWidth")
    limit = (page.viewport_size or PHONE)["width"]
    wide = await page.evaluate(
        """(limit) => [...document.querySelectorAll('main *')]
             .filter(e => e.getBoundingClientRect().right > limit + 1)
             .slice(0, 5).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))
        """,
        limit,
    )
    assert width <= limit, f"{page.url} is {width} px wide: {wide}"


async def fits(page: Page, selector: str) -> None:
    """What this flow added fits the phone (the board table below is another part's: issue #18, facil/lang)."""
    box = await page.locator(selector).first.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= (page.viewport_size or PHONE)["width"]


async def test_the_representatives_weekly_flow(site: str, browser: Browser, stack: Stack, tmp_path: Path) -> None:
    folder = tmp_path / "mail"
    shots = Shots()
    api_ = httpx.AsyncClient(base_url=site, timeout=20)
    contexts: list[BrowserContext] = []
    try:
        # --- a convoy that started three weeks ago, two companies (over the API) --------------------
        r = await api_.post(
            "/api/v1/facilitators/", json={"name": "Frieda Berater", "email": "frieda@zentrum.example"}, headers=ADMIN
        )
        assert r.status_code == 201, r.text
        r = await api_.post("/api/v1/auth/sign-in", json={"email": "frieda@zentrum.example"})
        assert r.status_code == 202, r.text
        r = await api_.post(
            "/api/v1/auth/sign-in/complete", json={"token": await token(folder, "frieda@zentrum.example", "cvl_")}
        )
        fac = {"Authorization": f"Bearer {r.json()['access_token']}"}
        api_.cookies.clear()
        start = date.today() - timedelta(days=21)
        r = await api_.post(
            "/api/v1/convoys", json={"name": "Handwerk digital", "start_date": start.isoformat()}, headers=fac
        )
        assert r.status_code == 201, r.text
        convoy = r.json()
        cid = convoy["id"]
        companies = {}
        for name in ("Sanitär Brandt", "Modehaus Lindner"):
            r = await api_.post(f"/api/v1/convoys/{cid}/companies", json={"name": name}, headers=fac)
            assert r.status_code == 201, r.text
            companies[name] = r.json()["id"]
        r = await api_.post(f"/api/v1/convoys/{cid}/status", json={"status": "active"}, headers=fac)
        assert r.status_code == 200, r.text

        anna_mail, ben_mail = "anna@brandt.example", "ben@lindner.example"
        for name, email in (("Sanitär Brandt", anna_mail), ("Modehaus Lindner", ben_mail)):
            r = await api_.post(
                f"/api/v1/convoys/{cid}/companies/{companies[name]}/invitations",
                json={"email": email, "name": email.split("@")[0].title(), "language": "de"},
                headers=fac,
            )
            assert r.status_code == 201, r.text

        # --- Anna (phone) accepts: her dashboard shows the first step -------------------------------
        anna_ctx = await browser.new_context(locale="de-DE", viewport=PHONE)
        ben_ctx = await browser.new_context(locale="de-DE", viewport=DESKTOP)
        contexts += [anna_ctx, ben_ctx]
        anna, ben = await anna_ctx.new_page(), await ben_ctx.new_page()
        await anna.goto(f"{site}/invitations/{await token(folder, anna_mail, 'cvi_')}")
        await anna.get_by_label("Ihr Name").fill("Anna Brandt")
        await anna.get_by_role("button", name="Annehmen und beitreten").click()
        first_step = anna.locator(".first-step")
        await expect(first_step.get_by_role("heading")).to_have_text("Ihr erster Schritt: Beschreiben Sie Ihr Projekt")
        await narrow_enough(anna)
        await shots.take(anna, "flow-first-step-390")
        await first_step.get_by_role("link", name="Projekt beschreiben").click()
        await expect(anna).to_have_url(f"{site}/convoys/{cid}/project/")
        await anna.get_by_label("Projekttitel").fill("Online-Terminbuchung")
        await anna.get_by_role("button", name="Speichern").first.click()
        await anna.goto(f"{site}/")
        await expect(anna.locator(".first-step")).to_have_count(0)  # the step is done

        # Ben (desktop) accepts an invitation that carries next: he lands on the convoy page.
        await ben.goto(f"{site}/invitations/{await token(folder, ben_mail, 'cvi_')}?next=/convoys/{cid}")
        await ben.get_by_label("Ihr Name").fill("Ben Lindner")
        await ben.get_by_role("button", name="Annehmen und beitreten").click()
        await expect(ben).to_have_url(f"{site}/convoys/{cid}")
        await expect(ben.get_by_role("heading", level=1)).to_have_text("Handwerk digital")

        # Last round (history, imported by the admin) Anna's company committed to two things.
        me = (await api_.get(f"/api/v1/convoys/{cid}", headers=fac)).json()
        anna_id = next(c for c in me["companies"] if c["name"] == "Sanitär Brandt")["representatives"][0]["person_id"]
        cadence = msgspec.convert(convoy["cadence"], Cadence)
        now = datetime.now(UTC)
        current = cycles.cycle_at(cadence, convoy["timezone"], start, now)
        assert current is not None and current.index >= 1
        earlier = cycles.cycle_by_index(cadence, convoy["timezone"], start, current.index - 1)
        signer = claims.Signer.from_settings(stack.settings)
        imported = await RpcClient(stack.nc, 10, stack.subjects, signer=signer).call(
            Milestones.REPORT_IMPORT,
            api.ImportReport(
                actor=api.Actor(is_admin=True),
                convoy_id=uuid.UUID(cid),
                company_id=uuid.UUID(companies["Sanitär Brandt"]),
                author_id=uuid.UUID(anna_id),
                cycle_index=current.index - 1,
                submitted_at=earlier.opens_at + timedelta(hours=2),
                report=api.NewReport(
                    done="Website-Anbieter verglichen", commitments=["Angebot einholen", "Fotos machen"]
                ),
            ),
        )
        assert imported.created

        # --- the prompt: its "Bericht schreiben" link, opened signed out, ends on the report form ---
        r = await api_.post(f"/api/v1/convoys/{cid}/prompt-now", headers=fac)
        assert r.status_code == 200, r.text

        async def prompt_link() -> str:
            try:
                return link_in(folder, anna_mail, rf"http://\S+/convoys/{cid}/report")
            except AssertionError:
                return ""

        report_link = await eventually(prompt_link)
        for evil in ("//evil.example/x", "/\\evil.example", "https://evil.example/"):  # paths on this site only
            r = await api_.post("/api/v1/auth/sign-in", json={"email": anna_mail, "next": evil})
            assert r.status_code == 400, (evil, r.text)
        phone = await browser.new_context(locale="de-DE", viewport=PHONE)  # Anna's phone, signed out
        contexts.append(phone)
        anna = await phone.new_page()
        await anna.goto(report_link)
        await expect(anna).to_have_url(re.compile(r"/sign-in\?next=%2Fconvoys%2F"))
        await sign_in_by_mail(anna, folder, anna_mail)
        await expect(anna).to_have_url(f"{site}/convoys/{cid}/report")
        await expect(anna.get_by_role("heading", level=1)).to_contain_text("Unser Bericht")

        # --- the report form: commitments reviewed and made, a private note, the draft kept ----------
        form = anna.locator("form[data-draft]")
        kept = form.get_by_role("group", name="Angebot einholen")
        await kept.get_by_label("Eingehalten").check()
        photos = form.get_by_role("group", name="Fotos machen")
        await photos.get_by_label("Noch nicht").check()
        await photos.get_by_label("Warum (noch) nicht? (optional)").fill("Fotograf krank")
        await form.get_by_label("Was haben Sie geschafft?").fill("Angebot von zwei Anbietern eingeholt")
        await form.get_by_label("Was sagen Sie bis zum nächsten Check-in zu?").fill("Anbieter auswählen\nFotos machen")
        await form.get_by_label("Eine Notiz an die Moderation (optional)").fill("Uns fehlt Budget, bitte vertraulich")
        await form.get_by_label("4", exact=True).check()
        await anna.reload()  # nothing sent yet: the draft comes back, and the page says so
        await expect(anna.locator("#draft-note")).to_be_visible()
        await expect(form.get_by_label("Was haben Sie geschafft?")).to_have_value(
            "Angebot von zwei Anbietern eingeholt"
        )
        await expect(form.get_by_role("group", name="Fotos machen").get_by_label("Noch nicht")).to_be_checked()
        await expect(form.get_by_label("4", exact=True)).to_be_checked()
        await narrow_enough(anna)
        await shots.take(anna, "flow-report-form-390")
        await form.get_by_role("button", name="Bericht senden").click()
        await expect(anna.get_by_role("status").first).to_contain_text("gespeichert")

        # Sent: the convoy page and the dashboard say so, with the edit deadline.
        state = anna.locator(".round-state")
        await expect(state).to_contain_text("Gesendet ✓")
        await expect(state).to_contain_text("bearbeiten")
        await expect(anna.get_by_role("link", name="Meinen Bericht schreiben")).to_have_count(0)
        await fits(anna, ".round-state")
        await shots.take(anna, "flow-convoy-sent-390")
        await anna.goto(f"{site}/")
        await expect(anna.locator(".checked-in")).to_contain_text("Gesendet ✓")
        await expect(anna.locator("section.card", has_text="Handwerk digital")).not_to_contain_text("Check-in offen")

        reports = (
            await api_.get(f"/api/v1/convoys/{cid}/timeline?company_id={companies['Sanitär Brandt']}", headers=fac)
        ).json()["reports"]
        mine = reports[0]
        assert mine["facilitator_note"] == "Uns fehlt Budget, bitte vertraulich"
        assert [c["text"] for c in mine["commitments"]] == ["Anbieter auswählen", "Fotos machen"]
        assert {c["text"]: (c["outcome"], c["note"]) for c in mine["reviews"]} == {
            "Angebot einholen": ("done", ""),
            "Fotos machen": ("not_yet", "Fotograf krank"),
        }
        assert mine["editable_until"] and mine["digest_cycle"] is None

        # Editing: a reload keeps the unsent change (the old code showed the note but kept the saved text).
        await anna.get_by_role("link", name="Meinen Bericht bearbeiten").click()
        await expect(anna.get_by_role("heading", level=1)).to_contain_text("Unseren Bericht bearbeiten")
        await expect(form.get_by_label("Eine Notiz an die Moderation (optional)")).to_have_value(
            "Uns fehlt Budget, bitte vertraulich"
        )
        await form.get_by_label("Was haben Sie geschafft?").fill("Angebote von drei Anbietern eingeholt")
        await form.get_by_role("group", name="Fotos machen").get_by_label("Teilweise").check()
        await anna.reload()
        await expect(anna.locator("#draft-note")).to_be_visible()
        await expect(form.get_by_label("Was haben Sie geschafft?")).to_have_value(
            "Angebote von drei Anbietern eingeholt"
        )
        await expect(form.get_by_role("group", name="Fotos machen").get_by_label("Teilweise")).to_be_checked()
        await form.get_by_role("button", name="Änderungen speichern").click()
        await expect(anna.get_by_role("status").first).to_contain_text("gespeichert")
        await anna.goto(f"{site}/convoys/{cid}/report")  # the draft went with the save: nothing to restore
        await expect(anna.locator("#draft-note")).to_be_hidden()
        reports = (
            await api_.get(f"/api/v1/convoys/{cid}/timeline?company_id={companies['Sanitär Brandt']}", headers=fac)
        ).json()["reports"]
        assert reports[0]["done"] == "Angebote von drei Anbietern eingeholt"
        assert reports[0]["version"] == 2
        assert {c["text"]: c["outcome"] for c in reports[0]["reviews"]} == {
            "Angebot einholen": "done",
            "Fotos machen": "partly",
        }

        # --- htmx errors in German, next to what was clicked (Ben, desktop) --------------------------
        await ben.goto(f"{site}/convoys/{cid}")
        article = ben.locator("article.report", has_text="drei Anbietern")
        await article.get_by_role("button", name="0 Kommentare").click()
        await article.get_by_role("button", name="Kommentieren").click()  # empty: 422, the fragment shows why
        await expect(article.get_by_role("alert")).to_have_text("Bitte füllen Sie dieses Feld aus.")
        r = await api_.post(f"/api/v1/reports/{mine['id']}/hide", json={"reason": "kurz prüfen"}, headers=fac)
        assert r.status_code == 200, r.text
        await article.get_by_role("button", name=re.compile("Kudos geben")).click()  # 404 now: an inline message
        await expect(article.locator(".htmx-error")).to_contain_text("Nicht gefunden")
        await shots.take(ben, "flow-htmx-error-1280")
        r = await api_.post(f"/api/v1/reports/{mine['id']}/restore", json={"reason": ""}, headers=fac)
        assert r.status_code == 200, r.text

        # The session ends in another tab; the comment typed meanwhile survives the sign-in.
        await ben.goto(f"{site}/convoys/{cid}")
        article = ben.locator("article.report", has_text="drei Anbietern")
        await article.get_by_role("button", name="0 Kommentare").click()
        other = await ben_ctx.new_page()
        await other.goto(f"{site}/profile")
        await other.get_by_role("button", name="Abmelden").click()
        # Left open: Page.close() has no timeout, and once under a loaded `make test` it never returned
        # (the test hung for its 300 s). The context closes with the test.
        await article.get_by_label("Ihr Kommentar").fill("Welchen Anbieter nehmt ihr?")
        await article.get_by_role("button", name="Kommentieren").click()
        await expect(ben).to_have_url(f"{site}/sign-in?next=%2Fconvoys%2F{cid}")
        await sign_in_by_mail(ben, folder, ben_mail)
        await expect(ben).to_have_url(f"{site}/convoys/{cid}")
        article = ben.locator("article.report", has_text="drei Anbietern")
        await expect(article.get_by_label("Ihr Kommentar")).to_have_value("Welchen Anbieter nehmt ihr?")
        await expect(article.locator(".kept-note")).to_contain_text("erhalten")
        await article.get_by_role("button", name="Kommentieren").click()
        await expect(article.locator(".comment")).to_contain_text("Welchen Anbieter nehmt ihr?")

        # --- the close: Anna's report went out in the digest; Ben's company may still report, late -----
        await ben.goto(f"{site}/")
        await expect(ben.locator("section.card", has_text="Handwerk digital")).to_contain_text("Check-in offen")
        r = await api_.post(f"/api/v1/convoys/{cid}/close-now", headers=fac)
        assert r.status_code == 200, r.text
        await anna.goto(f"{site}/")
        await expect(anna.locator(".checked-in")).to_contain_text("Die Runde ist geschlossen")
        await expect(anna.locator(".checked-in")).to_contain_text("mit dem Digest hinausgegangen")
        await narrow_enough(anna)
        await shots.take(anna, "flow-dashboard-closed-390")
        await anna.goto(f"{site}/convoys/{cid}/report")
        await expect(anna.get_by_role("button", name="Änderungen speichern")).to_have_count(0)
        await ben.goto(f"{site}/convoys/{cid}")
        await expect(ben.locator(".round-state")).to_contain_text("verspätet")
        await ben.locator(".round-state").get_by_role("link", name="Meinen Bericht schreiben").click()
        await ben.get_by_label("Was haben Sie geschafft?").fill("Produktfotos gemacht")
        await ben.get_by_role("button", name="Bericht senden").click()
        await expect(ben.locator(".round-state")).to_contain_text("Gesendet ✓")
        await expect(ben.locator(".round-state")).to_contain_text("nächsten Digest")
        await shots.take(ben, "flow-late-sent-1280")
        assert shots.violations == [], "\n".join(shots.violations)
    finally:
        for ctx in contexts:
            await ctx.close()
        await api_.aclose()
