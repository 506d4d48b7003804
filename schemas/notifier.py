"""The contract of notifier/: delivery of email and chat messages, notification preferences.

Operations are answered by the handler marked with the operation (``@Notifier.X``);
see schemas/contract.py.
"""

from schemas import api
from schemas import events as ev
from schemas.contract import EDGE, Contract, Op


class Notifier(Contract, service="notifier"):
    CONSUMERS = {
        "erasure": (ev.PersonErased,),
        "reports": (ev.ReportSubmitted,),
        "help": (ev.HelpOffered,),
        "help_requests": (ev.HelpRequested,),
        "messages": (ev.EmailRequested, ev.PoolContactDeleted),
        "prompts": (ev.CycleOpened, ev.NudgeDue),
        "digests": (ev.CycleClosed,),
        "facilitator_digests": (ev.FacilitatorDigestDue,),
        "feedback": (ev.CommentAdded, ev.KudosGiven, ev.KudosTakenBack),
    }
    PUBLISHES = ()

    PREFS_GET = Op(api.PrefsAsk, api.NotificationPrefs, callers=EDGE)
    PREFS_PUT = Op(api.PutPrefs, api.NotificationPrefs, callers=EDGE)
    UNSUBSCRIBE = Op(api.UnsubscribeAsk, api.Unsubscribed, callers=EDGE)
    PERSONAL_DATA = Op(api.Ask, api.PersonalData, callers=EDGE)
    """What a service stores about the asking person (``api.Ask``), for the JSON export."""
