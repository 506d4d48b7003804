"""Language and edges of the pages: no English on a German page (error details, refusals, the audit log
included), dates and numbers in the reader's locale, state names, words with two German meanings, the
check's local day, the invitee's charter, HTML error pages and a favicon for browsers, the CSV content
type, the public URL's default. The same walk runs in Chromium at 390 px in test_pages_lang_browser.py."""

from __future__ import annotations

import html
import json
import re
import uuid
from datetime import UTC, datetime
from html.parser import HTMLParser
from zoneinfo import ZoneInfo

import httpx
import pytest

from convoy_api.web import i18n, refusals
from services import demo
from services.convoys.charter import DEFAULT_CHARTER
from services.runtime import settings as settings_mod
from services.runtime.settings import Settings
from tests.conftest import SmtpSink, Stack, new_token_for, settled, text_of
from tests.pages_scene import GOLDEN, USER_TEXT, build_scene
from tests.world import appoint_facilitator

_WORDS = """
    the and you your not this that with for of to is are has have been only may such cannot please here yet there
    which would should could what when who why how does did it its by on at be no or from into about than then
    they them their our we my me any every each all can must more new open sign report reports comment comments
    company companies round page back send save saved nothing none found already before after while because
    until need needs needed wrong
"""
ENGLISH = frozenset(_WORDS.split())
"""Words of English sentences that are no German words (so "in", "was", "will", "also" are not here)."""


class VisibleText(HTMLParser):
    """The words a person sees or hears on a page: text, and aria-label, title, alt, placeholder.

    Left out: scripts and styles, what people typed (textarea contents, input values, code), and
    elements marked as English on purpose (``lang="en"``: the language switch)."""

    SKIP = {"script", "style", "textarea", "code", "pre"}
    VOID = {"input", "br", "img", "meta", "link", "hr", "source", "wbr", "area", "base", "col", "embed", "param"}

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.stack: list[bool] = []  # per open element: skipped (with its subtree)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        skipped = bool(self.stack and self.stack[-1]) or tag in self.SKIP or a.get("lang") == "en"
        if not skipped:
            self.parts += [v for k, v in attrs if k in ("aria-label", "title", "alt", "placeholder") and v]
        if tag not in self.VOID:
            self.stack.append(skipped)

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.VOID and self.stack:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if not (self.stack and self.stack[-1]):
            self.parts.append(data)


def english_in(html: str, extra_user_text: tuple[str, ...] = ()) -> list[str]:
    """The sentences of a German page that contain English words (empty: all German)."""
    parser = VisibleText()
    parser.feed(html)
    found = []
    for part in parser.parts:
        text = " ".join(part.split())
        for typed in (*USER_TEXT, *extra_user_text):
            text = text.replace(typed, " ")
        text = re.sub(r"„[^“]*“", " ", text)  # another product's UI names, quoted as it shows them
        text = re.sub(r"\S+@\S+|https?://\S+|/\S*", " ", text)  # addresses and paths
        words = {w.lower() for w in re.findall(r"[A-Za-z]+(?:'[a-z]+)?", text) if not w.isupper()}  # IT, PDF
        if words & ENGLISH:
            found.append(f"{sorted(words & ENGLISH)}: {text.strip()[:160]}")
    return found


# --- every page, every refusal, in German ----------------------------------------------------------------
async def test_no_german_page_shows_an_english_sentence(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, browsers: list[httpx.AsyncClient]
) -> None:
    s = await build_scene(client, smtp_sink, browsers)
    cid = s.cid
    visitor = httpx.AsyncClient(base_url=client.base_url, timeout=20, headers={"accept-language": "de-DE"})
    browsers.append(visitor)
    shown: dict[str, httpx.Response] = {}
    people = {"representative": s.anna, "facilitator": s.fac, "observer": s.observer}
    for role, paths in s.pages.items():
        for path in paths:
            who = people[role].client if role in people else visitor
            r = await who.get(path, headers={"accept": "text/html"})
            assert r.status_code in (200, 404) or (r.status_code == 410 and "invitations" in path), (role, path)
            shown[f"{role} GET {path}"] = r

    # Refusals: the services answer in English; the pages must not pass that on.
    nobody = str(uuid.uuid4())
    refused = {
        "representative GET manage": await s.anna.client.get(f"/convoys/{cid}/manage"),
        "representative GET audit": await s.anna.client.get(f"/convoys/{cid}/audit"),
        "representative GET foreign convoy": await s.anna.client.get(f"/convoys/{nobody}"),
        "representative GET foreign report": await s.anna.client.get(f"/reports/{nobody}"),
        "representative GET facilitate": await s.anna.client.get("/facilitate"),
        "representative GET pool": await s.anna.client.get("/pool"),
        "representative kudos own report": await s.anna.post(f"/reports/{s.report_id}/kudos", htmx=True),
        "representative help on own report": await s.anna.post(f"/reports/{s.report_id}/help", {"message": "x"}),
        "representative empty comment": await s.anna.post(f"/reports/{s.report_id}/comments", {"body": ""}),
        "representative second report": await s.anna.post(f"/convoys/{cid}/report", {"done": "Noch einmal"}),
        "representative stale form": await s.anna.client.post(f"/reports/{s.report_id}/kudos", data={"_csrf": "x"}),
        "observer report form": await s.observer.client.get(f"/convoys/{cid}/report"),
        "observer comment": await s.observer.post(f"/reports/{s.report_id}/comments", {"body": "Hallo"}),
        "facilitator duplicate company": await s.fac.post(
            f"/convoys/{cid}/manage/companies", {"name": "Sanitär Müller"}
        ),
        "facilitator status back to forming": await s.fac.post(f"/convoys/{cid}/manage/status", {"status": "forming"}),
        "facilitator end before start": await s.fac.post(
            f"/convoys/{cid}/manage/settings",
            {"name": "Terminvergabe Nord", "start_date": "2026-05-01", "end_date": "2026-04-01"},
        ),
        "facilitator bad webhook": await s.fac.post(
            f"/convoys/{cid}/manage/slack", {"webhook_url": "https://evil.example/hook"}
        ),
        "facilitator away backwards": await s.fac.post(
            f"/convoys/{cid}/schedule/away",
            {"company_id": s.world.reps["a"].company_id, "from_date": "2026-05-02", "until_date": "2026-05-01"},
        ),
        "facilitator hide without reason": await s.fac.post(f"/reports/{s.report_id}/hide", {"reason": ""}),
        "visitor unknown address": await visitor.get("/konvois/alle", headers={"accept": "text/html"}),
        "visitor favicon page": await visitor.get("/favicon.png", headers={"accept": "text/html"}),
        "visitor wrong method": await visitor.get("/sign-out", headers={"accept": "text/html"}),
        "visitor used sign-in link": await visitor.post("/sign-in/cvl_not-a-real-link"),
        "visitor bogus invitation": await visitor.post("/invitations/cvi_nope", data={"name": "Lea"}),
        "visitor join without consent": await visitor.post(f"/check/{s.check_id}/join", data={"contact_name": "Lea"}),
    }
    for name, r in refused.items():
        assert r.status_code >= 400 or "alert" in r.text, (name, r.status_code)
        assert "text/html" in r.headers["content-type"], (name, r.headers["content-type"])
        shown[name] = r
    problems = {name: english_in(r.text) for name, r in shown.items()}
    assert {k: v for k, v in problems.items() if v} == {}, "\n".join(f"{k}: {v}" for k, v in problems.items() if v)

    # The refusals say why, in German (not only "Das hat nicht geklappt").
    text = {name: r.text for name, r in shown.items()}
    assert "Das darf nur die Moderation des Konvois." in text["representative GET manage"]
    assert "Diesen Konvoi gibt es nicht, oder Sie gehören nicht dazu." in text["representative GET foreign convoy"]
    assert "Kudos sind für die anderen, nicht für die eigene Firma." in text["representative kudos own report"]
    assert "Eine Firma namens Sanitär Müller ist schon in diesem Konvoi." in text["facilitator duplicate company"]
    assert "Das Formular ist veraltet." in text["representative stale form"]
    assert "„aktiv“" in text["facilitator status back to forming"]
    assert "Der letzte Tag liegt vor dem ersten." in text["facilitator away backwards"]
    assert "Vielleicht ist die Adresse falsch geschrieben" in text["visitor unknown address"]
    for english in ("no such convoy", "only the convoy", "kudos are for peers", "already in this convoy"):
        assert all(english not in t.lower() for t in text.values()), english

    # And the English reader gets the same refusals in English.
    r = await s.ben.client.post("/language", data={"lang": "en", "_csrf": s.ben.csrf, "next": "/"})
    assert r.status_code == 303
    r = await s.ben.post(f"/reports/{s.ben_report_id}/kudos", htmx=True)
    assert "Kudos are for peers, not for your own company." in r.text


def test_the_checker_finds_english_and_leaves_german_alone() -> None:
    """The check above can fail: English sentences are found, German ones and people's text are not."""
    assert english_in("<p>That is not possible right now: no such convoy</p>")
    assert english_in('<button aria-label="Open the menu">≡</button>')
    assert english_in("<td>comment.hidden</td>")  # a raw code of the audit log, too
    assert english_in("<td>Anna hid a comment.</td>")
    german = (
        '<p>Das hat nicht geklappt: Diesen Konvoi gibt es nicht.</p><button lang="en">English</button>'
        "<p>Was geschah? Anna Müller hat den Kommentar ausgeblendet, in Runde 3, am 03.12.2026 09:00.</p>"
        "<textarea>the user typed this</textarea><p>„Post to a channel“</p>"
    )
    assert english_in(german) == []


def test_every_known_refusal_reads_german() -> None:
    de, en = i18n.gettext_for("de"), i18n.gettext_for("en")
    for message, text in refusals.EXACT.items():
        german = refusals.explain(de, message)
        assert german and german != text and german == de(text), message
        assert refusals.explain(en, message) == text
    samples = {
        "a company named 'Laden Schmidt' is already in this convoy": "Eine Firma namens Laden Schmidt ist schon",
        "a active convoy cannot become forming (possible: paused, completed)": "von „aktiv“ zu „in Gründung“",
        "the convoy is already paused": "„pausiert“",
        "anna@x.example has had 5 invitations today": "anna@x.example hat heute schon 5 Einladungen",
        "`timezone`: unknown time zone 'Mars/Base' (use an IANA name such as Europe/Berlin)": "Mars/Base",
        "observers read along; they do not comment": "Beobachter:innen lesen mit",
    }
    for message, part in samples.items():
        assert part in (refusals.explain(de, message) or ""), message
    assert refusals.explain(de, "something nobody wrote down") is None


# --- the audit log, dates, numbers, states, two meanings, "öffnen" ---------------------------------------
async def test_audit_sentences_dates_numbers_states_and_contexts_in_german_and_english(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, browsers: list[httpx.AsyncClient], stack: Stack
) -> None:
    s = await build_scene(client, smtp_sink, browsers)
    cid = s.cid
    await settled(stack)  # flags reach the audit log through an event (services/convoys/moderation.py)
    audit = (await s.fac.client.get(f"/convoys/{cid}/audit")).text
    for code in ("comment.hidden", "flag.raised", "company.joined", "convoy.status_changed", "person.joined"):
        assert code not in audit
    assert re.search(
        rf'Frieda Berater hat den <a href="/reports/{s.report_id}#comment-[0-9a-f-]{{36}}">'
        r"Kommentar von Ben Schmidt</a> ausgeblendet\.",
        audit,
    ), audit
    assert f'Anna Müller hat den <a href="/reports/{s.ben_report_id}">Bericht von Ben Schmidt</a> gemeldet:' in audit
    assert "Spam oder Verkaufsmasche" in audit
    assert "Frieda Berater hat die Firma Metallbau Stahl hinzugefügt." in audit
    assert "hat den Status von „in Gründung“ zu „aktiv“ geändert." in audit
    assert "Werbung ist hier nicht erlaubt" in audit  # the reason, beside the sentence

    # Dates and numbers through Babel in the reader's locale.
    project = (await s.anna.client.get(f"/convoys/{cid}/project/")).text
    assert "(Ziel 12.11.2026)" in project and "2026-11-12" not in project.replace('value="2026-11-12"', "")
    form = (await s.anna.client.get(f"/convoys/{cid}/report")).text
    assert "2026-11-12" not in form and "12.11.2026" in form
    overview = (await s.fac.client.get("/facilitate")).text
    visible = re.sub(r"<[^>]+>", " ", overview)  # the text, not SVG attributes such as r="3.5"
    assert "3,5" in visible and "3.5" not in visible  # the mood of the round: (4 + 3) / 2
    assert i18n.number("de", 4.0) == "4,0" and i18n.number("en", 4.0) == "4.0"

    # Bundesland names instead of codes; one English word, two German ones.
    manage = (await s.fac.client.get(f"/convoys/{cid}/manage")).text
    assert "· Sachsen-Anhalt" in manage and "· ST<" not in manage and ">Thüringen</option>" in manage
    schedule = (await s.fac.client.get(f"/convoys/{cid}/schedule")).text
    assert '<th scope="col">Status</th>' in schedule and ">Bundesland<" not in schedule
    assert ">Sachsen-Anhalt</option>" in schedule
    assert '<label for="company-region">Bundesland</label>' in manage
    assert i18n.translations("de").pgettext("status of a round", "State") == "Status"
    assert i18n.gettext_for("de")("State") == "Bundesland"
    queue = (await s.fac.client.get(f"/convoys/{cid}/flags")).text
    assert f'<a href="/reports/{s.ben_report_id}">öffnen</a>' in queue and ">offen<" not in queue

    # The same pages in English: sentences, dates and names in English.
    r = await s.fac.client.post("/language", data={"lang": "en", "_csrf": s.fac.csrf, "next": "/"})
    assert r.status_code == 303
    audit = (await s.fac.client.get(f"/convoys/{cid}/audit")).text
    assert "Frieda Berater hid the <a" in audit and "comment of Ben Schmidt</a>." in audit
    assert "changed the status from “forming” to “active”." in audit
    manage = (await s.fac.client.get(f"/convoys/{cid}/manage")).text
    assert "· Saxony-Anhalt" in manage
    assert '<th scope="col">State</th>' in (await s.fac.client.get(f"/convoys/{cid}/schedule")).text
    assert "3.5" in (await s.fac.client.get("/facilitate")).text
    r = await s.anna.client.post("/language", data={"lang": "en", "_csrf": s.anna.csrf, "next": "/"})
    assert "(target 12 Nov 2026)" in (await s.anna.client.get(f"/convoys/{cid}/project/")).text


# --- the check's day, the invitee's charter ---------------------------------------------------------------
async def test_the_check_is_dated_by_the_local_day(client: httpx.AsyncClient) -> None:
    body = json.loads(GOLDEN.read_text())["answers"]
    # At any moment one of these two zones is on another calendar day than UTC (UTC+14 and UTC-11).
    days = {}
    for zone in ("Pacific/Kiritimati", "Pacific/Pago_Pago"):
        before = datetime.now(ZoneInfo(zone)).date()
        r = await client.post("/api/v1/check/", json={**body, "timezone": zone})
        assert r.status_code in (200, 201), r.text
        assert r.json()["completed_on"] in (before.isoformat(), datetime.now(ZoneInfo(zone)).date().isoformat())
        days[zone] = r.json()["completed_on"]
    assert datetime.now(UTC).date().isoformat() in days.values() or len(set(days.values())) == 2
    assert any(d != datetime.now(UTC).date().isoformat() for d in days.values())
    r = await client.post("/api/v1/check/", json={**body, "timezone": "Mars/Olympus"})
    assert r.status_code == 400
    # The page dates it by the visitor's day in Berlin, in German.
    r = await client.post("/api/v1/check/", json=body)
    berlin = datetime.now(ZoneInfo("Europe/Berlin")).date()
    assert r.json()["completed_on"] == berlin.isoformat()
    page = await client.get(f"/check/{r.json()['id']}", headers={"accept-language": "de"})
    assert f"Check vom {berlin:%d.%m.%Y}" in page.text


async def test_an_english_invitee_reads_the_english_charter(client: httpx.AsyncClient, smtp_sink: SmtpSink) -> None:
    fac = await appoint_facilitator(client, smtp_sink, f"frieda-{uuid.uuid4().hex[:8]}@zentrum.example")
    r = await client.post("/api/v1/convoys", json={"name": "Kasse Süd", "language": "de"}, headers=fac)
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    r = await client.post(f"/api/v1/convoys/{cid}/companies", json={"name": "Café Ost"}, headers=fac)
    company = r.json()["id"]
    english_line, german_line = (
        html.escape(next(line for line in DEFAULT_CHARTER[lang].splitlines() if line.startswith("2.")))
        for lang in ("en", "de")
    )
    tokens = {}
    for lang in ("en", "de"):
        email = f"{lang}-{uuid.uuid4().hex[:6]}@cafe.example"
        r = await client.post(
            f"/api/v1/convoys/{cid}/companies/{company}/invitations",
            json={"email": email, "name": "", "language": lang},
            headers=fac,
        )
        assert r.status_code == 201, r.text
        tokens[lang] = await new_token_for(smtp_sink, email, "cvi_", set())
    page = (await client.get(f"/invitations/{tokens['en']}")).text
    assert english_line in page and german_line not in page and "Accept and join" in page
    page = (await client.get(f"/invitations/{tokens['de']}")).text
    assert german_line in page and english_line not in page
    # A reader who switched this browser to English reads it in English, whatever the invitation said.
    client.cookies.set("convoy_lang", "en")
    page = (await client.get(f"/invitations/{tokens['de']}")).text
    client.cookies.clear()
    assert english_line in page
    # A charter the facilitators wrote is shown as written.
    r = await client.put(
        f"/api/v1/convoys/{cid}/charter", json={"text": "Vertraulich bleibt vertraulich."}, headers=fac
    )
    assert r.status_code == 200, r.text
    assert "Vertraulich bleibt vertraulich." in (await client.get(f"/invitations/{tokens['en']}")).text


# --- edges: error pages, favicon, CSV, the public URL ------------------------------------------------------
async def test_browsers_get_html_error_pages_and_a_favicon_api_clients_json(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, browsers: list[httpx.AsyncClient]
) -> None:
    html = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8", "accept-language": "de-DE,de;q=0.9"}
    r = await client.get("/gibt/es/nicht", headers=html)
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert "<h1>Nicht gefunden</h1>" in r.text and 'lang="de"' in r.text
    r = await client.get("/gibt/es/nicht", headers={**html, "accept-language": "en"})
    assert "<h1>Not found</h1>" in r.text
    r = await client.get("/gibt/es/nicht", headers={"accept": "application/json"})
    assert r.status_code == 404 and r.json()["status_code"] == 404
    r = await client.get("/api/v1/gibt-es-nicht", headers=html)
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/json")
    r = await client.get("/gibt/es/nicht")  # curl's */*: JSON as before
    assert r.headers["content-type"].startswith("application/json")
    r = await client.get("/api/v1/convoys/not-a-uuid", headers=html)
    assert r.headers["content-type"].startswith("application/json")

    r = await client.get("/favicon.ico", headers=html)
    assert r.status_code == 200 and r.headers["content-type"] == "image/x-icon"
    assert r.content[:4] == b"\x00\x00\x01\x00" and b"PNG" in r.content[:40]
    r = await client.get("/static/favicon.svg")
    assert r.status_code == 200 and r.text.startswith("<svg")
    assert '<link rel="icon" href="/static/favicon.svg"' in (await client.get("/sign-in")).text

    # The CSV exports say their content type once.
    s = await build_scene(client, smtp_sink, browsers)
    r = await client.get(f"/api/v1/convoys/{s.cid}/export.csv", headers=s.world.reps["a"].auth)
    assert r.status_code == 200 and r.headers["content-type"] == "text/csv; charset=utf-8"
    r = await client.get("/api/v1/programme.csv?from_date=2026-01-01&to_date=2026-12-31", headers=s.world.facilitator)
    assert r.status_code == 200 and r.headers["content-type"] == "text/csv; charset=utf-8"


@pytest.mark.parametrize(
    ("environ", "url"),
    [
        ({}, "http://127.0.0.1:8000"),
        ({"CONVOY_HTTP_PORT": "8111"}, "http://127.0.0.1:8111"),
        ({"CONVOY_HTTP_HOST": "0.0.0.0", "CONVOY_HTTP_PORT": "9000"}, "http://127.0.0.1:9000"),  # noqa: S104
        ({"CONVOY_HTTP_HOST": "convoy.local", "CONVOY_HTTP_PORT": "80"}, "http://convoy.local:80"),
        ({"CONVOY_HTTP_HOST": "::1"}, "http://[::1]:8000"),
        ({"CONVOY_HTTP_PORT": "8111", "CONVOY_PUBLIC_URL": "https://convoy.example.org"}, "https://convoy.example.org"),
    ],
)
def test_the_public_urls_default_follows_host_and_port(environ: dict[str, str], url: str) -> None:
    settings = settings_mod.load(environ)
    assert settings.public_url == url
    assert f"{url}/dev/mail" in demo.instructions(settings.public_url)  # the demo's printout
    moved = settings.with_(http_port=8222)
    assert moved.public_url == (url if "CONVOY_PUBLIC_URL" in environ else url.rsplit(":", 1)[0] + ":8222")


class TestLinksInEmails:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        """The test stack's settings as `convoy up` hands them on, with another port and no public URL."""
        environ = {
            settings_mod.PREFIX + name.upper(): str(getattr(settings, name))
            for name in Settings.__struct_fields__
            if name != "public_url"
        }
        return settings_mod.load({**environ, "CONVOY_HTTP_PORT": "8111"})

    async def test_links_in_emails_follow_the_port_when_no_public_url_is_set(
        self, client: httpx.AsyncClient, smtp_sink: SmtpSink
    ) -> None:
        email = f"frieda-{uuid.uuid4().hex[:8]}@zentrum.example"
        await appoint_facilitator(client, smtp_sink, email)
        mail = await smtp_sink.wait_for_subject(email, "Anmeld")
        assert "http://127.0.0.1:8111/sign-in/cvl_" in text_of(mail)
