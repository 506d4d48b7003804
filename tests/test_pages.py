"""The pages over plain HTTP: authorization like the API, CSRF, escaping, errors next to the field in
the person's language, no open redirects, the catalogue complete. The journey itself runs in a real
browser in test_pages_browser.py."""

from __future__ import annotations

import re
import subprocess
import sys
from email.utils import parseaddr
from pathlib import Path

import httpx
from babel.messages.pofile import read_po

from convoy_api.web import i18n
from tests.conftest import SmtpSink, eventually
from tests.world import World, build_world, sign_in

ROOT = Path(__file__).resolve().parent.parent


async def signed_in(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, made: list[httpx.AsyncClient], email: str
) -> tuple[httpx.AsyncClient, str]:
    """A browser-like client with the session cookie, and the CSRF token its pages carry."""
    b = httpx.AsyncClient(base_url=client.base_url, timeout=20)
    made.append(b)
    await sign_in(b, smtp_sink, email)
    page = await b.get("/profile/")
    assert page.status_code == 200, page.text
    found = re.search(r'name="_csrf" value="([^"]+)"', page.text)
    assert found
    return b, found.group(1)


def rep_email(world: World, key: str) -> str:
    return world.reps[key].email


async def test_pages_need_a_session_and_go_back_after_sign_in(client: httpx.AsyncClient) -> None:
    r = await client.get("/convoys/00000000-0000-0000-0000-000000000001?x=1")
    assert r.status_code == 303
    assert r.headers["location"] == "/sign-in?next=%2Fconvoys%2F00000000-0000-0000-0000-000000000001%3Fx%3D1"
    r = await client.get("/sign-in?next=//evil.example/x")
    assert 'name="next" value="/"' in r.text  # no open redirect through the sign-in link
    r = await client.get("/dev/mail")
    assert r.status_code == 404  # the mail viewer exists only with the embedded mail sink


async def test_errors_sit_next_to_the_field_in_the_persons_language(client: httpx.AsyncClient) -> None:
    r = await client.post("/sign-in", data={"email": "not-an-address"}, headers={"accept-language": "de-DE"})
    assert r.status_code == 422
    assert 'aria-invalid="true"' in r.text
    assert 'id="e-email">Bitte geben Sie eine E-Mail-Adresse wie anna@example.de ein.' in r.text
    r = await client.post("/sign-in", data={"email": ""}, headers={"accept-language": "en-GB,en"})
    assert r.status_code == 422
    assert 'id="e-email">Please fill in this field.' in r.text
    client.cookies.set("convoy_lang", "en")
    r = await client.post("/sign-in", data={"email": "anna@example.de"})
    assert r.status_code == 200 and "a sign-in link is on its way" in r.text
    client.cookies.clear()


async def test_same_authorization_as_the_api_and_csrf_on_every_form(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, browsers: list[httpx.AsyncClient]
) -> None:
    ours = await build_world(client, smtp_sink)
    theirs = await build_world(client, smtp_sink, companies=1)
    anna, csrf = await signed_in(client, smtp_sink, browsers, rep_email(ours, "a"))

    page = await anna.get(f"/convoys/{ours.convoy_id}")
    assert page.status_code == 200 and "Terminvergabe Nord" in page.text
    foreign = await anna.get(f"/convoys/{theirs.convoy_id}")
    assert foreign.status_code in (403, 404)
    assert theirs.companies["a"]["name"] not in foreign.text
    assert (await anna.get(f"/convoys/{ours.convoy_id}/manage")).status_code == 403  # not a facilitator
    assert (await anna.get(f"/convoys/{theirs.convoy_id}/report")).status_code == 404

    report = {"done": "Kalender eingerichtet", "mood": "4"}
    r = await anna.post(f"/convoys/{ours.convoy_id}/report", data=report)
    assert r.status_code == 403  # no CSRF token
    r = await anna.post(f"/convoys/{ours.convoy_id}/report", data={**report, "_csrf": "wrong"})
    assert r.status_code == 403
    r = await anna.post(f"/convoys/{ours.convoy_id}/report", data={**report, "_csrf": csrf})
    assert r.status_code == 303, r.text
    r = await anna.post(f"/convoys/{theirs.convoy_id}/report", data={**report, "_csrf": csrf})
    assert r.status_code == 404  # another convoy: as if it did not exist

    # An empty report is refused with the error at the field, in German, and nothing is lost.
    r = await anna.post(f"/convoys/{ours.convoy_id}/report", data={"done": "", "next": "Shop", "_csrf": csrf})
    assert r.status_code in (409, 422)


async def test_user_text_is_escaped_in_pages(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, browsers: list[httpx.AsyncClient]
) -> None:
    world = await build_world(client, smtp_sink)
    r = await client.patch(
        f"/api/v1/convoys/{world.convoy_id}",
        json={"name": '<img src=x onerror="alert(1)">', "description": "<script>alert(2)</script>"},
        headers=world.facilitator,
    )
    assert r.status_code == 200, r.text
    ben, csrf = await signed_in(client, smtp_sink, browsers, rep_email(world, "b"))
    r = await ben.post(
        f"/convoys/{world.convoy_id}/report",
        data={"done": "<script>alert(3)</script> [x](javascript:alert(4))", "_csrf": csrf},
    )
    assert r.status_code == 303
    for path in ("/", f"/convoys/{world.convoy_id}", f"/convoys/{world.convoy_id}/report"):
        html = (await ben.get(path)).text
        assert "<script>alert" not in html and "<img src=x" not in html and 'href="javascript:' not in html
        assert "&lt;img src=x onerror=" in html or path.endswith("/report")


async def test_session_cookie_is_httponly_and_samesite(client: httpx.AsyncClient, smtp_sink: SmtpSink) -> None:
    world = await build_world(client, smtp_sink, companies=1)
    r = await client.post("/sign-in", data={"email": rep_email(world, "a")})
    assert r.status_code == 200
    from tests.conftest import new_token_for

    token = await new_token_for(smtp_sink, rep_email(world, "a"), "cvl_", set())
    landing = await client.get(f"/sign-in/{token}")
    assert landing.status_code == 200 and "<form" in landing.text  # a GET never spends the link
    r = await client.post(f"/sign-in/{token}", data={"next": "/profile/"})
    assert r.status_code == 303 and r.headers["location"] == "/profile/"
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("convoy_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("samesite", "SameSite")
    client.cookies.clear()
    again = await client.post(f"/sign-in/{token}", data={})
    assert again.status_code == 410 and "abgelaufen oder wurde schon benutzt" in again.text
    client.cookies.clear()


def test_every_string_of_the_pages_has_a_german_translation(tmp_path: Path) -> None:
    """The catalogue is current (``make messages``) and complete."""
    fresh = ROOT / "convoy_api" / "web" / "locale" / "messages.pot"
    out = tmp_path / "messages.pot"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "babel.messages.frontend",
            "extract",
            "-F",
            str(fresh.parent.parent / "babel.cfg"),
            "-k",
            "N_",
            "--no-location",
            "--omit-header",
            "-o",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    with out.open("rb") as f:
        wanted = {m.id if isinstance(m.id, str) else m.id[0] for m in read_po(f) if m.id}
    with (i18n.LOCALE_DIR / "de" / "LC_MESSAGES" / "messages.po").open("rb") as f:
        german = {m.id if isinstance(m.id, str) else m.id[0]: m.string for m in read_po(f) if m.id}
    assert wanted - german.keys() == set(), "run `make messages` and translate the new strings"
    assert [k for k in wanted if not german[k]] == [], "untranslated strings in locale/de"
    assert i18n.gettext_for("de")("Sign in") == "Anmelden"
    assert i18n.gettext_for("en")("Sign in") == "Sign in"


async def test_every_page_renders_for_its_people(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, browsers: list[httpx.AsyncClient]
) -> None:
    world = await build_world(client, smtp_sink)
    cid = world.convoy_id
    r = await client.post(f"/api/v1/convoys/{cid}/status", json={"status": "active"}, headers=world.facilitator)
    assert r.status_code == 200, r.text
    fac_email = next(
        m["To"] for m in smtp_sink.messages if "frieda-" in str(m["To"]) and "Anmeldelink" in str(m["Subject"])
    )
    fac, _ = await signed_in(client, smtp_sink, browsers, parseaddr(str(fac_email))[1])
    anna, csrf = await signed_in(client, smtp_sink, browsers, rep_email(world, "a"))

    first = await anna.get(f"/convoys/{cid}/project/")  # no project yet: the form to start one
    assert first.status_code == 200 and 'name="project_type"' in first.text
    r = await anna.post(f"/convoys/{cid}/project/", data={"title": "Online-Termine", "project_type": "", "_csrf": csrf})
    assert r.status_code == 303, r.text
    r = await anna.post(f"/convoys/{cid}/project/milestones", data={"title": "Kalender wählen", "_csrf": csrf})
    assert r.status_code == 303, r.text
    r = await anna.post(f"/convoys/{cid}/report", data={"done": "Kalender gewählt", "_csrf": csrf})
    assert r.status_code == 303, r.text
    for path in (
        "/",
        f"/convoys/{cid}",
        f"/convoys/{cid}/report",
        f"/convoys/{cid}/project/",
        f"/convoys/{cid}/search?q=Kalender",
        f"/convoys/{cid}/schedule",
        "/profile/",
    ):
        page = await anna.get(path)
        assert page.status_code == 200, (path, page.text[:300])
    assert "Kalender wählen" in (await anna.get(f"/convoys/{cid}/report")).text  # the milestone picker
    assert "<mark>Kalender</mark> gewählt" in (await anna.get(f"/convoys/{cid}/search?q=Kalender")).text

    for path in (
        "/",
        "/facilitate",
        "/convoys/new",
        f"/convoys/{cid}/manage",
        f"/convoys/{cid}/audit",
        f"/convoys/{cid}/schedule",
    ):
        page = await fac.get(path)
        assert page.status_code == 200, (path, page.text[:300])
    assert "Terminvergabe Nord" in (await fac.get("/facilitate")).text
    # The manage page shows the convoy's Slack webhook as saved (the form starts from it).
    hook = "http://127.0.0.1:9/services/T000/B000/XXXX"
    r = await client.put(
        f"/api/v1/convoys/{cid}/slack", json={"webhook_url": hook, "post_reports": True}, headers=world.facilitator
    )
    assert r.status_code == 200, r.text
    manage = (await fac.get(f"/convoys/{cid}/manage")).text
    assert f'value="{hook}"' in manage and re.search(r'id="f-post"[^>]*checked', manage)
    teams = "http://127.0.0.1:9/workflows/abc/triggers/manual/paths/invoke?sig=x"
    r = await client.put(
        f"/api/v1/convoys/{cid}/teams", json={"webhook_url": teams, "post_reports": True}, headers=world.facilitator
    )
    assert r.status_code == 200, r.text
    manage = (await fac.get(f"/convoys/{cid}/manage")).text
    assert 'value="http://127.0.0.1:9/workflows/abc/triggers/manual/paths/invoke?sig=x"' in manage
    assert re.search(r'id="f-teams-post"[^>]*checked', manage)

    # Profile: a token shown once, preferences kept, the token revoked.
    r = await anna.post("/profile/tokens", data={"name": "Tabelle", "_csrf": csrf})
    assert r.status_code == 200 and "<code>" in r.text
    r = await anna.post("/profile/notifications", data={"email": "1", "digest": "1", "_csrf": csrf})
    assert r.status_code == 303
    prefs = await client.get("/api/v1/me/notifications", headers=world.reps["a"].auth)
    assert prefs.json()["immediate"]["report"] is False and prefs.json()["digest"] is True
    r = await anna.post("/profile/", data={"name": "", "language": "de", "timezone": "Europe/Berlin", "_csrf": csrf})
    assert r.status_code == 422 and "Bitte füllen Sie dieses Feld aus." in r.text


async def test_a_person_exports_and_deletes_their_account_from_the_profile(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, browsers: list[httpx.AsyncClient]
) -> None:
    world = await build_world(client, smtp_sink)
    anna, csrf = await signed_in(client, smtp_sink, browsers, rep_email(world, "a"))
    ben, _ = await signed_in(client, smtp_sink, browsers, rep_email(world, "b"))
    r = await anna.post(f"/convoys/{world.convoy_id}/report", data={"done": "Kalender gewählt", "_csrf": csrf})
    assert r.status_code == 303
    export = await anna.get("/api/v1/me/export")
    assert export.status_code == 200 and rep_email(world, "a") in export.text
    assert "attachment" in export.headers["content-disposition"]

    r = await anna.post("/profile/delete", data={"_csrf": csrf})
    assert r.status_code == 422 and "Bitte bestätigen Sie" in r.text
    r = await anna.post("/profile/delete", data={"_csrf": csrf, "understood": "1"})
    assert r.status_code == 303 and r.headers["location"] == "/sign-in?deleted=1"
    assert (await anna.get("/profile/")).status_code == 303  # signed out everywhere

    async def attributed() -> bool:  # services learn of the erasure by event, a moment later
        timeline = (await ben.get(f"/convoys/{world.convoy_id}")).text
        return "Kalender gewählt" in timeline and "ehemalige Vertretung von Sanitär Müller" in timeline

    assert await eventually(attributed)


async def test_flag_queue_and_charter_pages(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, browsers: list[httpx.AsyncClient]
) -> None:
    world = await build_world(client, smtp_sink)
    cid = world.convoy_id
    fac_email = next(
        m["To"] for m in smtp_sink.messages if "frieda-" in str(m["To"]) and "Anmeldelink" in str(m["Subject"])
    )
    fac, fac_csrf = await signed_in(client, smtp_sink, browsers, parseaddr(str(fac_email))[1])
    anna, anna_csrf = await signed_in(client, smtp_sink, browsers, rep_email(world, "a"))
    ben, ben_csrf = await signed_in(client, smtp_sink, browsers, rep_email(world, "b"))
    r = await anna.post(f"/convoys/{cid}/report", data={"done": "Jetzt 20 % Rabatt bei uns!", "_csrf": anna_csrf})
    assert r.status_code == 303
    report_id = re.search(r'href="/reports/([0-9a-f-]{36})"', (await ben.get(f"/convoys/{cid}")).text)
    assert report_id
    rid = report_id.group(1)

    page = await ben.get(f"/reports/{rid}")
    assert "Report to the facilitators" in page.text  # Ben reads English
    r = await ben.post(f"/flag/report/{rid}", data={"reason": "other", "note": "", "_csrf": ben_csrf})
    assert r.status_code == 422 and "Please say in a few words" in r.text
    r = await ben.post(f"/flag/report/{rid}", data={"reason": "spam", "_csrf": ben_csrf, "next": f"/reports/{rid}"})
    assert r.status_code == 200 and "facilitators have been told" in r.text
    assert (await ben.get(f"/convoys/{cid}/flags")).status_code == 403  # members never see the queue

    queue = await fac.get(f"/convoys/{cid}/flags")
    assert queue.status_code == 200 and "Jetzt 20 % Rabatt" in queue.text and "Spam oder Verkaufsmasche" in queue.text
    flag_id = re.search(rf'action="/convoys/{cid}/flags/([0-9a-f-]{{36}})"', queue.text)
    assert flag_id
    r = await fac.post(f"/convoys/{cid}/flags/{flag_id.group(1)}", data={"action": "act", "_csrf": fac_csrf})
    assert r.status_code == 422 and "Bitte nennen Sie einen Grund" in r.text
    r = await fac.post(
        f"/convoys/{cid}/flags/{flag_id.group(1)}",
        data={"action": "act", "reason": "Keine Werbung", "_csrf": fac_csrf},
    )
    assert r.status_code == 303
    assert "Jetzt 20 % Rabatt" not in (await ben.get(f"/convoys/{cid}")).text
    assert "Nichts offen." in (await fac.get(f"/convoys/{cid}/flags")).text

    # A changed charter: representatives are sent to it first and accept it again.
    r = await fac.post(f"/convoys/{cid}/charter", data={"text": "Vertraulich bleibt vertraulich.", "_csrf": fac_csrf})
    assert r.status_code == 303
    r = await ben.get("/")
    assert r.status_code == 303 and r.headers["location"] == f"/convoys/{cid}/charter"
    charter = await ben.get(f"/convoys/{cid}/charter")
    assert "Vertraulich bleibt vertraulich." in charter.text and "I accept the charter" in charter.text
    version = re.search(r'name="version" value="(\d+)"', charter.text)
    assert version
    r = await ben.post(f"/convoys/{cid}/charter/accept", data={"version": version.group(1), "_csrf": ben_csrf})
    assert r.status_code == 303
    assert (await ben.get("/")).status_code == 200
