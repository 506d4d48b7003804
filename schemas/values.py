"""Value types shared by events and API bodies."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

Frequency = Literal["weekly", "biweekly", "monthly"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ConvoyStatus = Literal["forming", "active", "paused", "completed"]
SizeClass = Literal["", "1-9", "10-49", "50-249", "250+"]
Bundesland = Literal["", "BW", "BY", "BE", "BB", "HB", "HH", "HE", "MV", "NI", "NW", "RP", "SL", "SN", "ST", "SH", "TH"]
"""German state (ISO 3166-2:DE suffix), or empty when not given."""

PERIOD_HOURS: dict[str, int] = {"weekly": 7 * 24, "biweekly": 14 * 24, "monthly": 28 * 24}
"""Shortest length of a cycle of each frequency (a month has at least 28 days)."""


class Cadence(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """When a convoy checks in: e.g. every Monday 09:00 local time, window open for 72 hours.

    ``monthly`` means the first given weekday of each month.
    """

    frequency: Frequency = "weekly"
    weekday: Weekday = "mon"
    local_time: Annotated[str, Meta(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM, 24 h")] = "09:00"
    window_hours: Annotated[int, Meta(ge=1, le=24 * 28)] = 72
