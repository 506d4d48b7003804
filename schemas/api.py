"""Requests and replies: the HTTP bodies at the edge and the NATS request/reply messages.

Validation happens here, once: msgspec checks types and the constraints below when the API
decodes a body, and again when a service decodes a request (a service never trusts its caller
to have validated).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

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


class Body(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base for bodies a client sends: unknown fields are an error, not silently dropped."""


class Reply(msgspec.Struct, kw_only=True):
    """Base for what services answer."""


# --- who is asking -----------------------------------------------------------------------------
class Actor(msgspec.Struct, frozen=True, kw_only=True):
    """The authenticated caller, as established by the API edge (or a service acting itself)."""

    person_id: uuid.UUID | None = None
    is_admin: bool = False
    is_system: bool = False


SYSTEM = Actor(is_system=True)


# --- convoys -----------------------------------------------------------------------------------
class NewConvoy(Body, kw_only=True):
    name: Name
    theme: ShortText = ""
    description: LongText = ""
    timezone: Annotated[str, Meta(min_length=1, max_length=64)] = "Europe/Berlin"
    language: Language = "de"


class Company(Reply, kw_only=True):
    id: uuid.UUID
    convoy_id: uuid.UUID
    name: str
    sector: str
    region: str


class Convoy(Reply, kw_only=True):
    id: uuid.UUID
    name: str
    theme: str
    description: str
    timezone: str
    language: str
    status: str
    created_at: datetime
    companies: list[Company] = []


class NewCompany(Body, kw_only=True):
    name: Name
    sector: ShortText = ""
    region: ShortText = ""


class NewRepresentative(Body, kw_only=True):
    name: Name
    email: Email
    language: Language = "de"


class Representative(Reply, kw_only=True):
    person_id: uuid.UUID
    convoy_id: uuid.UUID
    company_id: uuid.UUID
    name: str
    email: str
    language: str


class RepresentativeAdded(Reply, kw_only=True):
    representative: Representative
    api_token: str
    """Personal API token, shown once (sign-in links and invitations replace this later)."""


class CreateConvoy(Body, kw_only=True):
    actor: Actor
    convoy: NewConvoy


class GetConvoy(Body, kw_only=True):
    actor: Actor
    convoy_id: uuid.UUID


class AddCompany(Body, kw_only=True):
    actor: Actor
    convoy_id: uuid.UUID
    company: NewCompany


class AddRepresentative(Body, kw_only=True):
    actor: Actor
    convoy_id: uuid.UUID
    company_id: uuid.UUID
    representative: NewRepresentative


class ResolveToken(Body, kw_only=True):
    token: Annotated[str, Meta(min_length=1, max_length=200)]


class TokenOwner(Reply, kw_only=True):
    person_id: uuid.UUID


class GetMembership(Body, kw_only=True):
    person_id: uuid.UUID
    convoy_id: uuid.UUID


class Membership(Reply, kw_only=True):
    person_id: uuid.UUID
    convoy_id: uuid.UUID
    company_ids: list[uuid.UUID]


class GetRecipients(Body, kw_only=True):
    convoy_id: uuid.UUID


class Recipient(Reply, kw_only=True):
    person_id: uuid.UUID
    company_id: uuid.UUID
    company_name: str
    name: str
    email: str
    language: str


class Recipients(Reply, kw_only=True):
    convoy_id: uuid.UUID
    convoy_name: str
    members: list[Recipient]


# --- reports -----------------------------------------------------------------------------------
class NewReport(Body, kw_only=True):
    company_id: uuid.UUID | None = None
    """Which company this report is for; may be left out when the author represents one only."""
    done: Annotated[str, Meta(min_length=1, max_length=20000)]
    next: ReportText = ""
    blockers: ReportText = ""
    help_wanted: ReportText = ""
    mood: Mood | None = None


class Report(Reply, kw_only=True):
    id: uuid.UUID
    convoy_id: uuid.UUID
    company_id: uuid.UUID
    author_id: uuid.UUID
    done: str
    next: str
    blockers: str
    help_wanted: str
    mood: int | None
    submitted_at: datetime


class SubmitReport(Body, kw_only=True):
    actor: Actor
    convoy_id: uuid.UUID
    report: NewReport


class ListReports(Body, kw_only=True):
    actor: Actor
    convoy_id: uuid.UUID
    limit: Annotated[int, Meta(ge=1, le=200)] = 50


class GetReport(Body, kw_only=True):
    actor: Actor
    report_id: uuid.UUID


class ReportList(Reply, kw_only=True):
    reports: list[Report]


# --- operations ----------------------------------------------------------------------------------
class Empty(Body, kw_only=True):
    pass


class Health(Reply, kw_only=True):
    service: str
    ready: bool
    checks: dict[str, str]
