"""Check-in cycles of a convoy: pure date arithmetic, no I/O, no asyncio (stdlib only).

A convoy has a :class:`~schemas.values.Cadence` (frequency, weekday, ``local_time`` "HH:MM",
``window_hours``), an IANA time zone and a start date. From these, this module derives the
sequence of check-ins and the cycles between them. The reports service uses it to place a report
in its cycle; the scheduler will use it to plan prompts and nudges.

Semantics
---------
Check-in days (all in the convoy's local calendar):

- ``weekly``: every ``weekday``.
- ``biweekly``: every second ``weekday``, counted from the first check-in (the first check-in is
  week 0, then week 2, 4, ...), regardless of calendar weeks or months.
- ``monthly``: the first ``weekday`` of each month (e.g. the first Tuesday: 6 Jan, 3 Feb, ...).

The first check-in is the first such moment at or after local midnight of ``start``. Since a
check-in is on a date at a time of day at or after midnight, that is the first check-in *day*
on or after ``start``: a convoy starting on a Monday with a Monday 09:00 cadence checks in on
that very Monday at 09:00 (also when it is set up at 10:00 that day). For ``monthly``, a start
after the first ``weekday`` of its month means the first check-in is in the next month.

Check-in *n* (0-based) is ``local_time`` on the *n*-th check-in day, as wall-clock time in the
convoy's time zone, converted to UTC. Wall-clock time is kept across daylight-saving changes: a
Monday 09:00 Europe/Berlin check-in is 09:00 local all year (07:00 UTC in summer, 08:00 UTC in
winter). Two special cases on the days the clocks change:

- A local time that does not exist (in a spring-forward gap, e.g. 02:30 on the last Sunday of
  March in Berlin) moves to the first valid instant after the gap, i.e. the moment the clocks
  jump (03:00 local). This also covers days that a zone skipped altogether (Pacific/Apia skipped
  30 December 2011: a Friday check-in that day happens at 00:00 local on the 31st).
- An ambiguous local time (in a fall-back fold, e.g. 02:30 on the last Sunday of October in
  Berlin) is its first occurrence (``fold=0``, still on summer time: 00:30 UTC).

Cycle *n* (0-based):

- ``opens_at`` = check-in *n*;
- ``due_at`` = ``opens_at`` + ``window_hours`` real elapsed hours (not wall-clock hours: a 72-hour
  window across a DST change ends at a local time one hour off the check-in time);
- ``closes_at`` = check-in *n* + 1 (the next cycle's ``opens_at``), so cycles tile time without
  gaps or overlaps: an instant belongs to the cycle with ``opens_at <= at < closes_at``.

All datetimes returned are timezone-aware UTC. Datetimes passed in must be timezone-aware (any
zone); naive ones raise ``ValueError``, as do unknown time zones, a negative index, a malformed
``local_time`` and an unknown frequency or weekday (a ``Cadence`` built in Python is not
validated by msgspec); a ``start`` that is a ``datetime`` instead of a ``date`` raises
``TypeError``. Whether ``window_hours`` fits the frequency is the convoys service's rule
(``check_schedule``), not checked here; a window longer than its cycle gives a ``due_at`` after
``closes_at``.

Cost: :func:`check_in` and :func:`cycle_by_index` are O(1); :func:`cycle_at` computes the index
arithmetically (local date difference in days for weekly/biweekly, in months for monthly) and
corrects it by at most a step or two, so it does not depend on how long the convoy has run;
:func:`cycles_between` is O(number of cycles returned).
"""

from __future__ import annotations

import math
import re
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from schemas.values import Cadence

__all__ = ["Cycle", "check_in", "cycle_at", "cycle_by_index", "cycles_between"]

_WEEKDAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
_STEP_DAYS = {"weekly": 7, "biweekly": 14}
_LOCAL_TIME = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


@dataclass(frozen=True, slots=True)
class Cycle:
    """One check-in cycle: opens at a check-in, is due ``window_hours`` later, closes at the next one."""

    index: int
    opens_at: datetime
    due_at: datetime
    closes_at: datetime

    def contains(self, at: datetime) -> bool:
        """Whether ``at`` lies in this cycle: ``opens_at <= at < closes_at``."""
        _require_aware(at, "at")
        return self.opens_at <= at < self.closes_at

    def is_late(self, at: datetime) -> bool:
        """Whether ``at`` is after the check-in window: ``at > due_at``."""
        _require_aware(at, "at")
        return at > self.due_at


def check_in(cadence: Cadence, timezone: str, start: date, index: int) -> datetime:
    """The ``index``-th (0-based) check-in of a convoy, in UTC."""
    return _Schedule(cadence, timezone, start).check_in(index)


def cycle_by_index(cadence: Cadence, timezone: str, start: date, index: int) -> Cycle:
    """Cycle ``index`` (0-based) of a convoy."""
    return _Schedule(cadence, timezone, start).cycle(index)


def cycle_at(cadence: Cadence, timezone: str, start: date, at: datetime) -> Cycle | None:
    """The cycle containing ``at`` (``opens_at <= at < closes_at``); None before the first check-in."""
    _require_aware(at, "at")
    schedule = _Schedule(cadence, timezone, start)
    index = schedule.index_at(at)
    return None if index is None else schedule.cycle(index)


def cycles_between(cadence: Cadence, timezone: str, start: date, since: datetime, until: datetime) -> list[Cycle]:
    """The cycles whose ``opens_at`` lies in ``[since, until)``, in order."""
    _require_aware(since, "since")
    _require_aware(until, "until")
    schedule = _Schedule(cadence, timezone, start)
    if until <= since:
        return []
    index = schedule.index_at(since)
    if index is None:
        index = 0
    elif schedule.check_in(index) < since:
        index += 1
    cycles: list[Cycle] = []
    opens_at = schedule.check_in(index)
    while opens_at < until:
        closes_at = schedule.check_in(index + 1)
        cycles.append(Cycle(index, opens_at, opens_at + timedelta(hours=schedule.window_hours), closes_at))
        index += 1
        opens_at = closes_at
    return cycles


# --- internals --------------------------------------------------------------------------------


class _Schedule:
    """A validated cadence + time zone + start, with the first check-in day (or month) resolved."""

    __slots__ = ("first_day", "first_month", "frequency", "local_time", "step_days", "tz", "weekday", "window_hours")

    def __init__(self, cadence: Cadence, timezone: str, start: date) -> None:
        if isinstance(start, datetime) or not isinstance(start, date):
            raise TypeError(f"start must be a date, not {type(start).__name__}")
        if cadence.frequency not in ("weekly", "biweekly", "monthly"):
            raise ValueError(f"unknown cadence frequency {cadence.frequency!r}")
        if cadence.weekday not in _WEEKDAYS:
            raise ValueError(f"unknown cadence weekday {cadence.weekday!r}")
        match = _LOCAL_TIME.fullmatch(cadence.local_time)
        if match is None:
            raise ValueError(f"cadence local_time must be HH:MM (24 h), got {cadence.local_time!r}")
        self.tz = _zone(timezone)
        self.frequency = cadence.frequency
        self.weekday = _WEEKDAYS[cadence.weekday]
        self.local_time = time(int(match[1]), int(match[2]))
        self.window_hours = cadence.window_hours
        self.step_days = _STEP_DAYS.get(cadence.frequency, 0)
        if cadence.frequency == "monthly":
            first_this_month = _first_weekday_of_month(start.year, start.month - 1, self.weekday)
            months = start.year * 12 + start.month - 1
            # Month number (year * 12 + month - 1) of the first check-in.
            self.first_month = months if first_this_month >= start else months + 1
            self.first_day = _first_weekday_of_month(*divmod(self.first_month, 12), self.weekday)
        else:
            self.first_day = start + timedelta(days=(self.weekday - start.weekday()) % 7)
            self.first_month = 0

    def day(self, index: int) -> date:
        """The local date of check-in ``index``."""
        if self.frequency == "monthly":
            return _first_weekday_of_month(*divmod(self.first_month + index, 12), self.weekday)
        return self.first_day + timedelta(days=self.step_days * index)

    def check_in(self, index: int) -> datetime:
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"index must be an int, not {type(index).__name__}")
        if index < 0:
            raise ValueError(f"index must be >= 0, got {index}")
        return _local_to_utc(datetime.combine(self.day(index), self.local_time), self.tz)

    def cycle(self, index: int) -> Cycle:
        opens_at = self.check_in(index)
        return Cycle(
            index=index,
            opens_at=opens_at,
            due_at=opens_at + timedelta(hours=self.window_hours),
            closes_at=self.check_in(index + 1),
        )

    def index_at(self, at: datetime) -> int | None:
        """Index of the last check-in at or before ``at``; None if ``at`` is before the first."""
        local_day = at.astimezone(self.tz).date()
        if self.frequency == "monthly":
            estimate = local_day.year * 12 + local_day.month - 1 - self.first_month
        else:
            estimate = (local_day - self.first_day).days // self.step_days
        # The estimate is exact or one off (the check-in of the day/month of `at` may be later
        # that day, or a gap may have moved a check-in past midnight); correct it by stepping.
        index = max(estimate, 0)
        while index > 0 and self.check_in(index) > at:
            index -= 1
        if self.check_in(index) > at:
            return None
        while self.check_in(index + 1) <= at:
            index += 1
        return index


def _zone(name: str) -> tzinfo:
    if not isinstance(name, str):
        raise TypeError(f"timezone must be a str, not {type(name).__name__}")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as Europe/Berlin)") from exc


def _require_aware(value: datetime, name: str) -> None:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")


def _first_weekday_of_month(year: int, month0: int, weekday: int) -> date:
    """The first ``weekday`` (0 = Monday) of a month; ``month0`` is 0-based (0 = January)."""
    first = date(year, month0 + 1, 1)
    return first + timedelta(days=(weekday - first.weekday()) % 7)


def _wall_clock(instant: datetime, tz: tzinfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def _local_to_utc(local: datetime, tz: tzinfo) -> datetime:
    """A naive local wall-clock time in ``tz`` as a UTC instant.

    Existing times convert directly; ambiguous ones use their first occurrence (fold=0); times in
    a gap become the first instant after the gap (the transition itself).
    """
    earlier = local.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if _wall_clock(earlier, tz) == local:
        return earlier
    # In a gap. zoneinfo maps a gap time with fold=0 through the offset before the transition and
    # with fold=1 through the offset after it; the transition lies between the two UTC instants.
    # Wall-clock time is increasing there (it jumps forward), so find the first second whose wall
    # clock is at or after `local` by bisection: O(log(gap length)), at most ~17 steps for a day.
    other = local.replace(tzinfo=tz, fold=1).astimezone(UTC)
    lo = math.floor(min(earlier, other).timestamp())  # wall clock before `local`
    hi = math.ceil(max(earlier, other).timestamp())  # wall clock at or after `local`
    if _wall_clock(datetime.fromtimestamp(lo, UTC), tz) >= local:  # pragma: no cover - defensive
        return datetime.fromtimestamp(lo, UTC)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _wall_clock(datetime.fromtimestamp(mid, UTC), tz) >= local:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)
