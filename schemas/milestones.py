"""The contract of services/milestones/:
projects, milestone reports, comments, kudos, help offers, moderation and
flags, digests and the round boundary.

Operations are answered by the handler marked with the operation (``@Milestones.X``);
see schemas/contract.py.
"""

from schemas import api
from schemas import events as ev
from schemas.catalogue import Catalogue
from schemas.contract import EDGE, Contract, Op


class Milestones(Contract, service="milestones"):
    CONSUMERS = {
        "convoys": (
            ev.ConvoyCreated,
            ev.ConvoyUpdated,
            ev.ConvoyStatusChanged,
            ev.ConvoyFacilitatorAdded,
            ev.CompanyJoined,
            ev.CompanyLeft,
            ev.PersonJoined,
            ev.PersonRemoved,
            ev.CharterUpdated,
            ev.CharterAccepted,
            ev.ObserverJoined,
            ev.ObserverRemoved,
        ),
        "erasure": (ev.PersonErased,),
    }
    PUBLISHES = (
        ev.CommentAdded,
        ev.ContentFlagged,
        ev.ContentModerated,
        ev.FlagsResolved,
        ev.HelpOffered,
        ev.HelpRequested,
        ev.KudosGiven,
        ev.KudosTakenBack,
        ev.ReportSubmitted,
    )

    REPORT_SUBMIT = Op(api.SubmitReport, api.Report, callers={"admin", "api", "notifier"})
    REPORT_EDIT = Op(api.EditReport, api.Report, callers=EDGE)
    REPORT_GET = Op(api.GetReport, api.Report, callers={"api", "notifier"})
    REPORT_LIST = Op(api.ListReports, api.ReportList, callers=EDGE)
    TIMELINE = Op(api.Timeline, api.TimelinePage, callers={"admin", "api"})
    SEARCH = Op(api.Search, api.SearchResults, callers=EDGE)
    EXPORT = Op(api.ExportAsk, api.Export, callers=EDGE)
    BOARD = Op(api.ConvoyAsk, api.Board, callers={"admin", "api"})
    PROJECT_PUT = Op(api.PutProject, api.Project, callers={"admin", "api"})
    PROJECT_GET = Op(api.CompanyAction, api.Project, callers={"admin", "api", "notifier"})
    MILESTONE_ADD = Op(api.AddMilestone, api.Milestone, callers=EDGE)
    MILESTONE_CHANGE = Op(api.ChangeMilestone, api.Milestone, callers={"admin", "api"})
    MILESTONE_ORDER = Op(api.OrderMilestones, api.Project, callers=EDGE)
    COMMENT_ADD = Op(api.AddComment, api.Comment, callers={"api", "notifier"})
    COMMENT_LIST = Op(api.ReportAction, api.Comments, callers={"api", "notifier"})
    COMMENT_EDIT = Op(api.EditComment, api.Comment, callers=EDGE)
    """The author changes their comment's text (within CONVOY_COMMENT_EDIT_WINDOW_S)."""
    COMMENT_DELETE = Op(api.CommentAction, api.Comment, callers=EDGE)
    """The author deletes their comment (within the window); facilitators hide instead."""
    KUDOS_GIVE = Op(api.ReportAction, api.Report, callers=EDGE)
    KUDOS_TAKE_BACK = Op(api.ReportAction, api.Report, callers=EDGE)
    HELP_OFFER = Op(api.OfferHelp, api.HelpOffer, callers=EDGE)
    HELP_SUGGESTIONS = Op(api.ReportAction, api.HelpSuggestions, callers=EDGE)
    CATALOGUE = Op(api.Empty, Catalogue, callers=EDGE)
    CYCLE_STATUS = Op(api.CycleAsk, api.CycleStatus, callers={"notifier"})
    PROMPT_CONTEXT = Op(api.CycleAsk, api.PromptContexts, callers={"notifier"})
    DIGEST = Op(api.CycleAsk, api.Digest, callers={"notifier"})
    ROUNDS_SEAL = Op(api.SealRounds, api.RoundsSealed, callers={"reminders"})
    """services/reminders only: seal cycles before closing them (services/milestones: the round boundary)."""
    FACILITATOR_DIGEST = Op(api.FacilitatorDigestAsk, api.FacilitatorDigest, callers={"api", "notifier"})
    REPORT_IMPORT = Op(api.ImportReport, api.ImportedReport, callers={"admin"})
    """Admin only: file a report of a past, closed cycle with its historic times (services/milestones)."""
    REPORT_HIDE = Op(api.ModerateReport, api.Report, callers=EDGE)
    REPORT_RESTORE = Op(api.ModerateReport, api.Report, callers=EDGE)
    REPORT_LOCK_COMMENTS = Op(api.LockComments, api.Report, callers=EDGE)
    """Lock or unlock a report's comments (``LockComments.locked``)."""
    COMMENT_HIDE = Op(api.ModerateComment, api.Comment, callers=EDGE)
    COMMENT_RESTORE = Op(api.ModerateComment, api.Comment, callers=EDGE)
    FLAG_CREATE = Op(api.FlagContent, api.FlagReceipt, callers=EDGE)
    """A member flags a report or comment (``api.FlagContent``); one open flag per person and object."""
    FLAG_QUEUE = Op(api.ConvoyAsk, api.FlagQueue, callers=EDGE)
    """The convoy's open flags, grouped by object (facilitators and admins)."""
    FLAG_RESOLVE = Op(api.ResolveFlag, api.FlagOutcome, callers=EDGE)
    """Dismiss or act on (hide) a flagged object: resolves every open flag on it (facilitators and admins)."""
    PERSONAL_DATA = Op(api.Ask, api.PersonalData, callers=EDGE)
    """What a service stores about the asking person (``api.Ask``), for the JSON export."""
    RETENTION_PURGE = Op(api.RetentionPurge, api.Purged, callers={"admin"})
    """services/milestones: remove the content of companies that left longer ago than their convoy keeps it."""
    ACCESS_REVOKE = Op(api.RevokeAccess, api.Revoked, callers={"convoys"})
    """services/convoys only: a removal takes effect here before it is answered (the event path follows,
    idempotent)."""
    CHARTER_SET = Op(api.SetCharterVersion, api.Accepted, callers={"convoys"})
    """services/convoys only: a charter change binds here before it is answered (its ``charter.updated``
    event follows, idempotent)."""
    CHECK_OUTCOMES = Op(api.OutcomesAsk, api.Outcomes, callers={"convoys"})
    FEEDBACK_REPORTS = Op(api.FeedbackAsk, api.FeedbackReports, callers={"notifier"})
    """services/notifier only: what its feedback emails need of their reports (hidden, company, kudos),
    for all the batches of a flush pass in one request and one statement."""
