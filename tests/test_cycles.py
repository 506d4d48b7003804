"""services/runtime/cycles.py: check-in cycles across weeks, months, time zones and DST changes.

Expected instants are written out by hand (from the tz database: Berlin switches on the last
Sundays of March and October, New York on the second Sunday of March and first of November).
A sweep at the end compares everything against a deliberately naive reference implementation
(walk the calendar day by day, resolve local times by scanning minutes).
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest

from schemas.values import Cadence, Frequency, Weekday
from services.runtime.cycles import Cycle, check_in, cycle_at, cycle_by_index, cycles_between

BERLIN = "Europe/Berlin"
MONDAY_9 = Cadence(frequency="weekly", weekday="mon", local_time="09:00", window_hours=72)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def local(instant: datetime, timezone: str) -> datetime:
    return instant.astimezone(ZoneInfo(timezone))


# --- weekly ---------------------------------------------------------------------------------------


def test_weekly_keeps_local_time_across_both_berlin_dst_switches() -> None:
    start = date(2026, 1, 5)  # a Monday
    check_ins = [check_in(MONDAY_9, BERLIN, start, n) for n in range(52)]

    assert check_ins[0] == utc(2026, 1, 5, 8)
    assert check_ins[11] == utc(2026, 3, 23, 8)  # last Monday on winter time
    assert check_ins[12] == utc(2026, 3, 30, 7)  # clocks went forward on Sunday 29 March
    assert check_ins[41] == utc(2026, 10, 19, 7)  # last Monday on summer time
    assert check_ins[42] == utc(2026, 10, 26, 8)  # clocks went back on Sunday 25 October
    for instant in check_ins:
        assert instant.tzinfo is UTC
        wall = local(instant, BERLIN)
        assert (wall.weekday(), wall.hour, wall.minute) == (0, 9, 0)
        summer = date(2026, 3, 29) < instant.date() < date(2026, 10, 25)
        assert instant.hour == (7 if summer else 8)
    assert [b.date() - a.date() for a, b in itertools.pairwise(check_ins)] == [timedelta(days=7)] * 51


def test_weekly_cycles_over_a_dst_switch_are_an_hour_shorter_or_longer() -> None:
    start = date(2026, 1, 5)
    spring = cycle_by_index(MONDAY_9, BERLIN, start, 11)
    autumn = cycle_by_index(MONDAY_9, BERLIN, start, 41)
    ordinary = cycle_by_index(MONDAY_9, BERLIN, start, 20)
    assert spring.closes_at - spring.opens_at == timedelta(hours=167)
    assert autumn.closes_at - autumn.opens_at == timedelta(hours=169)
    assert ordinary.closes_at - ordinary.opens_at == timedelta(hours=168)
    assert spring.closes_at == cycle_by_index(MONDAY_9, BERLIN, start, 12).opens_at


def test_cycle_by_index_fields() -> None:
    cycle = cycle_by_index(MONDAY_9, BERLIN, date(2026, 1, 5), 2)
    assert cycle == Cycle(
        index=2,
        opens_at=utc(2026, 1, 19, 8),
        due_at=utc(2026, 1, 22, 8),
        closes_at=utc(2026, 1, 26, 8),
    )
    assert all(value.tzinfo is UTC for value in (cycle.opens_at, cycle.due_at, cycle.closes_at))


def test_start_date_before_the_weekday_waits_for_it() -> None:
    assert check_in(MONDAY_9, BERLIN, date(2026, 1, 6), 0) == utc(2026, 1, 12, 8)  # Tuesday → next Monday
    assert check_in(MONDAY_9, BERLIN, date(2026, 1, 11), 0) == utc(2026, 1, 12, 8)  # Sunday → next day


def test_start_date_on_the_check_in_day_counts_that_day() -> None:
    start = date(2026, 3, 2)  # a Monday; the first check-in is that day at 09:00 local
    assert check_in(MONDAY_9, BERLIN, start, 0) == utc(2026, 3, 2, 8)
    # Before the local time on the start day: no cycle yet.
    assert cycle_at(MONDAY_9, BERLIN, start, utc(2026, 3, 1, 23)) is None  # local midnight of the start day
    assert cycle_at(MONDAY_9, BERLIN, start, utc(2026, 3, 2, 7, 59, 59)) is None
    # From the local time on: cycle 0.
    first = cycle_at(MONDAY_9, BERLIN, start, utc(2026, 3, 2, 8))
    assert first is not None and first.index == 0 and first.opens_at == utc(2026, 3, 2, 8)
    later = cycle_at(MONDAY_9, BERLIN, start, utc(2026, 3, 2, 15))
    assert later == first


def test_check_in_at_local_midnight_on_the_start_day() -> None:
    cadence = Cadence(frequency="weekly", weekday="mon", local_time="00:00", window_hours=24)
    assert check_in(cadence, BERLIN, date(2026, 3, 2), 0) == utc(2026, 3, 1, 23)


def test_biweekly_every_second_week_from_the_first_check_in() -> None:
    cadence = Cadence(frequency="biweekly", weekday="wed", local_time="14:00", window_hours=48)
    start = date(2026, 1, 1)  # a Thursday: first check-in Wednesday 7 January
    check_ins = [check_in(cadence, BERLIN, start, n) for n in range(27)]
    assert check_ins[:3] == [utc(2026, 1, 7, 13), utc(2026, 1, 21, 13), utc(2026, 2, 4, 13)]
    for instant in check_ins:
        wall = local(instant, BERLIN)
        assert (wall.weekday(), wall.hour, wall.minute) == (2, 14, 0)
    assert {local(b, BERLIN).date() - local(a, BERLIN).date() for a, b in itertools.pairwise(check_ins)} == {
        timedelta(days=14)
    }
    lengths = {cycle_by_index(cadence, BERLIN, start, n).closes_at - check_ins[n] for n in range(26)}
    assert lengths == {timedelta(hours=336), timedelta(hours=335), timedelta(hours=337)}
    # The week in between belongs to the running cycle.
    between = cycle_at(cadence, BERLIN, start, utc(2026, 1, 14, 13))
    assert between is not None and between.index == 0 and between.closes_at == utc(2026, 1, 21, 13)


# --- monthly --------------------------------------------------------------------------------------

FIRST_TUESDAY = Cadence(frequency="monthly", weekday="tue", local_time="09:00", window_hours=72)


def test_monthly_first_tuesday_for_a_whole_year() -> None:
    start = date(2026, 1, 1)
    cycles = [cycle_by_index(FIRST_TUESDAY, BERLIN, start, n) for n in range(12)]
    assert [local(c.opens_at, BERLIN).date() for c in cycles] == [
        date(2026, 1, 6),
        date(2026, 2, 3),
        date(2026, 3, 3),
        date(2026, 4, 7),
        date(2026, 5, 5),
        date(2026, 6, 2),
        date(2026, 7, 7),
        date(2026, 8, 4),
        date(2026, 9, 1),
        date(2026, 10, 6),
        date(2026, 11, 3),
        date(2026, 12, 1),
    ]
    assert local(cycles[-1].closes_at, BERLIN).date() == date(2027, 1, 5)  # over the year boundary
    for cycle in cycles:
        wall = local(cycle.opens_at, BERLIN)
        assert (wall.weekday(), wall.hour, wall.minute) == (1, 9, 0)
        assert wall.day <= 7
    # Cycles are four or five weeks long, depending on the month (plus/minus the DST hour).
    days = [(local(c.closes_at, BERLIN).date() - local(c.opens_at, BERLIN).date()).days for c in cycles]
    assert days == [28, 28, 35, 28, 28, 35, 28, 28, 35, 28, 28, 35]
    assert cycles[2].closes_at - cycles[2].opens_at == timedelta(days=35, hours=-1)  # over the March switch
    assert cycles[9].closes_at - cycles[9].opens_at == timedelta(days=28, hours=1)  # over the October switch


def test_monthly_in_a_leap_year() -> None:
    first_thursday = Cadence(frequency="monthly", weekday="thu", local_time="10:30", window_hours=24)
    dates = [local(check_in(first_thursday, BERLIN, date(2024, 1, 1), n), BERLIN).date() for n in range(4)]
    assert dates == [date(2024, 1, 4), date(2024, 2, 1), date(2024, 3, 7), date(2024, 4, 4)]  # 29 February between


def test_monthly_start_after_the_first_weekday_begins_next_month() -> None:
    assert check_in(FIRST_TUESDAY, BERLIN, date(2026, 1, 6), 0) == utc(2026, 1, 6, 8)  # on the day
    assert check_in(FIRST_TUESDAY, BERLIN, date(2026, 1, 7), 0) == utc(2026, 2, 3, 8)
    assert check_in(FIRST_TUESDAY, BERLIN, date(2026, 12, 2), 0) == utc(2027, 1, 5, 8)


def test_monthly_cycle_at_finds_the_month() -> None:
    start = date(2026, 1, 1)
    assert cycle_at(FIRST_TUESDAY, BERLIN, start, utc(2026, 1, 6, 7, 59)) is None
    before_march = cycle_at(FIRST_TUESDAY, BERLIN, start, utc(2026, 3, 3, 7, 59))  # March, before its check-in
    assert before_march is not None and before_march.index == 1
    march = cycle_at(FIRST_TUESDAY, BERLIN, start, utc(2026, 3, 31))
    assert march is not None and march.index == 2


# --- DST gaps and folds ---------------------------------------------------------------------------


def test_local_time_in_the_spring_forward_gap_moves_to_the_end_of_the_gap() -> None:
    cadence = Cadence(frequency="weekly", weekday="sun", local_time="02:30", window_hours=24)
    start = date(2026, 3, 22)
    assert check_in(cadence, BERLIN, start, 0) == utc(2026, 3, 22, 1, 30)  # 02:30 CET
    gap_day = check_in(cadence, BERLIN, start, 1)
    assert gap_day == utc(2026, 3, 29, 1)  # 02:30 does not exist on 29 March: 03:00 CEST
    assert local(gap_day, BERLIN).replace(tzinfo=None) == datetime(2026, 3, 29, 3, 0)
    assert check_in(cadence, BERLIN, start, 2) == utc(2026, 4, 5, 0, 30)  # 02:30 CEST again
    cycle = cycle_by_index(cadence, BERLIN, start, 0)
    assert cycle.closes_at - cycle.opens_at == timedelta(days=7, hours=-0.5)


def test_gap_in_new_york_and_at_midnight_in_havana_and_santiago() -> None:
    sunday = Cadence(frequency="weekly", weekday="sun", local_time="02:30", window_hours=24)
    assert check_in(sunday, "America/New_York", date(2026, 3, 8), 0) == utc(2026, 3, 8, 7)  # 03:00 EDT
    # Cuba and Chile spring forward at midnight: 00:30 does not exist, 01:00 is the first instant.
    half_past_midnight = Cadence(frequency="weekly", weekday="sun", local_time="00:30", window_hours=24)
    assert check_in(half_past_midnight, "America/Havana", date(2026, 3, 8), 0) == utc(2026, 3, 8, 5)
    assert check_in(half_past_midnight, "America/Santiago", date(2026, 9, 6), 0) == utc(2026, 9, 6, 4)


def test_half_hour_dst_on_lord_howe() -> None:
    cadence = Cadence(frequency="weekly", weekday="sun", local_time="02:15", window_hours=24)
    instant = check_in(cadence, "Australia/Lord_Howe", date(2025, 10, 5), 0)  # 02:00 → 02:30
    assert local(instant, "Australia/Lord_Howe").replace(tzinfo=None) == datetime(2025, 10, 5, 2, 30)
    assert instant == utc(2025, 10, 4, 15, 30)


def test_a_skipped_day_moves_to_the_next_midnight() -> None:
    # Samoa jumped over Friday 30 December 2011 (from UTC-10 to UTC+14).
    friday = Cadence(frequency="weekly", weekday="fri", local_time="09:00", window_hours=24)
    check_ins = [check_in(friday, "Pacific/Apia", date(2011, 12, 23), n) for n in range(3)]
    walls = [local(i, "Pacific/Apia").replace(tzinfo=None) for i in check_ins]
    assert walls == [datetime(2011, 12, 23, 9), datetime(2011, 12, 31, 0), datetime(2012, 1, 6, 9)]
    cycle = cycle_at(friday, "Pacific/Apia", date(2011, 12, 23), check_ins[1])
    assert cycle is not None and cycle.index == 1


def test_ambiguous_local_time_uses_the_first_occurrence() -> None:
    cadence = Cadence(frequency="weekly", weekday="sun", local_time="02:30", window_hours=24)
    start = date(2026, 10, 18)
    assert check_in(cadence, BERLIN, start, 0) == utc(2026, 10, 18, 0, 30)  # 02:30 CEST
    assert check_in(cadence, BERLIN, start, 1) == utc(2026, 10, 25, 0, 30)  # first 02:30, still CEST
    assert check_in(cadence, BERLIN, start, 2) == utc(2026, 11, 1, 1, 30)  # 02:30 CET
    new_york = Cadence(frequency="weekly", weekday="sun", local_time="01:30", window_hours=24)
    assert check_in(new_york, "America/New_York", date(2026, 11, 1), 0) == utc(2026, 11, 1, 5, 30)  # EDT


# --- other time zones -----------------------------------------------------------------------------


def test_new_york_keeps_local_time() -> None:
    start = date(2026, 1, 5)
    assert check_in(MONDAY_9, "America/New_York", start, 0) == utc(2026, 1, 5, 14)  # EST
    assert check_in(MONDAY_9, "America/New_York", start, 9) == utc(2026, 3, 9, 13)  # EDT since 8 March
    assert check_in(MONDAY_9, "America/New_York", start, 43) == utc(2026, 11, 2, 14)  # EST since 1 November


def test_kolkata_has_no_dst_and_a_half_hour_offset() -> None:
    start = date(2026, 1, 5)
    assert {check_in(MONDAY_9, "Asia/Kolkata", start, n).time() for n in range(53)} == {
        datetime(2000, 1, 1, 3, 30).time()
    }
    # Monday 09:00 in Kolkata is 03:30 UTC, so it still is Monday in UTC; a Monday 02:00 check-in is Sunday in UTC.
    early = Cadence(frequency="weekly", weekday="mon", local_time="02:00", window_hours=24)
    assert check_in(early, "Asia/Kolkata", start, 0) == utc(2026, 1, 4, 20, 30)


def test_local_date_decides_in_zones_far_from_utc() -> None:
    # Auckland's Monday 09:00 is Sunday evening UTC; Honolulu's Monday 20:00 is Tuesday UTC.
    assert check_in(MONDAY_9, "Pacific/Auckland", date(2026, 1, 5), 0) == utc(2026, 1, 4, 20)
    evening = Cadence(frequency="weekly", weekday="mon", local_time="20:00", window_hours=24)
    assert check_in(evening, "Pacific/Honolulu", date(2026, 1, 5), 0) == utc(2026, 1, 6, 6)
    cycle = cycle_at(MONDAY_9, "Pacific/Auckland", date(2026, 1, 5), utc(2026, 1, 4, 20))
    assert cycle is not None and cycle.index == 0


# --- cycle_at and cycles_between ------------------------------------------------------------------


def test_cycle_at_boundaries_belong_to_the_new_cycle() -> None:
    start = date(2026, 1, 5)
    fifth = cycle_by_index(MONDAY_9, BERLIN, start, 5)
    tick = timedelta(microseconds=1)
    assert cycle_at(MONDAY_9, BERLIN, start, fifth.opens_at) == fifth
    assert cycle_at(MONDAY_9, BERLIN, start, fifth.opens_at - tick) == cycle_by_index(MONDAY_9, BERLIN, start, 4)
    assert cycle_at(MONDAY_9, BERLIN, start, fifth.closes_at - tick) == fifth
    assert cycle_at(MONDAY_9, BERLIN, start, fifth.closes_at) == cycle_by_index(MONDAY_9, BERLIN, start, 6)
    assert fifth.contains(fifth.opens_at)
    assert fifth.contains(fifth.closes_at - tick)
    assert not fifth.contains(fifth.closes_at)
    assert not fifth.contains(fifth.opens_at - tick)


def test_cycle_at_before_the_first_check_in_is_none() -> None:
    start = date(2026, 1, 7)  # Wednesday; first check-in Monday 12 January
    assert cycle_at(MONDAY_9, BERLIN, start, utc(2026, 1, 12, 7, 59, 59, 999999)) is None
    assert cycle_at(MONDAY_9, BERLIN, start, utc(2020, 6, 1)) is None
    assert cycle_at(MONDAY_9, BERLIN, start, utc(2026, 1, 5, 8)) is None  # a Monday before the start
    first = cycle_at(MONDAY_9, BERLIN, start, utc(2026, 1, 12, 8))
    assert first is not None and first.index == 0


def test_cycle_at_accepts_any_aware_datetime() -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    at = datetime(2026, 1, 12, 17, 0, tzinfo=tokyo)  # = 08:00 UTC = 09:00 Berlin on Monday
    cycle = cycle_at(MONDAY_9, BERLIN, date(2026, 1, 5), at)
    assert cycle is not None and cycle.index == 1
    assert cycle.opens_at.tzinfo is UTC


@pytest.mark.parametrize(
    ("frequency", "weekday"),
    [("weekly", "mon"), ("biweekly", "thu"), ("monthly", "tue"), ("monthly", "sun")],
)
@pytest.mark.parametrize("timezone", [BERLIN, "America/New_York", "Asia/Kolkata"])
def test_cycle_at_five_years_out_agrees_with_cycle_by_index(
    frequency: Frequency, weekday: Weekday, timezone: str
) -> None:
    cadence = Cadence(frequency=frequency, weekday=weekday, local_time="09:00", window_hours=24)
    start = date(2026, 1, 1)
    per_year = {"weekly": 52, "biweekly": 26, "monthly": 12}[frequency]
    for index in (5 * per_year - 1, 5 * per_year, 5 * per_year + 1):
        expected = cycle_by_index(cadence, timezone, start, index)
        assert expected.opens_at.year in (2030, 2031)
        for at in (expected.opens_at, expected.due_at, expected.closes_at - timedelta(seconds=1)):
            assert cycle_at(cadence, timezone, start, at) == expected


def test_due_and_late() -> None:
    cycle = cycle_by_index(MONDAY_9, BERLIN, date(2026, 1, 5), 0)
    assert cycle.due_at == cycle.opens_at + timedelta(hours=72) == utc(2026, 1, 8, 8)
    assert not cycle.is_late(cycle.opens_at)
    assert not cycle.is_late(cycle.due_at)
    assert cycle.is_late(cycle.due_at + timedelta(microseconds=1))
    assert cycle.is_late(cycle.closes_at)


def test_due_at_counts_real_hours_across_a_dst_switch() -> None:
    friday = Cadence(frequency="weekly", weekday="fri", local_time="09:00", window_hours=72)
    cycle = cycle_by_index(friday, BERLIN, date(2026, 3, 27), 0)
    assert cycle.opens_at == utc(2026, 3, 27, 8)
    assert cycle.due_at == utc(2026, 3, 30, 8)  # 72 hours later: Monday 10:00 CEST, not 09:00
    assert local(cycle.due_at, BERLIN).hour == 10


def test_cycles_between_is_half_open_on_opens_at() -> None:
    start = date(2026, 1, 5)
    third, fifth = (check_in(MONDAY_9, BERLIN, start, n) for n in (3, 5))
    cycles = cycles_between(MONDAY_9, BERLIN, start, third, fifth)
    assert [c.index for c in cycles] == [3, 4]
    assert cycles == [cycle_by_index(MONDAY_9, BERLIN, start, n) for n in (3, 4)]
    tick = timedelta(microseconds=1)
    assert [c.index for c in cycles_between(MONDAY_9, BERLIN, start, third + tick, fifth + tick)] == [4, 5]
    assert [c.index for c in cycles_between(MONDAY_9, BERLIN, start, third - tick, fifth - tick)] == [3, 4]
    assert cycles_between(MONDAY_9, BERLIN, start, fifth, fifth) == []
    assert cycles_between(MONDAY_9, BERLIN, start, fifth, third) == []
    assert cycles_between(MONDAY_9, BERLIN, start, third + tick, third + timedelta(days=6)) == []


def test_cycles_between_from_before_the_start() -> None:
    start = date(2026, 1, 5)
    cycles = cycles_between(FIRST_TUESDAY, BERLIN, start, utc(2025, 1, 1), utc(2027, 1, 1))
    assert [c.index for c in cycles] == list(range(12))
    assert all(a.closes_at == b.opens_at for a, b in itertools.pairwise(cycles))


# --- invalid input --------------------------------------------------------------------------------


@pytest.mark.parametrize("timezone", ["Mars/Olympus_Mons", "", "../etc/passwd", "/etc/localtime", "europe/berlin"])
def test_unknown_time_zone_is_a_value_error(timezone: str) -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        check_in(MONDAY_9, timezone, date(2026, 1, 5), 0)
    with pytest.raises(ValueError, match="unknown time zone"):
        cycle_at(MONDAY_9, timezone, date(2026, 1, 5), utc(2026, 2, 1))


def test_naive_datetimes_are_value_errors() -> None:
    naive = datetime(2026, 2, 1, 9)
    start = date(2026, 1, 5)
    with pytest.raises(ValueError, match="timezone-aware"):
        cycle_at(MONDAY_9, BERLIN, start, naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        cycles_between(MONDAY_9, BERLIN, start, naive, utc(2026, 3, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        cycles_between(MONDAY_9, BERLIN, start, utc(2026, 1, 1), naive)
    cycle = cycle_by_index(MONDAY_9, BERLIN, start, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        cycle.contains(naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        cycle.is_late(naive)


def test_negative_index_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="index"):
        check_in(MONDAY_9, BERLIN, date(2026, 1, 5), -1)
    with pytest.raises(ValueError, match="index"):
        cycle_by_index(MONDAY_9, BERLIN, date(2026, 1, 5), -1)


@pytest.mark.parametrize(
    "changes",
    [
        {"local_time": "9:00"},
        {"local_time": "24:00"},
        {"local_time": "09:60"},
        {"local_time": "09:00:00"},
        {"local_time": "\uff109:00"},  # a full-width digit: str.isdigit() would accept it
        {"frequency": "daily"},
        {"weekday": "monday"},
    ],
)
def test_cadence_that_bypassed_validation_is_a_value_error(changes: dict[str, Any]) -> None:
    # msgspec validates a Cadence when decoding, not when constructing it in Python.
    cadence = Cadence(**changes)
    with pytest.raises(ValueError, match="cadence"):
        check_in(cadence, BERLIN, date(2026, 1, 5), 0)


def test_start_must_be_a_date() -> None:
    with pytest.raises(TypeError, match="start"):
        check_in(MONDAY_9, BERLIN, cast(date, datetime(2026, 1, 5, 12, tzinfo=UTC)), 0)


# --- sweep against a naive reference --------------------------------------------------------------


def reference_utc(wall: datetime, timezone: str) -> datetime:
    """Resolve a local wall-clock time the slow way: first matching instant, else first after the gap."""
    zone = ZoneInfo(timezone)
    offsets = {
        (wall + timedelta(hours=h)).replace(tzinfo=zone, fold=fold).utcoffset()
        for h in range(-26, 27, 2)
        for fold in (0, 1)
    }
    candidates = sorted((wall - offset).replace(tzinfo=UTC) for offset in offsets if offset is not None)
    matching = [c for c in candidates if c.astimezone(zone).replace(tzinfo=None) == wall]
    if matching:
        return matching[0]
    instant = candidates[0]
    while instant.astimezone(zone).replace(tzinfo=None) < wall:
        instant += timedelta(minutes=1)
    return instant


def reference_days(frequency: str, weekday: int, start: date, count: int) -> list[date]:
    """Check-in days by walking the calendar one day at a time."""
    days: list[date] = []
    day = start
    while len(days) < count:
        if day.weekday() == weekday and (frequency != "monthly" or day.day <= 7):
            days.append(day)
        day += timedelta(days=1)
    if frequency == "biweekly":
        while len(days) < 2 * count:
            if day.weekday() == weekday:
                days.append(day)
            day += timedelta(days=1)
        days = days[::2]
    return days[:count]


SWEEP_ZONES = [
    BERLIN,
    "America/New_York",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "America/Havana",
    "America/Santiago",
    "Pacific/Apia",
    "Asia/Kathmandu",
    "UTC",
]
SWEEP_CADENCES = [
    ("weekly", "sun", "02:30"),
    ("weekly", "sun", "00:30"),
    ("weekly", "mon", "09:00"),
    ("biweekly", "sat", "23:45"),
    ("biweekly", "sun", "01:30"),
    ("monthly", "sun", "02:15"),
    ("monthly", "fri", "00:00"),
]
SWEEP_STARTS = [date(2011, 11, 30), date(2024, 2, 26), date(2025, 9, 1), date(2026, 3, 1), date(2026, 10, 31)]
WEEKDAY_NUMBERS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}


@pytest.mark.parametrize("timezone", SWEEP_ZONES)
@pytest.mark.parametrize(("frequency", "weekday", "local_time"), SWEEP_CADENCES)
def test_sweep_agrees_with_reference(frequency: Frequency, weekday: Weekday, local_time: str, timezone: str) -> None:
    cadence = Cadence(frequency=frequency, weekday=weekday, local_time=local_time, window_hours=20)
    hour, minute = map(int, local_time.split(":"))
    count = {"weekly": 60, "biweekly": 30, "monthly": 14}[frequency]
    tick = timedelta(microseconds=1)
    for start in SWEEP_STARTS:
        days = reference_days(frequency, WEEKDAY_NUMBERS[weekday], start, count + 1)
        expected = [
            reference_utc(datetime.combine(d, datetime.min.time()).replace(hour=hour, minute=minute), timezone)
            for d in days
        ]
        actual = [check_in(cadence, timezone, start, n) for n in range(count + 1)]
        assert actual == expected, (start, [(a, e) for a, e in zip(actual, expected, strict=True) if a != e][:3])
        assert all(a < b for a, b in itertools.pairwise(actual))
        assert cycle_at(cadence, timezone, start, actual[0] - tick) is None
        for n in range(count):
            cycle = Cycle(n, actual[n], actual[n] + timedelta(hours=20), actual[n + 1])
            assert cycle_by_index(cadence, timezone, start, n) == cycle
            for at in (actual[n], actual[n] + timedelta(hours=20), actual[n + 1] - tick):
                assert cycle_at(cadence, timezone, start, at) == cycle, (start, n, at)
        window = cycles_between(cadence, timezone, start, actual[2] - tick, actual[count])
        assert [c.index for c in window] == list(range(2, count))


def test_cycle_at_does_not_walk_from_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    # cycle_at runs on every report post, for convoys that run for years: it must compute the
    # index, not step through every check-in since the start. Count the local-time resolutions.
    from services.runtime import cycles

    calls = 0
    resolve = cycles._local_to_utc

    def counting(wall: datetime, zone: Any) -> datetime:
        nonlocal calls
        calls += 1
        return resolve(wall, zone)

    monkeypatch.setattr(cycles, "_local_to_utc", counting)
    for cadence in (MONDAY_9, FIRST_TUESDAY, Cadence(frequency="biweekly", weekday="fri", local_time="00:00")):
        calls = 0
        cycle = cycle_at(cadence, BERLIN, date(2000, 1, 1), utc(2075, 6, 15, 12))
        assert cycle is not None and cycle.index > 500
        assert calls <= 5, cadence
