"""The weekly facilitator digest: what services/milestones tells the notifier about the health of
the convoys a facilitator runs, over NATS against the real stack (convoys built and reports posted
over HTTP, reports moved between cycles with SQL)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import msgspec
from nats.aio.msg import Msg

from schemas import api
from schemas.milestones import Milestones
from tests.conftest import SmtpSink, Stack
from tests.test_digest import company, error_of, scheduled
from tests.test_reports import post_report, project, sql
from tests.world import World, build_world, invite_and_accept

BERLIN = ZoneInfo("Europe/Berlin")


async def ask(stack: Stack, convoy_ids: list[Any], at: datetime) -> Msg:
    msg: Msg = await stack.nc.request(
        stack.subjects.operation(Milestones.FACILITATOR_DIGEST),
        msgspec.json.encode(api.FacilitatorDigestAsk(convoy_ids=[uuid.UUID(str(c)) for c in convoy_ids], at=at)),
        timeout=5,
    )
    return msg


async def facilitator_digest(stack: Stack, convoy_ids: list[Any], at: datetime) -> tuple[api.FacilitatorDigest, bytes]:
    msg = await ask(stack, convoy_ids, at)
    assert error_of(msg) is None, msg.headers
    return msgspec.json.decode(msg.data, type=api.FacilitatorDigest), msg.data


async def second_convoy(client: httpx.AsyncClient, sink: SmtpSink, first: World) -> World:
    """Another convoy of the same facilitator, with companies x, y, z."""
    tag = uuid.uuid4().hex[:8]
    r = await client.post(
        "/api/v1/convoys",
        json={"name": "Webshop Süd", "theme": "Webshop", "open_for_requests": False},
        headers=first.facilitator,
    )
    assert r.status_code == 201, r.text
    world = World(convoy=r.json(), facilitator=first.facilitator)
    for key, name in (("x", "Bäckerei Korn"), ("y", "Friseur Schnitt"), ("z", "Tischlerei Holz")):
        r = await client.post(
            f"/api/v1/convoys/{world.convoy_id}/companies", json={"name": name}, headers=first.facilitator
        )
        assert r.status_code == 201, r.text
        world.companies[key] = r.json()
        world.reps[key] = await invite_and_accept(
            client, sink, first.facilitator, world.convoy_id, r.json()["id"], f"Rep {key}", f"{key}-{tag}@firma.example"
        )
    return world


async def posted(client: httpx.AsyncClient, world: World, key: str, **body: Any) -> uuid.UUID:
    r = await post_report(client, world, key, **body)
    assert r.status_code == 201, r.text
    assert r.json()["cycle_index"] == 10
    return uuid.UUID(r.json()["id"])


async def to_cycle(settings: Any, report_id: uuid.UUID, index: int, also: str = "") -> None:
    """Time passes: a report (and its commitments) belongs to an earlier cycle."""
    await sql(
        settings,
        f"UPDATE milestones.reports SET cycle_index = $2, submitted_at = submitted_at - interval '3 days'{also}"
        " WHERE id = $1",
        report_id,
        index,
    )
    await sql(settings, "UPDATE milestones.commitments SET cycle_index = $2 WHERE report_id = $1", report_id, index)


async def target(client: httpx.AsyncClient, headers: dict[str, str], milestone_id: str, day: date, **more: Any) -> None:
    r = await client.patch(
        f"/api/v1/milestones/{milestone_id}", json={"target_date": day.isoformat(), **more}, headers=headers
    )
    assert r.status_code == 200, r.text


async def test_the_health_of_a_facilitators_convoys(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack, settings: Any
) -> None:
    north = await build_world(client, smtp_sink, companies=3)
    south = await second_convoy(client, smtp_sink, north)
    # Both are in their cycle 10: North's opened 2 days ago, South's 4 days ago (00:00 Berlin).
    await scheduled(client, north, settings, days=2, window_hours=100)
    await scheduled(client, south, settings, days=4, window_hours=48)
    at = datetime.now(UTC)
    today = at.astimezone(BERLIN).date()
    anna, ben, clara = (north.reps[k].auth for k in "abc")

    # --- North: a (Sanitär Müller) reports, b (Laden Schmidt) went quiet, c (Metallbau Stahl) never spoke.
    # a in cycle 9: asked for help and got it (Clara offered), had a blocker since solved.
    a9 = await posted(client, north, "a", blockers="Alt", mood=2, help_wanted=True, help_topic="Kasse")
    await to_cycle(settings, a9, 9)
    r = await client.post(f"/api/v1/reports/{a9}/help-offers", json={"message": "Ruf an"}, headers=clara)
    assert r.status_code == 201, r.text
    # a in cycle 10: blocked, asks for help nobody offered yet.
    a10 = await posted(
        client, north, "a", blockers="Schnittstelle fehlt", mood=4, help_wanted=True, help_topic="Kalender-Sync"
    )
    # b last reported in cycle 7 (an old help request, too old to list, and a blocker still open) ...
    b7 = await posted(client, north, "b", blockers="Altes Problem", mood=3, help_wanted=True, help_topic="Altlast")
    await to_cycle(settings, b7, 7)
    # ... and its cycle-10 report was hidden by the facilitator: it counts as no report at all.
    b10 = await posted(client, north, "b", blockers="Geheim", mood=1, help_wanted=True, help_topic="Versteckt")
    await sql(settings, "UPDATE milestones.reports SET hidden_at = now() WHERE id = $1", b10)

    # Milestones: stalled when not done and the target date passed (in Berlin), oldest first.
    p_a = await project(client, north, "a")
    p_b = await project(client, north, "b")
    m = p_a["milestones"]
    await target(client, anna, m[0]["id"], today - timedelta(days=5))
    await target(client, anna, m[1]["id"], today - timedelta(days=1), status="in_progress")
    await target(client, anna, m[2]["id"], today)  # due today: not stalled yet
    await target(client, anna, m[3]["id"], today - timedelta(days=10), status="done")  # done
    await target(client, anna, m[4]["id"], today - timedelta(days=8))
    await sql(settings, "UPDATE milestones.milestones SET removed_at = now() WHERE id = $1", uuid.UUID(m[4]["id"]))
    await target(client, ben, p_b["milestones"][0]["id"], today - timedelta(days=3), status="blocked")

    # --- South: everyone reported in cycle 10; one asks for help without a topic.
    x10 = await posted(client, south, "x", mood=4, help_wanted=True)
    await posted(client, south, "y", mood=4)
    await posted(client, south, "z", mood=5)

    unknown = uuid.uuid4()
    d, raw = await facilitator_digest(stack, [south.convoy_id, unknown, north.convoy_id, south.convoy_id], at)
    # In the order asked, each once; the unknown convoy is skipped.
    assert [c.convoy_id for c in d.convoys] == [uuid.UUID(south.convoy_id), uuid.UUID(north.convoy_id)]
    s, n = d.convoys

    assert (n.convoy_name, n.cycle_index, n.flags_waiting) == ("Terminvergabe Nord", 10, 0)
    assert n.silent_companies == [
        api.SilentCompany(company_id=company(north, "b"), name="Laden Schmidt", cycles_silent=3),
        api.SilentCompany(company_id=company(north, "c"), name="Metallbau Stahl", cycles_silent=11),
    ]
    assert [(x.company_name, x.title, x.target_date, x.status) for x in n.stalled_milestones] == [
        ("Sanitär Müller", m[0]["title"], today - timedelta(days=5), "not_started"),
        ("Laden Schmidt", p_b["milestones"][0]["title"], today - timedelta(days=3), "blocked"),
        ("Sanitär Müller", m[1]["title"], today - timedelta(days=1), "in_progress"),
    ]
    # Blockers of each company's latest visible report (b's hidden one does not count).
    assert n.open_blockers == [
        api.OpenItem(company_name="Laden Schmidt", report_id=b7, text="Altes Problem"),
        api.OpenItem(company_name="Sanitär Müller", report_id=a10, text="Schnittstelle fehlt"),
    ]
    # Help of cycles 9 and 10 nobody answered: not a9 (answered), not b7 (too old), not b10 (hidden).
    assert n.unanswered_help == [api.OpenItem(company_name="Sanitär Müller", report_id=a10, text="Kalender-Sync")]
    # Cycles 7..10; the hidden mood 1 is left out.
    assert n.mood_trend == [3.0, None, 2.0, 4.0]

    assert (s.convoy_name, s.cycle_index, s.flags_waiting) == ("Webshop Süd", 10, 0)
    assert (s.silent_companies, s.stalled_milestones, s.open_blockers) == ([], [], [])
    assert s.unanswered_help == [api.OpenItem(company_name="Bäckerei Korn", report_id=x10, text="")]
    assert s.mood_trend == [None, None, None, 4.33]

    # Nothing of the hidden report leaves the service.
    for secret in (b"Geheim", b"Versteckt", str(b10).encode()):
        assert secret not in raw

    # Asked again (a retry, or later) for the same moment: the same answer, byte for byte.
    for _ in range(2):
        assert (await facilitator_digest(stack, [south.convoy_id, unknown, north.convoy_id], at))[1] == raw

    # Once help is offered on a10, it is no longer unanswered.
    r = await client.post(f"/api/v1/reports/{a10}/help-offers", json={}, headers=ben)
    assert r.status_code == 201, r.text
    again, _ = await facilitator_digest(stack, [north.convoy_id], at)
    assert again.convoys[0].unanswered_help == []
    assert again.convoys[0].open_blockers == n.open_blockers

    # A week earlier (cycle 9): b's report of cycle 7 is two cycles back, c silent for 10 cycles;
    # a10 is not a report yet, so a9's blocker is the latest; help of cycles 8 and 9.
    week_ago, _ = await facilitator_digest(stack, [north.convoy_id], at - timedelta(days=7))
    w = week_ago.convoys[0]
    assert w.cycle_index == 9
    assert [(c.name, c.cycles_silent) for c in w.silent_companies] == [("Laden Schmidt", 2), ("Metallbau Stahl", 10)]
    assert [(o.company_name, o.report_id, o.text) for o in w.open_blockers] == [
        ("Laden Schmidt", b7, "Altes Problem"),
        ("Sanitär Müller", a9, "Alt"),
    ]
    assert w.unanswered_help == []
    assert w.mood_trend == [None, 3.0, None, 2.0]


async def test_before_the_first_check_in_and_empty_asks(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack, settings: Any
) -> None:
    world = await build_world(client, smtp_sink, companies=2)
    await scheduled(client, world, settings, days=2, window_hours=100)
    await posted(client, world, "a", blockers="Noch nichts", mood=3, help_wanted=True)
    long_ago = datetime.now(UTC) - timedelta(days=400)

    # Before the convoy's first check-in: no cycle, so nobody is silent yet and no cycle has a mood.
    d, _ = await facilitator_digest(stack, [world.convoy_id], long_ago)
    [c] = d.convoys
    assert (c.convoy_name, c.cycle_index) == ("Terminvergabe Nord", None)
    assert (c.silent_companies, c.stalled_milestones, c.open_blockers, c.unanswered_help) == ([], [], [], [])
    assert c.mood_trend == []

    # Nothing asked, or only convoys this service does not know: nothing to tell.
    assert (await facilitator_digest(stack, [], long_ago))[0].convoys == []
    assert (await facilitator_digest(stack, [uuid.uuid4(), uuid.uuid4()], long_ago))[0].convoys == []

    # A moment without a time zone is refused.
    msg = await stack.nc.request(
        stack.subjects.operation(Milestones.FACILITATOR_DIGEST),
        b'{"convoy_ids": ["%s"], "at": "2025-01-06T09:00:00"}' % world.convoy_id.encode(),
        timeout=5,
    )
    assert error_of(msg) == "400"
