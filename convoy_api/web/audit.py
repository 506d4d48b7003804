"""The audit log as sentences a facilitator reads ("Miriam hid a comment of Anna Brandt."), in their
language, with links to the objects that have a page (a report, a comment, the charter), rather than
the stored codes (``comment.hidden``, ``flag.raised``) and object types.

User text (names, companies) is escaped: the sentence is a catalogue string (trusted) filled in with
``Markup.__mod__``, which escapes every value that is not itself Markup.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from markupsafe import Markup, escape

from schemas import api


def N_(message: str) -> str:
    """Marks a string for the catalogue; it is translated where it is shown."""
    return message


SENTENCES: dict[str, str] = {
    "convoy.created": N_("%(actor)s created the convoy."),
    "convoy.updated": N_("%(actor)s changed the convoy's settings."),
    "convoy.status_changed": N_("%(actor)s changed the status from “%(old)s” to “%(new)s”."),
    "convoy.facilitator_added": N_("%(actor)s added %(person)s as a facilitator."),
    "convoy.slack_changed": N_("%(actor)s changed the Slack connection."),
    "convoy.teams_changed": N_("%(actor)s changed the Microsoft Teams connection."),
    "facilitator.appointed": N_("%(actor)s appointed %(person)s as a facilitator."),
    "company.joined": N_("%(actor)s added the company %(company)s."),
    "company.removed": N_("%(actor)s removed the company %(company)s."),
    "person.invited": N_("%(actor)s invited a representative of %(company)s."),
    "invitation.resent": N_("%(actor)s sent an invitation again (the earlier link no longer works)."),
    "invitation.withdrawn": N_("%(actor)s withdrew an invitation."),
    "observer.invited": N_("%(actor)s invited an observer."),
    "person.joined": N_("%(person)s joined for %(company)s."),
    "observer.joined": N_("%(person)s joined as an observer."),
    "person.removed": N_("%(actor)s removed %(person)s from %(company)s."),
    "observer.removed": N_("%(actor)s ended the observer seat of %(person)s."),
    "person.erased": N_("A member deleted their account; their name is no longer shown."),
    "join.requested": N_("%(company)s asked to join the convoy."),
    "join.approved": N_("%(actor)s approved a request to join."),
    "join.declined": N_("%(actor)s declined a request to join."),
    "charter.updated": N_("%(actor)s changed the %(charter)s (version %(version)s)."),
    "charter.accepted": N_("%(actor)s accepted the %(charter)s (version %(version)s)."),
    "pool.formed": N_("%(actor)s formed the convoy from the formation pool (%(count)s companies)."),
    "pool.joined": N_("A company asked to join through the digitalisation check."),
    "report.hidden": N_("%(actor)s hid the %(object)s."),
    "report.restored": N_("%(actor)s restored the %(object)s."),
    "comment.hidden": N_("%(actor)s hid the %(object)s."),
    "comment.restored": N_("%(actor)s restored the %(object)s."),
    "comments.locked": N_("%(actor)s locked the comments on the %(object)s."),
    "comments.unlocked": N_("%(actor)s unlocked the comments on the %(object)s."),
    "flag.raised": N_("%(actor)s flagged the %(object)s: %(why)s."),
    "flags.dismissed": N_("%(actor)s dismissed the flags on the %(object)s."),
    "flags.acted": N_("%(actor)s upheld the flags on the %(object)s and hid it."),
}
UNKNOWN = N_("%(actor)s made a change.")
FLAG_REASONS: dict[str, str] = {
    "spam": N_("spam or sales pitch"),
    "off_topic": N_("off topic"),
    "confidential": N_("confidential information"),
    "offensive": N_("offensive"),
    "other": N_("something else"),
}
STATES = {"forming": N_("forming"), "active": N_("active"), "paused": N_("paused"), "completed": N_("completed")}


def people_of(convoy: api.Convoy) -> dict[uuid.UUID, str]:
    """Everyone the convoy names today: facilitators, representatives and observers."""
    people = {f.person_id: f.name for f in convoy.facilitators}
    for company in convoy.companies:
        people.update({r.person_id: r.name for r in company.representatives})
    people.update({o.person_id: o.name for o in convoy.observers if o.name})
    return people


def _link(href: str, text: str) -> Markup:
    return Markup('<a href="{}">{}</a>').format(href, text)


def describe(_: Callable[[str], str], entry: api.AuditEntry, people: dict[uuid.UUID, str]) -> dict[str, Any]:
    """{"sentence": Markup, "reason": str} for one entry."""
    former = _("a former member")

    def name(raw: Any) -> str:
        try:
            return people.get(uuid.UUID(str(raw)), former)
        except ValueError:
            return former

    d = entry.details
    actor = _("the centre's admin") if entry.actor_id is None else people.get(entry.actor_id, former)
    values: dict[str, Any] = {
        "actor": actor,
        "person": name(entry.object_id),
        "company": d.get("company") or d.get("name") or "-",
        "old": _(STATES.get(d.get("from", ""), d.get("from", ""))),
        "new": _(STATES.get(d.get("to", ""), d.get("to", ""))),
        "version": d.get("version", ""),
        "count": d.get("companies", ""),
        "charter": _link(f"/convoys/{entry.convoy_id}/charter", _("charter")),
    }
    reason = entry.reason
    report_id = d.get("report_id")
    if report_id:
        author = name(d.get("author_id"))
        known = author != former
        if entry.object_type == "comment":
            text = _("comment of %(author)s") % {"author": author} if known else _("comment of a former member")
            href = f"/reports/{report_id}#comment-{entry.object_id}"
        else:
            text = _("report of %(author)s") % {"author": author} if known else _("report of a former member")
            href = f"/reports/{report_id}"
        values["object"] = _link(href, text)
    if entry.action == "flag.raised":
        flag_reason = d.get("flag_reason", "")
        values["why"] = _(FLAG_REASONS.get(flag_reason, FLAG_REASONS["other"]))
        prefix = f"{flag_reason}: "
        reason = reason[len(prefix) :] if reason.startswith(prefix) else ("" if reason == flag_reason else reason)
    template = SENTENCES.get(entry.action, UNKNOWN)
    try:
        sentence = Markup(escape(_(template))) % values  # noqa: S704 — the catalogue's text, values escaped
    except KeyError:  # a sentence that needs an object the entry does not carry
        sentence = Markup(escape(_(UNKNOWN))) % values  # noqa: S704
    return {"sentence": sentence, "reason": reason}
