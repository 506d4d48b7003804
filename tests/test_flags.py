"""Flags and the moderation queue, over HTTP against the real stack: members flag reports and
comments, the convoy's facilitators are emailed at once, read the queue and resolve flags (dismiss,
or act: hide, with the same audit entry and author notice as a direct hide); the weekly facilitator
digest counts the flags waiting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.conftest import SmtpSink, Stack, text_of
from tests.test_facilitator_digest import facilitator_digest
from tests.test_moderation import audit_entry, comment, comments, person_id, post_report, timeline
from tests.world import ADMIN, World, build_world


async def flag(
    client: httpx.AsyncClient, kind: str, object_id: str, headers: dict[str, str], reason: str, note: str = ""
) -> httpx.Response:
    return await client.post(
        f"/api/v1/{kind}/{object_id}/flags", json={"reason": reason, "note": note}, headers=headers
    )


async def queue(client: httpx.AsyncClient, world: World, headers: dict[str, str]) -> list[dict[str, Any]]:
    r = await client.get(f"/api/v1/convoys/{world.convoy_id}/flags", headers=headers)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def test_a_flag_reaches_the_facilitators_at_once_and_dismissing_it_leaves_the_content(
    client: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    world = await build_world(client, smtp_sink, companies=3)
    anna, ben, clara = (world.reps[k].auth for k in "abc")
    report = await post_report(client, world, "a", done="Wir haben   die Buchungsseite\nfreigeschaltet. " + "x" * 300)
    rid = report["id"]

    # "other" needs words; an unknown reason is refused; nothing was recorded.
    r = await flag(client, "reports", rid, ben, "other")
    assert r.status_code == 400 and "note" in r.json()["detail"]
    assert (await flag(client, "reports", rid, ben, "rude")).status_code == 400

    r = await flag(client, "reports", rid, ben, "off_topic", "Gehört nicht hierher.")
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["created"] is True and first["reason"] == "off_topic" and first["object_type"] == "report"
    # A second flag by the same person is a no-op: the open flag answers.
    r = await flag(client, "reports", rid, ben, "spam")
    assert r.status_code == 200 and r.json()["id"] == first["id"] and r.json()["created"] is False
    assert r.json()["reason"] == "off_topic"
    r = await flag(client, "reports", rid, clara, "other", "Klingt nach Werbung.")
    assert r.status_code == 201

    # The facilitator is told at once (one email per flag), without the content itself.
    facilitator_email = await facilitator_address(client, world)
    await smtp_sink.wait_for_subject(facilitator_email, "anderer Grund")
    await smtp_sink.wait_for_subject(facilitator_email, "zum Thema")
    mail = [m for m in smtp_sink.to(facilitator_email) if m["Subject"].startswith("Meldung")]
    subjects = sorted(m["Subject"] for m in mail)
    assert subjects == [
        "Meldung in „Terminvergabe Nord“: anderer Grund",
        "Meldung in „Terminvergabe Nord“: gehört nicht zum Thema",
    ]
    body = " ".join(text_of(next(m for m in mail if "anderer" in m["Subject"])).split())
    assert "hat einen Fortschrittsbericht von Sanitär Müller gemeldet" in body
    assert "Klingt nach Werbung." in body and f"/convoys/{world.convoy_id}/flags" in body
    assert "Buchungsseite" not in body

    # The queue: one item for the report, both flags, who flagged them, oldest first.
    for moderator in (world.facilitator, ADMIN):
        [item] = await queue(client, world, moderator)
        assert item["object_type"] == "report" and item["object_id"] == rid and item["report_id"] == rid
        assert item["company_name"] == "Sanitär Müller" and item["author_id"] == world.reps["a"].person_id
        assert item["hidden"] is False
        assert item["excerpt"].startswith("Wir haben die Buchungsseite freigeschaltet. xxx")
        assert len(item["excerpt"]) == 200 and item["excerpt"].endswith("…")
        assert [(f["flagged_by"], f["flagged_by_company_name"], f["reason"], f["note"]) for f in item["flags"]] == [
            (world.reps["b"].person_id, "Laden Schmidt", "off_topic", "Gehört nicht hierher."),
            (world.reps["c"].person_id, "Metallbau Stahl", "other", "Klingt nach Werbung."),
        ]
    flag_id = item["flags"][1]["id"]

    # Members never see the queue, and cannot resolve.
    for member in (anna, ben):
        assert (await client.get(f"/api/v1/convoys/{world.convoy_id}/flags", headers=member)).status_code == 403
        r = await client.post(f"/api/v1/flags/{flag_id}/resolve", json={"action": "dismiss"}, headers=member)
        assert r.status_code == 403

    # Dismissed: every open flag on the report is resolved; the report is untouched.
    r = await client.post(
        f"/api/v1/flags/{flag_id}/resolve",
        json={"action": "dismiss", "reason": "Passt zum Thema"},
        headers=world.facilitator,
    )
    assert r.status_code == 200, r.text
    assert r.json()["action"] == "dismissed" and r.json()["hidden"] is False
    assert sorted(r.json()["resolved"]) == sorted(f["id"] for f in item["flags"])
    assert await queue(client, world, world.facilitator) == []
    assert (await client.get(f"/api/v1/reports/{rid}", headers=clara)).json()["hidden"] is False
    r = await client.post(f"/api/v1/flags/{flag_id}/resolve", json={"action": "dismiss"}, headers=world.facilitator)
    assert r.status_code == 409

    # Flag and resolution are in the audit log (the flagger is named there, for facilitators only).
    raised = await audit_entry(client, world, "flag.raised", rid)
    assert raised["object_type"] == "report" and raised["details"]["flag_reason"] in ("off_topic", "other")
    assert raised["actor_id"] in (world.reps["b"].person_id, world.reps["c"].person_id)
    dismissed = await audit_entry(client, world, "flags.dismissed", rid)
    assert dismissed["reason"] == "Passt zum Thema" and dismissed["details"]["flags"] == "2"
    assert dismissed["actor_id"] == await person_id(client, world.facilitator)
    assert (await client.get(f"/api/v1/convoys/{world.convoy_id}/audit", headers=ben)).status_code == 403

    # Once resolved, the same person may flag the report again: a new flag.
    r = await flag(client, "reports", rid, ben, "spam")
    assert r.status_code == 201 and r.json()["id"] != first["id"]


async def test_acting_on_a_flag_hides_the_comment_as_a_direct_hide_does(
    client: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    world = await build_world(client, smtp_sink, companies=3)
    anna, ben, clara = (world.reps[k].auth for k in "abc")
    rid = (await post_report(client, world, "a"))["id"]
    leak = await comment(client, rid, ben, "Unser Kunde Meier zahlt 12.000 € für das Projekt.")
    kept = await comment(client, rid, clara, "Glückwunsch!")

    r = await flag(client, "comments", leak["id"], anna, "confidential")
    assert r.status_code == 201, r.text
    r = await flag(client, "comments", leak["id"], world.facilitator, "confidential")
    assert r.status_code == 201  # facilitators may flag too (a note for their co-facilitators)
    [item] = await queue(client, world, world.facilitator)
    assert item["object_type"] == "comment" and item["object_id"] == leak["id"] and item["report_id"] == rid
    assert item["author_id"] == world.reps["b"].person_id and item["excerpt"].startswith("Unser Kunde Meier")
    by_facilitator = next(f for f in item["flags"] if f["flagged_by"] != world.reps["a"].person_id)
    assert by_facilitator["flagged_by_company_id"] is None and by_facilitator["flagged_by_company_name"] == ""

    # Acting needs a reason (the author is told it).
    r = await client.post(
        f"/api/v1/flags/{item['flags'][0]['id']}/resolve", json={"action": "act"}, headers=world.facilitator
    )
    assert r.status_code == 400 and "reason" in r.json()["detail"]
    r = await client.post(
        f"/api/v1/flags/{item['flags'][0]['id']}/resolve",
        json={"action": "act", "reason": "Vertrauliche Kundendaten"},
        headers=world.facilitator,
    )
    assert r.status_code == 200, r.text
    assert r.json()["action"] == "acted" and r.json()["hidden"] is True and len(r.json()["resolved"]) == 2
    assert await queue(client, world, world.facilitator) == []

    # Members no longer see it; the facilitator sees it marked hidden with the reason.
    for member in (anna, ben, clara):
        assert [c["id"] for c in await comments(client, rid, member)] == [kept["id"]]
    seen = {c["id"]: c for c in await comments(client, rid, world.facilitator)}
    assert seen[leak["id"]]["hidden"] is True and seen[leak["id"]]["hidden_reason"] == "Vertrauliche Kundendaten"
    # Members cannot flag what they cannot see.
    assert (await flag(client, "comments", leak["id"], clara, "spam")).status_code == 404

    # The same audit entry and author notice as a direct hide, plus the resolution.
    hidden = await audit_entry(client, world, "comment.hidden", leak["id"])
    assert hidden["reason"] == "Vertrauliche Kundendaten" and hidden["actor_id"] == await person_id(
        client, world.facilitator
    )
    acted = await audit_entry(client, world, "flags.acted", leak["id"])
    assert acted["object_type"] == "comment" and acted["details"]["flags"] == "2"
    notice = await smtp_sink.wait_for_subject(world.reps["b"].email, "hidden")
    assert notice["Subject"] == 'Your comment in "Terminvergabe Nord" was hidden'
    assert "Vertrauliche Kundendaten" in text_of(notice)


async def test_acting_on_a_flagged_report_hides_it_from_every_member_read(
    client: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    world = await build_world(client, smtp_sink, companies=2)
    ben = world.reps["b"].auth
    rid = (await post_report(client, world, "a", done="Jetzt 20 % Rabatt bei uns im Shop!"))["id"]
    r = await flag(client, "reports", rid, ben, "spam")
    assert r.status_code == 201
    r = await client.post(
        f"/api/v1/flags/{r.json()['id']}/resolve",
        json={"action": "act", "reason": "Keine Werbung im Konvoi"},
        headers=ADMIN,
    )
    assert r.status_code == 200 and r.json()["hidden"] is True, r.text
    assert (await client.get(f"/api/v1/reports/{rid}", headers=ben)).status_code == 404
    assert rid not in await timeline(client, world, ben)
    assert (await timeline(client, world, world.facilitator))[rid]["hidden"] is True
    entry = await audit_entry(client, world, "report.hidden", rid)
    assert entry["reason"] == "Keine Werbung im Konvoi" and entry["actor_id"] is None  # the admin token
    notice = await smtp_sink.wait_for_subject(world.reps["a"].email, "ausgeblendet")
    assert "Keine Werbung im Konvoi" in text_of(notice)


async def test_who_may_flag_read_the_queue_and_resolve(client: httpx.AsyncClient, smtp_sink: SmtpSink) -> None:
    world = await build_world(client, smtp_sink, companies=2)
    other = await build_world(client, smtp_sink, companies=1)
    rid = (await post_report(client, world, "a"))["id"]
    cid = (await comment(client, rid, world.reps["b"].auth, "Hallo"))["id"]
    r = await flag(client, "comments", cid, world.reps["a"].auth, "offensive")
    assert r.status_code == 201
    flag_id = r.json()["id"]

    # Strangers (another convoy's facilitator and members) learn nothing: 404 everywhere.
    for stranger in (other.facilitator, other.reps["a"].auth):
        assert (await flag(client, "reports", rid, stranger, "spam")).status_code == 404
        assert (await flag(client, "comments", cid, stranger, "spam")).status_code == 404
        assert (await client.get(f"/api/v1/convoys/{world.convoy_id}/flags", headers=stranger)).status_code == 404
        r = await client.post(f"/api/v1/flags/{flag_id}/resolve", json={"action": "dismiss"}, headers=stranger)
        assert r.status_code == 404
    # Anonymous: 401. The admin token has no person to flag as: 403.
    assert (await flag(client, "reports", rid, {}, "spam")).status_code == 401
    assert (await flag(client, "reports", rid, ADMIN, "spam")).status_code == 403
    # Unknown objects and flags: 404.
    unknown = "00000000-0000-0000-0000-000000000000"
    assert (await flag(client, "reports", unknown, world.reps["a"].auth, "spam")).status_code == 404
    r = await client.post(f"/api/v1/flags/{unknown}/resolve", json={"action": "dismiss"}, headers=world.facilitator)
    assert r.status_code == 404
    # A member of the convoy may flag their own content (a slip of confidential data).
    assert (await flag(client, "reports", rid, world.reps["a"].auth, "confidential")).status_code == 201
    # The other convoy's queue does not show this convoy's flags.
    assert await queue(client, other, other.facilitator) == []
    assert len(await queue(client, world, world.facilitator)) == 2


async def test_the_facilitator_digest_counts_the_flags_waiting(
    client: httpx.AsyncClient, stack: Stack, smtp_sink: SmtpSink
) -> None:
    world = await build_world(client, smtp_sink, companies=3)
    rid = (await post_report(client, world, "a"))["id"]
    before = datetime.now(UTC) - timedelta(seconds=1)
    flags = []
    for key in "bc":
        r = await flag(client, "reports", rid, world.reps[key].auth, "spam")
        assert r.status_code == 201
        flags.append(r.json()["id"])
    cid = (await comment(client, rid, world.reps["b"].auth, "Teuer!"))["id"]
    r = await flag(client, "comments", cid, world.reps["a"].auth, "offensive")
    assert r.status_code == 201

    (digest, _) = await facilitator_digest(stack, [world.convoy_id], datetime.now(UTC))
    assert [h.flags_waiting for h in digest.convoys] == [3]
    (digest, _) = await facilitator_digest(stack, [world.convoy_id], before)
    assert [h.flags_waiting for h in digest.convoys] == [0]  # as of a moment before any flag

    r = await client.post(f"/api/v1/flags/{flags[0]}/resolve", json={"action": "dismiss"}, headers=world.facilitator)
    assert r.status_code == 200
    (digest, _) = await facilitator_digest(stack, [world.convoy_id], datetime.now(UTC))
    assert [h.flags_waiting for h in digest.convoys] == [1]  # both flags on the report went together


async def facilitator_address(client: httpx.AsyncClient, world: World) -> str:
    r = await client.get("/api/v1/me", headers=world.facilitator)
    assert r.status_code == 200, r.text
    return str(r.json()["person"]["email"])
