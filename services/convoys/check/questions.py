"""The check's question set and its scoring.

The questions are data, one file per version (``questions-v1.json`` next to this module), so the
competence centre can revise them without touching code: a revision is a new file with the next
version, and results keep the version they were scored with. :func:`load` validates a payload
(types and lengths through msgspec, references here) and raises :class:`QuestionSetError` naming
the problem:

- area, question and sector keys are unique; option keys are unique within their question;
- every question belongs to a known area and every area has a question;
- a ``multi`` question has no option that skips its area (skipping needs one clear answer).

Answers are typed strictly: a ``single`` or ``scale`` question takes one option key (a string), a ``multi``
question a list of them; the other shape is refused (:class:`AnswerError`), never coerced.

Scoring (:func:`score`) per area: the points of the chosen options over the most the answered
questions could give, 0 to 100 (rounded half up). An answer with ``points: null`` leaves its
question out; an answer with ``skips_area`` leaves the whole area out (``None``: it does not apply).
``overall`` is the mean of the areas that apply. Potentials are the (up to three) areas below
``potential_below``, lowest first.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources

import msgspec

from schemas import api

_PACKAGE = "services.convoys.check"
CURRENT_VERSION = 1
MAX_POTENTIALS = 3


class QuestionSetError(ValueError):
    """The question set payload is invalid; the message says what and where."""


class AnswerError(ValueError):
    """Answers that do not fit the question set; the message names the field (``answers.<question>``)."""


def load(data: bytes | str) -> api.QuestionSet:
    try:
        qs = msgspec.json.decode(data, type=api.QuestionSet)
    except msgspec.ValidationError as exc:
        raise QuestionSetError(f"invalid question set: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise QuestionSetError(f"question set is not valid JSON: {exc}") from exc
    _unique("area", [a.key for a in qs.areas])
    _unique("question", [q.key for q in qs.questions])
    _unique("sector", [s.key for s in qs.sectors])
    areas = {a.key for a in qs.areas}
    for q in qs.questions:
        if q.area not in areas:
            raise QuestionSetError(f"question {q.key!r}: unknown area {q.area!r}")
        _unique(f"option of question {q.key!r}", [o.key for o in q.options])
        if q.kind == "multi" and any(o.skips_area for o in q.options):
            raise QuestionSetError(f"question {q.key!r}: a multi question cannot skip its area")
    without = areas - {q.area for q in qs.questions}
    if without:
        raise QuestionSetError(f"areas without questions: {sorted(without)}")
    return qs


def _unique(what: str, keys: list[str]) -> None:
    seen: set[str] = set()
    for k in keys:
        if k in seen:
            raise QuestionSetError(f"duplicate {what} key {k!r}")
        seen.add(k)


def versions() -> list[int]:
    """The versions shipped (``questions-v<N>.json``), oldest first."""
    found = []
    for entry in resources.files(_PACKAGE).iterdir():
        name = entry.name
        if name.startswith("questions-v") and name.endswith(".json") and name[11:-5].isdigit():
            found.append(int(name[11:-5]))
    return sorted(found)


@functools.cache
def question_set(version: int = CURRENT_VERSION) -> api.QuestionSet:
    """A shipped version, decoded and validated once; KeyError if there is no such version."""
    file = resources.files(_PACKAGE).joinpath(f"questions-v{version}.json")
    if not file.is_file():
        raise KeyError(version)
    try:
        qs = load(file.read_bytes())
    except QuestionSetError as exc:
        raise QuestionSetError(f"{_PACKAGE}/questions-v{version}.json: {exc}") from exc
    if qs.version != version:
        raise QuestionSetError(f"questions-v{version}.json says version {qs.version}")
    return qs


def themes(qs: api.QuestionSet) -> list[str]:
    """Every project type the question set points to, in order of first mention."""
    return list(dict.fromkeys(t for a in qs.areas for t in a.project_types))


@dataclass(frozen=True)
class Scored:
    areas: dict[str, int | None]
    overall: int | None
    potentials: list[str] = field(default_factory=list)
    answers: dict[str, list[str]] = field(default_factory=dict)
    """The answers as stored: every answered question with its option keys (a list, also for one)."""


def _half_up(numerator: int, denominator: int) -> int:
    return (2 * numerator + denominator) // (2 * denominator)


def score(qs: api.QuestionSet, answers: api.CheckAnswers) -> Scored:
    if answers.sector and answers.sector not in {s.key for s in qs.sectors}:
        raise AnswerError(f"`sector`: unknown sector {answers.sector!r}")
    questions = {q.key: q for q in qs.questions}
    unknown = sorted(set(answers.answers) - set(questions))
    if unknown:
        raise AnswerError(f"`answers.{unknown[0]}`: no such question in version {qs.version}")
    got: dict[str, int] = {a.key: 0 for a in qs.areas}
    most: dict[str, int] = {a.key: 0 for a in qs.areas}
    skipped: set[str] = set()
    stored: dict[str, list[str]] = {}
    for q in qs.questions:
        raw = answers.answers.get(q.key)
        if q.kind == "multi" and isinstance(raw, str):
            raise AnswerError(f"`answers.{q.key}`: a list of option keys (this question takes several answers)")
        if q.kind != "multi" and isinstance(raw, list):
            raise AnswerError(f"`answers.{q.key}`: one option key, not a list (this question takes one answer)")
        chosen = [raw] if isinstance(raw, str) else list(dict.fromkeys(raw or []))
        options = {o.key: o for o in q.options}
        for key in chosen:
            if key not in options:
                raise AnswerError(f"`answers.{q.key}`: no option {key!r}")
        if q.kind != "multi" and len(chosen) != 1:
            raise AnswerError(f"`answers.{q.key}`: choose one answer")
        stored[q.key] = chosen
        picked = [options[k] for k in chosen]
        if any(o.skips_area for o in picked):
            skipped.add(q.area)
            continue
        if q.kind == "multi":
            got[q.area] += sum(o.points or 0 for o in picked)
            most[q.area] += sum(o.points or 0 for o in q.options)
        elif picked[0].points is not None:
            got[q.area] += picked[0].points
            most[q.area] += max(o.points for o in q.options if o.points is not None)
    areas: dict[str, int | None] = {
        a.key: None if a.key in skipped or most[a.key] == 0 else _half_up(100 * got[a.key], most[a.key])
        for a in qs.areas
    }
    applying = [s for s in areas.values() if s is not None]
    overall = _half_up(sum(applying), len(applying)) if applying else None
    order = {a.key: i for i, a in enumerate(qs.areas)}
    low = sorted(
        (k for k, s in areas.items() if s is not None and s < qs.potential_below),
        key=lambda k: (areas[k], order[k]),
    )
    return Scored(areas=areas, overall=overall, potentials=low[:MAX_POTENTIALS], answers=stored)
