"""Domain events: frozen, keyword-only, named in the past tense, carrying ids, not objects.

Evolve an event by adding fields with defaults; a breaking change gets a new SCHEMA_VERSION
and a new class, and consumers decode both.
"""

from __future__ import annotations

import uuid
from typing import ClassVar

import msgspec


class Event(msgspec.Struct, frozen=True, kw_only=True):
    TYPE: ClassVar[str]
    SCHEMA_VERSION: ClassVar[int] = 1


class ConvoyCreated(Event, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "convoy.created"
    convoy_id: uuid.UUID
    name: str
    timezone: str
    language: str


class CompanyJoined(Event, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "company.joined"
    convoy_id: uuid.UUID
    company_id: uuid.UUID
    name: str


class PersonJoined(Event, frozen=True, kw_only=True):
    """A representative became a member of a company in a convoy."""

    TYPE: ClassVar[str] = "person.joined"
    convoy_id: uuid.UUID
    company_id: uuid.UUID
    person_id: uuid.UUID


class ReportSubmitted(Event, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "report.submitted"
    convoy_id: uuid.UUID
    company_id: uuid.UUID
    report_id: uuid.UUID
    author_id: uuid.UUID


EVENT_TYPES: tuple[type[Event], ...] = (ConvoyCreated, CompanyJoined, PersonJoined, ReportSubmitted)
"""Every event type; the envelope codec builds one decoder per entry."""
