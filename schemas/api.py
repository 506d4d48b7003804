"""Requests and replies: the HTTP bodies at the edge and the NATS request/reply messages.

Validation happens here, once: msgspec checks types and the constraints below when the API
decodes a body, and again when a service decodes a request (a service never trusts its caller
to have validated).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from schemas.values import Bundesland, Cadence, ConvoyStatus, SizeClass

Name = Annotated[str, Meta(min_length=1, max_length=200, description="1 to 200 characters")]
ShortText = Annotated[str, Meta(max_length=200)]
LongText = Annotated[str, Meta(max_length=5000)]
ReportText = Annotated[str, Meta(max_length=20000)]
Email = Annotated[
    str,
    Meta(
        pattern=r"^[^@\s<>\"']+@[^@\s<>\"']+\.[^@\s<>\"']+$",
        max_length=254,
        description="an email address such as anna@example.de",
    ),
]
Language = Literal["de", "en"]
Mood = Annotated[int, Meta(ge=1, le=5, description="confidence from 1 (low) to 5 (high)")]


# ``gc=False`` on the bases of every message (here, schemas/events.py, schemas/envelope.py): they are trees
# of plain data that never refer back to themselves, so the garbage collector need not track them; the caches
# that keep tens of thousands of answers (recipients, tokens) then add nothing to a full collection (issue #21).
class Body(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, gc=False):
    """Base for bodies a client sends: unknown fields are an error, not silently dropped."""


class Reply(msgspec.Struct, kw_only=True, gc=False):
    """Base for what services answer."""


# --- who is asking -----------------------------------------------------------------------------
class Actor(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The authenticated caller, as established by the API edge (or a service acting itself)."""

    person_id: uuid.UUID | None = None
    is_admin: bool = False
    is_facilitator: bool = False
    is_system: bool = False


SYSTEM = Actor(is_system=True)
ANONYMOUS = Actor()

Timezone = Annotated[str, Meta(min_length=1, max_length=64, description="IANA time zone", examples=["Europe/Berlin"])]
Reason = Annotated[str, Meta(min_length=1, max_length=1000, description="why; kept in the audit log")]
Token = Annotated[str, Meta(min_length=10, max_length=200)]


# --- people ------------------------------------------------------------------------------------
class PersonRef(Reply, kw_only=True):
    person_id: uuid.UUID
    name: str


class Person(Reply, kw_only=True):
    id: uuid.UUID
    name: str
    email: str
    language: str
    timezone: str
    is_admin: bool
    is_facilitator: bool


class NewFacilitator(Body, kw_only=True):
    name: Name
    email: Email
    language: Language = "de"
    timezone: Timezone = "Europe/Berlin"


class MyConvoy(Reply, kw_only=True):
    convoy_id: uuid.UUID
    name: str
    status: str
    role: Literal["facilitator", "representative", "observer"]
    company_id: uuid.UUID | None = None
    company_name: str = ""
    charter_accepted: bool = True
    """False: a representative who has not yet accepted the convoy's current charter (it changed since
    they joined); until they do (POST /api/v1/convoys/{id}/charter/accept) they cannot post reports or
    comments there. Always true for facilitators."""


class Me(Reply, kw_only=True):
    person: Person
    convoys: list[MyConvoy]


class ProfilePatch(Body, kw_only=True):
    name: Name | msgspec.UnsetType = msgspec.UNSET
    language: Language | msgspec.UnsetType = msgspec.UNSET
    timezone: Timezone | msgspec.UnsetType = msgspec.UNSET


# --- convoys -----------------------------------------------------------------------------------
RetentionDays = Annotated[int, Meta(ge=0, le=3650, description="days a company's content stays after it left")]


class NewConvoy(Body, kw_only=True):
    name: Name
    theme: ShortText = ""
    description: LongText = ""
    cadence: Cadence = Cadence()
    timezone: Timezone = "Europe/Berlin"
    language: Language = "de"
    start_date: date | None = None
    end_date: date | None = None
    open_for_requests: bool = False
    """Whether companies may ask to join (they appear in the list of open convoys)."""
    retention_days: RetentionDays | None = None
    """What happens to a company's reports and comments after it leaves: None keeps them for the
    convoy; N removes them N days after it left (0: at the next purge, within the hour)."""
    share_anonymised_results: bool = False
    """Whether this convoy's project outcomes may count, aggregated and anonymised (groups of at least
    three companies), in what the digitalisation check tells companies that similar ones achieved."""


class ConvoyPatch(Body, kw_only=True):
    name: Name | msgspec.UnsetType = msgspec.UNSET
    theme: ShortText | msgspec.UnsetType = msgspec.UNSET
    description: LongText | msgspec.UnsetType = msgspec.UNSET
    cadence: Cadence | msgspec.UnsetType = msgspec.UNSET
    timezone: Timezone | msgspec.UnsetType = msgspec.UNSET
    language: Language | msgspec.UnsetType = msgspec.UNSET
    start_date: date | msgspec.UnsetType | None = msgspec.UNSET
    end_date: date | msgspec.UnsetType | None = msgspec.UNSET
    open_for_requests: bool | msgspec.UnsetType = msgspec.UNSET
    retention_days: RetentionDays | msgspec.UnsetType | None = msgspec.UNSET
    share_anonymised_results: bool | msgspec.UnsetType = msgspec.UNSET


class StatusChange(Body, kw_only=True):
    status: ConvoyStatus
    reason: ShortText = ""


class Company(Reply, kw_only=True):
    id: uuid.UUID
    convoy_id: uuid.UUID
    name: str
    sector: str
    size_class: str
    region: str
    representatives: list[PersonRef] = []


class SlackWebhook(Body, kw_only=True):
    webhook_url: Annotated[str, Meta(max_length=500)] | None
    """A Slack incoming-webhook URL (https://hooks.slack.com/services/…); null removes it."""
    post_reports: bool = False
    """Post each new report to the channel too (digests are always posted)."""


class SetSlack(Body, kw_only=True):
    actor: Actor
    convoy_id: uuid.UUID
    slack: SlackWebhook


ChatChannelName = Literal["slack", "teams"]
"""The chat channels a convoy can post to (the notifier's ``notifier.chat.CHANNELS``)."""


class ChatWebhook(Body, kw_only=True):
    webhook_url: Annotated[str, Meta(max_length=1000)] | None
    """The channel's webhook URL (Teams: a Workflows "when a Teams webhook request is received" URL,
    https://….logic.azure.com/workflows/… or https://….powerplatform.com/…); null removes it."""
    post_reports: bool = False
    """Post each new report to the channel too (digests are always posted)."""


class SetChat(Body, kw_only=True):
    actor: Actor
    convoy_id: uuid.UUID
    channel: ChatChannelName
    hook: ChatWebhook
    only_if_url: str | None = None
    """Removing (``hook.webhook_url`` null): only if the stored URL is still this one (the notifier
    dropping a refused webhook must not drop one a facilitator set meanwhile)."""


class ChatTarget(Reply, kw_only=True):
    channel: str
    webhook_url: str
    post_reports: bool = False


class ChatTargets(Reply, kw_only=True):
    """A convoy's configured chat channels (``CONVOY_CHAT_GET``; internal: carries the secret URLs)."""

    convoy_id: uuid.UUID
    targets: list[ChatTarget] = []


class ObserverRef(Reply, kw_only=True):
    """An observer seat as members see it."""

    person_id: uuid.UUID
    name: str
    note: str = ""
    """Their organisation or role, as the inviter wrote it (e.g. "IHK, Digitalberatung")."""
    company_id: uuid.UUID | None = None
    """The company whose second reader they are (None: invited by the facilitators)."""
    company_name: str = ""


class Convoy(Reply, kw_only=True):
    id: uuid.UUID
    name: str
    theme: str
    description: str
    cadence: Cadence
    timezone: str
    language: str
    start_date: date | None
    end_date: date | None
    open_for_requests: bool
    status: str
    created_at: datetime
    slack_configured: bool = False
    teams_configured: bool = False
    """Whether a Microsoft Teams webhook is set (its URL is shown to facilitators only)."""
    facilitators: list[PersonRef] = []
    companies: list[Company] = []
    retention_days: int | None = None
    """None: a company's content stays when it leaves; N: removed N days after it left."""
    share_anonymised_results: bool = False
    observers: list[ObserverRef] = []
    """People who read along without reporting (chamber advisor, funder, a company's second reader)."""


class OpenConvoy(Reply, kw_only=True):
    id: uuid.UUID
    name: str
    theme: str
    description: str
    language: str
    status: str
    companies: int


class OpenConvoys(Reply, kw_only=True):
    convoys: list[OpenConvoy]


class NewCompany(Body, kw_only=True):
    name: Name
    sector: ShortText = ""
    size_class: SizeClass = ""
    region: Bundesland = ""


class Removal(Body, kw_only=True):
    reason: Reason


class NewInvitation(Body, kw_only=True):
    email: Email
    name: ShortText = ""
    language: Language = "de"


class NewObserverInvitation(Body, kw_only=True):
    """An observer reads along (timeline, reports, comments, board, digests) and writes nothing."""

    email: Email
    name: ShortText = ""
    language: Language = "de"
    note: ShortText = ""
    """Their organisation or role, shown to the convoy's members."""
    company_id: uuid.UUID | None = None
    """A representative invites a second reader for their own company (left out: their company);
    facilitators may leave it out (an observer of the convoy) or name any company of the convoy."""


class Invitation(Reply, kw_only=True):
    id: uuid.UUID
    convoy_id: uuid.UUID
    company_id: uuid.UUID | None
    """The company to represent; for an observer, the company whose second reader they are, or None."""
    email: str
    expires_at: datetime
    role: Literal["representative", "observer"] = "representative"


class PendingInvitation(Reply, kw_only=True):
    """An invitation not yet accepted, withdrawn or expired (facilitators see the address they typed)."""

    id: uuid.UUID
    email: str
    name: str
    language: str
    role: Literal["representative", "observer"]
    company_id: uuid.UUID | None
    company_name: str
    """The company to represent (an observer's: whose second reader, or '')."""
    created_at: datetime
    expires_at: datetime


class PendingInvitations(Reply, kw_only=True):
    invitations: list[PendingInvitation]


class InvitationPreview(Reply, kw_only=True):
    convoy_name: str
    company_name: str
    email: str
    name: str
    language: str
    expires_at: datetime
    charter: str = ""
    """The convoy's charter (current version): accepting the invitation accepts it."""
    charter_version: int = 0
    role: Literal["representative", "observer"] = "representative"
    """An observer reads along and writes nothing (``company_name``: '' or the company they read for)."""


class AcceptInvitation(Body, kw_only=True):
    """Accepting an invitation accepts the convoy's current charter too (show it with the invitation)."""

    token: Token
    name: Name
    language: Language = "de"
    timezone: Timezone = "Europe/Berlin"
    charter_version: Annotated[int, Meta(ge=1)] | None = None
    """The charter version the invitee was shown (``InvitationPreview.charter_version``): if the charter
    changed since, the answer is 409 and nothing happens. Leave it out to accept the current version."""


class NewJoinRequest(Body, kw_only=True):
    company: NewCompany
    contact_name: Name
    contact_email: Email
    contact_language: Language = "de"
    message: LongText = ""


class JoinRequest(Reply, kw_only=True):
    id: uuid.UUID
    convoy_id: uuid.UUID
    company_name: str
    sector: str
    size_class: str
    region: str
    contact_name: str
    contact_email: str
    message: str
    status: str
    reason: str
    created_at: datetime
    company_id: uuid.UUID | None = None


class JoinRequests(Reply, kw_only=True):
    requests: list[JoinRequest]


class JoinDecision(Body, kw_only=True):
    approve: bool
    reason: LongText = ""
    """Required when declining; the asking contact reads it."""


class AuditEntry(Reply, kw_only=True):
    id: int
    at: datetime
    convoy_id: uuid.UUID | None
    actor_id: uuid.UUID | None
    action: str
    object_type: str
    object_id: str
    reason: str
    details: dict[str, str]


class AuditLog(Reply, kw_only=True):
    entries: list[AuditEntry]


# --- sign-in, sessions and tokens --------------------------------------------------------------
class SignInRequest(Body, kw_only=True):
    email: Email
    next: Annotated[str, Meta(max_length=500, pattern=r"^/(?![/\\])[^\s\\]*$")] | None = None
    """A path on this site the emailed link returns to after sign-in (e.g. ``/convoys/{id}/report``)."""


class SignInAsk(Body, kw_only=True):
    """A sign-in request as the edge passes it on, with a keyed hash of the client's address (never the address).

    The per-address cap counts per address and client: a flood from one client for someone's address is answered
    as usual and sends nothing more, while her own request from her own client still gets its link.
    """

    sign_in: SignInRequest
    client: Annotated[str, Meta(max_length=64, pattern=r"^(?:[0-9a-f]{2})*$")] = ""
    """Hex HMAC of the client's address under the secret key (empty: unknown client)."""


class SignInComplete(Body, kw_only=True):
    token: Token


class SignedIn(Reply, kw_only=True):
    person: Person
    access_token: str
    """Bearer token for API clients; expires at access_expires_at."""
    access_expires_at: datetime
    session_token: str
    """Browser session (the API sets it as an HttpOnly cookie and leaves it out of the body)."""
    session_expires_at: datetime
    csrf_token: str
    """Send as X-CSRF-Token with every state-changing request made with the session cookie."""


class Accepted(Reply, kw_only=True):
    message: str


class SignInResult(Reply, kw_only=True):
    """What a browser or API client gets on sign-in (the session itself travels as a cookie)."""

    person: Person
    access_token: str
    access_expires_at: datetime
    session_expires_at: datetime
    csrf_token: str


class Principal(Reply, kw_only=True):
    """Who a token belongs to, as far as the edge needs to know."""

    person_id: uuid.UUID
    is_admin: bool
    is_facilitator: bool
    kind: Literal["api", "access", "browser"]
    csrf_token: str | None = None
    scope: ApiTokenScope = "read-write"
    """An API token's scope: ``read`` tokens are refused on anything that changes something (403)."""
    expires_at: datetime | None = None
    """When the token stops working (the edge does not keep it in its cache beyond that)."""


ApiTokenScope = Literal["read", "read-write"]


class NewApiToken(Body, kw_only=True):
    name: Name
    scope: Annotated[
        ApiTokenScope, Meta(description="`read`: GET requests only; `read-write`: everything you may do")
    ] = "read-write"
    expires_in_days: (
        Annotated[
            int,
            Meta(
                ge=1,
                description="days until it expires; default CONVOY_API_TOKEN_DAYS, at most CONVOY_API_TOKEN_MAX_DAYS",
            ),
        ]
        | None
    ) = None


class ApiToken(Reply, kw_only=True):
    id: uuid.UUID
    name: str
    created_at: datetime
    last_used_at: datetime | None
    """Approximate: recorded at most every few minutes."""
    scope: ApiTokenScope = "read-write"
    expires_at: datetime | None = None


class ApiTokenCreated(Reply, kw_only=True):
    token: ApiToken
    secret: str
    """The token itself, shown this once."""


class ApiTokens(Reply, kw_only=True):
    tokens: list[ApiToken]


# --- request/reply messages of services/convoys ---------------------------------------------------
class Ask(Body, kw_only=True):
    """A request made on behalf of ``actor``."""

    actor: Actor


class AskConvoy(Ask, kw_only=True):
    convoy_id: uuid.UUID


class CreateConvoy(Ask, kw_only=True):
    convoy: NewConvoy
    form_key: uuid.UUID | None = None
    """The create form's one-time token: the same person sending the same key again (back + resubmit)
    gets the convoy the first request created instead of a second one."""


class GetConvoy(AskConvoy, kw_only=True):
    pass


class UpdateConvoy(AskConvoy, kw_only=True):
    patch: ConvoyPatch


class ChangeStatus(AskConvoy, kw_only=True):
    change: StatusChange


class AddFacilitator(AskConvoy, kw_only=True):
    person_id: uuid.UUID


class AppointFacilitator(Ask, kw_only=True):
    facilitator: NewFacilitator


class AddCompany(AskConvoy, kw_only=True):
    company: NewCompany


class RemoveCompany(AskConvoy, kw_only=True):
    company_id: uuid.UUID
    removal: Removal


class RemoveMember(AskConvoy, kw_only=True):
    person_id: uuid.UUID
    removal: Removal


class CreateInvitation(AskConvoy, kw_only=True):
    company_id: uuid.UUID
    invitation: NewInvitation


class ListInvitations(AskConvoy, kw_only=True):
    pass


class InvitationAction(AskConvoy, kw_only=True):
    """Resend (a new link, the old one stops working) or withdraw a pending invitation."""

    invitation_id: uuid.UUID


class InviteObserver(AskConvoy, kw_only=True):
    invitation: NewObserverInvitation


class RemoveObserver(AskConvoy, kw_only=True):
    person_id: uuid.UUID
    removal: Removal


class PreviewInvitation(Body, kw_only=True):
    token: Token
    language: Language | None = None
    """The reader's language: the default charter comes in it (default: the invitation's language)."""


class AcceptInvitationRequest(Body, kw_only=True):
    accept: AcceptInvitation


class CreateJoinRequest(Body, kw_only=True):
    convoy_id: uuid.UUID
    request: NewJoinRequest


JoinRequestFilter = Literal["pending", "approved", "declined", "all"]


class ListJoinRequests(AskConvoy, kw_only=True):
    status: JoinRequestFilter = "pending"


class DecideJoinRequest(AskConvoy, kw_only=True):
    request_id: uuid.UUID
    decision: JoinDecision


class ListAudit(AskConvoy, kw_only=True):
    limit: Annotated[int, Meta(ge=1, le=1000)] = 200


class ResolveToken(Body, kw_only=True):
    token: Annotated[str, Meta(min_length=1, max_length=200)]


class ResolveTokens(Body, kw_only=True):
    """Several tokens at once: the edge resolves the tokens its requests bring in one loop tick together."""

    tokens: Annotated[list[Annotated[str, Meta(min_length=1, max_length=200)]], Meta(min_length=1, max_length=256)]


class ResolvedTokens(Reply, kw_only=True):
    principals: list[Principal | None]
    """One per token asked for, in the same order; None: unknown, expired or revoked."""


class SignOut(Body, kw_only=True):
    token: Annotated[str, Meta(min_length=1, max_length=200)]


class UpdateMe(Ask, kw_only=True):
    patch: ProfilePatch


class CreateApiToken(Ask, kw_only=True):
    request: NewApiToken


class RevokeApiToken(Ask, kw_only=True):
    token_id: uuid.UUID


class GetMembership(Body, kw_only=True):
    person_id: uuid.UUID
    convoy_id: uuid.UUID


class Membership(Reply, kw_only=True):
    person_id: uuid.UUID
    convoy_id: uuid.UUID
    company_ids: list[uuid.UUID]
    is_facilitator: bool = False
    charter_accepted: bool = False
    """Representatives: whether they accepted the convoy's current charter (false for non-members)."""
    company_names: dict[uuid.UUID, str] = {}
    """The names of ``company_ids``: a reader's projection may not have the company yet either."""
    is_observer: bool = False
    """An observer seat: reads what members read, writes nothing."""
    charter_version: int = 0
    """Representatives: the convoy's current charter version as this answer read it (0: not said), so a
    reader's projection of charters can learn it (services/milestones/access.py)."""


class RevokeAccess(Body, kw_only=True):
    """services/convoys tells a reader's projection, before answering a removal, that the person
    (``person_id``) or the whole company (``person_id`` None) no longer has a part in the convoy; with
    ``observer``, that the person no longer observes it (``company_id`` None)."""

    convoy_id: uuid.UUID
    company_id: uuid.UUID | None = None
    person_id: uuid.UUID | None = None
    observer: bool = False
    at: datetime
    """When services/convoys recorded the removal: a late ``person.joined`` from before it does not re-admit."""


class SetCharterVersion(Body, kw_only=True):
    """services/convoys tells services/milestones, before answering a charter change, the convoy's
    current charter version (representatives who accepted an older one no longer write)."""

    convoy_id: uuid.UUID
    version: int


class Revoked(Reply, kw_only=True):
    members: int
    """Projected memberships removed by this call (0 when the event had already done it)."""


class GetRecipients(Body, kw_only=True):
    convoy_id: uuid.UUID


class GetManyRecipients(Body, kw_only=True):
    """Several convoys' recipients at once (the notifier's convoys of one moment, services/runtime/coalesce.py)."""

    convoy_ids: Annotated[list[uuid.UUID], Meta(min_length=1, max_length=256)]


class Recipient(Reply, kw_only=True):
    person_id: uuid.UUID
    company_id: uuid.UUID
    company_name: str
    name: str
    email: str
    language: str


class ObserverRecipient(Reply, kw_only=True):
    person_id: uuid.UUID
    name: str
    email: str
    language: str


class Recipients(Reply, kw_only=True):
    convoy_id: uuid.UUID
    convoy_name: str
    members: list[Recipient]
    language: str
    """The convoy's language."""
    chats: list[ChatTarget] = []
    """The convoy's chat channels, as ``CONVOY_CHAT_GET`` answers."""
    observers: list[ObserverRecipient] = []
    """The convoy's observers: they get the digest, nothing else a member gets."""
    version: int | None = None
    """The convoy's recipients version (``Subjects.recipient_versions``) read before this answer: the
    answer is at least that new. None: unknown (the notifier does not keep the answer)."""


class ManyRecipients(Reply, kw_only=True):
    recipients: list[Recipients | None]
    """One per convoy asked for, in the same order; None: no such convoy."""


# --- projects and milestones ------------------------------------------------------------------
MilestoneStatus = Literal["not_started", "in_progress", "done", "blocked"]
MAX_MILESTONES = 50


class ProjectIn(Body, kw_only=True):
    title: Name
    goal: LongText = ""
    project_type: Annotated[str, Meta(max_length=64)] | None = None
    """A catalogue project type (e.g. online_booking): a new project starts from its milestone ladder."""


class NewMilestone(Body, kw_only=True):
    title: Name
    target_date: date | None = None
    weight: Annotated[int, Meta(ge=1, le=10)] = 1
    catalogue_key: Annotated[str, Meta(max_length=100)] | None = None


class MilestonePatch(Body, kw_only=True):
    title: Name | msgspec.UnsetType = msgspec.UNSET
    target_date: date | msgspec.UnsetType | None = msgspec.UNSET
    weight: Annotated[int, Meta(ge=1, le=10)] | msgspec.UnsetType = msgspec.UNSET
    status: MilestoneStatus | msgspec.UnsetType = msgspec.UNSET


class MilestoneOrder(Body, kw_only=True):
    milestone_ids: Annotated[list[uuid.UUID], Meta(max_length=MAX_MILESTONES)]


class Milestone(Reply, kw_only=True):
    id: uuid.UUID
    title: str
    target_date: date | None
    weight: int
    position: int
    status: str
    catalogue_key: str | None
    completed_at: datetime | None


class Project(Reply, kw_only=True):
    id: uuid.UUID
    convoy_id: uuid.UUID
    company_id: uuid.UUID
    title: str
    goal: str
    project_type: str | None
    progress: float
    """Weighted share of milestones done, 0..1."""
    milestones: list[Milestone]


# --- reports -----------------------------------------------------------------------------------
class MilestoneUpdate(Body, kw_only=True):
    milestone_id: uuid.UUID
    status: MilestoneStatus


class CommitmentReview(Body, kw_only=True):
    commitment_id: uuid.UUID
    outcome: Literal["done", "partly", "not_yet"]
    note: ShortText = ""
    """Why not (yet), when it was not done."""


class NewReport(Body, kw_only=True):
    company_id: uuid.UUID | None = None
    """Which company this report is for; may be left out when the author represents one only."""
    done: Annotated[str, Meta(min_length=1, max_length=20000)]
    next: ReportText = ""
    blockers: ReportText = ""
    help_wanted: bool = False
    help_topic: ShortText = ""
    """What help would be welcome (with help_wanted)."""
    help_milestone_id: uuid.UUID | None = None
    mood: Mood | None = None
    milestones: Annotated[list[MilestoneUpdate], Meta(max_length=MAX_MILESTONES)] = []
    commitments: Annotated[list[Annotated[str, Meta(min_length=1, max_length=300)]], Meta(max_length=10)] = []
    """What the company commits to for the next cycle."""
    commitment_reviews: Annotated[list[CommitmentReview], Meta(max_length=10)] = []
    """How last cycle's commitments went."""
    facilitator_note: LongText = ""
    """For the convoy's facilitators only: never shown to peers, never in a digest."""


class ReportPatch(Body, kw_only=True):
    done: Annotated[str, Meta(min_length=1, max_length=20000)] | msgspec.UnsetType = msgspec.UNSET
    next: ReportText | msgspec.UnsetType = msgspec.UNSET
    blockers: ReportText | msgspec.UnsetType = msgspec.UNSET
    help_wanted: bool | msgspec.UnsetType = msgspec.UNSET
    help_topic: ShortText | msgspec.UnsetType = msgspec.UNSET
    mood: Mood | msgspec.UnsetType | None = msgspec.UNSET
    facilitator_note: LongText | msgspec.UnsetType = msgspec.UNSET
    commitments: (
        Annotated[list[Annotated[str, Meta(min_length=1, max_length=300)]], Meta(max_length=10)] | msgspec.UnsetType
    ) = msgspec.UNSET
    """Replaces the commitments this report makes (while it can be edited, no later report reviewed them)."""
    commitment_reviews: Annotated[list[CommitmentReview], Meta(max_length=10)] | msgspec.UnsetType = msgspec.UNSET
    """Replaces this report's reviews of earlier commitments (each open one, or one it reviewed)."""


class Commitment(Reply, kw_only=True):
    id: uuid.UUID
    text: str
    outcome: str | None
    note: str


class TouchedMilestone(Reply, kw_only=True):
    milestone_id: uuid.UUID
    title: str
    status: str


class Report(Reply, kw_only=True):
    id: uuid.UUID
    convoy_id: uuid.UUID
    company_id: uuid.UUID
    company_name: str
    author_id: uuid.UUID
    cycle_index: int
    late: bool
    version: int
    submitted_at: datetime
    updated_at: datetime
    done: str
    """Markdown as written; *_html fields carry the sanitized rendering."""
    done_html: str
    next: str
    next_html: str
    blockers: str
    blockers_html: str
    help_wanted: bool
    help_topic: str
    help_milestone_id: uuid.UUID | None
    mood: int | None
    milestones: list[TouchedMilestone] = []
    commitments: list[Commitment] = []
    reviews: list[Commitment] = []
    kudos: int = 0
    kudos_by: list[uuid.UUID] = []
    comments: int = 0
    hidden: bool = False
    hidden_reason: str | None = None
    """Why a facilitator hid it; given to facilitators and admins only (members never see hidden reports)."""
    comments_locked: bool = False
    """Facilitators locked its comments: no new comments from members."""
    facilitator_note: str | None = None
    """Only for the convoy's facilitators and the company's own representatives."""
    author_erased: bool = False
    """The author deleted their account: they are in no people list any more; show ``former_author``."""
    former_author: str | None = None
    """For an erased author: "a former representative of <company>" in the convoy's language."""
    digest_cycle: int | None = None
    """The round whose digest carried it (its seal); None while it is in no digest yet."""
    editable_until: datetime | None = None
    """When edits end unless a digest carries it first (its round's close, at the latest the next
    check-in); None when a digest has carried it."""


class SubmitReport(Body, kw_only=True):
    actor: Actor
    convoy_id: uuid.UUID
    report: NewReport
    cycle_index: int | None = None
    """Only into this cycle (an emailed prompt's reply): refused with 409 when another cycle is current."""


class EditReport(Body, kw_only=True):
    actor: Actor
    report_id: uuid.UUID
    patch: ReportPatch


class ListReports(Body, kw_only=True):
    actor: Actor
    convoy_id: uuid.UUID
    limit: Annotated[int, Meta(ge=1, le=50)] = 50


class Timeline(Body, kw_only=True):
    actor: Actor
    convoy_id: uuid.UUID
    company_id: uuid.UUID | None = None
    milestone_status: MilestoneStatus | None = None
    help_wanted: bool | None = None
    blockers: bool | None = None
    cursor: Annotated[str, Meta(max_length=200)] | None = None
    limit: Annotated[int, Meta(ge=1, le=50)] = 20


class TimelinePage(Reply, kw_only=True):
    reports: list[Report]
    next_cursor: str | None


class GetReport(Body, kw_only=True):
    actor: Actor
    report_id: uuid.UUID


class FeedbackAsk(Body, kw_only=True):
    """services/notifier's feedback flusher: the reports of the batches it is about to send (issue #21)."""

    report_ids: Annotated[list[uuid.UUID], Meta(max_length=100)]


class FeedbackReport(Reply, kw_only=True):
    """What a feedback email needs of its report, as things stand now."""

    id: uuid.UUID
    convoy_id: uuid.UUID
    company_id: uuid.UUID
    company_name: str
    hidden: bool
    kudos_by: list[uuid.UUID] = []
    """Who gives kudos now (taken back: not listed), in the order given."""


class FeedbackReports(Reply, kw_only=True):
    reports: list[FeedbackReport]
    """The asked reports that exist (a purged or unknown one is left out), in no particular order."""


class ReportList(Reply, kw_only=True):
    reports: list[Report]


class Search(Body, kw_only=True):
    actor: Actor
    convoy_id: uuid.UUID
    q: Annotated[str, Meta(min_length=1, max_length=200)]
    limit: Annotated[int, Meta(ge=1, le=100)] = 20


class SearchHit(Reply, kw_only=True):
    report_id: uuid.UUID
    company_name: str
    cycle_index: int
    submitted_at: datetime
    snippet: str
    """Plain text around the matches; matches between « and »."""


class SearchResults(Reply, kw_only=True):
    hits: list[SearchHit]


class CompanyProgress(Reply, kw_only=True):
    company_id: uuid.UUID
    name: str
    project_title: str | None
    project_type: str | None
    progress: float
    milestones_done: int
    milestones_due: int
    """Milestones whose target date has passed (done or not)."""
    milestones_total: int
    reports: int
    participation: float
    """Share of the cycles so far with a report."""
    streak: int
    """Consecutive on-time reports up to the current cycle."""
    missed: int = 0
    """Closed cycles without a report."""
    commitments_kept: float | None
    """done = 1, partly = 0.5, not yet = 0, over reviewed commitments; None when none were reviewed."""
    rung: int | None
    """Pace: how many rungs of its catalogue ladder the company has completed."""
    rungs: int | None


class Board(Reply, kw_only=True):
    convoy_id: uuid.UUID
    cycle_index: int | None
    cycles: int
    progress: float
    participation: float
    companies: list[CompanyProgress]


class NewComment(Body, kw_only=True):
    body: Annotated[str, Meta(min_length=1, max_length=5000)]
    parent_id: uuid.UUID | None = None
    """Answer to a comment (one level of threading)."""


class Comment(Reply, kw_only=True):
    id: uuid.UUID
    report_id: uuid.UUID
    parent_id: uuid.UUID | None
    author_id: uuid.UUID
    body: str
    body_html: str
    created_at: datetime
    replies: list[Comment] = []
    hidden: bool = False
    """Hidden by a facilitator: only facilitators and admins see it (marked so), members never do."""
    hidden_reason: str | None = None
    """Why it was hidden; given to facilitators and admins only."""
    author_erased: bool = False
    """The author deleted their account: they are in no people list any more; show ``former_author``."""
    former_author: str | None = None
    """For an erased author: "a former representative of <company>" (or "a former facilitator"),
    in the convoy's language."""
    edited: bool = False
    """Its author changed the text after posting (within the edit window)."""
    deleted: bool = False
    """Its author deleted it: a placeholder (empty ``body``) kept only while it has answers."""
    editable_until: datetime | None = None
    """Until when its author may edit or delete it (``CONVOY_COMMENT_EDIT_WINDOW_S`` after posting)."""


class Comments(Reply, kw_only=True):
    comments: list[Comment]


class NewHelpOffer(Body, kw_only=True):
    message: LongText = ""


class HelpOffer(Reply, kw_only=True):
    id: uuid.UUID
    report_id: uuid.UUID
    person_id: uuid.UUID
    company_id: uuid.UUID
    message: str
    created_at: datetime


class HelpSuggestions(Reply, kw_only=True):
    """Peers who already completed the milestone the help request is about."""

    companies: list[PersonRef]


class ReportAction(Body, kw_only=True):
    actor: Actor
    report_id: uuid.UUID


class AddComment(ReportAction, kw_only=True):
    comment: NewComment


class CommentText(Body, kw_only=True):
    """The new text of one's own comment (within the edit window)."""

    body: Annotated[str, Meta(min_length=1, max_length=5000)]


class CommentAction(Body, kw_only=True):
    """Delete one's own comment (within the edit window)."""

    actor: Actor
    comment_id: uuid.UUID


class EditComment(CommentAction, kw_only=True):
    edit: CommentText


class OfferHelp(ReportAction, kw_only=True):
    offer: NewHelpOffer


class CompanyAction(Body, kw_only=True):
    actor: Actor
    convoy_id: uuid.UUID
    company_id: uuid.UUID


class PutProject(CompanyAction, kw_only=True):
    project: ProjectIn


class AddMilestone(CompanyAction, kw_only=True):
    milestone: NewMilestone


class OrderMilestones(CompanyAction, kw_only=True):
    order: MilestoneOrder


class ChangeMilestone(Body, kw_only=True):
    actor: Actor
    milestone_id: uuid.UUID
    patch: MilestonePatch


class ConvoyAsk(Body, kw_only=True):
    actor: Actor
    convoy_id: uuid.UUID


class ExportAsk(Body, kw_only=True):
    actor: Actor
    convoy_id: uuid.UUID
    cursor: Annotated[str, Meta(max_length=200)] | None = None
    limit: Annotated[int, Meta(ge=1, le=50)] = 50
    """One page per request: a NATS message has a size limit (8 MB), a five-year convoy does not."""


class Export(Reply, kw_only=True):
    convoy_id: uuid.UUID
    reports: list[Report]
    next_cursor: str | None = None


# --- check-in cycles: what the notifier asks services/milestones -----------------------------
class CycleAsk(Body, kw_only=True):
    convoy_id: uuid.UUID
    cycle_index: int


class RoundRef(Body, kw_only=True):
    convoy_id: uuid.UUID
    cycle_index: Annotated[int, Meta(ge=0)]


class SealRounds(Body, kw_only=True):
    """services/reminders asks services/milestones to seal cycles it is about to close."""

    rounds: Annotated[list[RoundRef], Meta(max_length=1000)]


class RoundsSealed(Reply, kw_only=True):
    sealed: int
    """How many of the cycles asked were sealed now (0: all were sealed before)."""


class CycleStatus(Reply, kw_only=True):
    convoy_id: uuid.UUID
    cycle_index: int
    reported_company_ids: list[uuid.UUID]
    """Companies that have a (visible) report for this cycle."""


class DueMilestone(Reply, kw_only=True):
    title: str
    target_date: date | None


class PromptContext(Reply, kw_only=True):
    """What a prompt reminds a company of."""

    company_id: uuid.UUID
    milestones_due: list[DueMilestone]
    """Not-done milestones with a target date up to this cycle's due date."""
    last_next_steps: str
    """The "next" of the company's latest report before this cycle (Markdown)."""
    open_commitments: list[str]


class PromptContexts(Reply, kw_only=True):
    convoy_id: uuid.UUID
    cycle_index: int
    companies: list[PromptContext]


class DigestMilestone(Reply, kw_only=True):
    company_id: uuid.UUID
    company_name: str
    title: str
    status: str


class DigestReport(Reply, kw_only=True):
    report_id: uuid.UUID
    company_id: uuid.UUID
    company_name: str
    cycle_index: int
    late: bool
    done: str
    next: str
    blockers: str
    help_wanted: bool
    help_topic: str
    mood: int | None
    progress: float
    milestone_changes: list[DigestMilestone]
    kudos_by: list[uuid.UUID]


class Digest(Reply, kw_only=True):
    """Everything one cycle's digest says, peer view (no hidden content, no facilitator notes)."""

    convoy_id: uuid.UUID
    convoy_name: str
    cycle_index: int
    completed_milestones: list[DigestMilestone]
    """Peers' milestones completed in this cycle: the digest leads with them."""
    help_requests: list[DigestReport]
    """Reports of this cycle asking for help."""
    reports: list[DigestReport]
    """This cycle's reports."""
    late_addenda: list[DigestReport]
    """Reports for earlier cycles that arrived after those cycles' digests went out."""
    silent_company_ids: list[uuid.UUID]
    """Active companies without a report for this cycle."""
    progress: float
    participation: float
    """Share of active companies that reported in this cycle."""


# --- facilitator digest ----------------------------------------------------------------------
class FacilitatorConvoys(Reply, kw_only=True):
    person_id: uuid.UUID
    name: str
    email: str
    language: str
    timezone: str
    convoy_ids: list[uuid.UUID]
    """The active and paused convoys the person facilitates."""


class Facilitators(Reply, kw_only=True):
    facilitators: list[FacilitatorConvoys]


class FacilitatorContact(Reply, kw_only=True):
    person_id: uuid.UUID
    name: str
    email: str
    language: str
    timezone: str


class ConvoyFacilitators(Reply, kw_only=True):
    """One convoy's facilitators (``CONVOY_FACILITATORS``, asked with ``GetRecipients``)."""

    convoy_id: uuid.UUID
    convoy_name: str
    language: str
    """The convoy's language."""
    status: str
    facilitators: list[FacilitatorContact]


class FacilitatorDigestAsk(Body, kw_only=True):
    convoy_ids: Annotated[list[uuid.UUID], Meta(max_length=500)]
    at: datetime
    """The moment the digest describes ("this cycle" is the cycle open at this time)."""


class SilentCompany(Reply, kw_only=True):
    company_id: uuid.UUID
    name: str
    cycles_silent: int
    """How many closed cycles in a row, up to the latest, without a report (at least 2 to be listed)."""


class StalledMilestone(Reply, kw_only=True):
    company_name: str
    title: str
    target_date: date
    status: str


class OpenItem(Reply, kw_only=True):
    company_name: str
    report_id: uuid.UUID
    text: str


class ConvoyHealth(Reply, kw_only=True):
    convoy_id: uuid.UUID
    convoy_name: str
    cycle_index: int | None
    silent_companies: list[SilentCompany]
    """Companies silent in this and the last cycle(s)."""
    stalled_milestones: list[StalledMilestone]
    """Not done, target date passed."""
    open_blockers: list[OpenItem]
    """Blockers in each company's latest report."""
    unanswered_help: list[OpenItem]
    """Help requests of the last two cycles nobody offered help on."""
    mood_trend: list[float | None]
    """Average mood per cycle, oldest first, the last four cycles."""
    flags_waiting: int = 0
    """Flags in the moderation queue (moderation issue)."""


class FacilitatorDigest(Reply, kw_only=True):
    convoys: list[ConvoyHealth]


# --- check-in schedule (services/reminders) -----------------------------------------------------
class ScheduleSettings(Body, kw_only=True):
    holiday_region: Bundesland = ""
    """Bundesland whose public holidays the check-ins avoid (empty: none)."""
    holiday_policy: Literal["skip", "move", "ignore"] = "skip"
    """A check-in on a holiday is skipped, or moved to the next working day."""
    nudge_offsets_hours: Annotated[list[Annotated[int, Meta(ge=1, le=24 * 14)]], Meta(max_length=5)] = msgspec.field(
        default_factory=lambda: [24, 2]
    )
    """Nudge the silent this many hours before the due time (one nudge per value)."""


class ScheduledCycle(Reply, kw_only=True):
    cycle_index: int
    opens_at: datetime
    due_at: datetime
    closes_at: datetime
    skipped: bool
    skip_reason: str
    opened: bool
    nudges_done: int
    closed: bool


class AbsenceInfo(Reply, kw_only=True):
    id: uuid.UUID
    company_id: uuid.UUID
    kind: str
    from_date: date | None
    until_date: date | None
    cycle_index: int | None
    reason: str


class Schedule(Reply, kw_only=True):
    convoy_id: uuid.UUID
    timezone: str
    status: str
    settings: ScheduleSettings
    cycles: list[ScheduledCycle]
    absences: list[AbsenceInfo]


class NewAway(Body, kw_only=True):
    from_date: date
    until_date: date
    reason: ShortText = ""


class NewCompanySkip(Body, kw_only=True):
    cycle_index: Annotated[int, Meta(ge=0)]
    reason: Annotated[str, Meta(min_length=1, max_length=200, description="e.g. Betriebsferien")]


class CycleSkip(Body, kw_only=True):
    reason: ShortText = ""


class AskSchedule(Body, kw_only=True):
    actor: Actor
    convoy_id: uuid.UUID
    upcoming: Annotated[int, Meta(ge=1, le=52)] = 6


class PutScheduleSettings(Body, kw_only=True):
    actor: Actor
    convoy_id: uuid.UUID
    settings: ScheduleSettings


class SkipCycle(Body, kw_only=True):
    actor: Actor
    convoy_id: uuid.UUID
    cycle_index: Annotated[int, Meta(ge=0)]
    skip: CycleSkip


class MarkAway(Body, kw_only=True):
    actor: Actor
    convoy_id: uuid.UUID
    company_id: uuid.UUID
    away: NewAway


class SkipForCompany(Body, kw_only=True):
    actor: Actor
    convoy_id: uuid.UUID
    company_id: uuid.UUID
    skip: NewCompanySkip


class FireNow(Body, kw_only=True):
    actor: Actor
    convoy_id: uuid.UUID


class Tick(Body, kw_only=True):
    """Tests only (CONVOY_REMINDERS_MANUAL_CLOCK): run the scheduler as if it were ``now``."""

    now: datetime
    summary: bool = False
    """Answer with the number of actions only (``Fired.count``): a slot of many convoys lists more
    than one NATS message holds (bench: scheduler at 1,000,000 convoys)."""


class Fired(Reply, kw_only=True):
    actions: list[str]
    leader: bool = True
    count: int = 0
    """How many actions were fired (``actions`` lists them unless a ``Tick`` asked for a summary)."""
    failed: int = 0
    """How many convoys could not be planned or fired (say, a service they need was down): the next
    tick retries them, as a tick at the same time does."""


# --- calendar subscriptions (issue #22): feeds in services/convoys, rounds from services/reminders ------
CalendarToken = Annotated[str, Meta(min_length=10, max_length=100, pattern=r"^cvc_[A-Za-z0-9_-]+$")]


class CalendarFeed(Reply, kw_only=True):
    """A person's calendar feed (its secret is never stored: only shown when created)."""

    active: bool
    created_at: datetime | None = None
    last_used_at: datetime | None = None
    """When a calendar app last fetched the feed."""


class CalendarFeedCreated(Reply, kw_only=True):
    feed: CalendarFeed
    secret: str
    """The feed token (``cvc_…``), shown this once; the feed URL is ``{public_url}/calendar/{secret}.ics``."""


class CalendarSubscription(Reply, kw_only=True):
    """``POST /api/v1/me/calendar``: the new feed's address, shown this once (only its hash is stored)."""

    feed: CalendarFeed
    url: str
    """``https://…/calendar/cvc_….ics``: paste into Google Calendar ("From URL") or Outlook ("Subscribe from web")."""
    webcal_url: str
    """The same as ``webcal://``: opens Apple Calendar or Outlook (desktop) to subscribe."""


class ResolveCalendar(Body, kw_only=True):
    """The feed endpoint (no sign-in): whose feed is this token? 404 when unknown or revoked."""

    token: CalendarToken


class CalendarOwner(Reply, kw_only=True):
    person_id: uuid.UUID
    name: str
    language: str
    timezone: str
    convoys: list[MyConvoy]
    """The convoys the person reports in (representative) or facilitates."""


class AskCalendarRounds(Body, kw_only=True):
    """System callers only: the check-in rounds of these convoys around now (services/reminders)."""

    actor: Actor
    convoy_ids: Annotated[list[uuid.UUID], Meta(max_length=200)]
    past: Annotated[int, Meta(ge=0, le=26)] = 4
    """Rounds before the current one."""
    ahead: Annotated[int, Meta(ge=1, le=52)] = 12
    """Rounds after the current one (before the first check-in: the first ``ahead`` rounds)."""


class CalendarRound(Reply, kw_only=True):
    cycle_index: int
    opens_at: datetime
    due_at: datetime
    closes_at: datetime
    cancelled: bool = False
    reason: Literal["", "holiday", "skipped", "paused"] = ""
    """Why a round is cancelled (holiday skip, a facilitator's skip, the convoy paused)."""
    note: str = ""
    """The scheduler's words: the holiday's name, the skip reason, a move because of a holiday."""
    opened: bool = False
    closed: bool = False


class CalendarConvoy(Reply, kw_only=True):
    convoy_id: uuid.UUID
    name: str
    timezone: str
    status: str
    version: int
    """Grows with every change of the convoy's schedule (settings, cadence, status, a skipped round)."""
    changed_at: datetime
    rounds: list[CalendarRound]


class CalendarRounds(Reply, kw_only=True):
    convoys: list[CalendarConvoy]


# --- notification preferences (notifier) ---------------------------------------------------------
NotificationKind = Literal[
    "report",
    "help_offered",
    "prompt",
    "nudge",
    "digest",
    "facilitator_digest",
    "feedback",
    "reply",
    "help_requested",
    "facilitator_cycle",
]
"""Kinds of notification email a person can switch off one by one (``feedback``: comments and kudos on
their company's report; ``reply``: answers to their comment; ``help_requested`` and ``facilitator_cycle``:
a facilitator's help requests and end-of-round digest)."""


class NotificationPrefs(Body, kw_only=True):
    email: bool = True
    """Any email besides sign-in links and invitations."""
    digest: bool = True
    immediate: dict[NotificationKind, bool] = {}
    """Per kind of notification (see ``NotificationKind``); default on."""

    def allows(self, kind: str) -> bool:
        if not self.email:
            return False
        if kind == "digest":
            return self.digest
        return bool(self.immediate.get(kind, True))  # type: ignore[call-overload]


class PrefsAsk(Body, kw_only=True):
    actor: Actor


class PutPrefs(Body, kw_only=True):
    actor: Actor
    prefs: NotificationPrefs


class UnsubscribeAsk(Body, kw_only=True):
    token: Annotated[str, Meta(min_length=10, max_length=500)]


class Unsubscribed(Reply, kw_only=True):
    kind: str


# --- operations ----------------------------------------------------------------------------------
class Empty(Body, kw_only=True):
    pass


class Health(Reply, kw_only=True):
    service: str
    ready: bool
    checks: dict[str, str]


# --- demo / import -------------------------------------------------------------------------------
class ImportedComment(Body, kw_only=True):
    """A comment made on an imported report, with the time it was made."""

    author_id: uuid.UUID
    body: Annotated[str, Meta(min_length=1, max_length=5000)]
    at: datetime


class ImportReport(Body, kw_only=True):
    """Admin only: a report of a past, closed cycle, as it was written then (history brought in).

    Idempotent: a company has one report per cycle; if it exists, it is answered unchanged.
    """

    actor: Actor
    convoy_id: uuid.UUID
    company_id: uuid.UUID
    author_id: uuid.UUID
    """A representative of the company."""
    cycle_index: Annotated[int, Meta(ge=0)]
    """A cycle that has closed."""
    submitted_at: datetime
    """Within the cycle (opens_at <= submitted_at < closes_at); late after its due time."""
    report: NewReport
    comments: Annotated[list[ImportedComment], Meta(max_length=50)] = []
    """By the convoy's members or facilitators, at or after submitted_at, in the past."""
    kudos_by: Annotated[list[uuid.UUID], Meta(max_length=50)] = []
    """Representatives of other companies of the convoy."""


class ImportedReport(Reply, kw_only=True):
    report: Report
    created: bool
    """False when the company already had a report for that cycle (nothing was changed)."""


# --- moderation ------------------------------------------------------------------------------------
ModerationReason = Annotated[str, Meta(max_length=500)]


class Hide(Body, kw_only=True):
    """Why a facilitator hides a report or comment: recorded in the audit log and told to its author."""

    reason: Annotated[str, Meta(min_length=1, max_length=500)]


class ModerationNote(Body, kw_only=True):
    """An optional reason for restoring, locking or unlocking, recorded in the audit log."""

    reason: ModerationReason = ""


class ModerateReport(ReportAction, kw_only=True):
    """Hide or restore a report (facilitators and admins of its convoy); a hide needs a reason."""

    reason: ModerationReason = ""


class LockComments(ReportAction, kw_only=True):
    """Lock (``locked`` true) or unlock a report's comments (facilitators and admins of its convoy)."""

    locked: bool
    reason: ModerationReason = ""


class ModerateComment(Body, kw_only=True):
    """Hide or restore a comment (facilitators and admins of its convoy); a hide needs a reason."""

    actor: Actor
    comment_id: uuid.UUID
    reason: ModerationReason = ""


# --- data protection -------------------------------------------------------------------------------
class EraseConfirm(Body, kw_only=True):
    """Deleting one's account cannot be undone: the body must say so."""

    confirm: Literal["DELETE"]


class EraseMe(Ask, kw_only=True):
    confirm: Literal["DELETE"]


class Erased(Reply, kw_only=True):
    person_id: uuid.UUID
    message: str


class PersonalData(Reply, kw_only=True):
    """What one service stores about a person: named sections of records (JSON objects)."""

    service: str
    sections: dict[str, list[dict[str, Any]]] = {}


class PersonalExport(Reply, kw_only=True):
    """Everything Convoy stores about a person, one section per service (GET /api/v1/me/export)."""

    person_id: uuid.UUID
    exported_at: datetime
    services: dict[str, dict[str, list[dict[str, Any]]]]


class RetentionPurge(Body, kw_only=True):
    """Remove what the convoys' retention rules say is due at ``now`` (system; tests pass their own now)."""

    now: datetime


class Purged(Reply, kw_only=True):
    companies: int
    reports: int
    comments: int


# --- flags and charter -------------------------------------------------------------------------------
FlagReason = Literal["spam", "off_topic", "confidential", "offensive", "other"]
FlagNote = Annotated[str, Meta(max_length=500)]


class NewFlag(Body, kw_only=True):
    """Why a member points a report or comment out to the convoy's facilitators."""

    reason: FlagReason
    note: FlagNote = ""
    """In the member's own words; required with reason ``other``."""


class FlagContent(Body, kw_only=True):
    actor: Actor
    object_type: Literal["report", "comment"]
    object_id: uuid.UUID
    flag: NewFlag


class FlagReceipt(Reply, kw_only=True):
    """What the flagging member learns: their own open flag, never anyone else's."""

    id: uuid.UUID
    object_type: str
    object_id: uuid.UUID
    reason: str
    note: str
    created_at: datetime
    created: bool
    """False when they had flagged it already and that flag is still open: nothing new happened."""


class Flag(Reply, kw_only=True):
    id: uuid.UUID
    flagged_by: uuid.UUID
    flagged_by_company_id: uuid.UUID | None
    """The company the person represents in the convoy; None for a facilitator (or a member who left)."""
    flagged_by_company_name: str
    reason: str
    note: str
    created_at: datetime


class FlaggedContent(Reply, kw_only=True):
    """One flagged report or comment with its open flags (resolving one resolves them all)."""

    object_type: Literal["report", "comment"]
    object_id: uuid.UUID
    report_id: uuid.UUID
    company_id: uuid.UUID
    """The company whose report it is (or is on)."""
    company_name: str
    author_id: uuid.UUID
    excerpt: str
    """The first 200 characters of the text (whitespace collapsed, Markdown as written)."""
    hidden: bool
    flags: list[Flag]


class FlagQueue(Reply, kw_only=True):
    """A convoy's moderation queue: flagged objects with open flags, oldest flag first."""

    convoy_id: uuid.UUID
    items: list[FlaggedContent]


class FlagResolution(Body, kw_only=True):
    action: Literal["dismiss", "act"]
    """``dismiss``: the content stays as it is. ``act``: the content is hidden (as by …/hide)."""
    reason: ModerationReason = ""
    """With ``act``: why it is hidden (1 to 500 characters; its author is told). With ``dismiss``: an
    optional note for the audit log."""


class ResolveFlag(Body, kw_only=True):
    actor: Actor
    flag_id: uuid.UUID
    resolution: FlagResolution


class FlagOutcome(Reply, kw_only=True):
    object_type: str
    object_id: uuid.UUID
    action: str
    resolved: list[uuid.UUID]
    """Every flag that was open on the object."""
    hidden: bool
    """Whether the object is hidden now."""


CharterBody = Annotated[str, Meta(min_length=1, max_length=10000, description="1 to 10000 characters")]


class CharterText(Body, kw_only=True):
    text: CharterBody


class CharterAcceptance(Body, kw_only=True):
    version: Annotated[int, Meta(ge=1)] | None = None
    """The version read: if the charter changed since, the answer is 409. Leave it out for the current one."""


class Charter(Reply, kw_only=True):
    convoy_id: uuid.UUID
    text: str
    """Plain text, one point per paragraph."""
    version: int
    """1 for the text the convoy started with; each change by a facilitator adds one."""
    updated_at: datetime
    is_default: bool
    """The default text Convoy ships (in the convoy's language); false once a facilitator wrote their own."""
    language: str
    accepted: bool | None
    """Whether the caller accepted this version; None when the caller is no representative (nothing to accept)."""


class PutCharter(AskConvoy, kw_only=True):
    charter: CharterText


class AcceptCharter(AskConvoy, kw_only=True):
    acceptance: CharterAcceptance


# --- digitalisation check ----------------------------------------------------------------------
# The public self-assessment, its result, the formation pool and the programme figures (issue #12).
# Owned by services/convoys (services/convoys/check/); outcomes of projects come from services/milestones.
# The question set is data (services/convoys/check/questions-v<N>.json), decoded into these types.
CheckKey = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9_]{0,63}$", description="a key of the question set")]
CheckText = Annotated[str, Meta(min_length=1, max_length=500)]
CheckAdvice = Annotated[str, Meta(min_length=1, max_length=1000)]
MIN_GROUP = 3
"""k-anonymity: figures about fewer companies than this are not shown (None)."""


class CheckOption(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    key: CheckKey
    label_de: CheckText
    label_en: CheckText
    points: Annotated[int, Meta(ge=0, le=10)] | None
    """None: this answer leaves the question out of the score."""
    skips_area: bool = False
    """This answer means the whole area does not apply to the company (no score, no potential)."""


class CheckQuestion(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    key: CheckKey
    area: CheckKey
    kind: Literal["single", "scale", "multi"]
    """single and scale: exactly one option (a scale is shown in a row); multi: any number (points add up)."""
    text_de: CheckText
    text_en: CheckText
    options: Annotated[list[CheckOption], Meta(min_length=2, max_length=10)]


class CheckArea(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    key: CheckKey
    title_de: CheckText
    title_en: CheckText
    advice_de: CheckAdvice
    advice_en: CheckAdvice
    project_types: list[CheckKey] = []
    """Typical projects from the milestone catalogue for a potential in this area."""


class CheckSector(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    key: CheckKey
    label_de: CheckText
    label_en: CheckText


class QuestionSet(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One version of the check's questions, grouped by area (German and English)."""

    version: Annotated[int, Meta(ge=1)]
    potential_below: Annotated[int, Meta(ge=1, le=100)] = 70
    """An area scoring below this (0 to 100) is a potential."""
    sectors: Annotated[list[CheckSector], Meta(min_length=1)]
    areas: Annotated[list[CheckArea], Meta(min_length=1, max_length=20)]
    questions: Annotated[list[CheckQuestion], Meta(min_length=1, max_length=100)]


Choice = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9_]{0,63}$")]


class CheckAnswers(Body, kw_only=True):
    """Answers to one version of the question set: nothing about a person, and no contact."""

    version: Annotated[int, Meta(ge=1)]
    answers: Annotated[dict[Choice, Choice | Annotated[list[Choice], Meta(max_length=10)]], Meta(max_length=100)]
    """Question key -> option key (single, scale) or list of option keys (multi); the other shape is refused."""
    sector: Annotated[str, Meta(max_length=64)] = ""
    """A sector key of the question set, or empty."""
    size_class: SizeClass = ""
    region: Bundesland = ""
    timezone: Timezone = "Europe/Berlin"
    """The check is dated by the day it is in this zone (the person's), not by the UTC day."""


class AreaScore(Reply, kw_only=True):
    key: str
    title_de: str
    title_en: str
    score: int | None
    """0 (much to gain) to 100 (well set up); None: the area does not apply."""


class ProjectOutcome(Reply, kw_only=True):
    """What companies achieved with one project type in convoys that share anonymised results."""

    project_type: str
    title_de: str = ""
    title_en: str = ""
    description_de: str = ""
    description_en: str = ""
    companies: int | None = None
    """Companies with this project; None: fewer than MIN_GROUP (nothing shown)."""
    went_live: int | None = None
    went_live_share: float | None = None
    """Share of those companies that reached the last rung of the ladder (go-live)."""
    median_weeks: float | None = None
    """Median weeks from the convoy's start to go-live; None when fewer than MIN_GROUP went live."""


class Potential(Reply, kw_only=True):
    area: str
    title_de: str
    title_en: str
    advice_de: str
    advice_en: str
    score: int
    projects: list[ProjectOutcome] = []


class CheckResult(Reply, kw_only=True):
    id: uuid.UUID
    """Anyone holding this id sees the (anonymous) result: it is the link to the result page."""
    version: int
    completed_on: date
    overall: int | None
    areas: list[AreaScore]
    potentials: list[Potential]
    sector: str = ""
    size_class: str = ""
    region: str = ""
    themes: list[ProjectOutcome] = []
    """Every project type the question set points to (titles, and outcomes where there are enough)."""


class SubmitCheck(Body, kw_only=True):
    check: CheckAnswers


class GetCheck(Body, kw_only=True):
    check_id: uuid.UUID


class NewPoolRequest(Body, kw_only=True):
    """Asking to join a convoy on a theme after the check: the only place contact data enter."""

    theme: CheckKey
    """A project type of the milestone catalogue (e.g. online_booking)."""
    company: NewCompany
    contact_name: Name
    contact_email: Email
    contact_language: Language = "de"
    message: LongText = ""
    consent: bool = False
    """Must be true: the person agrees that the centre stores the contact with the check result to form a
    convoy and get in touch. Without it nothing is stored (400)."""


class JoinPool(Body, kw_only=True):
    check_id: uuid.UUID
    request: NewPoolRequest


class PoolEntry(Reply, kw_only=True):
    id: uuid.UUID
    check_id: uuid.UUID | None
    theme: str
    company_name: str
    sector: str
    size_class: str
    region: str
    contact_name: str
    contact_email: str
    contact_language: str
    message: str
    status: str
    created_at: datetime
    overall: int | None = None
    areas: list[AreaScore] = []
    convoy_id: uuid.UUID | None = None


class Competitors(Reply, kw_only=True):
    """Two companies of the same trade in the same region: mastermind practice keeps them apart."""

    first: uuid.UUID
    second: uuid.UUID
    sector: str
    region: str


class PoolGroup(Reply, kw_only=True):
    theme: str
    request_ids: list[uuid.UUID]
    maturity: int | None
    competitors: list[Competitors] = []


class Pool(Reply, kw_only=True):
    entries: list[PoolEntry]
    suggestions: list[PoolGroup]
    """Groups of 4 to 8 waiting companies per theme, similar in maturity, competitors apart where possible."""
    themes: list[ProjectOutcome] = []
    """Titles of the themes in the pool."""


class Formation(Body, kw_only=True):
    request_ids: Annotated[list[uuid.UUID], Meta(min_length=1, max_length=20)]
    convoy: NewConvoy
    allow_competitors: bool = False
    """Form it even though companies in the selection look like competitors (otherwise 409)."""


class FormConvoy(Ask, kw_only=True):
    formation: Formation


class Period(Body, kw_only=True):
    from_date: date
    to_date: date
    convoy_id: uuid.UUID | None = None
    timezone: Timezone = "Europe/Berlin"
    """Whose days the dates are: a check is dated by its company's day, and so is everything else counted."""


class AskProgramme(Ask, kw_only=True):
    period: Period


class OutcomesAsk(Body, kw_only=True):
    """services/milestones: aggregates over the given convoys' projects (k-anonymised there)."""

    convoy_ids: Annotated[list[uuid.UUID], Meta(max_length=10000)]
    project_types: Annotated[list[str], Meta(max_length=100)] = []
    """Empty: every project type of the catalogue."""
    from_date: date | None = None
    to_date: date | None = None
    """With a period: go-lives, reports and milestones inside it only; per-convoy figures too."""


class ConvoyOutcome(Reply, kw_only=True):
    convoy_id: uuid.UUID
    companies: int
    companies_reporting: int
    reports: int
    milestones_done: int
    go_lives: int


class Outcomes(Reply, kw_only=True):
    project_types: list[ProjectOutcome]
    convoys: list[ConvoyOutcome] = []


class ProgrammeConvoy(Reply, kw_only=True):
    convoy_id: uuid.UUID
    name: str
    status: str
    start_date: date | None
    created_on: date
    formed_from_pool: bool
    companies: int
    companies_reporting: int
    participation: float | None
    """Share of its companies that reported at least once in the period."""
    reports: int
    milestones_done: int
    go_lives: int


class ProgrammeReport(Reply, kw_only=True):
    """Figures for the centre's funding reports: counts and medians, no person, no company named."""

    from_date: date
    to_date: date
    check_completions: int
    pool_requests: int
    convoys_formed: int
    convoys_formed_from_pool: int
    companies_reached: int
    """Companies taking part in a convoy during the period."""
    convoys: list[ProgrammeConvoy]
    project_types: list[ProjectOutcome]
    min_group: int = MIN_GROUP


# --- conditional GETs (issue #21) --------------------------------------------------------------
class ConvoyVersions(Reply, kw_only=True):
    """services/milestones → the API on ``Subjects.convoy_versions`` (core NATS): convoys whose change counter
    moved, with its new value. ``reset``: announcements may have been lost (the forwarder's database
    connection was new or broken); the API forgets every version it knows and learns them again from pages."""

    versions: dict[uuid.UUID, int] = msgspec.field(default_factory=dict)
    reset: bool = False
