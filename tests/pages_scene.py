"""A convoy with something on every page, for the tests that walk all pages as each role.

Everyone reads German. A facilitator, two representatives (Anna, Ben), a third company in
Sachsen-Anhalt (ST) without a representative, an observer; a project with a milestone that has a
target date; two reports with moods; a comment, a hidden comment, a flag waiting in the queue; a
changed status; a digitalisation check; an unused invitation. ``pages`` lists the pages each role
sees; ``refusals`` the requests each role makes that a service refuses (their answers are pages too).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import SmtpSink, new_token_for
from tests.world import World, build_world, sign_in

GOLDEN = Path(__file__).resolve().parent / "golden" / "check-v1" / "plumber-hamburg.json"
USER_TEXT = (
    "Terminvergabe Nord",
    "Online-Terminvergabe",
    "Sanitär Müller",
    "Laden Schmidt",
    "Metallbau Stahl",
    "Anna Müller",
    "Ben Schmidt",
    "Frieda Berater",
    "Jana Berg",
    "Handwerkskammer",
    "Kalender gewählt",
    "Kalender wählen",
    "Online-Termine",
    "Kassensystem verglichen",
    "Welches Tool nutzt ihr?",
    "Jetzt 20 % Rabatt bei uns!",
    "Werbung ist hier nicht erlaubt",
)
"""What people typed (German): excluded when a test looks for English words on a page."""


@dataclass
class Person:
    client: httpx.AsyncClient
    csrf: str
    email: str
    cookie: str

    async def post(self, path: str, data: dict[str, Any] | None = None, htmx: bool = False) -> httpx.Response:
        headers = {"hx-request": "true"} if htmx else {}
        return await self.client.post(path, data={**(data or {}), "_csrf": self.csrf}, headers=headers)


@dataclass
class Scene:
    world: World
    fac: Person
    anna: Person
    ben: Person
    observer: Person
    report_id: str
    ben_report_id: str
    check_id: str
    invitation: str
    pages: dict[str, list[str]] = field(default_factory=dict)

    @property
    def cid(self) -> str:
        return self.world.convoy_id


async def person(client: httpx.AsyncClient, sink: SmtpSink, made: list[httpx.AsyncClient], email: str) -> Person:
    b = httpx.AsyncClient(base_url=client.base_url, timeout=20)
    made.append(b)
    await sign_in(b, sink, email)
    page = await b.get("/profile/")
    assert page.status_code == 200, page.text
    found = re.search(r'name="_csrf" value="([^"]+)"', page.text)
    assert found
    return Person(client=b, csrf=found.group(1), email=email, cookie=str(b.cookies.get("convoy_session")))


async def build_scene(client: httpx.AsyncClient, sink: SmtpSink, made: list[httpx.AsyncClient]) -> Scene:
    world = await build_world(client, sink, lang_b="de")
    cid = world.convoy_id
    fac_h = world.facilitator
    started = (datetime.now(UTC).date() - timedelta(days=22)).isoformat()  # a few rounds in: charts, trends
    r = await client.patch(f"/api/v1/convoys/{cid}", json={"start_date": started}, headers=fac_h)
    assert r.status_code == 200, r.text
    r = await client.post(f"/api/v1/convoys/{cid}/status", json={"status": "active"}, headers=fac_h)
    assert r.status_code == 200, r.text
    r = await client.post(
        f"/api/v1/convoys/{cid}/companies", json={"name": "Metallbau Stahl", "region": "ST"}, headers=fac_h
    )
    assert r.status_code == 201, r.text
    fac_email = next(
        parseaddr(str(m["To"]))[1]
        for m in sink.messages
        if "frieda-" in str(m["To"]) and "Anmeldelink" in str(m["Subject"])
    )
    fac = await person(client, sink, made, fac_email)
    anna = await person(client, sink, made, world.reps["a"].email)
    ben = await person(client, sink, made, world.reps["b"].email)

    # An observer of the chamber.
    email = f"jana-{uuid.uuid4().hex[:8]}@ihk.example"
    body = {"email": email, "name": "Jana Berg", "language": "de", "note": "Handwerkskammer"}
    r = await client.post(f"/api/v1/convoys/{cid}/observers/invitations", json=body, headers=fac_h)
    assert r.status_code == 201, r.text
    token = await new_token_for(sink, email, "cvi_", set())
    r = await client.post("/api/v1/invitations/accept", json={"token": token, "name": "Jana Berg", "language": "de"})
    assert r.status_code == 201, r.text
    client.cookies.clear()
    observer = await person(client, sink, made, email)

    # An invitation nobody has used yet (the invitation page).
    email = f"lea-{uuid.uuid4().hex[:8]}@stahl.example"
    company = next(
        c
        for c in (await client.get(f"/api/v1/convoys/{cid}", headers=fac_h)).json()["companies"]
        if c["name"] == "Metallbau Stahl"
    )
    r = await client.post(
        f"/api/v1/convoys/{cid}/companies/{company['id']}/invitations",
        json={"email": email, "name": "", "language": "de"},
        headers=fac_h,
    )
    assert r.status_code == 201, r.text
    invitation = await new_token_for(sink, email, "cvi_", set())

    # Anna's project, a milestone with a target date, two reports with moods.
    r = await anna.post(f"/convoys/{cid}/project/", {"title": "Online-Termine", "project_type": ""})
    assert r.status_code == 303, r.text
    r = await anna.post(f"/convoys/{cid}/project/milestones", {"title": "Kalender wählen", "target_date": "2026-11-12"})
    assert r.status_code == 303, r.text
    r = await anna.post(f"/convoys/{cid}/report", {"done": "Kalender gewählt", "mood": "4"})
    assert r.status_code == 303, r.text
    r = await ben.post(
        f"/convoys/{cid}/report",
        {"done": "Kassensystem verglichen", "mood": "3", "help_wanted": "1", "help_topic": "Kassensystem"},
    )
    assert r.status_code == 303, r.text
    timeline = (await ben.client.get(f"/convoys/{cid}")).text
    report_id = re.search(r'<a href="/reports/([0-9a-f-]{36})">Sanitär Müller', timeline)
    ben_report = re.search(r'<a href="/reports/([0-9a-f-]{36})">Laden Schmidt', timeline)
    assert report_id and ben_report, timeline[:2000]

    # A comment, one hidden by the facilitator, a flag waiting in the queue.
    rid = report_id.group(1)
    for text in ("Welches Tool nutzt ihr?", "Jetzt 20 % Rabatt bei uns!"):
        r = await ben.post(f"/reports/{rid}/comments", {"body": text})
        assert r.status_code in (200, 303), r.text
    comments = (await fac.client.get(f"/reports/{rid}")).text
    ad = re.search(r'action="/comments/([0-9a-f-]{36})/hide"', comments.split("Rabatt", 1)[1])
    assert ad, comments
    ad_id = ad.group(1)
    r = await fac.post(f"/comments/{ad_id}/hide", {"reason": "Werbung ist hier nicht erlaubt", "report_id": rid})
    assert r.status_code == 303, r.text
    r = await anna.post(f"/flag/report/{ben_report.group(1)}", {"reason": "spam", "next": f"/reports/{rid}"})
    assert r.status_code == 200, r.text

    # A digitalisation check (anonymous).
    answers = json.loads(GOLDEN.read_text())["answers"]
    r = await client.post("/api/v1/check/", json=answers)
    assert r.status_code in (200, 201), r.text
    check_id = r.json()["id"]

    scene = Scene(
        world=world,
        fac=fac,
        anna=anna,
        ben=ben,
        observer=observer,
        report_id=rid,
        ben_report_id=ben_report.group(1),
        check_id=check_id,
        invitation=invitation,
    )
    scene.pages = {
        "representative": [
            "/",
            f"/convoys/{cid}",
            f"/convoys/{cid}/search?q=Kalender",
            f"/reports/{rid}",
            f"/reports/{ben_report.group(1)}",
            f"/convoys/{cid}/report",
            f"/convoys/{cid}/project/",
            f"/convoys/{cid}/schedule",
            f"/convoys/{cid}/charter",
            "/profile/",
        ],
        "facilitator": [
            "/",
            "/facilitate",
            "/convoys/new",
            f"/convoys/{cid}",
            f"/reports/{rid}",
            f"/convoys/{cid}/manage",
            f"/convoys/{cid}/schedule",
            f"/convoys/{cid}/audit",
            f"/convoys/{cid}/flags",
            f"/convoys/{cid}/charter",
            "/pool",
            "/programme",
            "/profile/",
        ],
        "observer": [
            "/",
            f"/convoys/{cid}",
            f"/reports/{rid}",
            f"/convoys/{cid}/schedule",
            f"/convoys/{cid}/charter",
            "/profile/",
        ],
        "visitor": [
            "/sign-in",
            "/sign-in/cvl_not-a-real-link",
            "/check/",
            f"/check/{check_id}",
            f"/invitations/{invitation}",
            "/invitations/cvi_not-a-real-invitation",
            "/no/such/page",
        ],
    }
    return scene
