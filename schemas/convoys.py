"""The contract of services/convoys/:
convoys, companies, people, invitations, join requests, sign-in and sessions, charters,
the digitalisation check and the formation pool.

Operations are answered by the handler marked with the operation (``@Convoys.X``);
see schemas/contract.py.
"""

import uuid
from datetime import datetime
from typing import Annotated, Literal

from msgspec import Meta

from schemas import api
from schemas import events as ev
from schemas.contract import EDGE, Contract, Op


class WithdrawFromPool(api.Body):
    """Take back the contact left from a check result (whoever holds the result's link)."""

    check_id: uuid.UUID


class PoolLink(api.Body, kw_only=True):
    """The signed link of the pool confirmation email (no sign-in): ``withdraw`` false only reads what it
    is about (the confirm page); true deletes the contact."""

    token: Annotated[str, Meta(min_length=10, max_length=500)]
    withdraw: bool = False


class PoolLinkState(api.Reply, kw_only=True):
    theme: str
    """The theme's key; its title in both languages follows ('' when nothing is left)."""
    title_de: str = ""
    title_en: str = ""
    status: Literal["waiting", "formed", "gone"]
    """``gone``: withdrawn or expired, nothing of the contact is kept; ``formed``: placed in a convoy."""


class PoolPurge(api.Body, kw_only=True):
    """Delete the pool entries older than CONVOY_POOL_RETENTION_DAYS at ``now`` (tests pass their own now)."""

    now: datetime


class PoolPurged(api.Reply, kw_only=True):
    expired: int


class Convoys(Contract, service="convoys"):
    CONSUMERS = {
        "moderation": (ev.ContentModerated,),
        "flags": (ev.ContentFlagged, ev.FlagsResolved),
    }
    PUBLISHES = (
        ev.CharterAccepted,
        ev.CharterUpdated,
        ev.CompanyJoined,
        ev.CompanyLeft,
        ev.ConvoyCreated,
        ev.ConvoyFacilitatorAdded,
        ev.ConvoyStatusChanged,
        ev.ConvoyUpdated,
        ev.EmailRequested,
        ev.ObserverJoined,
        ev.ObserverRemoved,
        ev.PersonErased,
        ev.PersonJoined,
        ev.PersonRemoved,
        ev.PoolContactDeleted,
    )

    CONVOY_CREATE = Op(api.CreateConvoy, api.Convoy, callers={"admin", "api"})
    CONVOY_GET = Op(api.GetConvoy, api.Convoy, callers={"admin", "api", "milestones", "notifier", "reminders"})
    CONVOY_UPDATE = Op(api.UpdateConvoy, api.Convoy, callers=EDGE)
    CONVOY_STATUS = Op(api.ChangeStatus, api.Convoy, callers={"admin", "api"})
    CONVOY_LIST_OPEN = Op(api.Empty, api.OpenConvoys, callers=EDGE)
    CONVOY_FACILITATOR_ADD = Op(api.AddFacilitator, api.Convoy, callers=EDGE)
    FACILITATOR_APPOINT = Op(api.AppointFacilitator, api.Person, callers={"admin", "api"})
    COMPANY_ADD = Op(api.AddCompany, api.Company, callers={"admin", "api"})
    COMPANY_REMOVE = Op(api.RemoveCompany, api.Convoy, callers=EDGE)
    MEMBER_REMOVE = Op(api.RemoveMember, api.Convoy, callers=EDGE)
    OBSERVER_INVITE = Op(api.InviteObserver, api.Invitation, callers=EDGE)
    OBSERVER_REMOVE = Op(api.RemoveObserver, api.Convoy, callers=EDGE)
    INVITATION_CREATE = Op(api.CreateInvitation, api.Invitation, callers={"admin", "api"})
    INVITATION_PREVIEW = Op(api.PreviewInvitation, api.InvitationPreview, callers=EDGE)
    INVITATION_ACCEPT = Op(api.AcceptInvitationRequest, api.SignedIn, callers={"admin", "api"})
    INVITATION_LIST = Op(api.ListInvitations, api.PendingInvitations, callers=EDGE)
    INVITATION_RESEND = Op(api.InvitationAction, api.Invitation, callers=EDGE)
    INVITATION_WITHDRAW = Op(api.InvitationAction, api.PendingInvitations, callers=EDGE)
    JOIN_REQUEST_CREATE = Op(api.CreateJoinRequest, api.JoinRequest, callers=EDGE)
    JOIN_REQUEST_LIST = Op(api.ListJoinRequests, api.JoinRequests, callers=EDGE)
    JOIN_REQUEST_DECIDE = Op(api.DecideJoinRequest, api.JoinRequest, callers=EDGE)
    AUDIT_LIST = Op(api.ListAudit, api.AuditLog, callers=EDGE)
    MEMBERSHIP_GET = Op(api.GetMembership, api.Membership, callers={"milestones", "reminders"})
    CONVOY_RECIPIENTS = Op(api.GetRecipients, api.Recipients, callers={"notifier"})
    CONVOYS_RECIPIENTS = Op(api.GetManyRecipients, api.ManyRecipients, callers={"notifier"})
    """``CONVOY_RECIPIENTS`` for several convoys in one request and one statement (the notifier's, issue #21)."""
    FACILITATORS = Op(api.Empty, api.Facilitators, callers={"admin", "notifier"})
    CONVOY_FACILITATORS = Op(api.GetRecipients, api.ConvoyFacilitators, callers={"notifier"})
    """Internal (no actor): one convoy's facilitators with their contacts (services/convoys)."""
    CONVOY_SLACK_SET = Op(api.SetSlack, api.Convoy, callers=EDGE)
    CONVOY_CHAT_SET = Op(api.SetChat, api.Convoy, callers={"api", "notifier"})
    """Set or remove one chat channel's webhook (facilitators; the notifier as system)."""
    CONVOY_CHAT_GET = Op(api.GetRecipients, api.ChatTargets, callers={"api"})
    """Internal (no actor): a convoy's chat channels with their webhook URLs."""
    SIGN_IN_REQUEST = Op(api.SignInAsk, api.Accepted, callers=EDGE)
    SIGN_IN_COMPLETE = Op(api.SignInComplete, api.SignedIn, callers=EDGE)
    SIGN_OUT = Op(api.SignOut, api.Accepted, callers=EDGE)
    TOKEN_RESOLVE = Op(api.ResolveToken, api.Principal, callers=EDGE)
    TOKENS_RESOLVE = Op(api.ResolveTokens, api.ResolvedTokens, callers=EDGE)
    """Several tokens in one request (the edge's cold tokens of one loop tick): one statement per kind."""
    ME_GET = Op(api.Ask, api.Me, callers={"admin", "api", "notifier"})
    ME_UPDATE = Op(api.UpdateMe, api.Me, callers=EDGE)
    API_TOKEN_CREATE = Op(api.CreateApiToken, api.ApiTokenCreated, callers=EDGE)
    API_TOKEN_LIST = Op(api.Ask, api.ApiTokens, callers=EDGE)
    API_TOKEN_REVOKE = Op(api.RevokeApiToken, api.Accepted, callers=EDGE)
    CALENDAR_GET = Op(api.Ask, api.CalendarFeed, callers=EDGE)
    """services/convoys: the asking person's calendar feed (whether one is active)."""
    CALENDAR_CREATE = Op(api.Ask, api.CalendarFeedCreated, callers=EDGE)
    """services/convoys: a new feed token for the asking person; the previous one stops working."""
    CALENDAR_REVOKE = Op(api.Ask, api.Accepted, callers=EDGE)
    """services/convoys: turn the asking person's feed off."""
    CALENDAR_RESOLVE = Op(api.ResolveCalendar, api.CalendarOwner, callers=EDGE)
    """services/convoys: whose feed a ``cvc_`` token is, with their convoys (404 unknown or revoked)."""
    CHARTER_GET = Op(api.AskConvoy, api.Charter, callers=EDGE)
    CHARTER_PUT = Op(api.PutCharter, api.Charter, callers=EDGE)
    """Facilitators change the charter's text: a new version every representative accepts again."""
    CHARTER_ACCEPT = Op(api.AcceptCharter, api.Charter, callers=EDGE)
    PERSONAL_DATA = Op(api.Ask, api.PersonalData, callers=EDGE)
    """What a service stores about the asking person (``api.Ask``), for the JSON export."""
    ME_ERASE = Op(api.EraseMe, api.Erased, callers=EDGE)
    """services/convoys: delete the asking person's account; every service follows ``person.erased``."""
    CHECK_QUESTIONS = Op(api.Empty, api.QuestionSet, callers=EDGE)
    """The current question set (anyone)."""
    CHECK_SUBMIT = Op(api.SubmitCheck, api.CheckResult, callers=EDGE)
    """Score anonymous answers and keep them without any contact data (anyone)."""
    CHECK_GET = Op(api.GetCheck, api.CheckResult, callers=EDGE)
    """A result by its id (whoever holds the link)."""
    POOL_JOIN = Op(api.JoinPool, api.Accepted, callers=EDGE)
    """With explicit consent: leave a contact and ask to join a convoy on a theme (anyone holding a result)."""
    POOL_WITHDRAW = Op(WithdrawFromPool, api.Accepted, callers=EDGE)
    """Delete the contacts still waiting in the pool from a check result (404 none, 409 already in a convoy)."""
    POOL_LINK = Op(PoolLink, PoolLinkState, callers=EDGE)
    """The withdraw link of the pool confirmation email: what it is about, or (``withdraw``) delete the contact."""
    POOL_PURGE = Op(PoolPurge, PoolPurged, callers={"admin"})
    """Delete waiting pool entries past CONVOY_POOL_RETENTION_DAYS (also hourly in services/convoys)."""
    POOL_LIST = Op(api.Ask, api.Pool, callers=EDGE)
    """Waiting companies with their profiles and suggested groups (facilitators, admins)."""
    POOL_FORM = Op(api.FormConvoy, api.Convoy, callers=EDGE)
    """Form a convoy from pool requests: convoy, companies, invitations in one transaction (facilitators)."""
    PROGRAMME_REPORT = Op(api.AskProgramme, api.ProgrammeReport, callers=EDGE)
    """Privacy-filtered programme figures for a period (facilitators, admins)."""
