"""Rendering notifications from Jinja2 templates, in the recipient's language (de or en).

The words are English msgids translated through the emails' catalogue (notifier.i18n): static ones in the
templates (``{{ _("Open the report") }}``), sentences with values here (``_("Hello %(name)s,", name=...)``).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from markdown_it import MarkdownIt
from markupsafe import Markup, escape

from notifier import i18n
from notifier.email import Slotted
from notifier.i18n import N_
from schemas import api
from schemas import events as ev
from services.runtime import markdown

_env = i18n.environment()

_STATUS = {
    "not_started": N_("not started"),
    "in_progress": N_("in progress"),
    "done": N_("done"),
    "blocked": N_("blocked"),
}
"""A milestone's status as the emails name it."""


def status(_: i18n.Words, value: str) -> str:
    """A milestone status (``in_progress``) in the recipient's words (``in Arbeit``)."""
    return _(_STATUS[value]) if value in _STATUS else value


def greeting(_: i18n.Words, name: str) -> str:
    """``Hello Anna,`` (``Hallo Anna,``), or ``Hello,`` (``Guten Tag,``) for someone without a name."""
    name = " ".join(name.split())
    return _("Hello %(name)s,", name=name) if name else _("Hello,")


_BLOCKS = MarkdownIt("commonmark", {"html": False, "breaks": True}).enable(["table", "strikethrough"])
"""The block structure of a report's Markdown (as services.runtime.markdown parses it)."""


@functools.lru_cache(maxsize=markdown.RENDER_CACHE_ENTRIES)
def plain_blocks(text: str) -> str:
    """Markdown -> plain text that keeps its shape: paragraphs, ``- ``/``1. `` list items (nested
    ones indented), code as written, table rows as ``a | b``; within a block, ``markdown.plain``
    (no ``**``, link texts without their addresses); quotes start with ``> ``. Cached by text (a
    report's text goes into every email of its fan-out and into digests)."""
    out: list[str] = []
    lists: list[int] = []  # per open list: 0 bullet, else the next number
    marker = ""
    quoted = 0
    row: list[str] | None = None
    for tok in _BLOCKS.parse(text):
        kind = tok.type
        if kind == "blockquote_open":
            quoted += 1
        elif kind == "blockquote_close":
            quoted -= 1
        elif kind == "bullet_list_open":
            lists.append(0)
        elif kind == "ordered_list_open":
            lists.append(int(tok.attrGet("start") or 1))
        elif kind in ("bullet_list_close", "ordered_list_close"):
            lists.pop()
        elif kind == "list_item_open":
            marker = "- " if lists[-1] == 0 else f"{lists[-1]}. "
            lists[-1] += 1 if lists[-1] else 0
        elif kind == "tr_open":
            row = []
        elif kind == "tr_close" and row is not None:
            out.append(" | ".join(row))
            row = None
        elif kind == "inline":
            words = markdown.plain(tok.content)
            if row is not None:
                row.append(words)
                continue
            indent = "  " * (len(lists) - 1) if lists else ""
            out.append(f"{'> ' * quoted}{indent}{marker or ('  ' if lists else '')}{words}")
            marker = ""
        elif kind in ("fence", "code_block"):
            out.append(tok.content.rstrip("\n"))
        elif kind == "hr":
            out.append("---")
        if tok.level == 0 and tok.nesting <= 0 and kind not in ("inline",):
            out.append("")  # a top-level block ended
    lines: list[str] = []
    for line in out:
        if line or (lines and lines[-1]):
            lines.append(line.rstrip())
    return "\n".join(lines).strip("\n")


HELP_ANCHOR = "help"
"""The id of the "I can help" form on a report's page (convoy_api/web/templates/report.html)."""


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str
    lang: str = "en"
    """The recipient's language ("de" or "en"): send_email writes the footer in it."""
    shared: Rendered | None = field(default=None, compare=False, repr=False)
    """When this email differs from others only by a few words (a digest: the greeting; the footer:
    the unsubscribe link): the email with a placeholder in their place, the same object for all of
    them. ``text`` and ``html`` are its text and HTML with each of ``slots`` put in; send_email
    encodes its unchanging lines once (notifier.email.Slotted). Made by :func:`filled` only: a copy
    with other text (``dataclasses.replace``) must drop it, or the footer and the wire use the old."""
    slots: tuple[tuple[str, str, str], ...] = field(default=(), compare=False, repr=False)
    """(placeholder, what replaces it in the text part, in the HTML part: escaped) for ``shared``."""

    def bodies(self) -> tuple[str | Slotted, str | Slotted]:
        """The text and HTML part for notifier.email.wire_message: as :class:`Slotted` when ``shared``."""
        if self.shared is None:
            return self.text, self.html
        return (
            Slotted(self.shared.text, tuple((p, text) for p, text, _ in self.slots)),
            Slotted(self.shared.html, tuple((p, html) for p, _, html in self.slots)),
        )


def filled(shared: Rendered, slots: tuple[tuple[str, str, str], ...]) -> Rendered:
    """``shared`` with each placeholder of ``slots`` replaced (by the text part's and the HTML part's value)."""
    text, html = shared.text, shared.html
    for placeholder, text_value, html_value in slots:
        text, html = text.replace(placeholder, text_value), html.replace(placeholder, html_value)
    return Rendered(subject=shared.subject, text=text, html=html, lang=shared.lang, shared=shared, slots=slots)


def compile_templates() -> int:
    """Compile every email template now (at the notifier's start), not on the first email of each kind after
    a deploy (~0.13 s for all of them); returns how many."""
    names = _env.list_templates(extensions=("html", "txt"))
    for name in names:
        _env.get_template(name)
    return len(names)


def from_templates(name: str, context: Mapping[str, Any], *, subject: str, lang: str) -> Rendered:
    """One email from its two templates, ``<name>.txt`` and ``<name>.html``, rendered with ``context``."""
    return Rendered(
        subject=subject,
        text=_env.get_template(f"{name}.txt").render(context),
        html=_env.get_template(f"{name}.html").render(context),
        lang=lang,
    )


def _line(text: str) -> str:
    return " ".join(text.split())


def report_submitted(
    *,
    recipient: api.Recipient,
    company: str,
    convoy: str,
    report: ev.ReportSnapshot,
    link: str,
    report_link: str,
    replies_enabled: bool = False,
) -> Rendered:
    """The notice of a peer's new report: its Markdown rendered (sanitized) in the HTML part and
    flattened in the text part, the milestones it moved, mood, help wanted with an "I can help"
    link to the report page's offer form, and (``replies_enabled``) that a reply becomes a comment."""
    lang = message_language(recipient.language)
    _ = i18n.Words(lang)
    values = {"company": _line(company), "convoy": _line(convoy), "round": report.cycle_index + 1}
    subject = _('%(company)s: new progress report in "%(convoy)s"', **values)
    sections = [
        (_("Done"), report.done),
        (_("Next"), report.next),
        (_("Blockers"), report.blockers),
    ]
    sections = [(label, text) for label, text in sections if text.strip()]
    help_topic = _line(report.help_topic) or (_("yes, no particular topic") if report.help_wanted else "")
    if report.late:
        intro = _('%(company)s posted a late progress report for round %(round)s in the convoy "%(convoy)s".', **values)
    else:
        intro = _('%(company)s posted a new progress report for round %(round)s in the convoy "%(convoy)s".', **values)
    reply_hint = _(
        "You can reply to this email: your answer is posted as a comment on this report,"
        " and every member of the convoy sees it."
    )
    context = {
        "lang": lang,
        "subject": subject,
        "preheader": markdown.plain(report.done, limit=120),
        "greeting": greeting(_, recipient.name),
        "intro": intro,
        # the same sanitizing renderer as the report's page and the digest (cached per text)
        "sections_html": [(label, Markup(markdown.render(text))) for label, text in sections],  # noqa: S704
        "sections_text": [(label, plain_blocks(text)) for label, text in sections],
        "milestones": [(_line(m.title), status(_, m.status), m.status == "done") for m in report.milestones],
        "mood": report.mood,
        "help": help_topic if report.help_wanted or report.help_topic.strip() else "",
        "help_link": f"{report_link}#{HELP_ANCHOR}",
        "report_link": report_link,
        "link": link,
        "reply_hint": reply_hint if replies_enabled else "",
    }
    return from_templates("report_submitted", context, subject=subject, lang=lang)


# --- messages (EmailRequested): one layout, the words per template and language ----------------
class MessageParamsError(ValueError):
    """An EmailRequested lacks a param its template needs (names only: values may be secrets)."""


@dataclass(frozen=True)
class _Spec:
    needs: tuple[str, ...]
    """Params the template cannot do without: missing or blank is an error."""
    note: str = ""
    """The param holding the sender's own words (message, reason); optional, shown as a quote."""


_MESSAGE_SPECS: dict[str, _Spec] = {
    "invitation": _Spec(needs=("convoy", "company", "inviter", "link", "expires")),
    "sign_in": _Spec(needs=("link", "minutes")),
    "facilitator_appointed": _Spec(needs=("link",)),
    "join_request_received": _Spec(needs=("convoy", "link")),
    "join_request_declined": _Spec(needs=("convoy", "company"), note="reason"),
    "member_removed": _Spec(needs=("convoy", "company"), note="reason"),
    "help_offered": _Spec(needs=("convoy", "helper", "company", "topic", "link"), note="message"),
    "slack_disabled": _Spec(needs=("convoy", "link"), note="reason"),
    "chat_disabled": _Spec(needs=("convoy", "channel", "link"), note="reason"),
    "report_hidden": _Spec(needs=("convoy", "company"), note="reason"),
    "comment_hidden": _Spec(needs=("convoy", "company", "link"), note="reason"),
    "content_flagged": _Spec(needs=("convoy", "company", "what", "category", "link"), note="note"),
    "pool_request_received": _Spec(needs=("theme", "link")),
    "observer_invitation": _Spec(needs=("convoy", "inviter", "link", "expires")),
    "observer_removed": _Spec(needs=("convoy",), note="reason"),
    "pool_joined": _Spec(needs=("theme", "days", "link")),
}


@dataclass(frozen=True)
class _Words:
    subject: str
    heading: str
    body: tuple[str, ...]
    """Paragraphs before the link."""
    note: str = ""
    """Label above the sender's own words (the spec's ``note`` param)."""
    button: str = ""
    """Label of the link (the ``link`` param); empty: the message has no link."""
    after: tuple[str, ...] = ()
    """Paragraphs after the link."""


_MESSAGES: dict[str, _Words] = {
    "invitation": _Words(
        subject=N_('Invitation to join the convoy "%(convoy)s"'),
        heading=N_("You are invited"),
        body=(
            N_('%(inviter)s has invited you to join the convoy "%(convoy)s" as a representative of %(company)s.'),
            N_(
                "In a convoy, small and mid-sized companies move their digitalisation projects forward together"
                " and regularly report their progress to each other."
            ),
        ),
        button=N_("Accept the invitation"),
        after=(N_("The invitation is valid until %(expires)s."),),
    ),
    "sign_in": _Words(
        subject=N_("Your sign-in link for Convoy"),
        heading=N_("Your sign-in link"),
        body=(N_("Use this link to sign in to Convoy."),),
        button=N_("Sign in now"),
        after=(
            N_("The link is valid for %(minutes)s minutes and can be used only once."),
            N_("If you did not ask for a sign-in link, you can simply ignore this email."),
        ),
    ),
    "facilitator_appointed": _Words(
        subject=N_("You are now a facilitator at Convoy"),
        heading=N_("Welcome as a facilitator"),
        body=(
            N_(
                "You are now a facilitator at Convoy. You can set up convoys, invite companies to join them and"
                " moderate them."
            ),
            N_("Sign in to get started."),
        ),
        button=N_("Sign in to Convoy"),
    ),
    # Anonymous requests: nothing the sender typed (company, name, address, message) goes into the email,
    # so Convoy never mails attacker-chosen text to facilitators; they read the request in Convoy.
    "join_request_received": _Words(
        subject=N_('New request to join "%(convoy)s"'),
        heading=N_("New request to join"),
        body=(
            N_('A new request to join the convoy "%(convoy)s" is waiting for your decision.'),
            N_("Who is asking and what they wrote is shown in Convoy, not in this email."),
        ),
        button=N_("Review the request"),
        after=(N_("You receive this email as a facilitator of the convoy."),),
    ),
    "join_request_declined": _Words(
        subject=N_('Your request to join "%(convoy)s"'),
        heading=N_("Your request to join was declined"),
        body=(N_('Unfortunately, your request for %(company)s to join the convoy "%(convoy)s" was declined.'),),
        note=N_("Reason"),
        after=(N_("If you have questions, please contact the competence centre that runs the convoy."),),
    ),
    "observer_invitation": _Words(
        subject=N_('Invitation to observe the convoy "%(convoy)s"'),
        heading=N_("You are invited"),
        body=(
            N_('%(inviter)s has invited you to follow the convoy "%(convoy)s" as an observer.'),
            N_(
                "You read the companies' progress reports, comments and board, and get each round's digest by"
                " email. You do not report or comment yourself."
            ),
        ),
        button=N_("Accept the invitation"),
        after=(N_("The invitation is valid until %(expires)s."),),
    ),
    "observer_removed": _Words(
        subject=N_('You no longer observe the convoy "%(convoy)s"'),
        heading=N_("Your observer seat has ended"),
        body=(N_('You were removed as an observer from the convoy "%(convoy)s".'),),
        note=N_("Reason"),
        after=(N_("If you have questions, please contact the competence centre that runs the convoy."),),
    ),
    "member_removed": _Words(
        subject=N_('You are no longer a member of the convoy "%(convoy)s"'),
        heading=N_("You were removed from the convoy"),
        body=(N_('You were removed from the convoy "%(convoy)s" as a representative of %(company)s.'),),
        note=N_("Reason"),
        after=(N_("If you have questions, please contact the competence centre that runs the convoy."),),
    ),
    "help_offered": _Words(
        subject=N_("%(helper)s (%(company)s) offers help"),
        heading=N_("Someone can help you"),
        body=(
            N_('You asked for help in the convoy "%(convoy)s": %(topic)s.'),
            N_("%(helper)s from %(company)s offers to help."),
        ),
        note=N_("Their message"),
        button=N_("Open the report"),
    ),
    "slack_disabled": _Words(
        subject=N_('Slack channel of "%(convoy)s" switched off'),
        heading=N_("Slack no longer accepts messages"),
        body=(
            N_(
                'Slack refused the webhook of the convoy "%(convoy)s" for good (for example it was revoked or the'
                " channel was deleted). Convoy no longer sends digests there."
            ),
            N_("If you like, set a new webhook in the convoy's settings."),
        ),
        note=N_("Slack's answer"),
        button=N_("Open the convoy"),
    ),
    "chat_disabled": _Words(
        subject=N_('%(channel)s channel of "%(convoy)s" switched off'),
        heading=N_("%(channel)s no longer accepts messages"),
        body=(
            N_(
                'The %(channel)s webhook of the convoy "%(convoy)s" was refused for good (for example the'
                " workflow was deleted or its URL renewed). Convoy no longer sends digests and reports there."
            ),
            N_("If you like, set a new webhook in the convoy's settings."),
        ),
        note=N_("The webhook's answer"),
        button=N_("Open the convoy"),
    ),
    "report_hidden": _Words(
        subject=N_('Your report in "%(convoy)s" was hidden'),
        heading=N_("Your report was hidden"),
        body=(
            N_(
                'The facilitators of the convoy "%(convoy)s" hid a progress report of %(company)s. The other'
                " members no longer see it."
            ),
        ),
        note=N_("Reason"),
        after=(N_("If you have questions, please contact the convoy's facilitators."),),
    ),
    "comment_hidden": _Words(
        subject=N_('Your comment in "%(convoy)s" was hidden'),
        heading=N_("Your comment was hidden"),
        body=(
            N_(
                'The facilitators of the convoy "%(convoy)s" hid your comment on the report of %(company)s. The'
                " other members no longer see it."
            ),
        ),
        note=N_("Reason"),
        button=N_("Open the report"),
        after=(N_("If you have questions, please contact the convoy's facilitators."),),
    ),
    "content_flagged": _Words(
        subject=N_('Flagged in "%(convoy)s": %(category)s'),
        heading=N_("A contribution was flagged"),
        body=(
            N_('A member of the convoy "%(convoy)s" flagged %(what)s of %(company)s. Reason: %(category)s.'),
            N_("It stays visible until you decide: hide it, or dismiss the flag."),
        ),
        note=N_("Their note"),
        button=N_("Open the moderation queue"),
        after=(N_("You receive this email as a facilitator of the convoy."),),
    ),
    "pool_request_received": _Words(
        subject=N_('Digitalisation check: a new request for a convoy on "%(theme)s"'),
        heading=N_("New request in the formation pool"),
        body=(
            N_('A company took the digitalisation check and would like to join a convoy on "%(theme)s".'),
            N_("The request waits in the formation pool until you place it in a convoy."),
            N_("Who is asking and what they wrote is shown in Convoy, not in this email."),
        ),
        button=N_("Open the formation pool"),
        after=(N_("You receive this email as a facilitator of the competence centre."),),
    ),
    # To the contact who joined the pool (no account): what they asked for, and how to take it back. Nothing
    # they typed (company, name, message): the address is anyone's to enter, so no chosen text is mailed.
    "pool_joined": _Words(
        subject=N_('Your request for a convoy on "%(theme)s"'),
        heading=N_("Your request is in the formation pool"),
        body=(
            N_(
                "Thank you: your company waits in the competence centre's formation pool for a convoy on"
                ' "%(theme)s". A facilitator will write to you as soon as a convoy on your theme forms.'
            ),
            N_("We keep your contact only for this, and delete it after %(days)s days if no convoy forms."),
            N_("Changed your mind? Withdraw the request here; your contact is then deleted at once."),
        ),
        button=N_("Withdraw my request"),
        after=(N_("If you did not ask for this, withdraw the request with the link above."),),
    ),
}

MESSAGE_TEMPLATES: tuple[str, ...] = tuple(_MESSAGE_SPECS)
assert set(_MESSAGES) == set(_MESSAGE_SPECS)
"""Every template ``message`` renders (the values of schemas.events.EmailTemplate)."""


message_language = i18n.language
"""``de`` or ``en`` from a language tag (``de``, ``DE``, ``de-AT``); anything else is ``en``."""


def message(template: str, language: str, params: Mapping[str, str], *, name: str = "") -> Rendered:
    """Render one EmailRequested: subject, plain text and HTML, in ``language`` (fallback: en).

    Raises MessageParamsError if the template is unknown or a param it needs is missing or blank.
    User text is formatted into plain strings here; the HTML template escapes everything it prints.
    """
    spec = _MESSAGE_SPECS.get(template)
    if spec is None:
        raise MessageParamsError(f"unknown email template {template!r}")
    missing = sorted(p for p in spec.needs if not params.get(p, "").strip())
    if missing:
        raise MessageParamsError(
            f"email template {template!r} needs params {missing} (missing or blank); got {sorted(params)}"
        )
    link = params.get("link", "").strip()
    if "link" in spec.needs and not link.lower().startswith(("https://", "http://")):
        raise MessageParamsError(f"email template {template!r}: param 'link' must be an http(s) URL")
    lang = message_language(language)
    _ = i18n.Words(lang)
    words = _MESSAGES[template]
    values = {p: " ".join(params[p].split()) for p in spec.needs}  # one line each
    values["link"] = link

    def fill(text: str) -> str:
        return _(text, **values)

    note = params.get(spec.note, "").replace("\r\n", "\n").replace("\r", "\n").strip() if spec.note else ""
    subject = fill(words.subject)
    context = {
        "lang": lang,
        "subject": subject,
        "heading": fill(words.heading),
        "greeting": greeting(_, name),
        "body": [fill(p) for p in words.body],
        "note_label": _(words.note) if words.note else "",
        "note": note,
        "button": _(words.button) if words.button else "",
        "link": link if words.button else "",
        "after": [fill(p) for p in words.after],
    }
    return from_templates("message", context, subject=subject, lang=lang)


# --- the footer of every email (send_email adds it) ---------------------------------------------
FOOTER_MARK = "<!--convoy:footer-->"
"""Where _layout.html wants the footer; send_email puts it there (before </body> without it)."""

_WHY = {
    "message": N_("You get this email because it concerns your Convoy account, an invitation or a request to you."),
    "report": N_(
        "You get this email because your company is part of the convoy and hears about the other companies' new"
        " reports."
    ),
    "help_offered": N_("You get this email because your company asked for help in a report."),
    "prompt": N_("You get this email because your company is part of the convoy and reports every round."),
    "nudge": N_("You get this email because your company's report for this round is still missing."),
    "digest": N_(
        "You get this email because you take part in the convoy (for your company or as an observer): after each"
        " round, the digest sums up what happened."
    ),
    "facilitator_digest": N_("You get this email because you facilitate convoys at Convoy."),
    "feedback": N_("You get this email because someone commented on your company's report or gave it kudos."),
    "reply": N_("You get this email because someone replied to your comment."),
    "help_requested": N_("You get this email because you facilitate this convoy and a company asks for help."),
    "facilitator_cycle": N_(
        "You get this email because you facilitate this convoy: at the end of each round you get its summary."
    ),
    "message:pool_joined": N_(
        "You get this email because your address was left in the digitalisation check to join a convoy."
    ),
    "": N_("You get this email because you use Convoy."),
}
"""Why the person gets an email, by the delivery key's kind."""


def why(kind: str, lang: str) -> str:
    """Why the person gets an email of this delivery kind (``message`` for sign-in links and invitations)."""
    # a message (``message:<template>``) may have its own line; else the one of all messages
    text = _WHY.get(kind) or _WHY.get(kind.partition(":")[0]) or _WHY[""]
    return i18n.Words(lang)(text)


def is_message(kind: str) -> bool:
    """A delivery kind that is a message (``message`` or ``message:<template>``): always sent, no unsubscribe."""
    return kind.partition(":")[0] == "message"


UNSUBSCRIBE_SLOT = f"convoy-unsubscribe-{uuid.uuid4().hex}"
"""Where the unsubscribe link goes in a shared email's footer (:attr:`Rendered.shared`)."""


def with_footer(rendered: Rendered, *, kind: str, settings_url: str, unsubscribe_url: str | None) -> Rendered:
    """``rendered`` with the footer in both parts: why the person gets it and, for notifications
    (every kind but ``message``), links to their notification settings and to the one-click
    unsubscribe of this kind (``unsubscribe_url``, the List-Unsubscribe header's URL).

    An email with a ``shared`` form gets the footer there once (cached; the unsubscribe link a
    placeholder) and keeps it: the same text and HTML as the footer added to ``rendered`` itself."""
    footed = _shared_footed(rendered, kind, settings_url, unsubscribe_url)
    if footed is not None:
        return filled(*footed)
    return _with_footer(rendered, kind=kind, settings_url=settings_url, unsubscribe_url=unsubscribe_url)


def footed_bodies(
    rendered: Rendered, *, kind: str, settings_url: str, unsubscribe_url: str | None
) -> tuple[str | Slotted, str | Slotted]:
    """``with_footer(...).bodies()``, without writing out the text and HTML of an email with a shared form."""
    footed = _shared_footed(rendered, kind, settings_url, unsubscribe_url)
    if footed is not None:
        shared, slots = footed
        return (
            Slotted(shared.text, tuple((p, text) for p, text, _ in slots)),
            Slotted(shared.html, tuple((p, html) for p, _, html in slots)),
        )
    footed_ = _with_footer(rendered, kind=kind, settings_url=settings_url, unsubscribe_url=unsubscribe_url)
    return footed_.text, footed_.html


def _shared_footed(
    rendered: Rendered, kind: str, settings_url: str, unsubscribe_url: str | None
) -> tuple[Rendered, tuple[tuple[str, str, str], ...]] | None:
    """The shared form of ``rendered`` with the footer (cached) and the slots that fill it; None
    without a shared form or when the footer cannot go there (:func:`_footer_splices`)."""
    if rendered.shared is None or not _footer_splices(rendered):
        return None
    shared = _shared_footer(rendered.shared, kind, settings_url, unsubscribe_url is not None)
    slots = rendered.slots
    if unsubscribe_url:
        slots += ((UNSUBSCRIBE_SLOT, unsubscribe_url, str(escape(unsubscribe_url))),)
    return shared, slots


def _footer_splices(rendered: Rendered) -> bool:
    """Whether the footer added to ``rendered.shared`` and then filled is the footer added to ``rendered``:
    the text part is cut at its last non-space character (each placeholder has one after it), the HTML
    part's footer goes at the first footer mark or the last </body> (no value makes or breaks one:
    escaped text has no "<" or ">", so it could only be the inside of one)."""
    shared = rendered.shared
    assert shared is not None
    for placeholder, _, html_value in rendered.slots:
        at = shared.text.rfind(placeholder)
        if at != -1 and not shared.text[at + len(placeholder) :].strip():
            return False
        if "<" in html_value or ">" in html_value or html_value in FOOTER_MARK or html_value in "</body>":
            return False
        if placeholder == UNSUBSCRIBE_SLOT:
            return False  # a footer already
    return True


@functools.lru_cache(maxsize=64)
def _shared_footer(shared: Rendered, kind: str, settings_url: str, unsubscribes: bool) -> Rendered:
    footed = _with_footer(
        shared, kind=kind, settings_url=settings_url, unsubscribe_url=UNSUBSCRIBE_SLOT if unsubscribes else None
    )
    # one object for every recipient (the cache of notifier.email.Slotted's template is by value)
    return Rendered(subject=footed.subject, text=footed.text, html=footed.html, lang=footed.lang)


def _with_footer(rendered: Rendered, *, kind: str, settings_url: str, unsubscribe_url: str | None) -> Rendered:
    _ = i18n.Words(rendered.lang)
    reason = why(kind, rendered.lang)
    tagline = _("Convoy \N{EN DASH} moving forward together")
    links: list[tuple[str, str]] = []
    if not is_message(kind):
        links.append((_("Notification settings"), settings_url))
        if unsubscribe_url:
            links.append((_("Unsubscribe from this kind of email"), unsubscribe_url))
    text_lines = ["-- ", reason, *(f"{label}: {url}" for label, url in links), tagline]
    text = rendered.text.rstrip() + "\n\n" + "\n".join(text_lines) + "\n"
    link_html = " &middot; ".join(
        f'<a href="{escape(url)}" style="color:#1d4ed8;overflow-wrap:anywhere;">{escape(label)}</a>'
        for label, url in links
    )
    block = (
        '<div style="margin:24px 0 0 0;padding-top:12px;border-top:1px solid #e4e7eb;'
        'font-size:13px;line-height:1.5;color:#52606d;">'
        f'<p style="margin:0 0 6px 0;">{escape(reason)}</p>'
        + (f'<p style="margin:0 0 6px 0;">{link_html}</p>' if link_html else "")
        + f'<p style="margin:0;color:#616e7c;">{escape(tagline)}</p></div>'
    )
    html = rendered.html
    if FOOTER_MARK in html:
        html = html.replace(FOOTER_MARK, block, 1)
    elif (at := html.rfind("</body>")) != -1:
        html = html[:at] + block + "\n" + html[at:]
    else:
        html += block
    return Rendered(subject=rendered.subject, text=text, html=html, lang=rendered.lang)
