"""Conditional GETs for a convoy's timeline, board and search (issue #21): an ETag from the convoy's change
counter, 304 without asking services/milestones while nothing changed, a new ETag after every change a
viewer may see, ETags that belong to one viewer and one query, and no 304 for someone removed."""

from __future__ import annotations

from typing import Any

import httpx

from schemas.contract import PROCESSES
from schemas.subjects import Subjects
from services import nats_auth
from tests.conftest import SmtpSink, Stack, eventually, settled
from tests.test_moderation import post_report
from tests.world import World, build_world, rpc_answered


def pages(world: World) -> dict[str, str]:
    base = f"/api/v1/convoys/{world.convoy_id}"
    return {
        "timeline": f"{base}/timeline?limit=20",
        "board": f"{base}/board",
        "search": f"{base}/search?q=Fortschritt",
    }


async def tag_of(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> tuple[str, Any]:
    r = await client.get(url, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "private, no-cache"
    return r.headers["etag"], r.json()


async def revalidate(client: httpx.AsyncClient, url: str, headers: dict[str, str], tag: str) -> httpx.Response:
    return await client.get(url, headers={**headers, "If-None-Match": tag})


async def milestones_answered(client: httpx.AsyncClient, operation: str) -> float:
    """How many requests services/milestones has answered for ``operation`` (its own metrics)."""
    return await rpc_answered(client, "milestones", operation)


async def test_a_page_has_an_etag_and_revalidates_to_304_without_asking_milestones(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    world = await build_world(client, smtp_sink, companies=2)
    await post_report(client, world, "a")
    await settled(stack)  # the report's events have moved the version for the last time
    ben = world.reps["b"].auth
    for kind, url in pages(world).items():
        tag, body = await tag_of(client, url, ben)
        assert tag.startswith('W/"'), tag
        if kind == "search":
            assert len(body["hits"]) == 1
        before = await milestones_answered(client, kind)
        r = await revalidate(client, url, ben, tag)
        assert r.status_code == 304, (kind, r.status_code, r.text)
        assert r.content == b"" and r.headers["etag"] == tag
        assert await milestones_answered(client, kind) == before  # answered by the API alone
        # Several tags, ours among them (RFC 9110 list), also revalidate; a stranger's does not.
        assert (await revalidate(client, url, ben, f'W/"nope", {tag}')).status_code == 304
        assert (await revalidate(client, url, ben, 'W/"0123456789abcdef0123456789abcdef"')).status_code == 200

    # The 304 needs no service at all: with milestones stopped a revalidation still answers, a full read cannot.
    timeline = pages(world)["timeline"]
    tag, _ = await tag_of(client, timeline, ben)
    await stack.stop_service("milestones")
    try:
        assert (await revalidate(client, timeline, ben, tag)).status_code == 304
        assert (await client.get(timeline, headers=ben)).status_code == 503
    finally:
        await stack.start_service("milestones")
    # A restarted milestones tells the API to forget what it knew (announcements may have been lost while it
    # was away); the version is the same, so the revalidation still answers 304 (asking milestones if need be).
    assert (await revalidate(client, timeline, ben, tag)).status_code == 304


async def test_every_change_a_member_may_see_gives_the_pages_a_new_etag(
    client: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    world = await build_world(client, smtp_sink, companies=2)
    anna_report = await post_report(client, world, "a")
    rid = anna_report["id"]
    ben = world.reps["b"].auth
    url = pages(world)["timeline"]

    async def after(change: Any, shows: Any) -> None:
        """``change`` happens; the old ETag stops revalidating and the page shows it (``shows``)."""

        async def settled_tag() -> str | None:  # the last change's events may move the version a moment more
            tag, _ = await tag_of(client, url, ben)
            return tag if (await revalidate(client, url, ben, tag)).status_code == 304 else None

        tag = await eventually(settled_tag)
        await change()

        async def moved() -> bool:  # the version arrives over NATS a moment after the change's commit
            r = await revalidate(client, url, ben, tag)
            return r.status_code == 200 and r.headers["etag"] != tag and shows(r.json()["reports"])

        await eventually(moved, timeout=5)

    async def ben_reports() -> None:
        await post_report(client, world, "b", done="Kalender verbunden")

    async def ben_comments() -> None:
        r = await client.post(f"/api/v1/reports/{rid}/comments", json={"body": "Toll gemacht"}, headers=ben)
        assert r.status_code == 201, r.text

    async def ben_gives_kudos() -> None:
        assert (await client.put(f"/api/v1/reports/{rid}/kudos", headers=ben)).status_code == 200

    async def anna_edits() -> None:
        r = await client.patch(f"/api/v1/reports/{rid}", json={"done": "Termine online"}, headers=world.reps["a"].auth)
        assert r.status_code == 200, r.text

    async def facilitator_hides() -> None:
        r = await client.post(f"/api/v1/reports/{rid}/hide", json={"reason": "Werbung"}, headers=world.facilitator)
        assert r.status_code == 200, r.text

    def anna_s(reports: list[dict[str, Any]]) -> dict[str, Any]:
        return next(r for r in reports if r["id"] == rid)

    await after(ben_reports, lambda reports: len(reports) == 2)
    await after(ben_comments, lambda reports: anna_s(reports)["comments"] == 1)
    await after(ben_gives_kudos, lambda reports: anna_s(reports)["kudos"] == 1)
    await after(anna_edits, lambda reports: anna_s(reports)["done"] == "Termine online")
    await after(facilitator_hides, lambda reports: all(r["id"] != rid for r in reports))

    # Search follows the same counter: the hidden report is found again once restored.
    search = f"/api/v1/convoys/{world.convoy_id}/search?q=Termine"
    tag, body = await tag_of(client, search, ben)
    assert body["hits"] == []
    r = await client.post(f"/api/v1/reports/{rid}/restore", json={"reason": ""}, headers=world.facilitator)
    assert r.status_code == 200, r.text

    async def search_moved() -> bool:
        r = await revalidate(client, search, ben, tag)
        return r.status_code == 200 and [h["report_id"] for h in r.json()["hits"]] == [rid]

    await eventually(search_moved, timeout=5)


async def test_etags_belong_to_one_viewer_and_one_query(client: httpx.AsyncClient, smtp_sink: SmtpSink) -> None:
    world = await build_world(client, smtp_sink, companies=2)
    other = await build_world(client, smtp_sink, companies=1)
    report = await post_report(client, world, "a")
    r = await client.post(f"/api/v1/reports/{report['id']}/hide", json={"reason": "Werbung"}, headers=world.facilitator)
    assert r.status_code == 200
    await post_report(client, world, "b")
    anna, ben = world.reps["a"].auth, world.reps["b"].auth
    base = f"/api/v1/convoys/{world.convoy_id}"
    for url in pages(world).values():
        tags = {who: (await tag_of(client, url, h))[0] for who, h in (("anna", anna), ("ben", ben))}
        assert tags["anna"] != tags["ben"]
        assert (await revalidate(client, url, anna, tags["ben"])).status_code == 200  # not ben's copy
        # The facilitator sees the hidden report: her page differs, and no member's tag answers for it.
        r = await revalidate(client, url, world.facilitator, tags["anna"])
        assert r.status_code == 200 and r.headers["etag"] not in tags.values()
        # Someone from another convoy holding a member's tag learns nothing: 404 as without it.
        assert (await revalidate(client, url, other.reps["a"].auth, tags["ben"])).status_code == 404
        # Without a token: 401, never 304.
        assert (await client.get(url, headers={"If-None-Match": tags["ben"]})).status_code == 401
    hidden_seen = (await client.get(f"{base}/timeline", headers=world.facilitator)).json()["reports"]
    assert len(hidden_seen) == 2
    assert len((await client.get(f"{base}/timeline", headers=ben)).json()["reports"]) == 1

    # Another query is another page.
    first, _ = await tag_of(client, f"{base}/timeline?limit=20", ben)
    for variant in ("limit=5", "limit=20&help_wanted=true", f"limit=20&company_id={world.reps['b'].company_id}"):
        r = await revalidate(client, f"{base}/timeline?{variant}", ben, first)
        assert r.status_code == 200 and r.headers["etag"] != first, variant
    found, _ = await tag_of(client, f"{base}/search?q=Fortschritt", ben)
    assert (await revalidate(client, f"{base}/search?q=Fortschritt&limit=5", ben, found)).status_code == 200
    assert (await revalidate(client, f"{base}/search?q=Kalender", ben, found)).status_code == 200
    # The same page under another page kind's address is not the same page.
    assert (await revalidate(client, f"{base}/board", ben, first)).status_code == 200

    # The board's tag says until when the clock leaves it unchanged (a new cycle, a new local day).
    board, _ = await tag_of(client, f"{base}/board", ben)
    assert board.removeprefix('W/"').split(".")[0].isdigit()


async def test_a_hidden_report_or_comment_is_never_revalidated_after_the_hide_answered(
    client: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    """Moderation is announced to the API before its answer, like a removal: no waiting."""
    world = await build_world(client, smtp_sink, companies=2)
    report = await post_report(client, world, "a", done="Unser Webshop verkauft Schwarzarbeit")
    rid = report["id"]
    ben = world.reps["b"].auth
    r = await client.post(f"/api/v1/reports/{rid}/comments", json={"body": "Kauft bei mir"}, headers=ben)
    assert r.status_code == 201, r.text
    comment_id = r.json()["id"]
    timeline = pages(world)["timeline"]
    anna = world.reps["a"].auth

    tag, _ = await tag_of(client, timeline, anna)
    r = await client.post(f"/api/v1/comments/{comment_id}/hide", json={"reason": "Werbung"}, headers=world.facilitator)
    assert r.status_code == 200, r.text
    r = await revalidate(client, timeline, anna, tag)
    assert r.status_code == 200 and r.json()["reports"][0]["comments"] == 0

    search = f"/api/v1/convoys/{world.convoy_id}/search?q=Webshop"
    tag, body = await tag_of(client, search, anna)
    assert len(body["hits"]) == 1
    r = await client.post(f"/api/v1/reports/{rid}/hide", json={"reason": "Werbung"}, headers=world.facilitator)
    assert r.status_code == 200, r.text
    r = await revalidate(client, search, anna, tag)
    assert r.status_code == 200 and r.json()["hits"] == []


async def test_a_removed_member_gets_404_not_304(client: httpx.AsyncClient, smtp_sink: SmtpSink) -> None:
    world = await build_world(client, smtp_sink, companies=2)
    await post_report(client, world, "a")
    ben = world.reps["b"]

    async def settled_tags() -> dict[str, str] | None:
        """Ben's tags once they revalidate (the report's events may still move the version for a moment)."""
        tags = {url: (await tag_of(client, url, ben.auth))[0] for url in pages(world).values()}
        for url, tag in tags.items():
            if (await revalidate(client, url, ben.auth, tag)).status_code != 304:
                return None
        return tags

    tags = await eventually(settled_tags)
    r = await client.post(
        f"/api/v1/convoys/{world.convoy_id}/members/{ben.person_id}/removal",
        json={"reason": "Hat das Unternehmen verlassen"},
        headers=world.facilitator,
    )
    assert r.status_code == 200, r.text
    # At once (no waiting): the removal is announced to the API before its answer.
    for url, tag in tags.items():
        r = await revalidate(client, url, ben.auth, tag)
        assert r.status_code in (403, 404), (url, r.status_code)
    # The members who stay get the new page too (the version moved for everybody).
    anna = world.reps["a"].auth

    async def anna_revalidates() -> bool:
        for url in pages(world).values():
            tag, _ = await tag_of(client, url, anna)
            if (await revalidate(client, url, anna, tag)).status_code != 304:
                return False
        return True

    assert await eventually(anna_revalidates)


def test_only_milestones_announces_versions_and_only_the_api_listens() -> None:
    """The NATS permissions (services/nats_auth.py): nobody else can feed the API versions (a forged
    announcement could make it answer 304 for a changed page) or read them."""
    subject = Subjects("convoy").convoy_versions
    perms = {role: nats_auth.permissions(role, "convoy") for role in PROCESSES}
    publishers = [r for r in sorted(PROCESSES) if subject in perms[r]["publish"]["allow"]]  # type: ignore[index]
    listeners = [r for r in sorted(PROCESSES) if subject in perms[r]["subscribe"]["allow"]]  # type: ignore[index]
    assert publishers == ["milestones"] and listeners == ["api"]


async def test_a_writer_reads_their_own_write_at_once(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    """Right after Ben's comment answered, his own revalidation is a full page with it, not a 304 from a
    version whose announcement may still be on its way."""
    world = await build_world(client, smtp_sink, companies=2)
    rid = (await post_report(client, world, "a"))["id"]
    await settled(stack)
    url = pages(world)["timeline"]
    ben = world.reps["b"].auth
    ben_tag, _ = await tag_of(client, url, ben)
    assert (await revalidate(client, url, ben, ben_tag)).status_code == 304
    r = await client.post(f"/api/v1/reports/{rid}/comments", json={"body": "Gleich gelesen"}, headers=ben)
    assert r.status_code == 201, r.text
    r = await revalidate(client, url, ben, ben_tag)  # no waiting: at once
    assert r.status_code == 200 and r.headers["etag"] != ben_tag, r.status_code
    assert next(x for x in r.json()["reports"] if x["id"] == rid)["comments"] == 1


def test_the_writer_bypass_is_per_person_and_ends() -> None:
    """The rule behind the test above, without the race: after ``wrote``, that person's ETag does not
    revalidate from the known version; another person's does; and the bypass ends after its window."""
    import time
    import uuid

    from convoy_api import conditional
    from schemas import api
    from services.runtime.settings import Settings

    versions = conditional.Versions(Settings(secret_key="key_x"))
    versions.hearing.heard()  # as an announcement from milestones does: the process hears them
    convoy = uuid.uuid4()
    ben, anna = api.Actor(person_id=uuid.uuid4()), api.Actor(person_id=uuid.uuid4())
    versions.learn(convoy, 7)
    tags = {who: versions.etag("timeline", convoy, 7, who, (), 0) for who in (ben, anna)}
    assert versions.revalidates(tags[ben], "timeline", convoy, ben, ()) == tags[ben]
    versions.wrote(ben.person_id)
    assert versions.revalidates(tags[ben], "timeline", convoy, ben, ()) is None
    assert versions.revalidates(tags[anna], "timeline", convoy, anna, ()) == tags[anna]
    versions.writers[ben.person_id] = time.monotonic() - conditional.WRITER_BYPASS_S - 1
    assert versions.revalidates(tags[ben], "timeline", convoy, ben, ()) == tags[ben]
