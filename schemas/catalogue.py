"""The milestone catalogue's shape: the reply of services/milestones' ``catalogue`` operation.

Typical milestone ladders per kind of digital project; the content is data of services/milestones
(``services/milestones/catalogue.json``), validated there with these types. Unknown fields are
errors, keys are snake_case words, each type has 5 to 8 rungs with unique keys, weights 1 to 5.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = ["MAX_RUNGS", "MAX_WEIGHT", "MIN_RUNGS", "MIN_WEIGHT", "Catalogue", "ProjectType", "Rung"]

MIN_RUNGS, MAX_RUNGS = 5, 8
MIN_WEIGHT, MAX_WEIGHT = 1, 5

_WORD = "[a-z][a-z0-9]*(?:_[a-z0-9]+)*"
TypeKey = Annotated[str, msgspec.Meta(pattern=f"^{_WORD}$", max_length=64)]
RungKey = Annotated[str, msgspec.Meta(pattern=rf"^{_WORD}\.{_WORD}$", max_length=129)]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
Weight = Annotated[int, msgspec.Meta(ge=MIN_WEIGHT, le=MAX_WEIGHT)]


class Rung(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One milestone on a ladder; ``weight`` is the relative effort, 1 (small) to 5 (big)."""

    key: RungKey
    title_de: Text
    title_en: Text
    weight: Weight


class ProjectType(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A kind of digital project with its typical ladder of milestones, in order."""

    key: TypeKey
    title_de: Text
    title_en: Text
    description_de: Text
    description_en: Text
    rungs: Annotated[tuple[Rung, ...], msgspec.Meta(min_length=MIN_RUNGS, max_length=MAX_RUNGS)]

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for position, r in enumerate(self.rungs):
            if not r.key.startswith(f"{self.key}."):
                raise ValueError(f"rung key {r.key!r} (rung {position}) must start with {self.key + '.'!r}")
            if r.key in seen:
                raise ValueError(f"duplicate rung key {r.key!r} (rung {position})")
            seen.add(r.key)


class Catalogue(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """All project types, in the order they are offered."""

    version: Annotated[int, msgspec.Meta(ge=1)]
    project_types: Annotated[tuple[ProjectType, ...], msgspec.Meta(min_length=1)]

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for position, t in enumerate(self.project_types):
            if t.key in seen:
                raise ValueError(f"duplicate project type key {t.key!r} (project type {position})")
            seen.add(t.key)
