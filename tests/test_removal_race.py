"""Issue #19: a removal takes effect before it is answered.

The representative keeps commenting and toggling kudos as fast as they can while their facilitator
removes them. Every write that began after the removal's 200 is refused; nothing stored was written
after it (a write in progress at the removal finishes first: the removal waits for it); reads right
after the 200 are refused, with no lag of the event path in between.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import httpx

from tests.conftest import SmtpSink, Stack, settled
from tests.world import Rep, build_world


async def _write_loop(
    client: httpx.AsyncClient, ben: Rep, rid: str, kind: str, lane: int, stop: asyncio.Event, log: list[dict[str, Any]]
) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        began = time.time()
        if kind == "comment":
            body = f"lane {lane} comment {n}"
            r = await client.post(f"/api/v1/reports/{rid}/comments", json={"body": body}, headers=ben.auth)
        else:
            body = "give" if n % 2 else "take"
            method = client.put if body == "give" else client.delete
            r = await method(f"/api/v1/reports/{rid}/kudos", headers=ben.auth)
        log.append({"kind": kind, "body": body, "began": began, "ended": time.time(), "status": r.status_code})
        if r.status_code in (403, 404):
            stop.set()  # refused: they are out
        else:
            assert r.status_code in (200, 201), r.text


async def test_writes_and_reads_after_the_removal_answered_are_refused(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    world = await build_world(client, smtp_sink, companies=2)
    anna, ben = world.reps["a"], world.reps["b"]
    cid = world.convoy_id
    r = await client.post(f"/api/v1/convoys/{cid}/reports", json={"done": "Terminbuchung live"}, headers=anna.auth)
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    await settled(stack)  # Ben is in milestones' projection (the common case: no read-through)

    log: list[dict[str, Any]] = []
    stops = [asyncio.Event() for _ in range(4)]
    loops = [
        asyncio.create_task(_write_loop(client, ben, rid, "comment", lane, stops[lane], log)) for lane in range(3)
    ] + [asyncio.create_task(_write_loop(client, ben, rid, "kudos", 3, stops[3], log))]
    try:
        while sum(1 for e in log if e["status"] in (200, 201)) < 12:  # every loop is under way  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        r = await client.post(
            f"/api/v1/convoys/{cid}/members/{ben.person_id}/removal",
            json={"reason": "Hat das Unternehmen verlassen"},
            headers=world.facilitator,
        )
        answered = time.time()
        assert r.status_code == 200, r.text
        # Reads right after the 200: refused (no waiting for the person.removed event).
        reads = await asyncio.gather(
            client.get(f"/api/v1/reports/{rid}", headers=ben.auth),
            client.get(f"/api/v1/reports/{rid}/comments", headers=ben.auth),
            client.get(f"/api/v1/convoys/{cid}/reports", headers=ben.auth),
        )
        assert [x.status_code for x in reads] == [404, 404, 404], [x.text for x in reads]
        # A few more writes that all begin after the 200.
        after = [
            await client.post(f"/api/v1/reports/{rid}/comments", json={"body": "danach"}, headers=ben.auth),
            await client.put(f"/api/v1/reports/{rid}/kudos", headers=ben.auth),
            await client.delete(f"/api/v1/reports/{rid}/kudos", headers=ben.auth),
        ]
        assert [x.status_code for x in after] == [404, 404, 404], [x.text for x in after]
        await asyncio.wait_for(asyncio.gather(*loops), timeout=30)
    finally:
        for s in stops:
            s.set()
        for t in loops:
            t.cancel()

    late = [e for e in log if e["began"] > answered]
    assert all(e["status"] in (403, 404) for e in late), late
    accepted = [e for e in log if e["status"] in (200, 201)]
    assert len(accepted) >= 12

    # What is stored: only accepted comments, each written before the removal was answered.
    r = await client.get(f"/api/v1/reports/{rid}/comments", headers=world.facilitator)
    assert r.status_code == 200
    stored = [c for c in r.json()["comments"] if c["author_id"] == ben.person_id]
    accepted_bodies = {e["body"] for e in accepted if e["kind"] == "comment"}
    assert {c["body"] for c in stored} == accepted_bodies
    assert "danach" not in {c["body"] for c in stored}
    assert all(datetime.fromisoformat(c["created_at"]).timestamp() < answered for c in stored), stored
    # Kudos as the last accepted toggle left them (the kudos lane runs its requests one after the other).
    last_kudos = [e for e in accepted if e["kind"] == "kudos"]
    r = await client.get(f"/api/v1/reports/{rid}", headers=world.facilitator)
    given = ben.person_id in r.json()["kudos_by"]
    assert given == (bool(last_kudos) and last_kudos[-1]["body"] == "give"), (last_kudos[-1:], r.json()["kudos_by"])

    # The event path, arriving later, changes nothing (idempotent), and Ben stays out.
    await settled(stack)
    r = await client.get(f"/api/v1/reports/{rid}", headers=ben.auth)
    assert r.status_code == 404


async def test_a_company_removal_takes_effect_before_its_answer(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    world = await build_world(client, smtp_sink, companies=2)
    anna, ben = world.reps["a"], world.reps["b"]
    cid = world.convoy_id
    r = await client.post(f"/api/v1/convoys/{cid}/reports", json={"done": "Terminbuchung live"}, headers=anna.auth)
    rid = r.json()["id"]
    await settled(stack)
    assert (await client.get(f"/api/v1/reports/{rid}", headers=ben.auth)).status_code == 200
    r = await client.post(
        f"/api/v1/convoys/{cid}/companies/{ben.company_id}/removal",
        json={"reason": "Insolvenz"},
        headers=world.facilitator,
    )
    assert r.status_code == 200
    r = await client.post(f"/api/v1/reports/{rid}/comments", json={"body": "noch da?"}, headers=ben.auth)
    assert r.status_code == 404
    assert (await client.get(f"/api/v1/reports/{rid}", headers=ben.auth)).status_code == 404
    await settled(stack)  # company.left and person.removed arrive: nothing changes, Anna unaffected
    assert (await client.get(f"/api/v1/reports/{rid}", headers=ben.auth)).status_code == 404
    assert (await client.get(f"/api/v1/reports/{rid}", headers=anna.auth)).status_code == 200
