"""The contract of notifier/: delivery of email and chat messages, notification preferences.

Operations are answered by the handler marked with the operation (``@Notifier.X``);
see schemas/contract.py.
"""

from schemas import api
from schemas import events as ev
from schemas.contract import EDGE, Contract, Op


class Notifier(Contract, service="notifier"):
    CONSUMES = (
        ev.CommentAdded,
        ev.CycleClosed,
        ev.CycleOpened,
        ev.EmailRequested,
        ev.FacilitatorDigestDue,
        ev.HelpOffered,
        ev.HelpRequested,
        ev.KudosGiven,
        ev.KudosTakenBack,
        ev.NudgeDue,
        ev.PersonErased,
        ev.ReportSubmitted,
    )
    PUBLISHES = ()

    PREFS_GET = Op(api.PrefsAsk, api.NotificationPrefs, callers=EDGE)
    PREFS_PUT = Op(api.PutPrefs, api.NotificationPrefs, callers=EDGE)
    UNSUBSCRIBE = Op(api.UnsubscribeAsk, api.Unsubscribed, callers=EDGE)
    PERSONAL_DATA = Op(api.Ask, api.PersonalData, callers=EDGE)
    """What a service stores about the asking person (``api.Ask``), for the JSON export."""
