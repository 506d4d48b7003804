"""Notification preferences and one-click unsubscribe (RFC 8058), honoured at once."""

from __future__ import annotations

import httpx

from tests.conftest import SmtpSink, Stack, settled
from tests.world import ADMIN, build_world, sign_in


async def test_preferences_are_the_persons_own(client: httpx.AsyncClient, smtp_sink: SmtpSink) -> None:
    world = await build_world(client, smtp_sink, companies=1)
    anna = world.reps["a"].auth
    r = await client.get("/api/v1/me/notifications", headers=anna)
    assert r.json() == {"email": True, "digest": True, "immediate": {}}
    r = await client.put(
        "/api/v1/me/notifications", json={"digest": False, "immediate": {"nudge": False}}, headers=anna
    )
    assert r.status_code == 200 and r.json()["digest"] is False
    assert (await client.get("/api/v1/me/notifications", headers=anna)).json()["immediate"] == {"nudge": False}
    r = await client.put("/api/v1/me/notifications", json={"immediate": {"spam": False}}, headers=anna)
    assert r.status_code == 400
    assert (await client.get("/api/v1/me/notifications", headers=ADMIN)).status_code == 403


async def test_one_click_unsubscribe_is_honoured_at_once(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    world = await build_world(client, smtp_sink, companies=3)
    ben = world.reps["b"]
    smtp_sink.messages.clear()
    url = f"/api/v1/convoys/{world.convoy_id}/reports"
    assert (await client.post(url, json={"done": "Erster Schritt"}, headers=world.reps["a"].auth)).status_code == 201
    [mail] = await smtp_sink.wait_for_mail_to(ben.email)
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = str(mail["List-Unsubscribe"]).strip("<>")
    assert link.startswith("http://convoy.test/unsubscribe/")
    path = link.removeprefix("http://convoy.test")

    page = await client.get(path)
    assert page.status_code == 200 and '<form method="post"' in page.text
    r = await client.post(
        path, content=b"List-Unsubscribe=One-Click", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert r.status_code == 200 and "Abgemeldet" in r.text
    assert (await client.get("/api/v1/me/notifications", headers=ben.auth)).json()["immediate"] == {"report": False}
    assert (await client.post("/unsubscribe/not-a-valid-token-at-all")).status_code == 404

    # The next report reaches the others but not Ben; sign-in links still arrive however he chose.
    r = await client.post(url, json={"done": "Clara berichtet"}, headers=world.reps["c"].auth)
    assert r.status_code == 201
    await smtp_sink.wait_for_subject(world.reps["a"].email, "Metallbau Stahl")
    await settled(stack)
    assert [m for m in smtp_sink.to(ben.email) if "Metallbau Stahl" in str(m["Subject"])] == []
    await client.put("/api/v1/me/notifications", json={"email": False}, headers=ben.auth)
    signed = await sign_in(client, smtp_sink, ben.email)
    assert signed["person"]["email"] == ben.email
    assert smtp_sink.to(ben.email)[-1]["List-Unsubscribe"] is None
