"""Domain events and notifier messages: frozen, keyword-only, past tense, carrying ids.

Events carry structs of their own (never an HTTP reply type from ``schemas/api.py``). Evolve an
event by adding fields with defaults; a breaking change gets a new SCHEMA_VERSION and a new class.
``CHANNEL`` picks the stream: ``events`` (kept 30 days, for projections) or ``messages`` (kept one
day: requests to the notifier that may carry one-time links). Every type here has a consumer.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import ClassVar, Literal

import msgspec

from schemas.values import Cadence


class Event(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    TYPE: ClassVar[str]
    CHANNEL: ClassVar[str] = "events"
    SCHEMA_VERSION: ClassVar[int] = 1


# --- convoys -----------------------------------------------------------------------------------
class ConvoyCreated(Event, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "convoy.created"
    convoy_id: uuid.UUID
    name: str
    timezone: str
    language: str
    cadence: Cadence = Cadence()
    start_date: date | None = None
    end_date: date | None = None
    facilitator_id: uuid.UUID | None = None
    retention_days: int | None = None
    """Days a company's reports and comments stay after it left (None: kept for the convoy)."""


class ConvoyUpdated(Event, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "convoy.updated"
    convoy_id: uuid.UUID
    name: str
    timezone: str
    language: str
    cadence: Cadence
    start_date: date | None
    end_date: date | None
    retention_days: int | None = None


class ConvoyStatusChanged(Event, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "convoy.status_changed"
    convoy_id: uuid.UUID
    old_status: str
    new_status: str
    actor_id: uuid.UUID | None = None
    reason: str = ""


class ConvoyFacilitatorAdded(Event, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "convoy.facilitator_added"
    convoy_id: uuid.UUID
    person_id: uuid.UUID


class CompanyJoined(Event, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "company.joined"
    convoy_id: uuid.UUID
    company_id: uuid.UUID
    name: str


class CompanyLeft(Event, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "company.left"
    convoy_id: uuid.UUID
    company_id: uuid.UUID
    reason: str = ""


class PersonJoined(Event, frozen=True, kw_only=True):
    """A representative became a member of a company in a convoy."""

    TYPE: ClassVar[str] = "person.joined"
    convoy_id: uuid.UUID
    company_id: uuid.UUID
    person_id: uuid.UUID
    charter_version: int | None = None
    """The charter version accepted with the invitation (0: none; None: an event from before it was sent)."""


class CharterUpdated(Event, frozen=True, kw_only=True):
    """A facilitator changed the convoy's charter: ``version`` is its current version, which every
    representative accepts before they write again (services/milestones projects it)."""

    TYPE: ClassVar[str] = "charter.updated"
    convoy_id: uuid.UUID
    version: int


class CharterAccepted(Event, frozen=True, kw_only=True):
    """A representative accepted the convoy's charter at ``version`` (``POST …/charter/accept``;
    the acceptance with the invitation comes as ``person.joined``'s ``charter_version``)."""

    TYPE: ClassVar[str] = "charter.accepted"
    convoy_id: uuid.UUID
    company_id: uuid.UUID
    person_id: uuid.UUID
    version: int


class PersonRemoved(Event, frozen=True, kw_only=True):
    """A representative left a convoy (removed by a facilitator, or with their company)."""

    TYPE: ClassVar[str] = "person.removed"
    convoy_id: uuid.UUID
    company_id: uuid.UUID
    person_id: uuid.UUID
    reason: str = ""


class ObserverJoined(Event, frozen=True, kw_only=True):
    """A person took an observer seat in a convoy: they read what members read and get the digest,
    and write nothing. ``company_id``: the company that invited them as its second reader (None: the
    facilitators did)."""

    TYPE: ClassVar[str] = "observer.joined"
    convoy_id: uuid.UUID
    person_id: uuid.UUID
    company_id: uuid.UUID | None = None


class ObserverRemoved(Event, frozen=True, kw_only=True):
    """An observer seat ended (removed by a facilitator, with the company that invited them, or the
    observer deleted their account)."""

    TYPE: ClassVar[str] = "observer.removed"
    convoy_id: uuid.UUID
    person_id: uuid.UUID
    reason: str = ""


# --- reports -----------------------------------------------------------------------------------
class MilestoneMoved(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A milestone a report moved, as it stood then."""

    milestone_id: uuid.UUID
    title: str
    status: str


class ReportSnapshot(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A report as written, as peers read it (no facilitator note): what ``report.submitted`` carries.

    Its fields are named as the HTTP reply's (``api.Report``), so the events in the stream from when
    it carried that reply decode as this (msgspec skips the fields not named here)."""

    id: uuid.UUID
    convoy_id: uuid.UUID
    company_id: uuid.UUID
    company_name: str
    author_id: uuid.UUID
    cycle_index: int
    late: bool
    submitted_at: datetime
    done: str
    """Markdown as written (consumers render it with services/runtime/markdown.py)."""
    next: str
    blockers: str
    help_wanted: bool
    help_topic: str
    help_milestone_id: uuid.UUID | None
    mood: int | None
    milestones: list[MilestoneMoved] = []


class ReportSubmitted(Event, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "report.submitted"
    convoy_id: uuid.UUID
    company_id: uuid.UUID
    report_id: uuid.UUID
    author_id: uuid.UUID
    report: ReportSnapshot
    """The report as written (never hidden at that moment), so the notifier need not read it back.
    The text stays in the events stream for its retention time (30 days), hidden or purged later or not."""


class CommentAdded(Event, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "comment.added"
    convoy_id: uuid.UUID
    report_id: uuid.UUID
    comment_id: uuid.UUID
    author_id: uuid.UUID
    parent_id: uuid.UUID | None = None


class KudosGiven(Event, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "kudos.given"
    convoy_id: uuid.UUID
    report_id: uuid.UUID
    person_id: uuid.UUID


class KudosTakenBack(Event, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "kudos.taken_back"
    convoy_id: uuid.UUID
    report_id: uuid.UUID
    person_id: uuid.UUID


class HelpRequested(Event, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "help.requested"
    convoy_id: uuid.UUID
    company_id: uuid.UUID
    report_id: uuid.UUID
    milestone_id: uuid.UUID | None = None


class HelpOffered(Event, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "help.offered"
    convoy_id: uuid.UUID
    report_id: uuid.UUID
    offer_id: uuid.UUID
    person_id: uuid.UUID
    message: str = ""


# --- check-in cycles (services/reminders) ------------------------------------------------------
class Absence(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A company that is not expected to report in a cycle, and why peers see no report."""

    company_id: uuid.UUID
    kind: Literal["away", "skipped"]
    reason: str = ""


class CycleOpened(Event, frozen=True, kw_only=True):
    """A check-in cycle opened: prompt every representative (except absent companies)."""

    TYPE: ClassVar[str] = "cycle.opened"
    convoy_id: uuid.UUID
    cycle_index: int
    opens_at: datetime
    due_at: datetime
    closes_at: datetime
    absences: list[Absence] = []


class NudgeDue(Event, frozen=True, kw_only=True):
    """Time for nudge number ``nudge`` (1-based): remind companies that have not reported yet."""

    TYPE: ClassVar[str] = "cycle.nudge_due"
    convoy_id: uuid.UUID
    cycle_index: int
    nudge: int
    due_at: datetime
    absences: list[Absence] = []


class CycleClosed(Event, frozen=True, kw_only=True):
    """A check-in cycle closed: send the digest to every member and the convoy's Slack channel."""

    TYPE: ClassVar[str] = "cycle.closed"
    convoy_id: uuid.UUID
    cycle_index: int
    opens_at: datetime
    closes_at: datetime
    absences: list[Absence] = []


class FacilitatorDigestDue(Event, frozen=True, kw_only=True):
    """Time for the weekly facilitator digest (period: ISO week, e.g. 2026-W48)."""

    TYPE: ClassVar[str] = "facilitator_digest.due"
    period: str
    at: datetime


# --- moderation --------------------------------------------------------------------------------
ModerationAction = Literal[
    "report.hidden", "report.restored", "comment.hidden", "comment.restored", "comments.locked", "comments.unlocked"
]


class ContentModerated(Event, frozen=True, kw_only=True):
    """A facilitator (or admin: ``actor_id`` None for the admin token) hid or restored a report or
    comment, or locked or unlocked a report's comments. services/convoys records it in the audit
    log and tells the author of hidden content why."""

    TYPE: ClassVar[str] = "content.moderated"
    convoy_id: uuid.UUID
    actor_id: uuid.UUID | None
    action: ModerationAction
    object_type: Literal["report", "comment"]
    object_id: uuid.UUID
    report_id: uuid.UUID
    company_id: uuid.UUID
    """The company whose report it is (or is on)."""
    author_id: uuid.UUID
    """Who wrote the report or comment."""
    reason: str = ""


# --- messages to the notifier ------------------------------------------------------------------
EmailTemplate = Literal[
    "invitation",
    "sign_in",
    "facilitator_appointed",
    "join_request_received",
    "join_request_declined",
    "member_removed",
    "help_offered",
    "slack_disabled",
    "chat_disabled",
    "report_hidden",
    "comment_hidden",
    "content_flagged",
    "pool_request_received",
    "observer_invitation",
    "observer_removed",
    "pool_joined",
]


class EmailRequested(Event, frozen=True, kw_only=True):
    """Send one email from a template, in the recipient's language; ``key`` makes it once-only.

    Parameters each template uses (all strings; user text is escaped when rendered):

    - ``invitation``: convoy, company, inviter, link, expires (a date people read)
    - ``sign_in``: link, minutes (how long the link works)
    - ``facilitator_appointed``: link (where to sign in)
    - ``join_request_received`` (to facilitators): convoy, link (the request queue); nothing the anonymous
      sender typed
    - ``join_request_declined`` (to the asking contact): convoy, company, reason
    - ``member_removed``: convoy, company, reason
    - ``help_offered`` (to the report's author): convoy, helper, company, topic, message, link
    - ``slack_disabled`` (to the convoy's facilitators): convoy, link, reason
    - ``chat_disabled`` (to the convoy's facilitators, any chat channel but Slack): convoy, channel (its
      name, e.g. "Microsoft Teams"), link, reason
    - ``report_hidden`` (to the report's author): convoy, company, reason
    - ``comment_hidden`` (to the comment's author): convoy, company (of the report), link (to it), reason
    - ``content_flagged`` (to the convoy's facilitators): convoy, company (whose report it is or is on),
      what (words for the object, e.g. "einen Kommentar zum Bericht"), category (the flag's reason, in words),
      link (to the moderation queue), note (the member's own words)
    - ``pool_request_received`` (to every facilitator): theme (words), link (the formation pool); nothing the
      anonymous sender typed
    - ``observer_invitation``: convoy, inviter, link, expires (an invitation to read along as an observer)
    - ``observer_removed``: convoy, reason
    - ``pool_joined`` (to the contact who joined the formation pool): theme (words), days (how long the
      contact is kept), link (the signed withdraw page); nothing the sender typed

    On the bus ``to_email``, ``to_name`` and ``params`` are empty and travel in ``sealed``, encrypted for the
    notifier (services/runtime/sealing.py: the producer's runtime seals every one it emits); the subject ends
    in a tag of the recipient's address, so an erasure purges the person's messages by subject. ``key`` names
    ids and hashes only, never a token.
    """

    TYPE: ClassVar[str] = "email.requested"
    CHANNEL: ClassVar[str] = "messages"
    key: str
    to_email: str = ""
    to_name: str = ""
    language: str = "de"
    template: EmailTemplate
    params: dict[str, str] = {}
    sealed: str = ""
    """Base64 of a sealed box (the notifier's X25519 key) holding ``to_email``, ``to_name`` and ``params``."""


class PoolContactDeleted(Event, frozen=True, kw_only=True):
    """A formation-pool contact was deleted (withdrawn by its link or the check result, or expired): the
    notifier forgets the address in the delivery log of its confirmation. On the messages channel with the
    confirmation's ``key``, so it is handled after that email (one lane per key)."""

    TYPE: ClassVar[str] = "pool.contact_deleted"
    CHANNEL: ClassVar[str] = "messages"
    request_id: uuid.UUID
    key: str
    """The confirmation's EmailRequested key (``pool_joined:<request_id>``)."""


# --- data protection ---------------------------------------------------------------------------
class FormerMembership(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    convoy_id: uuid.UUID
    company_id: uuid.UUID


class PersonErased(Event, frozen=True, kw_only=True):
    """A person deleted their account: services/convoys erased name, email, tokens and sessions;
    every service erases what it holds about them (idempotently). Carries no name and no address:
    ``email_sha256`` (hex SHA-256 of the lower-cased address) lets the notifier find its delivery
    log rows and drop messages to that address still in flight."""

    TYPE: ClassVar[str] = "person.erased"
    person_id: uuid.UUID
    email_sha256: str
    memberships: list[FormerMembership] = []
    """Every company they represented (oldest first): their content stays, attributed to
    "a former representative of <company>"."""
    facilitated: list[uuid.UUID] = []
    """Convoys they facilitated."""
    observed: list[uuid.UUID] = []
    """Convoys where they had an observer seat (ended with ``observer.removed`` before this event)."""


# --- flags and charter -------------------------------------------------------------------------
class ContentFlagged(Event, frozen=True, kw_only=True):
    """A member flagged a report or comment (services/milestones). services/convoys records it in the
    audit log and emails the convoy's facilitators at once."""

    TYPE: ClassVar[str] = "content.flagged"
    convoy_id: uuid.UUID
    flag_id: uuid.UUID
    flagged_by: uuid.UUID
    object_type: Literal["report", "comment"]
    object_id: uuid.UUID
    report_id: uuid.UUID
    company_id: uuid.UUID
    """The company whose report it is (or is on)."""
    author_id: uuid.UUID
    reason: str
    """spam, off_topic, confidential, offensive or other."""
    note: str = ""


class FlagsResolved(Event, frozen=True, kw_only=True):
    """A facilitator (or admin: ``actor_id`` None for the admin token) resolved every open flag on a
    report or comment: ``dismissed`` (nothing changed) or ``acted`` (hidden; the hide itself comes as
    its own ``content.moderated``). services/convoys records it in the audit log."""

    TYPE: ClassVar[str] = "content.flags_resolved"
    convoy_id: uuid.UUID
    actor_id: uuid.UUID | None
    action: Literal["dismissed", "acted"]
    object_type: Literal["report", "comment"]
    object_id: uuid.UUID
    report_id: uuid.UUID
    flag_ids: list[uuid.UUID]
    reason: str = ""


EVENT_TYPES: tuple[type[Event], ...] = (
    ConvoyCreated,
    ConvoyUpdated,
    ConvoyStatusChanged,
    ConvoyFacilitatorAdded,
    CompanyJoined,
    CompanyLeft,
    PersonJoined,
    PersonRemoved,
    CharterUpdated,
    CharterAccepted,
    ObserverJoined,
    ObserverRemoved,
    ReportSubmitted,
    CommentAdded,
    KudosGiven,
    KudosTakenBack,
    HelpRequested,
    HelpOffered,
    CycleOpened,
    NudgeDue,
    CycleClosed,
    FacilitatorDigestDue,
    EmailRequested,
    PoolContactDeleted,
    ContentModerated,
    PersonErased,
    ContentFlagged,
    FlagsResolved,
)
"""Every event and message type; the envelope codec builds one decoder per entry."""
