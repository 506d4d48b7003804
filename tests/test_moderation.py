"""Moderation by a convoy's facilitators, over HTTP against the real stack: hide and restore
comments and reports (with a reason), lock comments; every step in the convoy's audit log, and
the author of hidden content is told why."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx

from tests.conftest import SlackStub, SmtpSink, Stack, eventually, html_of, text_of
from tests.test_reports import post_report as post_report_response
from tests.test_reports import sql
from tests.test_scheduler import active_convoy, tick
from tests.world import ADMIN, World, build_world, report_roles


async def post_report(client: httpx.AsyncClient, world: World, key: str, **body: Any) -> dict[str, Any]:
    r = await client.post(
        f"/api/v1/convoys/{world.convoy_id}/reports",
        json={"done": f"Fortschritt {key}", **body},
        headers=world.reps[key].auth,
    )
    assert r.status_code == 201, r.text
    report: dict[str, Any] = r.json()
    return report


async def comment(
    client: httpx.AsyncClient, report_id: str, headers: dict[str, str], body: str, parent_id: str | None = None
) -> dict[str, Any]:
    r = await client.post(
        f"/api/v1/reports/{report_id}/comments", json={"body": body, "parent_id": parent_id}, headers=headers
    )
    assert r.status_code == 201, r.text
    result: dict[str, Any] = r.json()
    return result


async def comments(client: httpx.AsyncClient, report_id: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    r = await client.get(f"/api/v1/reports/{report_id}/comments", headers=headers)
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json()["comments"]
    return found


async def timeline(client: httpx.AsyncClient, world: World, headers: dict[str, str]) -> dict[str, dict[str, Any]]:
    r = await client.get(f"/api/v1/convoys/{world.convoy_id}/timeline", headers=headers)
    assert r.status_code == 200, r.text
    return {x["id"]: x for x in r.json()["reports"]}


async def person_id(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    r = await client.get("/api/v1/me", headers=headers)
    assert r.status_code == 200, r.text
    return str(r.json()["person"]["id"])


async def audit_entry(client: httpx.AsyncClient, world: World, action: str, object_id: str) -> dict[str, Any]:
    """The audit entry for ``action`` on ``object_id`` once services/convoys has recorded it."""

    async def recorded() -> dict[str, Any] | None:
        r = await client.get(f"/api/v1/convoys/{world.convoy_id}/audit", headers=world.facilitator)
        assert r.status_code == 200, r.text
        return next((e for e in r.json()["entries"] if e["action"] == action and e["object_id"] == object_id), None)

    entry: dict[str, Any] = await eventually(recorded)
    return entry


async def test_a_hidden_comment_is_gone_for_members_marked_for_facilitators_and_can_come_back(
    client: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    world = await build_world(client, smtp_sink, companies=3)
    anna, ben, clara = (world.reps[k].auth for k in "abc")
    rid = (await post_report(client, world, "a"))["id"]
    ad = await comment(client, rid, ben, "Kauft alle bei uns ein! Rabatt!")
    answer = await comment(client, rid, anna, "Bitte nicht hier.", parent_id=ad["id"])
    kept = await comment(client, rid, clara, "Glückwunsch zur Buchungsseite!")
    assert ad["hidden"] is False and ad["hidden_reason"] is None

    # A hide needs a reason: missing or blank is refused.
    r = await client.post(f"/api/v1/comments/{ad['id']}/hide", json={}, headers=world.facilitator)
    assert r.status_code == 400
    r = await client.post(f"/api/v1/comments/{ad['id']}/hide", json={"reason": "   "}, headers=world.facilitator)
    assert r.status_code == 400 and "reason" in r.json()["detail"]
    r = await client.post(f"/api/v1/comments/{ad['id']}/hide", json={"reason": "x" * 501}, headers=world.facilitator)
    assert r.status_code == 400

    r = await client.post(
        f"/api/v1/comments/{ad['id']}/hide",
        json={"reason": "Werbung ist hier nicht erlaubt"},
        headers=world.facilitator,
    )
    assert r.status_code == 200, r.text
    assert r.json()["hidden"] is True and r.json()["hidden_reason"] == "Werbung ist hier nicht erlaubt"

    # Members: the comment and the answer to it are gone, from the list and from every count.
    for member in (anna, ben, clara):
        assert [c["id"] for c in await comments(client, rid, member)] == [kept["id"]]
        assert (await client.get(f"/api/v1/reports/{rid}", headers=member)).json()["comments"] == 1
        assert (await timeline(client, world, member))[rid]["comments"] == 1
    export = (await client.get(f"/api/v1/convoys/{world.convoy_id}/export.json", headers=clara)).json()
    assert [x["comments"] for x in export["reports"]] == [1]
    # ... and it cannot be answered any more.
    r = await client.post(f"/api/v1/reports/{rid}/comments", json={"body": "Wo?", "parent_id": ad["id"]}, headers=clara)
    assert r.status_code == 400

    # Facilitators and admins still see it, marked, with the reason and its answer.
    for moderator in (world.facilitator, ADMIN):
        seen = {c["id"]: c for c in await comments(client, rid, moderator)}
        assert set(seen) == {ad["id"], kept["id"]}
        assert seen[ad["id"]]["hidden"] is True and seen[ad["id"]]["hidden_reason"] == "Werbung ist hier nicht erlaubt"
        assert [x["id"] for x in seen[ad["id"]]["replies"]] == [answer["id"]]
        assert seen[kept["id"]]["hidden"] is False and seen[kept["id"]]["hidden_reason"] is None

    # The audit log says who, what, which, when and why; the author is told why (in English).
    entry = await audit_entry(client, world, "comment.hidden", ad["id"])
    assert entry["object_type"] == "comment" and entry["reason"] == "Werbung ist hier nicht erlaubt"
    assert entry["actor_id"] == await person_id(client, world.facilitator) and entry["at"]
    assert entry["details"]["report_id"] == rid and entry["details"]["author_id"] == world.reps["b"].person_id
    notice = await smtp_sink.wait_for_subject(world.reps["b"].email, "hidden")
    assert notice["Subject"] == 'Your comment in "Terminvergabe Nord" was hidden'
    assert "Werbung ist hier nicht erlaubt" in text_of(notice) and f"/reports/{rid}" in text_of(notice)

    # Hiding it again changes nothing (and records nothing).
    r = await client.post(f"/api/v1/comments/{ad['id']}/hide", json={"reason": "nochmal"}, headers=world.facilitator)
    assert r.status_code == 200 and r.json()["hidden_reason"] == "Werbung ist hier nicht erlaubt"

    # Restored: back for everyone, as it was.
    r = await client.post(
        f"/api/v1/comments/{ad['id']}/restore", json={"reason": "Missverständnis"}, headers=world.facilitator
    )
    assert r.status_code == 200 and r.json()["hidden"] is False and r.json()["hidden_reason"] is None
    listed = await comments(client, rid, clara)
    assert [c["id"] for c in listed] == [ad["id"], kept["id"]] and listed[0]["replies"][0]["id"] == answer["id"]
    assert (await client.get(f"/api/v1/reports/{rid}", headers=clara)).json()["comments"] == 3
    entry = await audit_entry(client, world, "comment.restored", ad["id"])
    assert entry["reason"] == "Missverständnis"
    r = await client.get(f"/api/v1/convoys/{world.convoy_id}/audit", headers=world.facilitator)
    assert [e["action"] for e in r.json()["entries"]].count("comment.hidden") == 1
    assert [m["Subject"] for m in smtp_sink.to(world.reps["b"].email)].count(notice["Subject"]) == 1


async def test_a_hidden_report_is_gone_from_every_read_members_have(
    client: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    world = await build_world(client, smtp_sink, companies=2)
    anna, ben = world.reps["a"].auth, world.reps["b"].auth
    report = await post_report(client, world, "a", done="Unser Webshop verkauft Schwarzarbeit")
    rid, cid = report["id"], world.convoy_id
    await post_report(client, world, "b", done="Kalender verbunden")
    search = f"/api/v1/convoys/{cid}/search?q=Webshop"
    assert [h["report_id"] for h in (await client.get(search, headers=ben)).json()["hits"]] == [rid]

    r = await client.post(f"/api/v1/reports/{rid}/hide", json={"reason": "Rechtswidriger Inhalt"}, headers=anna)
    assert r.status_code == 403  # its own author is a member, not a moderator
    r = await client.post(
        f"/api/v1/reports/{rid}/hide", json={"reason": "Rechtswidriger Inhalt"}, headers=world.facilitator
    )
    assert r.status_code == 200, r.text
    assert r.json()["hidden"] is True and r.json()["hidden_reason"] == "Rechtswidriger Inhalt"

    for member in (anna, ben):
        assert (await client.get(f"/api/v1/reports/{rid}", headers=member)).status_code == 404
        assert (await client.get(f"/api/v1/reports/{rid}/comments", headers=member)).status_code == 404
        assert rid not in await timeline(client, world, member)
        assert (await client.get(search, headers=member)).json()["hits"] == []
        export = (await client.get(f"/api/v1/convoys/{cid}/export.json", headers=member)).json()
        assert rid not in [x["id"] for x in export["reports"]]
        board = (await client.get(f"/api/v1/convoys/{cid}/board", headers=member)).json()
        assert {c["name"]: c["reports"] for c in board["companies"]} == {"Laden Schmidt": 1, "Sanitär Müller": 0}
        r = await client.post(f"/api/v1/reports/{rid}/restore", json={}, headers=member)
        assert r.status_code == 404  # what members cannot see, they cannot restore
    r = await client.post(f"/api/v1/reports/{rid}/comments", json={"body": "?"}, headers=ben)
    assert r.status_code == 404

    # The facilitator still sees it, marked, with the reason.
    r = await client.get(f"/api/v1/reports/{rid}", headers=world.facilitator)
    assert r.status_code == 200 and r.json()["hidden"] is True and r.json()["hidden_reason"] == "Rechtswidriger Inhalt"
    assert (await timeline(client, world, world.facilitator))[rid]["hidden"] is True
    hits = (await client.get(search, headers=world.facilitator)).json()["hits"]
    assert [h["report_id"] for h in hits] == [rid]

    entry = await audit_entry(client, world, "report.hidden", rid)
    assert entry["object_type"] == "report" and entry["reason"] == "Rechtswidriger Inhalt"
    assert entry["details"]["author_id"] == world.reps["a"].person_id
    notice = await smtp_sink.wait_for_subject(world.reps["a"].email, "ausgeblendet")
    assert notice["Subject"] == "Ihr Bericht in „Terminvergabe Nord“ wurde ausgeblendet"
    assert "Rechtswidriger Inhalt" in text_of(notice) and "Sanitär Müller" in text_of(notice)

    r = await client.post(f"/api/v1/reports/{rid}/restore", json={}, headers=world.facilitator)
    assert r.status_code == 200 and r.json()["hidden"] is False and r.json()["hidden_reason"] is None
    r = await client.get(f"/api/v1/reports/{rid}", headers=ben)
    assert r.status_code == 200 and r.json()["hidden"] is False and r.json()["hidden_reason"] is None
    assert rid in await timeline(client, world, ben)
    assert [h["report_id"] for h in (await client.get(search, headers=ben)).json()["hits"]] == [rid]
    entry = await audit_entry(client, world, "report.restored", rid)
    assert entry["reason"] == ""


async def test_locked_comments_refuse_new_comments_until_unlocked(
    client: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    world = await build_world(client, smtp_sink, companies=2)
    ben = world.reps["b"].auth
    rid = (await post_report(client, world, "a"))["id"]
    await comment(client, rid, ben, "Erster!")

    assert (
        await client.put(f"/api/v1/reports/{rid}/comment-lock", json={"reason": "zu hitzig"}, headers=ben)
    ).status_code == 403
    r = await client.put(f"/api/v1/reports/{rid}/comment-lock", json={"reason": "zu hitzig"}, headers=world.facilitator)
    assert r.status_code == 200 and r.json()["comments_locked"] is True
    assert (await client.get(f"/api/v1/reports/{rid}", headers=ben)).json()["comments_locked"] is True

    for member in (ben, world.reps["a"].auth):
        r = await client.post(f"/api/v1/reports/{rid}/comments", json={"body": "Doch!"}, headers=member)
        assert r.status_code == 409 and "locked" in r.json()["detail"]
    assert len(await comments(client, rid, ben)) == 1  # reading goes on
    # Facilitators may still say why.
    await comment(client, rid, world.facilitator, "Ich habe die Kommentare geschlossen; bitte direkt klären.")
    entry = await audit_entry(client, world, "comments.locked", rid)
    assert entry["object_type"] == "report" and entry["reason"] == "zu hitzig"

    r = await client.delete(f"/api/v1/reports/{rid}/comment-lock?reason=beruhigt", headers=world.facilitator)
    assert r.status_code == 200 and r.json()["comments_locked"] is False
    await comment(client, rid, ben, "Danke, geklärt.")
    entry = await audit_entry(client, world, "comments.unlocked", rid)
    assert entry["reason"] == "beruhigt"


async def test_only_the_convoys_facilitators_and_admins_moderate(
    client: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    world = await build_world(client, smtp_sink, companies=2)
    other = await build_world(client, smtp_sink, companies=1)
    rid = (await post_report(client, world, "a"))["id"]
    cid = (await comment(client, rid, world.reps["b"].auth, "Hallo"))["id"]
    roles = report_roles(world, other)
    expected = {
        "admin": 200,
        "facilitator": 200,
        "own_rep": 403,
        "peer": 403,
        "other_facilitator": 404,
        "outsider": 404,
        "anonymous": 401,
    }
    reason = {"reason": "Test"}
    cases: list[tuple[str, str, Any, str, Any]] = [
        ("post", f"/api/v1/reports/{rid}/hide", reason, f"/api/v1/reports/{rid}/restore", {}),
        ("post", f"/api/v1/comments/{cid}/hide", reason, f"/api/v1/comments/{cid}/restore", {}),
        ("put", f"/api/v1/reports/{rid}/comment-lock", reason, f"/api/v1/reports/{rid}/comment-lock", None),
    ]
    failures = []
    for method, path, body, undo, undo_body in cases:
        for role, headers in roles.items():
            r = await client.request(method, path, json=body, headers=headers)
            if r.status_code != expected[role]:
                failures.append(f"{method.upper()} {path} as {role}: {r.status_code} (expected {expected[role]})")
            # The undo answers the same to everyone, whatever the state.
            undo_method = "delete" if method == "put" else "post"
            r = await client.request(undo_method, undo, json=undo_body, headers=headers)
            if r.status_code != expected[role]:
                failures.append(f"{undo_method.upper()} {undo} as {role}: {r.status_code} (expected {expected[role]})")
    assert failures == []
    # Nothing the refused attempts asked for happened.
    r = await client.get(f"/api/v1/reports/{rid}", headers=world.reps["b"].auth)
    assert r.status_code == 200 and r.json()["hidden"] is False and r.json()["comments_locked"] is False
    assert [c["id"] for c in await comments(client, rid, world.reps["a"].auth)] == [cid]
    # A foreign convoy's facilitator left no trace in either audit log.
    await audit_entry(client, world, "comments.unlocked", rid)
    r = await client.get(f"/api/v1/convoys/{world.convoy_id}/audit", headers=world.facilitator)
    actors = {e["actor_id"] for e in r.json()["entries"] if e["action"].startswith(("report.", "comment"))}
    assert await person_id(client, other.facilitator) not in actors


async def test_a_hidden_report_stays_out_of_the_digest_email_and_the_slack_channel(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, slack_stub: SlackStub, stack: Stack, settings: Any
) -> None:
    world = await active_convoy(client, smtp_sink)
    r = await client.put(
        f"/api/v1/convoys/{world.convoy_id}/slack", json={"webhook_url": slack_stub.url()}, headers=world.facilitator
    )
    assert r.status_code == 200
    await tick(stack, "2026-10-19T09:00:30+02:00")
    ids = []
    for key, done in (("a", "Geheimes Angebot: 30 % auf alles"), ("b", "Shop ist online")):
        r = await post_report_response(client, world, key, done=done)
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    for rid in ids:  # place both in cycle 0 (the fake clock is the scheduler's)
        await sql(
            settings,
            "UPDATE milestones.reports SET cycle_index = 0, submitted_at = $2 WHERE id = $1",
            uuid.UUID(rid),
            datetime.fromisoformat("2026-10-20T10:00+02:00"),
        )
    r = await client.post(f"/api/v1/reports/{ids[0]}/hide", json={"reason": "Werbung"}, headers=world.facilitator)
    assert r.status_code == 200, r.text

    await tick(stack, "2026-10-26T09:00:30+01:00")  # cycle 0 closes: the digest goes out
    [post] = await slack_stub.wait_for(1, timeout=30)
    digest = await smtp_sink.wait_for_subject(world.reps["b"].email, "Convoy digest")
    for text in (str(post["blocks"]), text_of(digest), html_of(digest)):
        assert "Shop ist online" in text
        assert "Geheimes Angebot" not in text
