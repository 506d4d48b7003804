"""What the notifier asks services/milestones per check-in cycle: cycle status, prompt context and
the digest, over NATS against the real stack (convoys built and reports posted over HTTP)."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import msgspec
import pytest
from nats.aio.msg import Msg

from schemas import api
from schemas.contract import Op
from schemas.milestones import Milestones
from tests.conftest import SmtpSink, Stack, eventually
from tests.test_reports import post_report, project, schedule, sql
from tests.world import World, build_world


async def ask(stack: Stack, operation: Op[Any, Any], convoy_id: str | uuid.UUID, cycle_index: int) -> Msg:
    """Ask services/milestones the way the notifier does; the raw reply."""
    msg: Msg = await stack.nc.request(
        stack.subjects.operation(operation),
        msgspec.json.encode(api.CycleAsk(convoy_id=uuid.UUID(str(convoy_id)), cycle_index=cycle_index)),
        timeout=5,
    )
    return msg


def error_of(msg: Msg) -> str | None:
    return (msg.headers or {}).get("Nats-Service-Error-Code")


async def digest(stack: Stack, world: World, cycle_index: int) -> tuple[api.Digest, bytes]:
    msg = await ask(stack, Milestones.DIGEST, world.convoy_id, cycle_index)
    assert error_of(msg) is None, msg.headers
    return msgspec.json.decode(msg.data, type=api.Digest), msg.data


async def scheduled(client: httpx.AsyncClient, world: World, settings: Any, days: int, window_hours: int) -> None:
    """``schedule`` (the current cycle is number 10, opened ``days`` ago at 00:00 Berlin time), and
    wait until services/milestones' projection of the convoy has it."""
    await schedule(client, world, days=days, window_hours=window_hours)
    start = (datetime.now(ZoneInfo("Europe/Berlin")) - timedelta(days=days + 70)).date()

    async def projected() -> bool:
        rows = await sql(
            settings, "SELECT start_date FROM milestones.convoys WHERE convoy_id = $1", uuid.UUID(world.convoy_id)
        )
        return bool(rows) and rows[0]["start_date"] == start

    await eventually(projected)


async def move_to_cycle_9(settings: Any, report_id: uuid.UUID, also: str) -> None:
    """Time passes: a report (and the commitments it made) belongs to cycle 9."""
    await sql(settings, f"UPDATE milestones.reports SET cycle_index = 9, {also} WHERE id = $1", report_id)
    await sql(settings, "UPDATE milestones.commitments SET cycle_index = 9 WHERE report_id = $1", report_id)


def company(world: World, key: str) -> uuid.UUID:
    return uuid.UUID(world.reps[key].company_id)


async def test_the_digest_of_a_cycle_in_the_peer_view(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack, settings: Any
) -> None:
    world = await build_world(client, smtp_sink, companies=3)
    await scheduled(client, world, settings, days=2, window_hours=100)
    p_a = await project(client, world, "a")
    p_b = await project(client, world, "b")
    first_a = p_a["milestones"][0]

    # Ben's company finished a step this cycle without a report, and one long ago.
    ben = world.reps["b"].auth
    for m in p_b["milestones"][:2]:
        r = await client.patch(f"/api/v1/milestones/{m['id']}", json={"status": "done"}, headers=ben)
        assert r.status_code == 200, r.text
    await sql(
        settings,
        "UPDATE milestones.milestones SET completed_at = now() - interval '30 days' WHERE id = $1",
        uuid.UUID(p_b["milestones"][1]["id"]),
    )

    r = await post_report(
        client,
        world,
        "a",
        done="Buchungsseite ist live",
        next="Kalender anbinden",
        blockers="Schnittstelle fehlt",
        mood=4,
        help_wanted=True,
        help_topic="Kalender-Sync",
        facilitator_note="Personalengpass",
        milestones=[{"milestone_id": first_a["id"], "status": "done"}],
    )
    assert r.status_code == 201, r.text
    report_a = r.json()
    assert report_a["cycle_index"] == 10
    r = await post_report(client, world, "b", done="Webshop-Vorlage gekauft", mood=3)
    assert r.status_code == 201, r.text
    report_b = r.json()
    # Clara's company reported too, but a facilitator hid that report: peers never see it.
    r = await post_report(client, world, "c", done="Geheimer Inhalt", next="Verborgen")
    assert r.status_code == 201, r.text
    await sql(settings, "UPDATE milestones.reports SET hidden_at = now() WHERE id = $1", uuid.UUID(r.json()["id"]))

    # Kudos from peers.
    for key in ("b", "c"):
        r = await client.put(f"/api/v1/reports/{report_a['id']}/kudos", headers=world.reps[key].auth)
        assert r.status_code == 200, r.text

    progress = {}
    for key in ("a", "b"):
        r = await client.get(
            f"/api/v1/convoys/{world.convoy_id}/companies/{world.reps[key].company_id}/project", headers=ben
        )
        progress[key] = r.json()["progress"]
    assert progress["a"] > 0 and progress["b"] > 0

    d, raw = await digest(stack, world, 10)
    assert d.convoy_id == uuid.UUID(world.convoy_id) and d.convoy_name == "Terminvergabe Nord" and d.cycle_index == 10
    assert [r.report_id for r in d.reports] == [uuid.UUID(report_a["id"]), uuid.UUID(report_b["id"])]
    a, b = d.reports
    assert (a.company_id, a.company_name, a.cycle_index, a.late) == (company(world, "a"), "Sanitär Müller", 10, False)
    assert (a.done, a.next, a.blockers, a.mood) == (
        "Buchungsseite ist live",
        "Kalender anbinden",
        "Schnittstelle fehlt",
        4,
    )
    assert a.help_wanted and a.help_topic == "Kalender-Sync"
    assert a.milestone_changes == [
        api.DigestMilestone(
            company_id=company(world, "a"), company_name="Sanitär Müller", title=first_a["title"], status="done"
        )
    ]
    assert a.kudos_by == [uuid.UUID(world.reps["b"].person_id), uuid.UUID(world.reps["c"].person_id)]
    assert a.progress == progress["a"] and b.progress == progress["b"]
    assert (b.company_name, b.help_wanted, b.milestone_changes, b.kudos_by) == ("Laden Schmidt", False, [], [])
    assert d.help_requests == [a]
    assert d.late_addenda == []

    # Milestones completed in this cycle's window lead the digest (not the one done 30 days ago).
    assert [(m.company_name, m.title, m.status) for m in d.completed_milestones] == [
        ("Laden Schmidt", p_b["milestones"][0]["title"], "done"),
        ("Sanitär Müller", first_a["title"], "done"),
    ]

    # The hidden report counts as no report; nothing of it and no private note leaves the service.
    assert d.silent_company_ids == [company(world, "c")]
    assert d.participation == pytest.approx(2 / 3, abs=1e-4)
    assert d.progress == pytest.approx((progress["a"] + progress["b"] + 0.0) / 3, abs=1e-4)
    for secret in (b"Personalengpass", b"Geheimer Inhalt", b"Verborgen", b"facilitator_note"):
        assert secret not in raw

    # cycle status: the companies with a visible report for the cycle.
    msg = await ask(stack, Milestones.CYCLE_STATUS, world.convoy_id, 10)
    status = msgspec.json.decode(msg.data, type=api.CycleStatus)
    assert sorted(status.reported_company_ids) == sorted([company(world, "a"), company(world, "b")])
    msg = await ask(stack, Milestones.CYCLE_STATUS, world.convoy_id, 9)
    assert msgspec.json.decode(msg.data, type=api.CycleStatus).reported_company_ids == []

    # A retry gets the same content, byte for byte.
    for _ in range(2):
        assert (await digest(stack, world, 10))[1] == raw

    # The other cycles know nothing of these reports.
    for index in (9, 11):
        other, _ = await digest(stack, world, index)
        assert other.reports == other.late_addenda == other.help_requests == []
        assert other.completed_milestones == [] and other.participation == 0.0
        assert sorted(other.silent_company_ids) == sorted(company(world, k) for k in "abc")


async def seal(stack: Stack, world: World, *cycle_indexes: int) -> int:
    """Seal cycles the way services/reminders does before it closes them."""
    msg: Msg = await stack.nc.request(
        stack.subjects.operation(Milestones.ROUNDS_SEAL),
        msgspec.json.encode(
            api.SealRounds(
                rounds=[api.RoundRef(convoy_id=uuid.UUID(world.convoy_id), cycle_index=i) for i in cycle_indexes]
            )
        ),
        timeout=5,
    )
    assert error_of(msg) is None, msg.headers
    return msgspec.json.decode(msg.data, type=api.RoundsSealed).sealed


async def test_a_late_report_is_carried_once_by_the_next_digest(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack, settings: Any
) -> None:
    world = await build_world(client, smtp_sink, companies=2)
    await scheduled(client, world, settings, days=2, window_hours=100)
    # Ben's company reports in time; then the round closes (sealed, as the scheduler does first).
    r = await post_report(client, world, "b", done="Pünktlich für Runde 10")
    assert r.status_code == 201, r.text
    on_time = uuid.UUID(r.json()["id"])
    assert r.json()["late"] is False
    assert await seal(stack, world, 10) == 1
    assert await seal(stack, world, 10) == 0  # a retried close seals nothing again

    # Anna's company's report arrives after the close: still round 10 by the calendar, but late.
    r = await post_report(client, world, "a", done="Nachtrag für Runde 10", help_wanted=True, help_topic="Kasse")
    assert r.status_code == 201, r.text
    late = uuid.UUID(r.json()["id"])
    assert (r.json()["cycle_index"], r.json()["late"]) == (10, True)

    # The on-time report went out in the digest: no more edits. The late one is in no digest yet.
    r = await client.patch(f"/api/v1/reports/{on_time}", json={"done": "geändert"}, headers=world.reps["b"].auth)
    assert r.status_code == 409, r.text
    assert "digest" in r.json()["detail"]
    r = await client.patch(f"/api/v1/reports/{late}", json={"done": "Nachtrag, ergänzt"}, headers=world.reps["a"].auth)
    assert r.status_code == 200, r.text

    d10, raw10 = await digest(stack, world, 10)
    assert [r.report_id for r in d10.reports] == [on_time]
    assert d10.late_addenda == [] and d10.help_requests == []
    assert d10.silent_company_ids == [company(world, "a")] and d10.participation == 0.5

    # Not sealed yet: a preview of the next digest shows the addendum; sealing keeps it there.
    preview, _ = await digest(stack, world, 11)
    assert [r.report_id for r in preview.late_addenda] == [late]
    assert await seal(stack, world, 11) == 1
    d11, raw11 = await digest(stack, world, 11)
    assert d11.reports == [] and d11.help_requests == []  # help requests are the round's own
    assert [(r.report_id, r.cycle_index, r.late, r.done) for r in d11.late_addenda] == [
        (late, 10, True, "Nachtrag, ergänzt")
    ]
    r = await client.patch(f"/api/v1/reports/{late}", json={"done": "zu spät"}, headers=world.reps["a"].auth)
    assert r.status_code == 409, r.text

    assert await seal(stack, world, 12) == 1
    d12, _ = await digest(stack, world, 12)
    assert d12.reports == d12.late_addenda == []

    # Asked again (a retry), every sealed digest says the same; an old seal asked again moves nothing.
    assert await seal(stack, world, 10) == 0
    assert (await digest(stack, world, 10))[1] == raw10
    assert (await digest(stack, world, 11))[1] == raw11
    await sql(settings, "UPDATE milestones.reports SET hidden_at = now() WHERE id = $1", late)
    assert (await digest(stack, world, 11))[0].late_addenda == []


async def test_prompt_context_per_company(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack, settings: Any
) -> None:
    world = await build_world(client, smtp_sink, companies=3)
    await scheduled(client, world, settings, days=2, window_hours=100)
    anna = world.reps["a"].auth
    p_a = await project(client, world, "a")
    m0, m1, m2, m3 = p_a["milestones"][:4]
    today = datetime.now(ZoneInfo("Europe/Berlin")).date()
    # Cycle 11 opens in 5 days at 00:00 and is due 100 hours later: on the local date today + 9.
    dates = {
        m0["id"]: today - timedelta(days=1),
        m1["id"]: today + timedelta(days=9),
        m2["id"]: today + timedelta(days=10),
    }
    for milestone_id, target in dates.items():
        r = await client.patch(
            f"/api/v1/milestones/{milestone_id}", json={"target_date": target.isoformat()}, headers=anna
        )
        assert r.status_code == 200, r.text
    await client.patch(f"/api/v1/milestones/{m3['id']}", json={"target_date": str(today)}, headers=anna)

    # Cycle 9: Anna's company planned two things; cycle 10: it reviewed one, planned another.
    r = await post_report(client, world, "a", next="Kalender anbinden", commitments=["Kalender anbinden", "Testlauf"])
    assert r.status_code == 201, r.text
    earlier = r.json()
    await move_to_cycle_9(settings, uuid.UUID(earlier["id"]), "submitted_at = submitted_at - interval '3 days'")
    kept = earlier["commitments"][0]["id"]
    r = await post_report(
        client,
        world,
        "a",
        next="Schulung planen",
        commitments=["Schulung"],
        milestones=[{"milestone_id": m3["id"], "status": "done"}],
        commitment_reviews=[{"commitment_id": kept, "outcome": "done"}],
    )
    assert r.status_code == 201, r.text
    # Ben's company's cycle-9 report was hidden: its next steps and commitments are not recalled.
    r = await post_report(client, world, "b", next="Versteckt", commitments=["Versteckte Zusage"])
    assert r.status_code == 201, r.text
    await move_to_cycle_9(settings, uuid.UUID(r.json()["id"]), "hidden_at = now()")

    async def contexts(index: int) -> dict[uuid.UUID, api.PromptContext]:
        msg = await ask(stack, Milestones.PROMPT_CONTEXT, world.convoy_id, index)
        assert error_of(msg) is None, msg.headers
        got = msgspec.json.decode(msg.data, type=api.PromptContexts)
        assert got.convoy_id == uuid.UUID(world.convoy_id) and got.cycle_index == index
        return {c.company_id: c for c in got.companies}

    def due(c: api.PromptContext) -> list[tuple[str, date | None]]:
        return [(m.title, m.target_date) for m in c.milestones_due]

    nxt = await contexts(11)
    assert set(nxt) == {company(world, k) for k in "abc"}
    a, b, c = (nxt[company(world, k)] for k in "abc")
    # Not done, target date up to cycle 11's due date (m3 is done, m2 is later); in date order.
    assert due(a) == [(m0["title"], dates[m0["id"]]), (m1["title"], dates[m1["id"]])]
    assert a.last_next_steps == "Schulung planen"
    assert a.open_commitments == ["Testlauf", "Schulung"]
    assert (b.last_next_steps, b.open_commitments, b.milestones_due) == ("", [], [])
    assert (c.last_next_steps, c.open_commitments, c.milestones_due) == ("", [], [])

    now = await contexts(10)
    a = now[company(world, "a")]
    # Cycle 10 was due today + 2: m1 is not due yet then; made before cycle 10: only cycle 9's.
    assert due(a) == [(m0["title"], dates[m0["id"]])]
    assert a.last_next_steps == "Kalender anbinden"
    assert a.open_commitments == ["Testlauf"]

    # Unknown convoys and impossible cycles are refused.
    for operation in (Milestones.PROMPT_CONTEXT, Milestones.DIGEST, Milestones.CYCLE_STATUS):
        assert error_of(await ask(stack, operation, uuid.uuid4(), 1)) == "404"
        assert error_of(await ask(stack, operation, world.convoy_id, -1)) == "400"
