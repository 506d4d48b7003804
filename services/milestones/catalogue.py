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

import msgspec

from schemas.catalogue import MAX_RUNGS, MAX_WEIGHT, MIN_RUNGS, MIN_WEIGHT, Catalogue, ProjectType, Rung

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

_PACKAGE = "services.milestones"
_FILE = "catalogue.json"


class CatalogueError(ValueError):
    """The catalogue payload is not valid; the message says what and where."""


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
