"""The convoy's charter, over HTTP against the real stack: a default text per language, edited by
the facilitators (a new version each time, audited), accepted with the invitation, and accepted again
after a change before a representative may post reports or comments again."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx

from tests.conftest import SmtpSink, Stack, eventually, new_token_for, settled
from tests.test_moderation import audit_entry, comment, post_report
from tests.world import ADMIN, World, build_world, invite_and_accept, rpc_answered


async def charter(client: httpx.AsyncClient, world: World, headers: dict[str, str]) -> dict[str, Any]:
    r = await client.get(f"/api/v1/convoys/{world.convoy_id}/charter", headers=headers)
    assert r.status_code == 200, r.text
    found: dict[str, Any] = r.json()
    return found


async def my_convoy(client: httpx.AsyncClient, world: World, headers: dict[str, str]) -> dict[str, Any]:
    r = await client.get("/api/v1/me", headers=headers)
    assert r.status_code == 200, r.text
    mine: dict[str, Any] = next(c for c in r.json()["convoys"] if c["convoy_id"] == world.convoy_id)
    return mine


async def test_the_default_charter_speaks_the_convoys_language(client: httpx.AsyncClient, smtp_sink: SmtpSink) -> None:
    world = await build_world(client, smtp_sink, companies=1)
    other = await build_world(client, smtp_sink, companies=1)
    german = await charter(client, world, world.reps["a"].auth)
    assert german["version"] == 1 and german["is_default"] is True and german["language"] == "de"
    assert german["text"].startswith("Unsere Spielregeln im Konvoi")
    for point in ("Vertraulichkeit", "Respekt", "Keine Werbung"):
        assert point in german["text"]
    assert 5 <= sum(1 for line in german["text"].splitlines() if line[:1].isdigit()) <= 8
    assert german["accepted"] is True  # accepting the invitation accepted it
    assert (await charter(client, world, world.facilitator))["accepted"] is None  # nothing to accept
    assert (await charter(client, world, ADMIN))["text"] == german["text"]
    for stranger in (other.facilitator, other.reps["a"].auth):
        r = await client.get(f"/api/v1/convoys/{world.convoy_id}/charter", headers=stranger)
        assert r.status_code == 404
    assert (await client.get(f"/api/v1/convoys/{world.convoy_id}/charter")).status_code == 401

    r = await client.post(
        "/api/v1/convoys", json={"name": "Webshop North", "language": "en"}, headers=world.facilitator
    )
    assert r.status_code == 201, r.text
    english = await client.get(f"/api/v1/convoys/{r.json()['id']}/charter", headers=world.facilitator)
    assert english.status_code == 200 and english.json()["language"] == "en"
    assert english.json()["text"].startswith("Our ground rules in the convoy")
    assert "No sales pitches" in english.json()["text"] and "Confidentiality" in english.json()["text"]


async def test_a_changed_charter_is_accepted_again_before_posting(
    client: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    world = await build_world(client, smtp_sink, companies=2)
    anna, ben = world.reps["a"].auth, world.reps["b"].auth
    rid = (await post_report(client, world, "a"))["id"]
    assert (await my_convoy(client, world, anna))["charter_accepted"] is True

    # Only the convoy's facilitators change it.
    new_text = "1. Was hier steht, bleibt hier.\n2. Keine Werbung.\n3. Freundlich bleiben."
    r = await client.put(f"/api/v1/convoys/{world.convoy_id}/charter", json={"text": new_text}, headers=anna)
    assert r.status_code == 403
    r = await client.put(f"/api/v1/convoys/{world.convoy_id}/charter", json={"text": "  "}, headers=world.facilitator)
    assert r.status_code == 400
    r = await client.put(
        f"/api/v1/convoys/{world.convoy_id}/charter", json={"text": new_text + "\n"}, headers=world.facilitator
    )
    assert r.status_code == 200, r.text
    changed = r.json()
    assert changed["version"] == 2 and changed["text"] == new_text and changed["is_default"] is False
    assert changed["accepted"] is None
    # The same text again is no change: no new version.
    r = await client.put(
        f"/api/v1/convoys/{world.convoy_id}/charter", json={"text": new_text}, headers=world.facilitator
    )
    assert r.status_code == 200 and r.json()["version"] == 2
    entry = await audit_entry(client, world, "charter.updated", world.convoy_id)
    assert entry["details"]["version"] == "2"

    # The representatives see they have to accept it; until then they cannot post or comment.
    assert (await my_convoy(client, world, anna))["charter_accepted"] is False
    assert (await my_convoy(client, world, world.facilitator))["charter_accepted"] is True
    mine = await charter(client, world, anna)
    assert mine["accepted"] is False and mine["version"] == 2
    r = await client.post(f"/api/v1/convoys/{world.convoy_id}/reports", json={"done": "Weiter"}, headers=ben)
    assert r.status_code == 409 and "accept the convoy's updated charter first" in r.json()["detail"]
    r = await client.post(f"/api/v1/reports/{rid}/comments", json={"body": "Super!"}, headers=ben)
    assert r.status_code == 409 and "accept the convoy's updated charter first" in r.json()["detail"]
    r = await client.patch(f"/api/v1/reports/{rid}", json={"next": "Kalender"}, headers=anna)
    assert r.status_code == 409 and "charter" in r.json()["detail"]
    # Reading, kudos and flags go on; facilitators are not bound.
    assert (await client.get(f"/api/v1/reports/{rid}", headers=ben)).status_code == 200
    assert (await client.put(f"/api/v1/reports/{rid}/kudos", headers=ben)).status_code == 200
    await comment(client, rid, world.facilitator, "Bitte die neuen Regeln lesen.")

    # Accepting: facilitators have nothing to accept; a stale version is refused.
    r = await client.post(f"/api/v1/convoys/{world.convoy_id}/charter/accept", json={}, headers=world.facilitator)
    assert r.status_code == 403
    r = await client.post(f"/api/v1/convoys/{world.convoy_id}/charter/accept", json={"version": 1}, headers=ben)
    assert r.status_code == 409
    r = await client.post(f"/api/v1/convoys/{world.convoy_id}/charter/accept", json={"version": 2}, headers=ben)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] is True and r.json()["version"] == 2
    r = await client.post(f"/api/v1/convoys/{world.convoy_id}/charter/accept", json={}, headers=anna)
    assert r.status_code == 200 and r.json()["accepted"] is True
    assert (await my_convoy(client, world, ben))["charter_accepted"] is True

    # Accepted again: posting works.
    r = await client.post(f"/api/v1/convoys/{world.convoy_id}/reports", json={"done": "Weiter"}, headers=ben)
    assert r.status_code == 201, r.text
    await comment(client, rid, ben, "Super!")
    r = await client.patch(f"/api/v1/reports/{rid}", json={"next": "Kalender"}, headers=anna)
    assert r.status_code == 200, r.text
    accepted = await audit_entry(client, world, "charter.accepted", world.reps["b"].person_id)
    assert accepted["details"]["version"] == "2" and accepted["actor_id"] == world.reps["b"].person_id


async def test_accepting_the_invitation_accepts_the_current_charter(
    client: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    world = await build_world(client, smtp_sink, companies=1)
    r = await client.put(
        f"/api/v1/convoys/{world.convoy_id}/charter",
        json={"text": "1. Vertraulich.\n2. Sachlich.\n3. Keine Werbung."},
        headers=world.facilitator,
    )
    assert r.status_code == 200 and r.json()["version"] == 2

    # The invitation shows the charter; an invitee who read an older version is asked to read it again.
    r = await client.post(
        f"/api/v1/convoys/{world.convoy_id}/companies", json={"name": "Neu GmbH"}, headers=world.facilitator
    )
    assert r.status_code == 201, r.text
    company_id = r.json()["id"]
    email = f"neu-{world.convoy_id[:8]}@neu.example"
    r = await client.post(
        f"/api/v1/convoys/{world.convoy_id}/companies/{company_id}/invitations",
        json={"email": email, "name": "Nora Neu", "language": "de"},
        headers=world.facilitator,
    )
    assert r.status_code == 201, r.text
    token = await new_token_for(smtp_sink, email, "cvi_", set())
    preview = await client.post("/api/v1/invitations/preview", json={"token": token})
    assert preview.status_code == 200, preview.text
    assert preview.json()["charter"].startswith("1. Vertraulich.") and preview.json()["charter_version"] == 2
    r = await client.post("/api/v1/invitations/accept", json={"token": token, "name": "Nora Neu", "charter_version": 1})
    assert r.status_code == 409 and "charter" in r.json()["detail"]
    r = await client.post("/api/v1/invitations/accept", json={"token": token, "name": "Nora Neu", "charter_version": 2})
    assert r.status_code == 201, r.text
    client.cookies.clear()
    nora = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert (await my_convoy(client, world, nora))["charter_accepted"] is True
    assert (await charter(client, world, nora))["accepted"] is True
    r = await client.post(f"/api/v1/convoys/{world.convoy_id}/reports", json={"done": "Start"}, headers=nora)
    assert r.status_code == 201, r.text
    joined = await audit_entry(client, world, "person.joined", r.json()["author_id"])
    assert joined["details"]["charter_version"] == "2"

    # Without a version the current one is accepted (API clients from before charters keep working).
    other = await invite_and_accept(
        client,
        smtp_sink,
        world.facilitator,
        world.convoy_id,
        company_id,
        "Olaf Neu",
        f"olaf-{world.convoy_id[:8]}@neu.example",
    )
    assert (await charter(client, world, other.auth))["accepted"] is True


async def convoys_answered(client: httpx.AsyncClient, operation: str) -> float:
    """How many requests services/convoys has answered for ``operation`` (its own metrics)."""
    return await rpc_answered(client, "convoys", operation)


async def test_the_charter_check_asks_convoys_only_when_its_projection_says_not_accepted(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    """services/milestones decides from its projection of charters (issue #21): a representative who
    accepted writes without a request to services/convoys; a change binds from its 200 on; an
    acceptance counts at once (then milestones asks, exactly as before)."""
    world = await build_world(client, smtp_sink, companies=2)
    anna, ben = world.reps["a"].auth, world.reps["b"].auth
    await settled(stack)  # the person.joined events (with the version accepted with the invitation) are in
    asked = await convoys_answered(client, "membership_get")
    rid = (await post_report(client, world, "a"))["id"]
    await comment(client, rid, ben, "Gut gemacht!")
    r = await client.patch(f"/api/v1/reports/{rid}", json={"next": "Kalender"}, headers=anna)
    assert r.status_code == 200, r.text
    assert await convoys_answered(client, "membership_get") == asked  # no request reached services/convoys

    # Hold the event path back (milestones' consumers wait to record what they handle), so only the
    # synchronous calls can carry the change and the acceptance into services/milestones.
    held = await asyncpg.connect(stack.settings.database_url, server_settings={"search_path": "milestones"})
    try:
        tx = held.transaction()
        await tx.start()
        await held.execute("LOCK TABLE processed_events IN SHARE ROW EXCLUSIVE MODE")
        # A change binds from its answer on: the next write, at once, is refused.
        r = await client.put(
            f"/api/v1/convoys/{world.convoy_id}/charter",
            json={"text": "1. Vertraulich.\n2. Fair."},
            headers=world.facilitator,
        )
        assert r.status_code == 200 and r.json()["version"] == 2, r.text
        r = await client.post(f"/api/v1/reports/{rid}/comments", json={"body": "Danke!"}, headers=ben)
        assert r.status_code == 409 and "accept the convoy's updated charter first" in r.json()["detail"]
        r = await client.post(f"/api/v1/convoys/{world.convoy_id}/reports", json={"done": "Weiter"}, headers=ben)
        assert r.status_code == 409, r.text
        await comment(client, rid, world.facilitator, "Bitte lesen.")  # facilitators are not bound

        # An acceptance counts at once: the projection does not have it yet, so milestones asks (once).
        r = await client.post(f"/api/v1/convoys/{world.convoy_id}/charter/accept", json={"version": 2}, headers=ben)
        assert r.status_code == 200, r.text
        asked = await convoys_answered(client, "membership_get")
        r = await client.post(f"/api/v1/convoys/{world.convoy_id}/reports", json={"done": "Weiter"}, headers=ben)
        assert r.status_code == 201, r.text
        assert await convoys_answered(client, "membership_get") == asked + 1
        await tx.rollback()
    finally:
        await held.close()
    # Anna has not accepted: still refused, also after the events are in.
    await settled(stack)
    r = await client.patch(f"/api/v1/reports/{rid}", json={"next": "Kalender 2"}, headers=anna)
    assert r.status_code == 409 and "charter" in r.json()["detail"]
    # Ben's acceptance is projected now (learnt from that answer, and from its event): no request again.
    asked = await convoys_answered(client, "membership_get")
    await comment(client, rid, ben, "Nochmals danke!")
    assert await convoys_answered(client, "membership_get") == asked


async def test_a_projection_that_knows_nothing_asks_convoys_and_learns(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    """Rows from before the projection existed (versions unknown) are never trusted: the write asks
    services/convoys, as before, and remembers the answer for the next one."""
    world = await build_world(client, smtp_sink, companies=1)
    await settled(stack)
    conn = await asyncpg.connect(stack.settings.database_url, server_settings={"search_path": "milestones"})
    try:  # as after the migration: nothing known
        convoy_id = uuid.UUID(world.convoy_id)
        await conn.execute("UPDATE convoys SET charter_version = NULL WHERE convoy_id = $1", convoy_id)
        await conn.execute("UPDATE members SET charter_version = NULL WHERE convoy_id = $1", convoy_id)
    finally:
        await conn.close()
    asked = await convoys_answered(client, "membership_get")
    rid = (await post_report(client, world, "a"))["id"]
    assert await convoys_answered(client, "membership_get") == asked + 1
    r = await client.patch(f"/api/v1/reports/{rid}", json={"next": "Kalender"}, headers=world.reps["a"].auth)
    assert r.status_code == 200, r.text
    assert await convoys_answered(client, "membership_get") == asked + 1  # learnt from the answer


async def test_a_charter_change_milestones_cannot_hear_is_503_and_binds_with_its_event(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    """As a removal: recorded in services/convoys, 503 to the caller, in effect once the event arrives."""
    world = await build_world(client, smtp_sink, companies=1)
    rid = (await post_report(client, world, "a"))["id"]
    await stack.stop_service("milestones")
    try:
        r = await client.put(
            f"/api/v1/convoys/{world.convoy_id}/charter", json={"text": "1. Neu.\n2. Fair."}, headers=world.facilitator
        )
        assert r.status_code == 503, r.text
        assert (await charter(client, world, world.facilitator))["version"] == 2  # recorded all the same
    finally:
        await stack.start_service("milestones")

    async def refused() -> bool:
        r = await client.post(f"/api/v1/reports/{rid}/comments", json={"body": "Hallo"}, headers=world.reps["a"].auth)
        assert r.status_code in (201, 409), r.text
        return r.status_code == 409

    await eventually(refused)
