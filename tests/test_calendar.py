"""Calendar subscriptions (issue #22) on the real stack: a person's private iCalendar feed of the
check-in rounds of their convoys, as Outlook, Google Calendar and Apple Calendar fetch it."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import httpx
import icalendar
import msgspec

from schemas.values import Cadence
from services.reminders import schedule as sch
from tests.conftest import SmtpSink, Stack, eventually, html_of, text_of
from tests.test_observers import invite_observer
from tests.test_scheduler import tick
from tests.world import World, build_world, sign_in

BERLIN = ZoneInfo("Europe/Berlin")
MONDAY_9 = Cadence(frequency="weekly", weekday="mon", local_time="09:00", window_hours=72)


def october_start() -> date:
    """The first Monday of an October still ahead whose 1 November (Allerheiligen in Bavaria) is a Monday:
    twelve weekly rounds from there cross the October DST change and meet a Monday holiday."""
    year = date.today().year
    while not (date(year, 10, 1) > date.today() + timedelta(days=7) and date(year, 11, 1).weekday() == 0):
        year += 1
    first = date(year, 10, 1)
    return first + timedelta(days=(0 - first.weekday()) % 7)


def path_of(url: str) -> str:
    return urlsplit(url).path


def events(body: bytes) -> dict[int, icalendar.Event]:
    """The feed's events by cycle index (from the UID)."""
    cal = icalendar.Calendar.from_ical(body)
    found: dict[int, icalendar.Event] = {}
    for e in cal.walk("VEVENT"):
        match = re.fullmatch(r"([0-9a-f-]{36})-(\d+)-checkin@convoy", str(e["UID"]))
        assert match, e["UID"]
        found[int(match[2])] = e
    return found


async def active_convoy(client: httpx.AsyncClient, smtp_sink: SmtpSink, start: date) -> World:
    world = await build_world(client, smtp_sink, companies=2)
    r = await client.patch(
        f"/api/v1/convoys/{world.convoy_id}",
        json={"cadence": msgspec.to_builtins(MONDAY_9), "timezone": "Europe/Berlin", "start_date": start.isoformat()},
        headers=world.facilitator,
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        f"/api/v1/convoys/{world.convoy_id}/status", json={"status": "active"}, headers=world.facilitator
    )
    assert r.status_code == 200, r.text
    return world


async def feed(client: httpx.AsyncClient, url: str, **headers: str) -> httpx.Response:
    return await client.get(path_of(url), headers=headers)


async def test_the_feed_follows_the_schedule_across_dst_holidays_skips_and_pause(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    start = october_start()
    world = await active_convoy(client, smtp_sink, start)
    cid, f, anna = world.convoy_id, world.facilitator, world.reps["a"]

    assert (await client.get("/api/v1/me/calendar", headers=anna.auth)).json() == {
        "active": False,
        "created_at": None,
        "last_used_at": None,
    }
    r = await client.post("/api/v1/me/calendar", headers=anna.auth)
    assert r.status_code == 201, r.text
    sub = r.json()
    assert re.fullmatch(r"http://convoy\.test/calendar/cvc_[A-Za-z0-9_-]{40,}\.ics", sub["url"]), sub
    assert sub["webcal_url"] == "webcal://" + sub["url"].removeprefix("http://")

    async def scheduled() -> httpx.Response | None:  # the reminders projection follows the convoy events
        r = await feed(client, sub["url"])
        return r if r.status_code == 200 and b"VEVENT" in r.content and b"CONFIRMED" in r.content else None

    r = await eventually(scheduled)
    # What calendar apps need: the type, inline, a strong ETag, private caching, no cookie, no sign-in.
    assert r.headers["content-type"] == "text/calendar; charset=utf-8"
    assert r.headers["content-disposition"] == "inline; filename=convoy.ics"
    assert r.headers["cache-control"].startswith("private, max-age=")
    etag = r.headers["etag"]
    assert re.fullmatch(r'"[0-9a-f]{40}"', etag), etag
    assert "set-cookie" not in r.headers

    cal = icalendar.Calendar.from_ical(r.content)
    assert [str(z["TZID"]) for z in cal.walk("VTIMEZONE")] == ["Europe/Berlin"]
    got = events(r.content)
    assert sorted(got) == list(range(12))  # before the first check-in: the first twelve rounds
    offsets = set()
    for index, event in got.items():
        planned = sch.plan_cycle(sch.Plan(timezone="Europe/Berlin", cadence=MONDAY_9, start_date=start), index)
        opens, ends = event["DTSTART"].dt, event["DTEND"].dt
        assert str(event["DTSTART"].params["TZID"]) == "Europe/Berlin"
        assert opens == planned.opens_at and ends == planned.due_at
        assert opens.astimezone(BERLIN).time() == time(9, 0) and opens.astimezone(BERLIN).weekday() == 0
        assert opens.date() == start + timedelta(weeks=index)
        assert str(event["STATUS"]) == "CONFIRMED" and str(event["TRANSP"]) == "TRANSPARENT"
        assert str(event["SUMMARY"]) == "Check-in: Terminvergabe Nord"
        assert f"/convoys/{cid}/report" in str(event["DESCRIPTION"])
        offsets.add(opens.utcoffset())
    # 09:00 local on both sides of the October change: 07:00 UTC in summer, 08:00 UTC in winter.
    assert offsets == {timedelta(hours=2), timedelta(hours=1)}
    dst_end = max(i for i, e in got.items() if e["DTSTART"].dt.utcoffset() == timedelta(hours=2))
    assert got[dst_end]["DTSTART"].dt.astimezone(UTC).time() == time(7, 0)
    assert got[dst_end + 1]["DTSTART"].dt.astimezone(UTC).time() == time(8, 0)

    # Unchanged: 304 to If-None-Match, no body.
    r = await feed(client, sub["url"], **{"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == etag
    sequence = int(got[2]["SEQUENCE"])

    # Bavarian holidays skipped: 1 November (a Monday) is cancelled; a facilitator skips round 2.
    r = await client.put(
        f"/api/v1/convoys/{cid}/schedule/settings",
        json={"holiday_region": "BY", "holiday_policy": "skip", "nudge_offsets_hours": [24, 2]},
        headers=f,
    )
    assert r.status_code == 200, r.text
    r = await client.post(f"/api/v1/convoys/{cid}/cycles/2/skip", json={"reason": "Herbstferien"}, headers=f)
    assert r.status_code == 200, r.text
    r = await feed(client, sub["url"], **{"If-None-Match": etag})
    assert r.status_code == 200 and r.headers["etag"] != etag
    got = events(r.content)
    holiday = next(i for i in got if got[i]["DTSTART"].dt.date() == date(start.year, 11, 1))
    cancelled = {i for i, e in got.items() if str(e["STATUS"]) == "CANCELLED"}
    assert cancelled == {2, holiday}
    assert "Ausgesetzt: Herbstferien" in str(got[2]["DESCRIPTION"])
    name = sch.holiday("BY", date(start.year, 11, 1))  # the scheduler's words for it
    assert name and f"Feiertag: {name}" in str(got[holiday]["DESCRIPTION"])
    assert str(got[2]["SUMMARY"]) == "Kein Check-in: Terminvergabe Nord"  # Anna reads German
    assert int(got[2]["SEQUENCE"]) > sequence  # an update of the same event (same UID)
    assert got[2]["LAST-MODIFIED"].dt >= got[3]["DTSTAMP"].dt - timedelta(seconds=1)

    # Paused: every round not opened is cancelled; resumed: back, the skips stay.
    r = await client.post(f"/api/v1/convoys/{cid}/status", json={"status": "paused"}, headers=f)
    assert r.status_code == 200, r.text

    async def all_cancelled() -> bool:
        got = events((await feed(client, sub["url"])).content)
        return all(str(e["STATUS"]) == "CANCELLED" for e in got.values()) and len(got) == 12

    await eventually(all_cancelled)
    r = await client.post(f"/api/v1/convoys/{cid}/status", json={"status": "active"}, headers=f)
    assert r.status_code == 200, r.text

    async def resumed() -> set[int] | None:
        got = events((await feed(client, sub["url"])).content)
        cancelled = {i for i, e in got.items() if str(e["STATUS"]) == "CANCELLED"}
        return cancelled if cancelled == {2, holiday} else None

    await eventually(resumed)

    # A person sees only their convoys: the facilitator's second convoy is in the facilitator's feed only.
    r = await client.post("/api/v1/convoys", json={"name": "Zweiter Konvoi", "theme": "Lager"}, headers=f)
    assert r.status_code == 201, r.text
    other = r.json()["id"]
    mine = (await client.post("/api/v1/me/calendar", headers=f)).json()

    async def both() -> set[str] | None:
        body = (await feed(client, mine["url"])).content
        ids = {str(e["UID"]).split("-checkin")[0][:36] for e in icalendar.Calendar.from_ical(body).walk("VEVENT")}
        return ids if ids == {cid, other} else None

    await eventually(both)
    theirs = icalendar.Calendar.from_ical((await feed(client, sub["url"])).content)
    assert {str(e["UID"])[:36] for e in theirs.walk("VEVENT")} == {cid}

    # The prompt email links to the profile's calendar section, never to the feed (its address is a secret).
    fired = await tick(stack, datetime.combine(start, time(9, 1), BERLIN).isoformat())
    assert any(action.endswith(":0:open:0") for action in fired.actions), fired
    prompt = await smtp_sink.wait_for_subject(anna.email, "Check-in")
    for part in (text_of(prompt), html_of(prompt)):
        assert "http://convoy.test/profile/#calendar" in part
        assert "cvc_" not in part and "/calendar/" not in part


async def test_revoked_rotated_and_unknown_feeds_answer_404_and_the_profile_page_manages_the_feed(
    client: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    world = await build_world(client, smtp_sink, companies=1)
    anna = world.reps["a"]
    first = (await client.post("/api/v1/me/calendar", headers=anna.auth)).json()
    r = await feed(client, first["url"])
    assert r.status_code == 200, r.text
    assert (await client.get("/api/v1/me/calendar", headers=anna.auth)).json()["last_used_at"] is not None

    # Rotate: a new address; the old one is dead at once (no cache), the new one works.
    second = (await client.post("/api/v1/me/calendar", headers=anna.auth)).json()
    assert second["url"] != first["url"]
    old = await feed(client, first["url"])
    assert old.status_code == 404
    assert (await feed(client, second["url"])).status_code == 200

    # Unknown, malformed and revoked tokens get one and the same answer.
    unknown = await client.get(f"/calendar/cvc_{uuid.uuid4().hex}{uuid.uuid4().hex}.ics")
    malformed = await client.get("/calendar/not-a-token.ics")
    r = await client.delete("/api/v1/me/calendar", headers=anna.auth)
    assert r.status_code == 204
    revoked = await feed(client, second["url"])
    for answer in (unknown, malformed, revoked):
        assert answer.status_code == 404
        assert answer.json()["detail"] == old.json()["detail"]
        assert "set-cookie" not in answer.headers
    assert (await client.delete("/api/v1/me/calendar", headers=anna.auth)).status_code == 404
    assert (await client.get("/calendar/x")).status_code == 404
    assert (await client.post("/api/v1/me/calendar")).status_code == 401  # managing it needs a sign-in

    # The profile page: create (the address shown once, with subscribe links), then only the state.
    browser = httpx.AsyncClient(base_url=client.base_url, timeout=20)
    try:
        await sign_in(browser, smtp_sink, anna.email)
        page = await browser.get("/profile/")
        assert 'id="calendar"' in page.text and "Meine Kalenderadresse erstellen" in page.text
        csrf = re.search(r'name="_csrf" value="([^"]+)"', page.text)
        assert csrf
        r = await browser.post("/profile/calendar", data={"_csrf": csrf[1]})
        assert r.status_code == 200, r.text
        url = re.search(r'value="(http://convoy\.test/calendar/cvc_[^"]+\.ics)"', r.text)
        assert url, r.text
        assert 'href="webcal://convoy.test/calendar/cvc_' in r.text
        assert "https://calendar.google.com/calendar/r?cid=webcal%3A%2F%2Fconvoy.test%2Fcalendar%2Fcvc_" in r.text
        assert "outlook.office.com/calendar/0/addfromweb?url=http%3A%2F%2Fconvoy.test%2Fcalendar%2Fcvc_" in r.text
        assert (await feed(client, url[1])).status_code == 200
        page = await browser.get("/profile/")
        assert url[1] not in page.text and "Kalender-Abo ausschalten" in page.text
        r = await browser.post("/profile/calendar/revoke", data={"_csrf": csrf[1]})
        assert r.status_code == 303
        assert (await feed(client, url[1])).status_code == 404
        assert (await browser.post("/profile/calendar", data={"_csrf": "wrong"})).status_code in (403, 400)
    finally:
        await browser.aclose()


async def test_an_observer_subscribes_to_the_rounds_of_the_convoy_they_observe(
    client: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    world = await active_convoy(client, smtp_sink, october_start())
    jana = await invite_observer(client, smtp_sink, world, world.facilitator)
    r = await client.post("/api/v1/me/calendar", headers=jana.auth)
    assert r.status_code == 201, r.text
    url = r.json()["url"]

    async def rounds() -> dict[int, icalendar.Event] | None:
        r = await feed(client, url)
        return events(r.content) if r.status_code == 200 and b"VEVENT" in r.content else None

    got = await eventually(rounds)
    assert got and all(world.convoy_id in str(e["UID"]) for e in got.values())
