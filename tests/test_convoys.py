"""Convoys, people, roles, invitations and sign-in, over HTTP against the real stack."""

from __future__ import annotations

import re
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import TOKEN_CACHE_S, SmtpSink, Stack, eventually, html_of, settled, text_of, token_in
from tests.world import ADMIN, appoint_facilitator, bearer, build_world, sign_in


async def test_a_facilitator_sets_up_a_convoy_of_three_by_invitation(
    client: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    world = await build_world(client, smtp_sink, companies=3)
    r = await client.get(f"/api/v1/convoys/{world.convoy_id}", headers=world.facilitator)
    assert r.status_code == 200
    convoy = r.json()
    assert convoy["status"] == "forming"
    assert convoy["cadence"] == {"frequency": "weekly", "weekday": "mon", "local_time": "09:00", "window_hours": 72}
    assert [f["name"] for f in convoy["facilitators"]] == ["Frieda Berater"]
    assert {c["name"]: [p["name"] for p in c["representatives"]] for c in convoy["companies"]} == {
        "Sanitär Müller": ["Anna Müller"],
        "Laden Schmidt": ["Ben Schmidt"],
        "Metallbau Stahl": ["Clara Stahl"],
    }

    # Each person sees their convoys with their role.
    r = await client.get("/api/v1/me", headers=world.reps["b"].auth)
    assert r.status_code == 200
    me = r.json()
    assert me["person"]["email"] == world.reps["b"].email and me["person"]["language"] == "en"
    assert [(c["name"], c["role"], c["company_name"]) for c in me["convoys"]] == [
        ("Terminvergabe Nord", "representative", "Laden Schmidt")
    ]
    r = await client.get("/api/v1/me", headers=world.facilitator)
    assert [(c["role"]) for c in r.json()["convoys"]] == ["facilitator"]

    # The invitation emails were in the invitee's language and named convoy and company.
    [invitation] = [m for m in smtp_sink.to(world.reps["b"].email)]
    assert "Terminvergabe Nord" in invitation["Subject"] or "Terminvergabe Nord" in str(invitation)

    # Everything is in the audit log.
    r = await client.get(f"/api/v1/convoys/{world.convoy_id}/audit", headers=world.facilitator)
    actions = [e["action"] for e in r.json()["entries"]]
    assert actions.count("person.invited") == 3 and actions.count("person.joined") == 3
    assert actions.count("company.joined") == 3 and actions[-1] == "convoy.created"


async def test_sign_in_never_reveals_whether_an_address_is_known(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, settings: Any, stack: Stack
) -> None:
    await appoint_facilitator(client, smtp_sink, "known@zentrum.example")
    known = await client.post("/api/v1/auth/sign-in", json={"email": "known@zentrum.example"})
    unknown = await client.post("/api/v1/auth/sign-in", json={"email": "nobody@nowhere.example"})
    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()
    await smtp_sink.wait_for_mail_to("known@zentrum.example", 3)  # appointment, first sign-in, this one
    await settled(stack)
    assert smtp_sink.to("nobody@nowhere.example") == []

    # A link works once.
    link = token_in(smtp_sink.to("known@zentrum.example")[-1], "cvl_")
    assert (await client.post("/api/v1/auth/sign-in/complete", json={"token": link})).status_code == 200
    again = await client.post("/api/v1/auth/sign-in/complete", json={"token": link})
    assert again.status_code == 410 and "ask for a new one" in again.json()["detail"]

    # An expired link does not work.
    await client.post("/api/v1/auth/sign-in", json={"email": "known@zentrum.example"})
    [*_, mail] = await smtp_sink.wait_for_mail_to("known@zentrum.example", 4)
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute("UPDATE convoys.sign_in_links SET expires_at = now() - interval '1 second'")
    finally:
        await conn.close()
    r = await client.post("/api/v1/auth/sign-in/complete", json={"token": token_in(mail, "cvl_")})
    assert r.status_code == 410

    # Asking too often for one address is answered the same, known or not (and sends nothing more: see
    # test_hostile_abuse.py), so the answer tells nothing and nobody is locked out.
    statuses = [
        (await client.post("/api/v1/auth/sign-in", json={"email": "nobody@nowhere.example"})).status_code
        for _ in range(6)
    ]
    assert statuses == [202] * 6


async def test_browser_session_cookie_needs_csrf_and_ends_on_sign_out(
    client: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    await appoint_facilitator(client, smtp_sink, "cookie@zentrum.example")
    signed_in = await sign_in(client, smtp_sink, "cookie@zentrum.example")
    cookie = client.cookies.get("convoy_session")
    assert cookie and cookie.startswith("cvs_")
    assert "session_token" not in signed_in  # the session travels only in the HttpOnly cookie

    assert (await client.get("/api/v1/me")).status_code == 200
    r = await client.patch("/api/v1/me", json={"language": "en"})
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]
    r = await client.patch("/api/v1/me", json={"language": "en"}, headers={"X-CSRF-Token": "wrong"})
    assert r.status_code == 403
    r = await client.patch("/api/v1/me", json={"language": "en"}, headers={"X-CSRF-Token": signed_in["csrf_token"]})
    assert r.status_code == 200 and r.json()["person"]["language"] == "en"

    r = await client.post("/api/v1/auth/sign-out", headers={"X-CSRF-Token": signed_in["csrf_token"]})
    assert r.status_code == 200
    client.cookies.set("convoy_session", cookie)
    assert (await client.get("/api/v1/me")).status_code == 401

    # The access token signs out too.
    access = signed_in["access_token"]
    assert (await client.get("/api/v1/me", headers=bearer(access))).status_code == 200
    client.cookies.clear()
    await client.post("/api/v1/auth/sign-out", headers=bearer(access))
    assert (await client.get("/api/v1/me", headers=bearer(access))).status_code == 401


async def test_personal_api_tokens(client: httpx.AsyncClient, smtp_sink: SmtpSink) -> None:
    world = await build_world(client, smtp_sink, companies=1)
    anna = world.reps["a"]
    r = await client.post("/api/v1/me/tokens", json={"name": "Reporting script"}, headers=anna.auth)
    assert r.status_code == 201
    created = r.json()
    secret = created["secret"]
    assert secret.startswith("cvy_")
    r = await client.get(f"/api/v1/convoys/{world.convoy_id}", headers=bearer(secret))
    assert r.status_code == 200
    r = await client.get("/api/v1/me/tokens", headers=anna.auth)
    [listed] = r.json()["tokens"]
    assert listed["name"] == "Reporting script" and "secret" not in listed and listed["last_used_at"]
    # Someone else cannot revoke it; its owner can, and then it stops working.
    other = await build_world(client, smtp_sink, companies=1)
    r = await client.delete(f"/api/v1/me/tokens/{created['token']['id']}", headers=other.reps["a"].auth)
    assert r.status_code == 404
    r = await client.delete(f"/api/v1/me/tokens/{created['token']['id']}", headers=anna.auth)
    assert r.status_code == 204

    async def refused() -> bool:
        return (await client.get("/api/v1/me", headers=bearer(secret))).status_code == 401

    # the API's token cache (CONVOY_TOKEN_CACHE_S, short in tests) must not outlive a revocation by more
    await eventually(refused, timeout=TOKEN_CACHE_S + 0.5)


async def test_invitations_are_single_use_expiring_and_withdrawn_with_their_company(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, settings: Any
) -> None:
    world = await build_world(client, smtp_sink, companies=1)
    url = f"/api/v1/convoys/{world.convoy_id}/companies/{world.companies['a']['id']}/invitations"

    # Already a member: refused.
    r = await client.post(url, json={"email": world.reps["a"].email.upper()}, headers=world.facilitator)
    assert r.status_code == 409

    # Used once: gone.
    r = await client.post(url, json={"email": "second@mueller.example"}, headers=world.facilitator)
    assert r.status_code == 201
    [mail] = await smtp_sink.wait_for_mail_to("second@mueller.example")
    token = token_in(mail, "cvi_")
    preview = await client.post("/api/v1/invitations/preview", json={"token": token})
    assert preview.json()["company_name"] == "Sanitär Müller"
    assert (await client.post("/api/v1/invitations/accept", json={"token": token, "name": "Zweite"})).status_code == 201
    r = await client.post("/api/v1/invitations/accept", json={"token": token, "name": "Zweite"})
    assert r.status_code == 410 and "already been used" in r.json()["detail"]

    # A newer invitation replaces an older one; an expired one is gone.
    for _ in range(2):
        await client.post(url, json={"email": "third@mueller.example"}, headers=world.facilitator)
    older, newer = await smtp_sink.wait_for_mail_to("third@mueller.example", 2)
    r = await client.post("/api/v1/invitations/accept", json={"token": token_in(older, "cvi_"), "name": "Dritte"})
    assert r.status_code == 410 and "withdrawn" in r.json()["detail"]
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute("UPDATE convoys.invitations SET expires_at = now() - interval '1 second'")
    finally:
        await conn.close()
    r = await client.post("/api/v1/invitations/accept", json={"token": token_in(newer, "cvi_"), "name": "Dritte"})
    assert r.status_code == 410 and "expired" in r.json()["detail"]

    # Unknown tokens are simply not found.
    r = await client.post("/api/v1/invitations/accept", json={"token": "cvi_" + "x" * 40, "name": "X"})
    assert r.status_code == 404


async def test_pending_invitations_are_listed_resent_and_withdrawn(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, settings: Any
) -> None:
    """Issue #18: facilitators list a convoy's pending invitations; resend mails a new link (the old one
    stops working, the daily limit per address applies), withdraw ends the link; both are audited."""
    world = await build_world(client, smtp_sink, companies=1)
    base = f"/api/v1/convoys/{world.convoy_id}"
    url = f"{base}/companies/{world.companies['a']['id']}/invitations"
    r = await client.post(url, json={"email": "zweite@mueller.example", "name": "Zweite"}, headers=world.facilitator)
    assert r.status_code == 201
    first = r.json()["id"]
    [mail] = await smtp_sink.wait_for_mail_to("zweite@mueller.example")
    old_token = token_in(mail, "cvi_")

    pending = (await client.get(f"{base}/invitations", headers=world.facilitator)).json()["invitations"]
    assert [(i["id"], i["email"], i["company_name"], i["role"]) for i in pending] == [
        (first, "zweite@mueller.example", "Sanitär Müller", "representative")
    ]
    # members may not see who else is invited
    assert (await client.get(f"{base}/invitations", headers=world.reps["a"].auth)).status_code == 403
    r = await client.post(f"{base}/invitations/{first}/resend", headers=world.reps["a"].auth)
    assert r.status_code == 403

    # resend: a new invitation and a new link; the old one is withdrawn
    r = await client.post(f"{base}/invitations/{first}/resend", headers=world.facilitator)
    assert r.status_code == 201, r.text
    second = r.json()["id"]
    assert second != first
    _, mail = await smtp_sink.wait_for_mail_to("zweite@mueller.example", 2)
    new_token = token_in(mail, "cvi_")
    assert new_token != old_token
    r = await client.post("/api/v1/invitations/preview", json={"token": old_token})
    assert r.status_code == 410
    assert (await client.post("/api/v1/invitations/preview", json={"token": new_token})).status_code == 200
    pending = (await client.get(f"{base}/invitations", headers=world.facilitator)).json()["invitations"]
    assert [i["id"] for i in pending] == [second]
    assert (await client.post(f"{base}/invitations/{first}/resend", headers=world.facilitator)).status_code == 409

    # withdraw: the link stops working, nothing is pending, a second withdraw is refused
    r = await client.post(f"{base}/invitations/{second}/withdrawal", headers=world.facilitator)
    assert r.status_code == 200 and r.json()["invitations"] == []
    r = await client.post("/api/v1/invitations/accept", json={"token": new_token, "name": "Zweite"})
    assert r.status_code == 410 and "withdrawn" in r.json()["detail"]
    r = await client.post(f"{base}/invitations/{second}/withdrawal", headers=world.facilitator)
    assert r.status_code == 409
    audit = (await client.get(f"{base}/audit", headers=world.facilitator)).json()["entries"]
    actions = [e["action"] for e in audit]
    assert actions.count("invitation.resent") == 1 and actions.count("invitation.withdrawn") == 1
    assert "zweite@mueller.example" not in str(audit)

    # the daily limit per address applies to resends too
    r = await client.post(url, json={"email": "dritte@mueller.example"}, headers=world.facilitator)
    current = r.json()["id"]
    codes = []
    for _ in range(settings.invitations_per_day):
        r = await client.post(f"{base}/invitations/{current}/resend", headers=world.facilitator)
        codes.append(r.status_code)
        current = r.json().get("id", current)
    assert codes == [201] * (settings.invitations_per_day - 1) + [429]


async def test_convoy_lifecycle_and_cadence_rules(client: httpx.AsyncClient, smtp_sink: SmtpSink) -> None:
    world = await build_world(client, smtp_sink, companies=1)
    url = f"/api/v1/convoys/{world.convoy_id}"
    f = world.facilitator

    async def status(to: str) -> httpx.Response:
        return await client.post(f"{url}/status", json={"status": to}, headers=f)

    assert (await status("paused")).status_code == 409  # forming cannot pause
    assert (await status("active")).json()["status"] == "active"
    r = await status("forming")
    assert r.status_code == 409 and "possible: completed, paused" in r.json()["detail"]
    assert (await status("paused")).status_code == 200
    assert (await status("active")).status_code == 200

    r = await client.patch(url, json={"cadence": {"frequency": "weekly", "window_hours": 200}}, headers=f)
    assert r.status_code == 400 and "window" in r.json()["detail"]
    r = await client.patch(url, json={"timezone": "Mars/Olympus"}, headers=f)
    assert r.status_code == 400 and "unknown time zone" in r.json()["detail"]
    r = await client.patch(url, json={"start_date": "2027-05-01", "end_date": "2027-04-01"}, headers=f)
    assert r.status_code == 400 and "`end_date`" in r.json()["detail"]
    r = await client.patch(
        url, json={"cadence": {"frequency": "biweekly", "weekday": "tue", "local_time": "08:30"}}, headers=f
    )
    assert r.status_code == 200 and r.json()["cadence"]["weekday"] == "tue"
    r = await client.patch(url, json={"cadence": {"local_time": "25:00"}}, headers=f)
    assert r.status_code == 400 and "local_time" in r.json()["detail"]

    assert (await status("completed")).status_code == 200
    r = await client.post(f"{url}/companies", json={"name": "Zu spät"}, headers=f)
    assert r.status_code == 409 and "read-only" in r.json()["detail"]
    assert (await status("active")).status_code == 409
    assert (await client.patch(url, json={"name": "Neu"}, headers=f)).status_code == 409


async def test_companies_can_ask_to_join_open_convoys(client: httpx.AsyncClient, smtp_sink: SmtpSink) -> None:
    world = await build_world(client, smtp_sink, companies=1, open_=True)
    closed = await build_world(client, smtp_sink, companies=1)
    r = await client.get("/api/v1/open-convoys")
    ids = [c["id"] for c in r.json()["convoys"]]
    assert world.convoy_id in ids and closed.convoy_id not in ids

    def ask(convoy_id: str, company: str, email: str) -> Any:
        return client.post(
            f"/api/v1/open-convoys/{convoy_id}/join-requests",
            json={
                "company": {"name": company, "region": "SH", "size_class": "1-9"},
                "contact_name": "Kim",
                "contact_email": email,
                "message": "Wir möchten <b>mitmachen</b>",
            },
        )

    assert (await ask(closed.convoy_id, "Nope GmbH", "nope@x.example")).status_code == 404
    assert (await ask(world.convoy_id, "Webshop Kim", "kim@kim.example")).status_code == 202
    assert (await ask(world.convoy_id, "Spam AG", "spam@spam.example")).status_code == 202
    facilitator_email = (await client.get("/api/v1/me", headers=world.facilitator)).json()["person"]["email"]
    queue = f"/convoys/{world.convoy_id}/join-requests"

    async def join_request_mails() -> list[str]:
        found = [
            str(m["Subject"]) + text_of(m) + html_of(m) for m in smtp_sink.to(facilitator_email) if queue in text_of(m)
        ]
        assert len(found) == 2
        return found

    # Issue #19: the facilitator hears of each request with a link to the queue, and nothing the sender typed.
    for mail in await eventually(join_request_mails):
        assert "Webshop Kim" not in mail and "Spam AG" not in mail and "Kim" not in mail
        assert "mitmachen" not in mail and "kim@kim.example" not in mail and "spam@spam.example" not in mail

    r = await client.get(f"/api/v1/convoys/{world.convoy_id}/join-requests", headers=world.facilitator)
    requests = {j["company_name"]: j for j in r.json()["requests"]}
    assert set(requests) == {"Webshop Kim", "Spam AG"}
    # Members do not see them.
    r = await client.get(f"/api/v1/convoys/{world.convoy_id}/join-requests", headers=world.reps["a"].auth)
    assert r.status_code == 403

    decide = f"/api/v1/convoys/{world.convoy_id}/join-requests"
    r = await client.post(
        f"{decide}/{requests['Spam AG']['id']}/decision", json={"approve": False}, headers=world.facilitator
    )
    assert r.status_code == 400 and "`reason`" in r.json()["detail"]
    r = await client.post(
        f"{decide}/{requests['Spam AG']['id']}/decision",
        json={"approve": False, "reason": "Kein Digitalprojekt"},
        headers=world.facilitator,
    )
    assert r.status_code == 200 and r.json()["status"] == "declined"
    [declined] = await smtp_sink.wait_for_mail_to("spam@spam.example")
    assert "Kein Digitalprojekt" in str(declined)

    r = await client.post(
        f"{decide}/{requests['Webshop Kim']['id']}/decision", json={"approve": True}, headers=world.facilitator
    )
    assert r.status_code == 200 and r.json()["status"] == "approved" and r.json()["company_id"]
    r = await client.post(
        f"{decide}/{requests['Webshop Kim']['id']}/decision", json={"approve": True}, headers=world.facilitator
    )
    assert r.status_code == 409
    [invitation] = await smtp_sink.wait_for_mail_to("kim@kim.example")
    r = await client.post("/api/v1/invitations/accept", json={"token": token_in(invitation, "cvi_"), "name": "Kim"})
    assert r.status_code == 201
    r = await client.get(f"/api/v1/convoys/{world.convoy_id}", headers=world.facilitator)
    assert "Webshop Kim" in [c["name"] for c in r.json()["companies"]]


async def test_removal_with_reason_ends_access_and_is_audited(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, settings: Any, stack: Stack
) -> None:
    world = await build_world(client, smtp_sink, companies=2)
    anna, ben = world.reps["a"], world.reps["b"]
    reports = f"/api/v1/convoys/{world.convoy_id}/reports"
    assert (await client.post(reports, json={"done": "vorher"}, headers=ben.auth)).status_code == 201

    r = await client.post(
        f"/api/v1/convoys/{world.convoy_id}/members/{ben.person_id}/removal",
        json={"reason": ""},
        headers=world.facilitator,
    )
    assert r.status_code == 400 and "`reason`" in r.json()["detail"]
    r = await client.post(
        f"/api/v1/convoys/{world.convoy_id}/members/{ben.person_id}/removal",
        json={"reason": "Hat das Unternehmen verlassen"},
        headers=world.facilitator,
    )
    assert r.status_code == 200
    [*_, notice] = await smtp_sink.wait_for_mail_to(ben.email, 2)
    assert "Hat das Unternehmen verlassen" in str(notice)

    async def ben_is_out() -> bool:
        r = await client.post(reports, json={"done": "nachher"}, headers=ben.auth)
        return r.status_code == 404

    from tests.conftest import eventually

    await eventually(ben_is_out)  # once milestones' projection has the person.removed event
    assert (await client.get(f"/api/v1/convoys/{world.convoy_id}", headers=ben.auth)).status_code == 404

    r = await client.post(
        f"/api/v1/convoys/{world.convoy_id}/companies/{anna.company_id}/removal",
        json={"reason": "Insolvenz"},
        headers=world.facilitator,
    )
    assert r.status_code == 200 and [c["name"] for c in r.json()["companies"]] == ["Laden Schmidt"]
    assert (await client.get(f"/api/v1/convoys/{world.convoy_id}", headers=anna.auth)).status_code == 404

    r = await client.get(f"/api/v1/convoys/{world.convoy_id}/audit", headers=world.facilitator)
    entries = r.json()["entries"]
    assert [(e["action"], e["reason"]) for e in entries[:2]] == [
        ("company.removed", "Insolvenz"),
        ("person.removed", "Hat das Unternehmen verlassen"),
    ]
    # Append-only, down to the database.
    conn = await asyncpg.connect(settings.database_url)
    try:
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute("UPDATE convoys.audit_log SET reason = 'x'")
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute("DELETE FROM convoys.audit_log")
    finally:
        await conn.close()


async def test_facilitators_and_admins(client: httpx.AsyncClient, smtp_sink: SmtpSink) -> None:
    world = await build_world(client, smtp_sink, companies=1)
    co = await appoint_facilitator(client, smtp_sink, "co@zentrum.example")
    co_id = (await client.get("/api/v1/me", headers=co)).json()["person"]["id"]
    # A facilitator manages only the convoys they facilitate ...
    r = await client.post(f"/api/v1/convoys/{world.convoy_id}/companies", json={"name": "X"}, headers=co)
    assert r.status_code == 404
    # ... until one of its facilitators adds them.
    r = await client.post(
        f"/api/v1/convoys/{world.convoy_id}/facilitators", json={"person_id": co_id}, headers=world.facilitator
    )
    assert r.status_code == 201 and len(r.json()["facilitators"]) == 2
    r = await client.post(f"/api/v1/convoys/{world.convoy_id}/companies", json={"name": "X"}, headers=co)
    assert r.status_code == 201
    # Only facilitators can be added; only admins appoint; representatives create no convoys.
    r = await client.post(
        f"/api/v1/convoys/{world.convoy_id}/facilitators",
        json={"person_id": world.reps["a"].person_id},
        headers=world.facilitator,
    )
    assert r.status_code == 400
    r = await client.post("/api/v1/facilitators", json={"name": "Me", "email": "me@x.example"}, headers=co)
    assert r.status_code == 403
    r = await client.post("/api/v1/convoys", json={"name": "Mine"}, headers=world.reps["a"].auth)
    assert r.status_code == 403
    r = await client.post("/api/v1/facilitators", json={"name": "Co", "email": "CO@zentrum.example"}, headers=ADMIN)
    assert r.status_code == 409
    assert (await client.get("/api/v1/me", headers=ADMIN)).status_code == 403  # the admin token has no profile


async def test_authorization_matrix(client: httpx.AsyncClient, smtp_sink: SmtpSink) -> None:
    """Every convoy endpoint with every role: 404 for what they may not know exists, 403 otherwise."""
    world = await build_world(client, smtp_sink, companies=2)
    other = await build_world(client, smtp_sink, companies=1)
    cid = world.convoy_id
    company = world.companies["a"]["id"]
    person = world.reps["b"].person_id
    roles: dict[str, dict[str, str]] = {
        "admin": ADMIN,
        "facilitator": world.facilitator,
        "other_facilitator": other.facilitator,
        "representative": world.reps["a"].auth,
        "other_representative": other.reps["a"].auth,
        "anonymous": {},
    }
    # Requests are harmless where they succeed (bad ids or bodies only reach validation after authz).
    endpoints: list[tuple[str, str, Any, dict[str, int]]] = [
        (
            "get",
            f"/api/v1/convoys/{cid}",
            None,
            {
                "admin": 200,
                "facilitator": 200,
                "other_facilitator": 404,
                "representative": 200,
                "other_representative": 404,
                "anonymous": 401,
            },
        ),
        (
            "patch",
            f"/api/v1/convoys/{cid}",
            {"description": "neu"},
            {
                "admin": 200,
                "facilitator": 200,
                "other_facilitator": 404,
                "representative": 403,
                "other_representative": 404,
                "anonymous": 401,
            },
        ),
        (
            "post",
            f"/api/v1/convoys/{cid}/status",
            {"status": "paused"},
            {
                "admin": 409,
                "facilitator": 409,
                "other_facilitator": 404,
                "representative": 403,
                "other_representative": 404,
                "anonymous": 401,
            },
        ),
        (
            "post",
            f"/api/v1/convoys/{cid}/companies",
            {"name": f"Neu {uuid.uuid4().hex[:6]}"},
            {
                "admin": 201,
                "facilitator": 201,
                "other_facilitator": 404,
                "representative": 403,
                "other_representative": 404,
                "anonymous": 401,
            },
        ),
        (
            "post",
            f"/api/v1/convoys/{cid}/companies/{company}/invitations",
            {"email": "matrix@x.example"},
            {
                "admin": 201,
                "facilitator": 201,
                "other_facilitator": 404,
                "representative": 403,
                "other_representative": 404,
                "anonymous": 401,
            },
        ),
        (
            "post",
            f"/api/v1/convoys/{cid}/members/{uuid.uuid4()}/removal",
            {"reason": "x"},
            {
                "admin": 404,
                "facilitator": 404,
                "other_facilitator": 404,
                "representative": 403,
                "other_representative": 404,
                "anonymous": 401,
            },
        ),
        (
            "post",
            f"/api/v1/convoys/{cid}/companies/{uuid.uuid4()}/removal",
            {"reason": "x"},
            {
                "admin": 404,
                "facilitator": 404,
                "other_facilitator": 404,
                "representative": 403,
                "other_representative": 404,
                "anonymous": 401,
            },
        ),
        (
            "get",
            f"/api/v1/convoys/{cid}/join-requests",
            None,
            {
                "admin": 200,
                "facilitator": 200,
                "other_facilitator": 404,
                "representative": 403,
                "other_representative": 404,
                "anonymous": 401,
            },
        ),
        (
            "post",
            f"/api/v1/convoys/{cid}/join-requests/{uuid.uuid4()}/decision",
            {"approve": True},
            {
                "admin": 404,
                "facilitator": 404,
                "other_facilitator": 404,
                "representative": 403,
                "other_representative": 404,
                "anonymous": 401,
            },
        ),
        (
            "get",
            f"/api/v1/convoys/{cid}/audit",
            None,
            {
                "admin": 200,
                "facilitator": 200,
                "other_facilitator": 404,
                "representative": 403,
                "other_representative": 404,
                "anonymous": 401,
            },
        ),
        (
            "post",
            f"/api/v1/convoys/{cid}/facilitators",
            {"person_id": person},
            {
                "admin": 400,
                "facilitator": 400,
                "other_facilitator": 404,
                "representative": 403,
                "other_representative": 404,
                "anonymous": 401,
            },
        ),
        (
            "get",
            f"/api/v1/convoys/{cid}/reports",
            None,
            {
                "admin": 200,
                "facilitator": 200,
                "other_facilitator": 404,
                "representative": 200,
                "other_representative": 404,
                "anonymous": 401,
            },
        ),
        (
            "post",
            "/api/v1/convoys",
            {"name": "Matrix"},
            {
                "admin": 201,
                "facilitator": 201,
                "other_facilitator": 201,
                "representative": 403,
                "other_representative": 403,
                "anonymous": 401,
            },
        ),
        (
            "post",
            "/api/v1/facilitators",
            {"name": "M", "email": f"m-{uuid.uuid4().hex[:6]}@x.example"},
            {
                "admin": 201,
                "facilitator": 403,
                "other_facilitator": 403,
                "representative": 403,
                "other_representative": 403,
                "anonymous": 401,
            },
        ),
    ]
    failures = []
    for method, path, body, expected in endpoints:
        for role, headers in roles.items():
            if body is not None and path == "/api/v1/facilitators":
                body = {**body, "email": f"m-{uuid.uuid4().hex[:6]}@x.example"}
            if body is not None and path.endswith("/invitations"):
                body = {"email": f"m-{uuid.uuid4().hex[:6]}@x.example"}
            if body is not None and path.endswith("/companies"):
                body = {"name": f"Neu {uuid.uuid4().hex[:6]}"}
            r = await client.request(method, path, json=body, headers=headers)
            if r.status_code != expected[role]:
                failures.append(f"{method.upper()} {path} as {role}: {r.status_code} (expected {expected[role]})")
    assert failures == []


async def test_every_endpoint_is_in_the_openapi_document_with_examples(client: httpx.AsyncClient) -> None:
    from convoy_api.app import create_app
    from services.runtime.settings import Settings

    app = create_app(Settings())
    r = await client.get("/schema/openapi.json")
    assert r.status_code == 200
    document = r.json()
    routes = {
        (route.path, method)
        for route in app.routes
        for method in getattr(route, "methods", ())
        if method not in ("HEAD", "OPTIONS")
    }
    documented = {(path, method.upper()) for path, item in document["paths"].items() for method in item}
    missing = {(p, m) for p, m in routes if p.startswith("/api/") and (re.sub(r":\w+}", "}", p), m) not in documented}
    assert missing == set()
    without_examples = [
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method, op in item.items()
        if "requestBody" in op
        and not any(
            "examples" in content or "examples" in content.get("schema", {})
            for content in op["requestBody"]["content"].values()
        )
    ]
    assert without_examples == []
