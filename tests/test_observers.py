"""Observer seats (issue #22): people who read a convoy along without reporting.

A facilitator invites an observer (or a representative a second reader for their company) with the
usual single-use invitation. The observer reads everything members read (convoy, timeline, reports,
comments, board, search, schedule), gets the digest by email at each close and nothing else a member
gets, and every change they try answers 403. Members see them in the convoy, apart from the companies.
A facilitator's removal ends the seat everywhere; export and erasure include it.
The generated authorization matrix (tests/test_hostile_authz.py) checks every route as an observer.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from schemas import events as ev
from tests.conftest import SmtpSink, Stack, eventually, new_token_for
from tests.test_cycle_mail import processed, publish
from tests.test_gdpr import occurrences
from tests.test_pages import signed_in
from tests.test_reports import post_report, project, schedule
from tests.world import World, bearer, build_world, sign_in

NOTE = "IHK Nord, Digitalberatung"


@dataclass
class Observer:
    person_id: str
    email: str
    name: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return bearer(self.token)


async def invite_observer(
    client: httpx.AsyncClient,
    sink: SmtpSink,
    world: World,
    inviter: dict[str, str],
    *,
    name: str = "Jana Berg",
    note: str = NOTE,
    language: str = "de",
    company_id: str | None = None,
    browser: httpx.AsyncClient | None = None,
) -> Observer:
    """Invite (as ``inviter``) and accept; ``browser``: accept there and keep its session cookie."""
    email = f"jana-{uuid.uuid4().hex[:8]}@ihk.example"
    body: dict[str, Any] = {"email": email, "name": name, "language": language, "note": note}
    if company_id is not None:
        body["company_id"] = company_id
    r = await client.post(f"/api/v1/convoys/{world.convoy_id}/observers/invitations", json=body, headers=inviter)
    assert r.status_code == 201, r.text
    assert r.json()["role"] == "observer"
    token = await new_token_for(sink, email, "cvi_", set())
    preview = await client.post("/api/v1/invitations/preview", json={"token": token})
    assert preview.status_code == 200 and preview.json()["role"] == "observer", preview.text
    accepting = browser or client
    r = await accepting.post("/api/v1/invitations/accept", json={"token": token, "name": name, "language": language})
    assert r.status_code == 201, r.text
    if browser is None:
        client.cookies.clear()
    return Observer(person_id=r.json()["person"]["id"], email=email, name=name, token=r.json()["access_token"])


def subjects(sink: SmtpSink, address: str) -> list[str]:
    return [str(m["Subject"]) for m in sink.to(address)]


async def activate(client: httpx.AsyncClient, world: World) -> None:
    r = await client.post(
        f"/api/v1/convoys/{world.convoy_id}/status", json={"status": "active"}, headers=world.facilitator
    )
    assert r.status_code == 200, r.text


async def test_an_observer_reads_what_members_read_gets_the_digest_and_writes_nothing(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack, browsers: list[httpx.AsyncClient]
) -> None:
    world = await build_world(client, smtp_sink, companies=2)
    cid, a, b = world.convoy_id, world.reps["a"], world.reps["b"]
    await schedule(client, world)
    page = httpx.AsyncClient(base_url=client.base_url, timeout=20, headers={"Accept-Language": "de"})
    browsers.append(page)
    jana = await invite_observer(client, smtp_sink, world, world.facilitator, browser=page)
    [invitation] = smtp_sink.to(jana.email)
    assert invitation["Subject"] == "Einladung in den Konvoi „Terminvergabe Nord“ als Beobachter:in"

    # Members see the observer, apart from the companies.
    for reader in (a.auth, world.facilitator, jana.auth):
        convoy = (await client.get(f"/api/v1/convoys/{cid}", headers=reader)).json()
        assert [(o["person_id"], o["name"], o["note"], o["company_id"]) for o in convoy["observers"]] == [
            (jana.person_id, "Jana Berg", NOTE, None)
        ]
        assert jana.person_id not in [p["person_id"] for c in convoy["companies"] for p in c["representatives"]]
    me = (await client.get("/api/v1/me", headers=jana.auth)).json()
    assert [(c["convoy_id"], c["role"]) for c in me["convoys"]] == [(cid, "observer")]

    # Content to read: a project, a report with a facilitator note, a comment.
    milestone = (await project(client, world, "a"))["milestones"][0]
    await activate(client, world)
    # The round opens (as the scheduler announces it): prompts and a nudge go to the representatives only.
    due = datetime.now(UTC) + timedelta(days=1)
    for event in (
        ev.CycleOpened(
            convoy_id=uuid.UUID(cid), cycle_index=10, opens_at=due - timedelta(days=3), due_at=due, closes_at=due
        ),
        ev.NudgeDue(convoy_id=uuid.UUID(cid), cycle_index=10, nudge=1, due_at=due),
    ):
        await processed(stack, await publish(stack, event))
    await smtp_sink.wait_for_subject(a.email, "Check-in")
    await smtp_sink.wait_for_subject(a.email, "Erinnerung")
    r = await post_report(
        client, world, "a", done="Kalender **angebunden**", facilitator_note="Nur intern", mood=4, help_wanted=True
    )
    assert r.status_code == 201, r.text
    report = r.json()
    r = await client.post(f"/api/v1/reports/{report['id']}/comments", json={"body": "Welches Tool?"}, headers=b.auth)
    assert r.status_code == 201, r.text
    comment = r.json()
    await smtp_sink.wait_for_subject(b.email, "Sanitär Müller")  # the report notice reached the peer

    # --- reads, exactly as a member's
    async def get(path: str, **params: Any) -> Any:
        r = await client.get(path, headers=jana.auth, params=params)
        assert r.status_code == 200, (path, r.text)
        return r.json()

    timeline = await get(f"/api/v1/convoys/{cid}/timeline")
    assert [t["id"] for t in timeline["reports"]] == [report["id"]]
    read = await get(f"/api/v1/reports/{report['id']}")
    member_view = (await client.get(f"/api/v1/reports/{report['id']}", headers=b.auth)).json()
    assert read == member_view and read["facilitator_note"] is None
    assert [c["id"] for c in (await get(f"/api/v1/reports/{report['id']}/comments"))["comments"]] == [comment["id"]]
    board = await get(f"/api/v1/convoys/{cid}/board")
    assert sorted(c["name"] for c in board["companies"]) == ["Laden Schmidt", "Sanitär Müller"]
    hits = await get(f"/api/v1/convoys/{cid}/search", q="Kalender")
    assert [h["report_id"] for h in hits["hits"]] == [report["id"]]
    assert (await get(f"/api/v1/convoys/{cid}/schedule"))["cycles"]
    assert (await get(f"/api/v1/convoys/{cid}/companies/{a.company_id}/project"))["title"]
    assert [x["id"] for x in (await get(f"/api/v1/convoys/{cid}/export.json"))["reports"]] == [report["id"]]
    assert (await get(f"/api/v1/convoys/{cid}/charter"))["text"]

    # --- facilitator-only reads and every kind of change: 403
    refused = [
        ("GET", f"/api/v1/convoys/{cid}/audit", None),
        ("GET", f"/api/v1/convoys/{cid}/flags", None),
        ("GET", f"/api/v1/convoys/{cid}/join-requests", None),
        ("POST", f"/api/v1/convoys/{cid}/reports", {"done": "Ich berichte auch"}),
        ("PATCH", f"/api/v1/reports/{report['id']}", {"done": "geändert"}),
        ("POST", f"/api/v1/reports/{report['id']}/comments", {"body": "Darf ich?"}),
        ("PUT", f"/api/v1/reports/{report['id']}/kudos", None),
        ("DELETE", f"/api/v1/reports/{report['id']}/kudos", None),
        ("POST", f"/api/v1/reports/{report['id']}/help-offers", {"message": "Ich kenne jemanden"}),
        ("POST", f"/api/v1/reports/{report['id']}/flags", {"reason": "spam"}),
        ("POST", f"/api/v1/comments/{comment['id']}/flags", {"reason": "spam"}),
        ("POST", f"/api/v1/reports/{report['id']}/hide", {"reason": "test"}),
        ("PATCH", f"/api/v1/milestones/{milestone['id']}", {"status": "done"}),
        ("PUT", f"/api/v1/convoys/{cid}/companies/{a.company_id}/project", {"title": "Meins"}),
        ("PATCH", f"/api/v1/convoys/{cid}", {"name": "Umbenannt"}),
        ("PUT", f"/api/v1/convoys/{cid}/slack", {"webhook_url": None}),
        ("POST", f"/api/v1/convoys/{cid}/close-now", None),
        ("POST", f"/api/v1/convoys/{cid}/companies/{a.company_id}/skips", {"cycle_index": 11, "reason": "x"}),
        ("POST", f"/api/v1/convoys/{cid}/charter/accept", {}),
        ("POST", f"/api/v1/convoys/{cid}/observers/invitations", {"email": "x@ihk.example"}),
    ]
    for method, path, body in refused:
        r = await client.request(method, path, json=body, headers=jana.auth)
        assert r.status_code == 403, (method, path, r.status_code, r.text)
    after = (await client.get(f"/api/v1/reports/{report['id']}", headers=b.auth)).json()
    assert after == member_view  # nothing changed

    # --- pages: the convoy shows the observers; no report form, no comment form
    r = await page.get(f"/convoys/{cid}")
    assert r.status_code == 200 and "Beobachter:innen" in r.text and NOTE in r.text, r.text[:300]
    assert "Sie begleiten diesen Konvoi als Beobachter:in" in r.text
    assert (await page.get(f"/convoys/{cid}/report")).status_code == 403
    r = await page.get(f"/reports/{report['id']}")
    assert r.status_code == 200 and "Kalender" in r.text
    assert f'action="/reports/{report["id"]}/comments"' not in r.text and "/flag/report/" not in r.text
    members_page = httpx.AsyncClient(base_url=client.base_url, timeout=20)
    browsers.append(members_page)
    await sign_in(members_page, smtp_sink, b.email)
    assert NOTE in (await members_page.get(f"/convoys/{cid}")).text

    # --- the close: the digest reaches the observer; no prompt, no report notice ever did
    r = await client.post(f"/api/v1/convoys/{cid}/close-now", headers=world.facilitator)
    assert r.status_code == 200, r.text
    digest = await smtp_sink.wait_for_subject(jana.email, "Konvoi-Digest")
    assert "Kalender" in str(digest.get_body(("plain",)).get_content())  # type: ignore[union-attr]
    await smtp_sink.wait_for_subject(a.email, "Konvoi-Digest")
    assert subjects(smtp_sink, jana.email) == [invitation["Subject"], digest["Subject"]]


async def test_a_removed_observer_reads_nothing_more(client: httpx.AsyncClient, smtp_sink: SmtpSink) -> None:
    world = await build_world(client, smtp_sink, companies=1)
    cid = world.convoy_id
    jana = await invite_observer(client, smtp_sink, world, world.facilitator, language="en")
    r = await post_report(client, world, "a")
    assert r.status_code == 201, r.text
    report_id = r.json()["id"]
    assert (await client.get(f"/api/v1/reports/{report_id}", headers=jana.auth)).status_code == 200

    # A representative cannot remove her; the facilitator can (audited; she is told).
    url = f"/api/v1/convoys/{cid}/observers/{jana.person_id}/removal"
    assert (await client.post(url, json={"reason": "x"}, headers=world.reps["a"].auth)).status_code == 403
    r = await client.post(url, json={"reason": "Programm beendet"}, headers=world.facilitator)
    assert r.status_code == 200 and r.json()["observers"] == [], r.text
    # At once in services/convoys and in milestones (told before the removal answered, issue #19);
    # in reminders as soon as the event is handled.
    for path in (f"/api/v1/convoys/{cid}/timeline", f"/api/v1/convoys/{cid}/board", f"/api/v1/reports/{report_id}"):
        got = await client.get(path, headers=jana.auth)
        assert got.status_code == 404, (path, got.status_code)
    assert (await client.get(f"/api/v1/convoys/{cid}", headers=jana.auth)).status_code == 404
    assert (await client.post(url, json={"reason": "again"}, headers=world.facilitator)).status_code == 404
    audit = (await client.get(f"/api/v1/convoys/{cid}/audit", headers=world.facilitator)).json()["entries"]
    removed = [e for e in audit if e["action"] == "observer.removed"]
    assert [(e["object_id"], e["reason"]) for e in removed] == [(jana.person_id, "Programm beendet")]
    notice = await smtp_sink.wait_for_subject(jana.email, "no longer observe")
    assert "Programm beendet" in str(notice.get_body(("plain",)).get_content())  # type: ignore[union-attr]

    async def schedule_refused() -> bool:
        return (await client.get(f"/api/v1/convoys/{cid}/schedule", headers=jana.auth)).status_code == 404

    await eventually(schedule_refused)
    assert (await client.get("/api/v1/me", headers=jana.auth)).json()["convoys"] == []


async def test_a_representative_invites_a_second_reader_for_their_own_company(
    client: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    world = await build_world(client, smtp_sink, companies=2)
    cid, a, b = world.convoy_id, world.reps["a"], world.reps["b"]
    url = f"/api/v1/convoys/{cid}/observers/invitations"
    # Not for another company; an outsider learns nothing.
    r = await client.post(url, json={"email": "x@y.example", "company_id": b.company_id}, headers=a.auth)
    assert r.status_code == 403, r.text
    other = await build_world(client, smtp_sink, companies=1)
    r = await client.post(url, json={"email": "x@y.example"}, headers=other.reps["a"].auth)
    assert r.status_code == 404, r.text

    tom = await invite_observer(client, smtp_sink, world, a.auth, name="Tom Müller", note="Geschäftsführer")
    convoy = (await client.get(f"/api/v1/convoys/{cid}", headers=b.auth)).json()
    assert [(o["name"], o["company_id"], o["company_name"]) for o in convoy["observers"]] == [
        ("Tom Müller", a.company_id, "Sanitär Müller")
    ]
    # Already a reader: a second invitation to the address, or as a representative, is refused.
    r = await client.post(url, json={"email": tom.email}, headers=world.facilitator)
    assert r.status_code == 409, r.text
    r = await client.post(
        f"/api/v1/convoys/{cid}/companies/{a.company_id}/invitations", json={"email": tom.email}, headers=a.auth
    )
    assert r.status_code in (403, 409), r.text  # representatives do not invite representatives

    # The company leaves: its second reader's seat ends with it.
    r = await client.post(
        f"/api/v1/convoys/{cid}/companies/{a.company_id}/removal",
        json={"reason": "Aufgegeben"},
        headers=world.facilitator,
    )
    assert r.status_code == 200 and r.json()["observers"] == [], r.text

    async def gone() -> bool:
        got = await client.get(f"/api/v1/convoys/{cid}/timeline", headers=tom.auth)
        assert got.status_code == 404, got.text
        return True

    await eventually(gone)


async def test_export_and_erasure_include_the_observer_seat(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    world = await build_world(client, smtp_sink, companies=1)
    cid = world.convoy_id
    note = f"Förderprogramm {uuid.uuid4().hex[:6]}"
    jana = await invite_observer(client, smtp_sink, world, world.facilitator, name="Jana Bergmann", note=note)

    doc = (await client.get("/api/v1/me/export", headers=jana.auth)).json()
    convoys = doc["services"]["convoys"]
    [seat] = convoys["memberships"]
    assert (seat["convoy_id"], seat["role"], seat["note"], seat["removed_at"]) == (cid, "observer", note, None)
    [invitation] = convoys["invitations"]
    assert (invitation["role"], invitation["email"], invitation["note"]) == ("observer", jana.email, note)
    assert any(e["action"] == "observer.joined" for e in convoys["audit_entries"])

    r = await client.request("DELETE", "/api/v1/me", json={"confirm": "DELETE"}, headers=jana.auth)
    assert r.status_code == 200, r.text
    convoy = (await client.get(f"/api/v1/convoys/{cid}", headers=world.reps["a"].auth)).json()
    assert convoy["observers"] == []

    async def forgotten() -> bool:
        assert await occurrences(stack.settings.database_url, [jana.email, "Jana Bergmann", note]) == []
        conn = await asyncpg.connect(stack.settings.database_url)
        try:
            rows = await conn.fetch(
                "SELECT 1 FROM milestones.observers WHERE person_id = $1", uuid.UUID(jana.person_id)
            )
            ended = await conn.fetchval(
                "SELECT removed_reason FROM convoys.observers WHERE person_id = $1", uuid.UUID(jana.person_id)
            )
        finally:
            await conn.close()
        assert rows == [] and ended == "account deleted"
        return True

    await eventually(forgotten, timeout=20)


async def test_facilitators_invite_and_remove_observers_on_the_manage_page(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, browsers: list[httpx.AsyncClient]
) -> None:
    world = await build_world(client, smtp_sink, companies=1)
    cid = world.convoy_id
    email = (await client.get("/api/v1/me", headers=world.facilitator)).json()["person"]["email"]
    fac, csrf = await signed_in(client, smtp_sink, browsers, email)
    url = f"/convoys/{cid}/manage/observers"

    r = await fac.post(url, data={"_csrf": csrf, "email": "keine-adresse", "language": "de"})
    assert r.status_code == 422 and "aria-invalid" in r.text
    address = f"ole-{uuid.uuid4().hex[:8]}@ihk.example"
    form = {"_csrf": csrf, "email": address, "name": "Ole Berg", "note": "IHK <Digitalberatung>", "language": "de"}
    r = await fac.post(url, data=form)
    assert r.status_code == 303 and "done=invited" in r.headers["location"], r.text
    token = await new_token_for(smtp_sink, address, "cvi_", set())
    r = await client.post("/api/v1/invitations/accept", json={"token": token, "name": "Ole Berg"})
    assert r.status_code == 201, r.text
    client.cookies.clear()
    person_id = r.json()["person"]["id"]

    manage = (await fac.get(f"/convoys/{cid}/manage")).text
    assert "Ole Berg" in manage and "IHK &lt;Digitalberatung&gt;" in manage  # escaped
    r = await fac.post(f"{url}/{person_id}/remove", data={"_csrf": csrf, "reason": ""})
    assert r.status_code == 422  # a reason is needed
    r = await fac.post(f"{url}/{person_id}/remove", data={"_csrf": csrf, "reason": "Programm beendet"})
    assert r.status_code == 303, r.text
    assert (await client.get(f"/api/v1/convoys/{cid}", headers=world.facilitator)).json()["observers"] == []
    assert "Ole Berg" not in (await fac.get(f"/convoys/{cid}/manage")).text
