"""The milestone catalogue: typical milestone ladders per kind of digital project.

A company starts from a ladder (say ``online_booking``: requirements, tool, calendar, ...) and
adapts it. The ladders are data, in ``catalogue.json`` next to this module, so the competence
centre can revise wording, order and weights without touching code. ``version`` is the
revision of that content: bump it whenever rungs change, so that a ladder copied from it can
tell which revision it came from.

The file is decoded and validated once (:func:`catalogue`); :func:`load` validates any payload
of the same shape, and rejects it with a :class:`CatalogueError` that names the problem and
where it is:

- project type keys are unique snake_case words (``web_shop``);
- each type has 5 to 8 rungs, and each rung key is ``<type key>.<snake_case>``, unique;
- titles and descriptions are non-empty, in German and English;
- ``weight`` (effort) is an integer from 1 to 5;
- unknown fields are errors, not silently ignored (a typo would otherwise lose data).
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Annotated

import msgspec

__all__ = [
    "MAX_RUNGS",
    "MAX_WEIGHT",
    "MIN_RUNGS",
    "MIN_WEIGHT",
    "Catalogue",
    "CatalogueError",
    "ProjectType",
    "Rung",
    "catalogue",
    "load",
    "project_type",
    "rung",
]

MIN_RUNGS, MAX_RUNGS = 5, 8
MIN_WEIGHT, MAX_WEIGHT = 1, 5

_PACKAGE = "services.milestones"
_FILE = "catalogue.json"

_WORD = "[a-z][a-z0-9]*(?:_[a-z0-9]+)*"
TypeKey = Annotated[str, msgspec.Meta(pattern=f"^{_WORD}$", max_length=64)]
RungKey = Annotated[str, msgspec.Meta(pattern=rf"^{_WORD}\.{_WORD}$", max_length=129)]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
Weight = Annotated[int, msgspec.Meta(ge=MIN_WEIGHT, le=MAX_WEIGHT)]


class CatalogueError(ValueError):
    """The catalogue payload is not valid; the message says what and where."""


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


def load(data: bytes | str) -> Catalogue:
    """Decode and validate a catalogue payload (JSON); :class:`CatalogueError` if it is invalid."""
    try:
        return msgspec.json.decode(data, type=Catalogue)
    except msgspec.ValidationError as exc:
        raise CatalogueError(f"invalid milestone catalogue: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise CatalogueError(f"milestone catalogue is not valid JSON: {exc}") from exc


@functools.cache
def catalogue() -> Catalogue:
    """The shipped catalogue, decoded and validated on first use."""
    data = resources.files(_PACKAGE).joinpath(_FILE).read_bytes()
    try:
        return load(data)
    except CatalogueError as exc:
        raise CatalogueError(f"{_PACKAGE}/{_FILE}: {exc}") from exc


@functools.cache
def _index() -> tuple[dict[str, ProjectType], dict[str, tuple[ProjectType, int, Rung]]]:
    types: dict[str, ProjectType] = {}
    rungs: dict[str, tuple[ProjectType, int, Rung]] = {}
    for t in catalogue().project_types:
        types[t.key] = t
        for position, r in enumerate(t.rungs):
            rungs[r.key] = (t, position, r)
    return types, rungs


def project_type(key: str) -> ProjectType | None:
    """The project type with this key (``"web_shop"``), or None."""
    return _index()[0].get(key)


def rung(key: str) -> tuple[ProjectType, int, Rung] | None:
    """The rung with this key (``"web_shop.launch"``): its type, 0-based position and itself; or None."""
    return _index()[1].get(key)
