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

    def addressed(self, message_class: type[Routed], recipient: str) -> str:
        """Subject of a message to one recipient: ``<ns>.messages.<type>.<recipient tag>``.

        The tag (a hash of the address, services/runtime/sealing.py) lets an erasure purge every message
        to a person by subject; nothing readable about the recipient is in it."""
        if message_class.CHANNEL != "messages" or not re.fullmatch(r"[0-9a-f]{8,64}", recipient):
            raise ValueError(f"not a message with a recipient tag: {message_class.TYPE} {recipient!r}")
        return f"{self.of(message_class)}.{recipient}"

    def filters(self, event_class: type[Routed]) -> list[str]:
        """What a consumer of ``event_class`` filters on: its subject, and for a message also every
        recipient's (:meth:`addressed`)."""
        subject = self.of(event_class)
        return [subject, f"{subject}.*"] if event_class.CHANNEL == "messages" else [subject]

    def recipient_of(self, subject: str) -> str:
        """The recipient tag a message subject ends in ("" for any other subject)."""
        prefix = f"{self.namespace}.messages."
        if not subject.startswith(prefix):
            return ""
        tail = subject[len(prefix) :].rsplit(".", 1)
        return tail[1] if len(tail) == 2 and re.fullmatch(r"[0-9a-f]{8,64}", tail[1]) else ""

    # --- JetStream: dead letters -------------------------------------------------------------
    @property
    def dead_letter_stream(self) -> str:
        """Stream that keeps events a consumer could not process, for a person to look at."""
        return f"{self.namespace.upper()}_DEAD_LETTERS"

    @property
    def dead_letter_wildcard(self) -> str:
        return f"{self.namespace}.dlq.>"

    def dead_letter(self, consumer: str, recipient: str = "") -> str:
        """Subject a consumer's undeliverable events go to; a message to a recipient keeps its recipient
        tag (``<ns>.dlq.<consumer>.<tag>``), so an erasure purges its dead letters by subject too."""
        return f"{self.namespace}.dlq.{consumer}" + (f".{recipient}" if recipient else "")

    def consumer(self, service: str, purpose: str) -> str:
        """Durable consumer name (JetStream names allow no dots)."""
        return f"{self.namespace}_{service}_{purpose}"

    # --- core NATS: convoy versions (issue #21, conditional GETs) -------------------------------
    @property
    def convoy_versions(self) -> str:
        """services/milestones publishes the new change counter of convoys here after each commit
        (core NATS, not stored: ``schemas.api.ConvoyVersions``); the API keeps the newest per convoy for
        its ETags. Publisher: milestones; subscriber: api."""
        return f"{self.namespace}.versions.convoys"

    @property
    def recipient_versions(self) -> str:
        """services/convoys publishes the new version of convoys' recipients answers here after each commit
        that changes one (``CONVOY_RECIPIENTS``: members, observers, their names, emails and languages, the
        convoy's name, language and chat channels; core NATS: ``schemas.api.ConvoyVersions``); the notifier
        reuses a cached answer only while its version is the newest it heard. Publisher: convoys;
        subscriber: notifier."""
        return f"{self.namespace}.versions.recipients"

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

    def inbox_prefix(self, role: str) -> str:
        """Prefix of a process's reply subjects (nats-py ``inbox_prefix``): a role may subscribe
        to its own inboxes only, so it cannot read the replies another process asked for."""
        return f"_INBOX.{self.namespace}.{role}"

    def micro_name(self, service: str) -> str:
        """Name the service registers with nats.micro (visible in ``$SRV.PING``)."""
        return f"{self.namespace}-{service}"
