"""What is due, as a pure function of the stored schedule and "now" (no I/O, no clock of its own).

APScheduler only decides when to wake up; the leading reminders process then asks this module
what to fire. Tests call the same functions with any "now", across weeks and DST changes.

Catch-up after an outage (the same rules apply to every tick, so a restart needs no special case):
- a prompt whose cycle is still open is sent late; one whose cycle already closed is dropped;
- a nudge whose due time has passed is dropped (never a stale reminder);
- a digest is always sent, however late.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import holidays
import msgspec

from schemas.values import Cadence
from services.runtime import cycles

Kind = Literal["open", "nudge", "close", "drop_open", "drop_nudge"]
MOVE_LIMIT_DAYS = 7


@dataclass(frozen=True)
class Plan:
    """One convoy's schedule settings."""

    timezone: str
    cadence: Cadence
    start_date: date
    holiday_region: str = ""
    holiday_policy: str = "skip"
    nudge_offsets: tuple[int, ...] = (24, 2)


@dataclass(frozen=True)
class PlannedCycle:
    index: int
    opens_at: datetime
    due_at: datetime
    closes_at: datetime
    skipped: bool = False
    skip_reason: str = ""


class CycleState(msgspec.Struct, frozen=True, kw_only=True):
    """A stored cycle as the tick sees it (a msgspec struct: built and replaced per fired cycle, issue #21)."""

    index: int
    opens_at: datetime
    due_at: datetime
    closes_at: datetime
    skipped: bool
    opened: bool
    nudges_done: int
    closed: bool


class Action(msgspec.Struct, frozen=True):
    kind: Kind
    cycle_index: int
    nudge: int = 0
    """1-based number of the nudge (for nudge and drop_nudge)."""


@functools.lru_cache(maxsize=64)
def _holidays(region: str, year: int) -> holidays.HolidayBase:
    return holidays.country_holidays("DE", subdiv=region, years=year)


def holiday(region: str, day: date) -> str | None:
    """The name of the public holiday on ``day`` in the Bundesland ``region``, if any."""
    if not region:
        return None
    name = _holidays(region, day.year).get(day)
    return str(name) if name else None


def plan_cycle(plan: Plan, index: int) -> PlannedCycle:
    """Cycle ``index`` with the holiday policy applied."""
    c = cycles.cycle_by_index(plan.cadence, plan.timezone, plan.start_date, index)
    if plan.holiday_policy == "ignore" or not plan.holiday_region:
        return PlannedCycle(index=index, opens_at=c.opens_at, due_at=c.due_at, closes_at=c.closes_at)
    tz = ZoneInfo(plan.timezone)
    local = c.opens_at.astimezone(tz)
    name = holiday(plan.holiday_region, local.date())
    if name is None:
        return PlannedCycle(index=index, opens_at=c.opens_at, due_at=c.due_at, closes_at=c.closes_at)
    skipped = PlannedCycle(
        index=index,
        opens_at=c.opens_at,
        due_at=c.due_at,
        closes_at=c.closes_at,
        skipped=True,
        skip_reason=f"Feiertag: {name}",
    )
    if plan.holiday_policy == "skip":
        return skipped
    # move: the next working day (Mon-Fri, not a holiday) at the same local time, within the cycle
    for days in range(1, MOVE_LIMIT_DAYS + 1):
        moved_local = (local + timedelta(days=days)).replace(tzinfo=None)
        if moved_local.weekday() < 5 and holiday(plan.holiday_region, moved_local.date()) is None:
            opens = moved_local.replace(tzinfo=tz).astimezone(c.opens_at.tzinfo)
            due = min(opens + (c.due_at - c.opens_at), c.closes_at - timedelta(minutes=1))
            if opens < c.closes_at:
                return PlannedCycle(
                    index=index,
                    opens_at=opens,
                    due_at=due,
                    closes_at=c.closes_at,
                    skip_reason=f"verschoben wegen Feiertag: {name}",
                )
    return skipped  # no working day to move to within the cycle


def cycles_to_keep(plan: Plan, now: datetime, ahead: int = 1) -> list[PlannedCycle]:
    """The cycles around ``now`` that must exist in the table: the previous, current and next ones."""
    current = cycles.cycle_at(plan.cadence, plan.timezone, plan.start_date, now)
    top = (current.index if current else -1) + ahead
    return [plan_cycle(plan, i) for i in range(max(0, top - 1 - ahead), top + 1)]


def calendar_indexes(plan: Plan, now: datetime, past: int, ahead: int) -> range:
    """The rounds a calendar feed shows at ``now``: the current one, ``past`` before it, ``ahead`` after it.

    Before the first check-in: the first ``ahead`` rounds. Each round is :func:`plan_cycle` (the holiday
    policy applied) unless the scheduler has stored it (see ``Scheduler.calendar_rounds``).
    """
    current = cycles.cycle_at(plan.cadence, plan.timezone, plan.start_date, now)
    if current is None:
        return range(0, ahead)
    return range(max(0, current.index - past), current.index + ahead + 1)


FACILITATOR_DIGEST_ZONE = "Europe/Berlin"
FACILITATOR_DIGEST_WEEKDAY = 0  # Monday
FACILITATOR_DIGEST_TIME = (7, 0)


def facilitator_digest_due(now: datetime) -> str | None:
    """The ISO week whose facilitator digest is due at ``now`` (Monday 07:00 Berlin onwards), else None."""
    local = now.astimezone(ZoneInfo(FACILITATOR_DIGEST_ZONE))
    monday = local.date() - timedelta(days=local.weekday() - FACILITATOR_DIGEST_WEEKDAY)
    due = datetime(
        monday.year, monday.month, monday.day, *FACILITATOR_DIGEST_TIME, tzinfo=ZoneInfo(FACILITATOR_DIGEST_ZONE)
    )
    if local < due:
        return None
    year, week, _ = monday.isocalendar()
    return f"{year}-W{week:02d}"


@functools.lru_cache(maxsize=64)
def _nudge_offsets(offsets: tuple[int, ...]) -> tuple[timedelta, ...]:
    """The nudges' offsets before the due time, in firing order (the largest first)."""
    return tuple(timedelta(hours=h) for h in sorted(offsets, reverse=True))


def due_actions(state: CycleState, offsets: tuple[int, ...], now: datetime) -> list[Action]:
    """What to do for one stored cycle at ``now``, in order."""
    if state.skipped or state.closed or now < state.opens_at:
        return []
    actions: list[Action] = []
    if not state.opened:
        actions.append(Action("open" if now < state.closes_at else "drop_open", state.index))
    done = state.nudges_done
    if done < len(offsets):
        due = state.due_at
        reached = [
            number
            for number, before in enumerate(_nudge_offsets(offsets), start=1)
            if number > done and now >= due - before
        ]
        for number in reached:
            # Only the latest nudge that is reached goes out, and only before the due time: after an
            # outage, earlier nudges are dropped rather than sent in a burst.
            send = number == reached[-1] and now < due
            actions.append(Action("nudge" if send else "drop_nudge", state.index, number))
    if now >= state.closes_at:
        actions.append(Action("close", state.index))
    return actions


def plan_horizon(plan: Plan, now: datetime) -> datetime:
    """Until when ``cycles_to_keep(plan, now)`` stays the same: the next check-in after ``now``.

    The scheduler re-plans a convoy only when this has passed or its settings changed (bench: scheduler).
    """
    current = cycles.cycle_at(plan.cadence, plan.timezone, plan.start_date, now)
    if current is None:
        return cycles.check_in(plan.cadence, plan.timezone, plan.start_date, 0)
    return current.closes_at


def next_action_at(state: CycleState, offsets: tuple[int, ...]) -> datetime | None:
    """The first instant at which ``due_actions(state, offsets, now)`` is not empty; None if never.

    Stored with the cycle (``cycles.next_at``, indexed), so a tick asks the database for what is due
    instead of looking at every convoy.
    """
    if state.skipped or state.closed:
        return None
    if not state.opened:
        return state.opens_at
    first = state.closes_at
    if state.nudges_done < len(offsets):
        first = min(first, state.due_at - _nudge_offsets(offsets)[state.nudges_done])
    return max(first, state.opens_at)


def after(state: CycleState, actions: list[Action]) -> CycleState:
    """The cycle's state once ``actions`` (from :func:`due_actions`) are recorded."""
    opened, nudges_done, closed = state.opened, state.nudges_done, state.closed
    for a in actions:
        if a.kind in ("open", "drop_open"):
            opened = True
        elif a.kind in ("nudge", "drop_nudge"):
            nudges_done = max(nudges_done, a.nudge)
        elif a.kind == "close":
            closed = True
    if (opened, nudges_done, closed) == (state.opened, state.nudges_done, state.closed):
        return state
    return msgspec.structs.replace(state, opened=opened, nudges_done=nudges_done, closed=closed)
