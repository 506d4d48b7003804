"""Editing and deleting one's own comment (issue #18), over HTTP against the real stack.

Only the author, within ``CONVOY_COMMENT_EDIT_WINDOW_S`` of posting, not in a locked thread; a facilitator
hides instead of deleting; an edited comment says so; a deleted comment with answers stays as a placeholder
so the answers keep their context, without answers it disappears; a deleted comment is never mailed as
feedback and an edited one is mailed as it reads at the flush."""

from __future__ import annotations

import uuid

import httpx
import pytest

from services.runtime.settings import Settings
from tests.conftest import SmtpSink, Stack, text_of
from tests.test_feedback_mail import first_mail, settled
from tests.test_moderation import comment, comments, post_report
from tests.test_reports import sql
from tests.world import build_world

WINDOW_S = 3.0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_(feedback_window_s=WINDOW_S)


async def edit(client: httpx.AsyncClient, comment_id: str, headers: dict[str, str], body: str) -> httpx.Response:
    return await client.patch(f"/api/v1/comments/{comment_id}", json={"body": body}, headers=headers)


async def delete(client: httpx.AsyncClient, comment_id: str, headers: dict[str, str]) -> httpx.Response:
    return await client.delete(f"/api/v1/comments/{comment_id}", headers=headers)


async def count(client: httpx.AsyncClient, report_id: str, headers: dict[str, str]) -> int:
    r = await client.get(f"/api/v1/reports/{report_id}", headers=headers)
    assert r.status_code == 200, r.text
    found: int = r.json()["comments"]
    return found


async def test_the_author_edits_and_deletes_within_the_window_and_answers_keep_their_context(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    world = await build_world(client, smtp_sink, companies=3)
    anna, ben, clara = (world.reps[k].auth for k in "abc")
    rid = (await post_report(client, world, "a"))["id"]
    question = await comment(client, rid, ben, "Welches Tol nutzt ihr?")
    assert question["edited"] is False and question["editable_until"] is not None
    answer = await comment(client, rid, clara, "Wir nutzen auch eins.", parent_id=question["id"])

    # Only the author edits; the text changes and the comment says "edited".
    r = await edit(client, question["id"], ben, "Welches **Tool** nutzt ihr?")
    assert r.status_code == 200, r.text
    assert r.json()["edited"] is True and "<strong>Tool</strong>" in r.json()["body_html"]
    for who in (anna, clara):
        r = await edit(client, question["id"], who, "gekapert")
        assert r.status_code == 403, r.text
    r = await delete(client, question["id"], world.facilitator)
    assert r.status_code == 403 and "hide" in r.json()["detail"], r.text
    r = await edit(client, question["id"], ben, "")
    assert r.status_code == 400, r.text
    [listed] = await comments(client, rid, anna)
    assert listed["body"] == "Welches **Tool** nutzt ihr?" and listed["edited"] is True

    # Deleted with an answer: a placeholder without text, the answer under it; the count leaves it out.
    r = await delete(client, question["id"], ben)
    assert r.status_code == 200 and r.json()["deleted"] is True, r.text
    [placeholder] = await comments(client, rid, anna)
    assert placeholder["deleted"] is True and placeholder["body"] == "" and placeholder["body_html"] == ""
    assert [a["id"] for a in placeholder["replies"]] == [answer["id"]]
    assert await count(client, rid, anna) == 1
    assert (await edit(client, question["id"], ben, "zurück")).status_code == 404
    assert (await delete(client, question["id"], ben)).status_code == 404
    r = await client.post(f"/api/v1/reports/{rid}/flags", json={"reason": "spam"}, headers=anna)
    assert r.status_code == 201, r.text  # the report itself can still be flagged ...
    r = await client.post(f"/api/v1/comments/{question['id']}/flags", json={"reason": "spam"}, headers=anna)
    assert r.status_code == 404, r.text  # ... a deleted comment cannot
    # The answer deleted too: nothing is left to show.
    assert (await delete(client, answer["id"], clara)).status_code == 200
    assert await comments(client, rid, anna) == []
    assert await comments(client, rid, world.facilitator) == []
    assert await count(client, rid, anna) == 0

    # After the window: 409 for edit and delete.
    late = await comment(client, rid, ben, "Alter Kommentar")
    backdate = "UPDATE milestones.comments SET created_at = now() - interval '16 minutes' WHERE id = $1"
    await sql(stack.settings, backdate, uuid.UUID(late["id"]))
    for r in (await edit(client, late["id"], ben, "neu"), await delete(client, late["id"], ben)):
        assert r.status_code == 409 and "15 minutes" in r.json()["detail"], r.text
    [listed] = await comments(client, rid, ben)
    assert listed["body"] == "Alter Kommentar"

    # A locked thread: members cannot change their comments either; a hidden comment is the facilitators'.
    fresh = await comment(client, rid, ben, "Frisch")
    r = await client.put(f"/api/v1/reports/{rid}/comment-lock", json={"reason": "Pause"}, headers=world.facilitator)
    assert r.status_code == 200, r.text
    r = await edit(client, fresh["id"], ben, "Frisch bearbeitet")
    assert r.status_code == 409 and "locked" in r.json()["detail"], r.text
    r = await client.delete(f"/api/v1/reports/{rid}/comment-lock", headers=world.facilitator)
    assert r.status_code == 200, r.text
    r = await client.post(f"/api/v1/comments/{fresh['id']}/hide", json={"reason": "Spam"}, headers=world.facilitator)
    assert r.status_code == 200, r.text
    assert (await delete(client, fresh["id"], ben)).status_code == 404  # ben no longer sees it

    # The export holds when a comment was edited and deleted (the deleted text is gone).
    r = await client.get("/api/v1/me/export", headers=ben)
    assert r.status_code == 200, r.text
    exported = {c["id"]: c for c in r.json()["services"]["milestones"]["comments"]}
    assert exported[question["id"]]["body"] == "" and exported[question["id"]]["deleted_at"]
    assert exported[question["id"]]["edited_at"]
    assert exported[late["id"]]["deleted_at"] is None


async def test_a_deleted_comment_is_not_mailed_and_an_edited_one_is_mailed_as_it_reads(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    world = await build_world(client, smtp_sink, companies=3)
    anna, ben, clara = world.reps["a"], world.reps["b"], world.reps["c"]
    rid = (await post_report(client, world, "a"))["id"]
    gone = await comment(client, rid, ben.auth, "Ups, falscher Bericht")
    kept = await comment(client, rid, clara.auth, "Sieht gut aus")
    assert (await delete(client, gone["id"], ben.auth)).status_code == 200
    assert (await edit(client, kept["id"], clara.auth, "Sieht richtig gut aus")).status_code == 200

    text = text_of(await first_mail(smtp_sink, anna.email, "feedback"))
    assert "Sieht richtig gut aus" in text
    assert "falscher Bericht" not in text and "Ben Schmidt" not in text
    await settled(stack)

    # A batch holding only a deleted comment sends nothing.
    only = await comment(client, rid, ben.auth, "Doch nicht")
    assert (await delete(client, only["id"], ben.auth)).status_code == 200
    await settled(stack)
    assert not any("Doch nicht" in text_of(m) for m in smtp_sink.to(anna.email))
