"""A person's check-in calendar as iCalendar (RFC 5545): pure, deterministic, no I/O.

One event per round: "Check-in: <convoy>" from the check-in (the round opens) to its due time, in the
convoy's time zone (a VTIMEZONE per zone), transparent (it does not block free/busy time). The close
(the digest) is in the description. The UID is ``{convoy}-{cycle}-checkin@convoy``: a calendar app
that fetches the feed again updates the same event. ``SEQUENCE`` is the convoy's schedule version and
``LAST-MODIFIED``/``DTSTAMP`` the time it last changed, so a moved or cancelled round is an update, and
the same inputs give the same bytes (the ETag is a hash of them). Cancelled rounds (holiday, skip,
paused convoy) stay in the feed as ``STATUS:CANCELLED``; rounds of a convoy still forming are
``TENTATIVE``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar
from babel.dates import format_datetime

from schemas import api

PRODID = "-//Convoy//Check-in calendar 1.0//EN"
REFRESH = "PT1H"
"""How often calendar apps should fetch again (REFRESH-INTERVAL, X-PUBLISHED-TTL): an hour."""
UID_DOMAIN = "convoy"

_WORDS = {
    "de": {
        "calendar": "Convoy: Check-ins",
        "calendar_description": "Die Check-in-Runden Ihrer Konvois",
        "summary": "Check-in: {convoy}",
        "cancelled": "Kein Check-in: {convoy}",
        "tentative": "Check-in (geplant): {convoy}",
        "round": "Runde {n} im Konvoi „{convoy}“.",
        "times": "Beginnt: {opens}\nFällig: {due}\nRunde endet (Digest): {closes}\nZeitzone: {tz}",
        "holiday": "Fällt aus: {note}",
        "skipped": "Ausgesetzt: {note}",
        "paused": "Fällt aus: Der Konvoi ist pausiert.",
        "moved": "Hinweis: {note}",
        "forming": "Der Konvoi startet noch; die Termine können sich ändern.",
        "report": "Bericht schreiben: {link}",
        "convoy": "Zum Konvoi: {link}",
    },
    "en": {
        "calendar": "Convoy: check-ins",
        "calendar_description": "The check-in rounds of your convoys",
        "summary": "Check-in: {convoy}",
        "cancelled": "No check-in: {convoy}",
        "tentative": "Check-in (planned): {convoy}",
        "round": 'Round {n} of the convoy "{convoy}".',
        "times": "Opens: {opens}\nDue: {due}\nRound closes (digest): {closes}\nTime zone: {tz}",
        "holiday": "Cancelled: {note}",
        "skipped": "Skipped: {note}",
        "paused": "Cancelled: the convoy is paused.",
        "moved": "Note: {note}",
        "forming": "The convoy has not started yet; the dates may still change.",
        "report": "Write your report: {link}",
        "convoy": "Open the convoy: {link}",
    },
}

_FORMAT = {"de": "EEE, d. MMM y, HH:mm", "en": "EEE d MMM y, HH:mm"}


def uid(convoy_id: uuid.UUID, cycle_index: int, kind: str = "checkin") -> str:
    """Stable per convoy, round and kind: the same event across fetches and schedule changes."""
    return f"{convoy_id}-{cycle_index}-{kind}@{UID_DOMAIN}"


def build(owner: api.CalendarOwner, rounds: api.CalendarRounds, public_url: str, *, name: str | None = None) -> bytes:
    """The feed of ``owner``: every round of ``rounds`` (in the owner's language)."""
    lang = owner.language if owner.language in _WORDS else "de"
    words = _WORDS[lang]
    base = public_url.rstrip("/")
    roles = {c.convoy_id: c.role for c in owner.convoys}
    cal = icalendar.Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("name", name or words["calendar"])
    cal.add("x-wr-calname", name or words["calendar"])
    cal.add("description", words["calendar_description"])
    cal.add("x-wr-caldesc", words["calendar_description"])
    cal.add("x-wr-timezone", owner.timezone)
    cal.add("refresh-interval", timedelta(hours=1), parameters={"VALUE": "DURATION"})
    cal.add("x-published-ttl", REFRESH)
    zones: dict[str, list[date]] = {}
    events: list[icalendar.Event] = []
    for convoy in sorted(rounds.convoys, key=lambda c: (c.name.casefold(), str(c.convoy_id))):
        tz = ZoneInfo(convoy.timezone)
        changed = convoy.changed_at.astimezone(UTC).replace(microsecond=0)
        for r in convoy.rounds:
            zones.setdefault(convoy.timezone, []).extend((r.opens_at.date(), r.closes_at.date()))
            events.append(_event(convoy, r, tz, changed, words, lang, base, roles.get(convoy.convoy_id, "")))
    for tzid, days in sorted(zones.items()):
        # A bounded, deterministic range around the events (the same feed gives the same bytes).
        first, last = date(min(days).year - 1, 1, 1), date(max(days).year + 2, 1, 1)
        cal.add_component(icalendar.Timezone.from_tzid(tzid, first_date=first, last_date=last))
    for event in events:
        cal.add_component(event)
    body: bytes = cal.to_ical()
    return body


def _event(
    convoy: api.CalendarConvoy,
    r: api.CalendarRound,
    tz: ZoneInfo,
    changed: datetime,
    words: dict[str, str],
    lang: str,
    base: str,
    role: str,
) -> icalendar.Event:
    name = " ".join(convoy.name.split())  # one line
    if r.cancelled:
        summary, status = words["cancelled"], "CANCELLED"
    elif convoy.status == "forming":
        summary, status = words["tentative"], "TENTATIVE"
    else:
        summary, status = words["summary"], "CONFIRMED"

    def local(at: datetime) -> str:
        return format_datetime(at, _FORMAT[lang], tzinfo=tz, locale=lang)

    lines = [
        words["round"].format(n=r.cycle_index + 1, convoy=name),
        words["times"].format(
            opens=local(r.opens_at), due=local(r.due_at), closes=local(r.closes_at), tz=convoy.timezone
        ),
    ]
    if r.cancelled:
        lines.append(words[r.reason or "skipped"].format(note=r.note))
    elif r.note:
        lines.append(words["moved"].format(note=r.note))
    if convoy.status == "forming":
        lines.append(words["forming"])
    convoy_link = f"{base}/convoys/{convoy.convoy_id}"
    if role == "representative" and not r.cancelled:
        lines.append(words["report"].format(link=f"{convoy_link}/report"))
    lines.append(words["convoy"].format(link=convoy_link))
    event = icalendar.Event()
    event.add("uid", uid(convoy.convoy_id, r.cycle_index))
    event.add("dtstamp", changed)
    event.add("last-modified", changed)
    event.add("sequence", convoy.version)
    event.add("summary", summary.format(convoy=name))
    event.add("dtstart", r.opens_at.astimezone(tz))
    event.add("dtend", max(r.due_at, r.opens_at).astimezone(tz))
    event.add("status", status)
    event.add("transp", "TRANSPARENT")
    event.add("categories", ["Convoy"])
    event.add("url", convoy_link)
    event.add("description", "\n\n".join(lines))
    return event
