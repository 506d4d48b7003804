"""Suggesting convoys from the formation pool, and the competitor warning (pure functions).

Mastermind practice keeps competitors apart: companies of the same trade in the same region would not
speak openly. Two pool requests *look like competitors* when their trade (the sector they typed, compared
without case and extra spaces) is the same and non-empty and their Bundesland is the same and known.

Suggestions: per theme, the waiting companies sorted by maturity (the check's overall score), cut into
``ceil(n / 8)`` groups of near-equal size (so 4 to 8 each when there are at least four); then a company
that meets a competitor in its group swaps with one from another group of the theme when that leaves
neither group with a competitor. What cannot be separated stays in the group, with the warning.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass

MIN_GROUP, MAX_GROUP = 4, 8


@dataclass(frozen=True)
class Candidate:
    id: uuid.UUID
    theme: str
    sector: str
    region: str
    overall: int | None


@dataclass(frozen=True)
class Group:
    theme: str
    members: list[Candidate]
    maturity: int | None
    competitors: list[tuple[Candidate, Candidate]]


def trade(sector: str) -> str:
    return " ".join(sector.casefold().split())


def rivals(a: Candidate, b: Candidate) -> bool:
    return bool(trade(a.sector)) and trade(a.sector) == trade(b.sector) and bool(a.region) and a.region == b.region


def competitors(members: list[Candidate]) -> list[tuple[Candidate, Candidate]]:
    """Every pair in ``members`` that looks like competitors, in the members' order."""
    return [(a, b) for i, a in enumerate(members) for b in members[i + 1 :] if rivals(a, b)]


def _maturity(members: list[Candidate]) -> int | None:
    known = [m.overall for m in members if m.overall is not None]
    return round(sum(known) / len(known)) if known else None


def _clean(group: list[Candidate], member: Candidate) -> bool:
    return not any(rivals(member, other) for other in group if other.id != member.id)


def suggest(candidates: list[Candidate]) -> list[Group]:
    themes: dict[str, list[Candidate]] = {}
    for c in candidates:
        themes.setdefault(c.theme, []).append(c)
    out: list[Group] = []
    for theme, waiting in themes.items():
        if len(waiting) < MIN_GROUP:
            continue
        ordered = sorted(waiting, key=lambda c: (c.overall is None, c.overall or 0, str(c.id)))
        k = math.ceil(len(ordered) / MAX_GROUP)
        sizes = [len(ordered) // k + (1 if i < len(ordered) % k else 0) for i in range(k)]
        groups: list[list[Candidate]] = []
        start = 0
        for size in sizes:
            groups.append(ordered[start : start + size])
            start += size
        _separate(groups)
        out += [Group(theme, g, _maturity(g), competitors(g)) for g in groups]
    return out


def _separate(groups: list[list[Candidate]]) -> None:
    """Swap a company out of a group where it meets a competitor, nearest groups first."""
    for gi, group in enumerate(groups):
        for mi, member in enumerate(group):
            if _clean(group, member):
                continue
            others = sorted((oj for oj in range(len(groups)) if oj != gi), key=lambda oj: abs(oj - gi))
            for oj in others:
                swapped = False
                for ni, partner in enumerate(groups[oj]):
                    mine = [*group[:mi], partner, *group[mi + 1 :]]
                    theirs = [*groups[oj][:ni], member, *groups[oj][ni + 1 :]]
                    better = len(competitors(mine)) < len(competitors(group))
                    if better and len(competitors(theirs)) <= len(competitors(groups[oj])):
                        group[mi], groups[oj][ni] = partner, member
                        swapped = True
                        break
                if swapped:
                    break
