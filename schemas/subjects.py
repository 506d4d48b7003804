"""Every NATS subject, stream and consumer name, defined once.

All names hang off a *namespace* (``CONVOY_NAMESPACE``, default ``convoy``) so that several
Convoy installations, or every test, can share one NATS server without seeing each other.
No other module spells a subject literal; they ask a :class:`Subjects` instance.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, Protocol


class Named(Protocol):
    """A declared operation, as far as its subject goes (``schemas.contract.Op``)."""

    @property
    def service(self) -> str: ...
    @property
    def name(self) -> str: ...


class Routed(Protocol):
    TYPE: ClassVar[str]
    CHANNEL: ClassVar[str]


SERVICES: tuple[str, ...] = ("convoys", "milestones", "reminders", "notifier")
"""The back-end services the API asks over NATS; each answers ``<ns>.rpc.<service>.health``."""

_NAMESPACE = re.compile(r"^[a-z][a-z0-9_]{0,30}$")


@dataclass(frozen=True, slots=True)
class Subjects:
    """Names of subjects and streams for one namespace."""

    namespace: str = "convoy"

    def __post_init__(self) -> None:
        if not _NAMESPACE.match(self.namespace):
            raise ValueError(f"namespace {self.namespace!r} must be lower-case letters, digits or '_' (max 31)")

    # --- JetStream: events -------------------------------------------------------------------
    @property
    def events_stream(self) -> str:
        """Stream that keeps every domain event."""
        return f"{self.namespace.upper()}_EVENTS"

    @property
    def events_wildcard(self) -> str:
        return f"{self.namespace}.events.>"

    def event(self, event_type: str) -> str:
        """Subject of one event type, e.g. ``convoy.events.report.submitted``."""
        return f"{self.namespace}.events.{event_type}"

    def of(self, event_class: type[Routed]) -> str:
        """Subject of an event or message class (by its CHANNEL: ``events`` or ``messages``)."""
        if event_class.CHANNEL == "messages":
            return self.message(event_class.TYPE)
        return self.event(event_class.TYPE)

    @staticmethod
    def name_of(subject: str) -> str:
        """A subject without namespace and kind: an event's type, or ``service.operation`` of a request.

        Bounded (one per event type or endpoint), so fit for metric labels and span names.
        """
        return subject.split(".", 2)[-1]

    def stream_of(self, event_class: type[Routed]) -> str:
        return self.messages_stream if event_class.CHANNEL == "messages" else self.events_stream

    def stream_of_subject(self, subject: str) -> str:
        """The stream an outbox row's subject (from :meth:`of`) is stored in."""
        return self.messages_stream if subject.startswith(f"{self.namespace}.messages.") else self.events_stream

    # --- JetStream: messages (requests to the notifier that may carry one-time links) ---------
    @property
    def messages_stream(self) -> str:
        """Stream of messages for the notifier; kept one day only, as they may carry sign-in links."""
        return f"{self.namespace.upper()}_MESSAGES"

    @property
    def messages_wildcard(self) -> str:
        return f"{self.namespace}.messages.>"

    def message(self, message_type: str) -> str:
        return f"{self.namespace}.messages.{message_type}"

    # --- JetStream: dead letters -------------------------------------------------------------
    @property
    def dead_letter_stream(self) -> str:
        """Stream that keeps events a consumer could not process, for a person to look at."""
        return f"{self.namespace.upper()}_DEAD_LETTERS"

    @property
    def dead_letter_wildcard(self) -> str:
        return f"{self.namespace}.dlq.>"

    def dead_letter(self, consumer: str) -> str:
        """Subject a consumer's undeliverable events go to."""
        return f"{self.namespace}.dlq.{consumer}"

    def consumer(self, service: str, purpose: str) -> str:
        """Durable consumer name (JetStream names allow no dots)."""
        return f"{self.namespace}_{service}_{purpose}"

    # --- request/reply (nats.micro) ----------------------------------------------------------
    def rpc(self, service: str, operation: str) -> str:
        """Subject of one request/reply endpoint of a service."""
        return f"{self.namespace}.rpc.{service}.{operation}"

    def operation(self, op: Named) -> str:
        """Subject of a declared operation (``schemas/contract.py``): ``<ns>.rpc.<service>.<name>``."""
        return self.rpc(op.service, op.name)

    def health(self, service: str) -> str:
        return self.rpc(service, "health")

    def metrics(self, service: str) -> str:
        return self.rpc(service, "metrics")

    def micro_name(self, service: str) -> str:
        """Name the service registers with nats.micro (visible in ``$SRV.PING``)."""
        return f"{self.namespace}-{service}"


# Operation names of the request/reply endpoints, one constant each, shared by caller and callee.
class Rpc:
    CONVOY_CREATE = "convoy_create"
    CONVOY_GET = "convoy_get"
    COMPANY_ADD = "company_add"
    TOKEN_RESOLVE = "token_resolve"
    FACILITATOR_APPOINT = "facilitator_appoint"
    CONVOY_UPDATE = "convoy_update"
    CONVOY_STATUS = "convoy_status"
    CONVOY_LIST_OPEN = "convoy_list_open"
    CONVOY_FACILITATOR_ADD = "convoy_facilitator_add"
    COMPANY_REMOVE = "company_remove"
    MEMBER_REMOVE = "member_remove"
    OBSERVER_INVITE = "observer_invite"
    OBSERVER_REMOVE = "observer_remove"
    INVITATION_CREATE = "invitation_create"
    INVITATION_PREVIEW = "invitation_preview"
    INVITATION_ACCEPT = "invitation_accept"
    INVITATION_LIST = "invitation_list"
    INVITATION_RESEND = "invitation_resend"
    INVITATION_WITHDRAW = "invitation_withdraw"
    JOIN_REQUEST_CREATE = "join_request_create"
    JOIN_REQUEST_LIST = "join_request_list"
    JOIN_REQUEST_DECIDE = "join_request_decide"
    SIGN_IN_REQUEST = "sign_in_request"
    SIGN_IN_COMPLETE = "sign_in_complete"
    SESSION_RESOLVE = "session_resolve"
    SIGN_OUT = "sign_out"
    ME_GET = "me_get"
    ME_UPDATE = "me_update"
    API_TOKEN_CREATE = "api_token_create"
    API_TOKEN_LIST = "api_token_list"
    API_TOKEN_REVOKE = "api_token_revoke"
    AUDIT_LIST = "audit_list"
    MEMBERSHIP_GET = "membership_get"
    CONVOY_RECIPIENTS = "convoy_recipients"
    REPORT_SUBMIT = "report_submit"
    REPORT_LIST = "report_list"
    REPORT_GET = "report_get"
    REPORT_EDIT = "report_edit"
    TIMELINE = "timeline"
    BOARD = "board"
    SEARCH = "search"
    EXPORT = "export"
    PROJECT_PUT = "project_put"
    PROJECT_GET = "project_get"
    MILESTONE_ADD = "milestone_add"
    MILESTONE_CHANGE = "milestone_change"
    MILESTONE_ORDER = "milestone_order"
    COMMENT_ADD = "comment_add"
    COMMENT_LIST = "comment_list"
    COMMENT_EDIT = "comment_edit"
    """The author changes their comment's text (within CONVOY_COMMENT_EDIT_WINDOW_S)."""
    COMMENT_DELETE = "comment_delete"
    """The author deletes their comment (within the window); facilitators hide instead."""
    KUDOS_GIVE = "kudos_give"
    KUDOS_TAKE_BACK = "kudos_take_back"
    HELP_OFFER = "help_offer"
    HELP_SUGGESTIONS = "help_suggestions"
    CATALOGUE = "catalogue"
    CYCLE_STATUS = "cycle_status"
    PROMPT_CONTEXT = "prompt_context"
    DIGEST = "digest"
    ROUNDS_SEAL = "rounds_seal"
    """services/reminders only: seal cycles before closing them (services/milestones: the round boundary)."""
    SCHEDULE = "schedule"
    CYCLE_SKIP = "cycle_skip"
    COMPANY_AWAY = "company_away"
    COMPANY_SKIP = "company_skip"
    PROMPT_NOW = "prompt_now"
    CLOSE_NOW = "close_now"
    SCHEDULE_SETTINGS = "schedule_settings"
    TICK = "tick"
    FACILITATORS = "facilitators"
    CONVOY_FACILITATORS = "convoy_facilitators"
    """Internal (no actor): one convoy's facilitators with their contacts (services/convoys)."""
    CONVOY_SLACK_SET = "convoy_slack_set"
    CONVOY_CHAT_SET = "convoy_chat_set"
    """Set or remove one chat channel's webhook (facilitators; the notifier as system)."""
    CONVOY_CHAT_GET = "convoy_chat_get"
    """Internal (no actor): a convoy's chat channels with their webhook URLs."""
    PREFS_GET = "prefs_get"
    PREFS_PUT = "prefs_put"
    UNSUBSCRIBE = "unsubscribe"
    FACILITATOR_DIGEST = "facilitator_digest"

    # --- calendar subscriptions (issue #22) ---------------------------------------------------------
    CALENDAR_GET = "calendar_get"
    """services/convoys: the asking person's calendar feed (whether one is active)."""
    CALENDAR_CREATE = "calendar_create"
    """services/convoys: a new feed token for the asking person; the previous one stops working."""
    CALENDAR_REVOKE = "calendar_revoke"
    """services/convoys: turn the asking person's feed off."""
    CALENDAR_RESOLVE = "calendar_resolve"
    """services/convoys: whose feed a ``cvc_`` token is, with their convoys (404 unknown or revoked)."""
    CALENDAR_ROUNDS = "calendar_rounds"
    """services/reminders (system callers): the rounds of several convoys around now, for the feeds."""

    # --- demo / import ------------------------------------------------------------------------
    REPORT_IMPORT = "report_import"
    """Admin only: file a report of a past, closed cycle with its historic times (services/milestones)."""

    # --- moderation (services/milestones; facilitators and admins of the convoy) ----------------
    REPORT_HIDE = "report_hide"
    REPORT_RESTORE = "report_restore"
    REPORT_LOCK_COMMENTS = "report_lock_comments"
    """Lock or unlock a report's comments (``LockComments.locked``)."""
    COMMENT_HIDE = "comment_hide"
    COMMENT_RESTORE = "comment_restore"

    # --- data protection (every service answers PERSONAL_DATA; convoys ME_ERASE; milestones RETENTION_PURGE) ---
    PERSONAL_DATA = "personal_data"
    """What a service stores about the asking person (``api.Ask``), for the JSON export."""
    ME_ERASE = "me_erase"
    """services/convoys: delete the asking person's account; every service follows ``person.erased``."""
    RETENTION_PURGE = "retention_purge"
    """services/milestones: remove the content of companies that left longer ago than their convoy keeps it."""

    # --- flags and charter ----------------------------------------------------------------------
    # services/milestones: members flag reports and comments; the convoy's facilitators work the queue.
    FLAG_CREATE = "flag_create"
    """A member flags a report or comment (``api.FlagContent``); one open flag per person and object."""
    FLAG_QUEUE = "flag_queue"
    """The convoy's open flags, grouped by object (facilitators and admins)."""
    FLAG_RESOLVE = "flag_resolve"
    """Dismiss or act on (hide) a flagged object: resolves every open flag on it (facilitators and admins)."""
    # services/convoys: the convoy's charter, which every representative accepts.
    CHARTER_GET = "charter_get"
    CHARTER_PUT = "charter_put"
    """Facilitators change the charter's text: a new version every representative accepts again."""
    CHARTER_ACCEPT = "charter_accept"

    # --- digitalisation check -------------------------------------------------------------------
    # services/convoys (services/convoys/check): the public check, the formation pool, programme figures.
    CHECK_QUESTIONS = "check_questions"
    """The current question set (anyone)."""
    CHECK_SUBMIT = "check_submit"
    """Score anonymous answers and keep them without any contact data (anyone)."""
    CHECK_GET = "check_get"
    """A result by its id (whoever holds the link)."""
    POOL_JOIN = "pool_join"
    """With explicit consent: leave a contact and ask to join a convoy on a theme (anyone holding a result)."""
    POOL_LIST = "pool_list"
    """Waiting companies with their profiles and suggested groups (facilitators, admins)."""
    POOL_FORM = "pool_form"
    """Form a convoy from pool requests: convoy, companies, invitations in one transaction (facilitators)."""
    PROGRAMME_REPORT = "programme_report"
    """Privacy-filtered programme figures for a period (facilitators, admins)."""
    # services/milestones: aggregates of projects in the given convoys (groups below MIN_GROUP suppressed).
    CHECK_OUTCOMES = "check_outcomes"
