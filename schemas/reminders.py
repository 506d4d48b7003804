"""The contract of services/reminders/: each convoy's schedule: rounds, prompts, nudges, closes, absences.

Operations are answered by the handler marked with the operation (``@Reminders.X``);
see schemas/contract.py.
"""

from schemas import api
from schemas import events as ev
from schemas.contract import EDGE, Contract, Op


class Reminders(Contract, service="reminders"):
    CONSUMERS = {
        "convoys": (ev.ConvoyCreated, ev.ConvoyUpdated, ev.ConvoyStatusChanged, ev.CompanyJoined, ev.CompanyLeft),
        "erasure": (ev.PersonErased,),
    }
    PUBLISHES = (ev.CycleClosed, ev.CycleOpened, ev.FacilitatorDigestDue, ev.NudgeDue)

    SCHEDULE = Op(api.AskSchedule, api.Schedule, callers={"admin", "api"})
    SCHEDULE_SETTINGS = Op(api.PutScheduleSettings, api.Schedule, callers=EDGE)
    CYCLE_SKIP = Op(api.SkipCycle, api.Schedule, callers=EDGE)
    COMPANY_AWAY = Op(api.MarkAway, api.Schedule, callers=EDGE)
    COMPANY_SKIP = Op(api.SkipForCompany, api.Schedule, callers=EDGE)
    PROMPT_NOW = Op(api.FireNow, api.Fired, callers=EDGE)
    CLOSE_NOW = Op(api.FireNow, api.Fired, callers=EDGE)
    CALENDAR_ROUNDS = Op(api.AskCalendarRounds, api.CalendarRounds, callers=EDGE)
    """services/reminders (system callers): the rounds of several convoys around now, for the feeds."""
    PERSONAL_DATA = Op(api.Ask, api.PersonalData, callers=EDGE)
    """What a service stores about the asking person (``api.Ask``), for the JSON export."""
    TICK = Op(api.Tick, api.Fired, callers={"admin"})
