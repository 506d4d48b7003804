"""The checklist of a convoy in formation ("in Gründung"): what is done and what is left before it starts.

Shown to its facilitators on the manage page and the convoy page while the convoy is forming. Every step
is derived from what the services already know (companies, representatives, pending invitations, the
start date, the charter's version), so nothing is stored and nothing can go stale.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas import api

MIN_COMPANIES = 2
"""A peer group needs peers: at least two companies before the convoy starts."""


@dataclass(frozen=True)
class Step:
    key: str
    done: bool
    required: bool
    """Activation can wait for the optional steps (the default charter is a fine start)."""
    count: int = 0
    of: int = 0


def formation_steps(
    convoy: api.Convoy, invitations: list[api.PendingInvitation], charter: api.Charter | None
) -> list[Step]:
    companies = convoy.companies
    invited = {i.company_id for i in invitations if i.role == "representative"}
    with_rep = [c for c in companies if c.representatives]
    reached = [c for c in companies if c.representatives or c.id in invited]
    return [
        Step("companies", len(companies) >= MIN_COMPANIES, True, len(companies), MIN_COMPANIES),
        Step("invited", bool(companies) and len(reached) == len(companies), True, len(reached), len(companies)),
        Step("accepted", bool(companies) and len(with_rep) == len(companies), False, len(with_rep), len(companies)),
        Step("schedule", convoy.start_date is not None, True),
        Step("charter", charter is not None and not charter.is_default, False),
        Step("activate", convoy.status != "forming", True),
    ]


def ready_to_activate(steps: list[Step]) -> bool:
    return all(s.done for s in steps if s.required and s.key != "activate")
