"""Rendering notifications from Jinja2 templates, in the recipient's language (de or en)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

import jinja2
from markdown_it import MarkdownIt
from markupsafe import Markup, escape

from schemas import api
from schemas import events as ev
from services.runtime import markdown

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("notifier", "templates"),
    autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)

_TEXTS = {
    "de": {
        "subject": "{company}: neuer Fortschrittsbericht in „{convoy}“",
        "heading": "Neuer Fortschrittsbericht",
        "greeting": "Hallo {name},",
        "greeting_anonymous": "Guten Tag,",
        "intro": "{company} hat im Konvoi „{convoy}“ einen neuen Fortschrittsbericht für Runde {round} veröffentlicht.",
        "intro_late": "{company} hat im Konvoi „{convoy}“ einen Fortschrittsbericht für Runde {round} nachgereicht.",
        "done": "Erledigt",
        "next": "Als Nächstes",
        "blockers": "Hindernisse",
        "milestones": "Meilensteine",
        "mood": "Stimmung",
        "help": "Sucht Unterstützung bei",
        "help_yes": "ja, ohne ein bestimmtes Thema",
        "can_help": "Ich kann helfen",
        "open_report": "Zum Bericht",
        "open_convoy": "Zum Konvoi",
        "fallback": "Falls die Schaltfläche nicht funktioniert, kopieren Sie diesen Link in Ihren Browser:",
        "reply_hint": "Sie können auf diese E-Mail antworten: Ihre Antwort erscheint als Kommentar zu diesem"
        " Bericht, den alle Mitglieder des Konvois sehen.",
        "not_started": "nicht begonnen",
        "in_progress": "in Arbeit",
        "done_status": "erledigt",
        "blocked": "blockiert",
    },
    "en": {
        "subject": '{company}: new progress report in "{convoy}"',
        "heading": "New progress report",
        "greeting": "Hello {name},",
        "greeting_anonymous": "Hello,",
        "intro": '{company} posted a new progress report for round {round} in the convoy "{convoy}".',
        "intro_late": '{company} posted a late progress report for round {round} in the convoy "{convoy}".',
        "done": "Done",
        "next": "Next",
        "blockers": "Blockers",
        "milestones": "Milestones",
        "mood": "Mood",
        "help": "Would welcome help with",
        "help_yes": "yes, no particular topic",
        "can_help": "I can help",
        "open_report": "Open the report",
        "open_convoy": "Open the convoy",
        "fallback": "If the button does not work, copy this link into your browser:",
        "reply_hint": "You can reply to this email: your answer is posted as a comment on this report,"
        " and every member of the convoy sees it.",
        "not_started": "not started",
        "in_progress": "in progress",
        "done_status": "done",
        "blocked": "blocked",
    },
}

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
    t = _TEXTS[lang]
    values = {"company": _line(company), "convoy": _line(convoy), "round": str(report.cycle_index + 1)}
    subject = t["subject"].format(**values)
    name = _line(recipient.name)
    sections = [
        (t[k], text) for k, text in (("done", report.done), ("next", report.next), ("blockers", report.blockers))
    ]
    sections = [(label, text) for label, text in sections if text.strip()]
    help_topic = _line(report.help_topic) or (t["help_yes"] if report.help_wanted else "")
    context = {
        "lang": lang,
        "subject": subject,
        "preheader": markdown.plain(report.done, limit=120),
        "t": t,
        "greeting": t["greeting"].format(name=name) if name else t["greeting_anonymous"],
        "intro": t["intro_late" if report.late else "intro"].format(**values),
        # the same sanitizing renderer as the report's page and the digest (cached per text)
        "sections_html": [(label, Markup(markdown.render(text))) for label, text in sections],  # noqa: S704
        "sections_text": [(label, plain_blocks(text)) for label, text in sections],
        "milestones": [
            (_line(m.title), t.get("done_status" if m.status == "done" else m.status, m.status), m.status == "done")
            for m in report.milestones
        ],
        "mood": report.mood,
        "help": help_topic if report.help_wanted or report.help_topic.strip() else "",
        "help_link": f"{report_link}#{HELP_ANCHOR}",
        "report_link": report_link,
        "link": link,
        "reply_hint": t["reply_hint"] if replies_enabled else "",
    }
    return Rendered(
        subject=subject,
        text=_env.get_template("report_submitted.txt").render(context),
        html=_env.get_template("report_submitted.html").render(context),
        lang=lang,
    )


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
    "join_request_received": _Spec(needs=("convoy", "company", "contact", "link"), note="message"),
    "join_request_declined": _Spec(needs=("convoy", "company"), note="reason"),
    "member_removed": _Spec(needs=("convoy", "company"), note="reason"),
    "help_offered": _Spec(needs=("convoy", "helper", "company", "topic", "link"), note="message"),
    "slack_disabled": _Spec(needs=("convoy", "link"), note="reason"),
    "chat_disabled": _Spec(needs=("convoy", "channel", "link"), note="reason"),
    "report_hidden": _Spec(needs=("convoy", "company"), note="reason"),
    "comment_hidden": _Spec(needs=("convoy", "company", "link"), note="reason"),
    "content_flagged": _Spec(needs=("convoy", "company", "what", "category", "link"), note="note"),
    "pool_request_received": _Spec(needs=("company", "theme", "contact", "link"), note="message"),
    "observer_invitation": _Spec(needs=("convoy", "inviter", "link", "expires")),
    "observer_removed": _Spec(needs=("convoy",), note="reason"),
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


_MESSAGE_COMMON = {
    "de": {
        "greeting": "Hallo {name},",
        "greeting_anonymous": "Guten Tag,",
        "fallback": "Falls die Schaltfläche nicht funktioniert, kopieren Sie diesen Link in Ihren Browser:",
    },
    "en": {
        "greeting": "Hello {name},",
        "greeting_anonymous": "Hello,",
        "fallback": "If the button does not work, copy this link into your browser:",
    },
}

_MESSAGE_TEXTS: dict[str, dict[str, _Words]] = {
    "de": {
        "invitation": _Words(
            subject="Einladung in den Konvoi „{convoy}“",
            heading="Sie sind eingeladen",
            body=(
                "{inviter} lädt Sie ein, dem Konvoi „{convoy}“ als Vertreter:in von {company} beizutreten.",
                "In einem Konvoi bringen kleine und mittlere Unternehmen ihre Digitalisierungsprojekte"
                " gemeinsam voran und berichten einander regelmäßig über ihre Fortschritte.",
            ),
            button="Einladung annehmen",
            after=("Die Einladung ist gültig bis {expires}.",),
        ),
        "sign_in": _Words(
            subject="Ihr Anmeldelink für Convoy",
            heading="Ihr Anmeldelink",
            body=("Mit diesem Link melden Sie sich bei Convoy an.",),
            button="Jetzt anmelden",
            after=(
                "Der Link ist {minutes} Minuten lang gültig und kann nur einmal verwendet werden.",
                "Sie haben keinen Anmeldelink angefordert? Dann können Sie diese E-Mail einfach ignorieren.",
            ),
        ),
        "facilitator_appointed": _Words(
            subject="Sie sind jetzt Moderator:in bei Convoy",
            heading="Willkommen als Moderator:in",
            body=(
                "Sie sind jetzt Moderator:in bei Convoy. Sie können nun Konvois einrichten,"
                " Unternehmen dazu einladen und den Austausch in den Konvois begleiten.",
                "Melden Sie sich an, um loszulegen.",
            ),
            button="Bei Convoy anmelden",
        ),
        "join_request_received": _Words(
            subject="Beitrittsanfrage von {company} für „{convoy}“",
            heading="Neue Beitrittsanfrage",
            body=("{contact} fragt an, ob {company} dem Konvoi „{convoy}“ beitreten kann.",),
            note="Nachricht",
            button="Anfrage prüfen",
            after=("Sie erhalten diese E-Mail als Moderator:in des Konvois.",),
        ),
        "join_request_declined": _Words(
            subject="Ihre Beitrittsanfrage für „{convoy}“",
            heading="Ihre Beitrittsanfrage wurde abgelehnt",
            body=("Ihre Anfrage, mit {company} dem Konvoi „{convoy}“ beizutreten, wurde leider abgelehnt.",),
            note="Begründung",
            after=("Bei Fragen wenden Sie sich gern an das Kompetenzzentrum, das den Konvoi betreut.",),
        ),
        "observer_invitation": _Words(
            subject="Einladung in den Konvoi „{convoy}“ als Beobachter:in",
            heading="Sie sind eingeladen",
            body=(
                "{inviter} lädt Sie ein, den Konvoi „{convoy}“ als Beobachter:in zu begleiten.",
                "Sie lesen die Fortschrittsberichte, Kommentare und die Übersicht der teilnehmenden Unternehmen"
                " und erhalten die Zusammenfassung jeder Runde per E-Mail. Selbst berichten oder kommentieren"
                " Sie nicht.",
            ),
            button="Einladung annehmen",
            after=("Die Einladung ist gültig bis {expires}.",),
        ),
        "observer_removed": _Words(
            subject="Sie begleiten den Konvoi „{convoy}“ nicht mehr",
            heading="Ihr Platz als Beobachter:in wurde beendet",
            body=("Sie wurden als Beobachter:in aus dem Konvoi „{convoy}“ entfernt.",),
            note="Begründung",
            after=("Bei Fragen wenden Sie sich gern an das Kompetenzzentrum, das den Konvoi betreut.",),
        ),
        "member_removed": _Words(
            subject="Sie sind nicht mehr Mitglied im Konvoi „{convoy}“",
            heading="Sie wurden aus dem Konvoi entfernt",
            body=("Sie wurden als Vertreter:in von {company} aus dem Konvoi „{convoy}“ entfernt.",),
            note="Begründung",
            after=("Bei Fragen wenden Sie sich gern an das Kompetenzzentrum, das den Konvoi betreut.",),
        ),
        "help_offered": _Words(
            subject="{helper} ({company}) bietet Hilfe an",
            heading="Jemand kann Ihnen helfen",
            body=(
                "Sie haben im Konvoi „{convoy}“ um Unterstützung gebeten: {topic}.",
                "{helper} von {company} bietet Hilfe an.",
            ),
            note="Nachricht",
            button="Zum Bericht",
        ),
        "slack_disabled": _Words(
            subject="Slack-Kanal von „{convoy}“ abgeschaltet",
            heading="Slack nimmt keine Nachrichten mehr an",
            body=(
                "Der Slack-Webhook des Konvois „{convoy}“ wurde von Slack dauerhaft abgelehnt"
                " (zum Beispiel widerrufen oder der Kanal gelöscht). Convoy sendet keine Digests mehr dorthin.",
                "Hinterlegen Sie bei Bedarf einen neuen Webhook in den Einstellungen des Konvois.",
            ),
            note="Antwort von Slack",
            button="Zum Konvoi",
        ),
        "chat_disabled": _Words(
            subject="{channel}: Kanal von „{convoy}“ abgeschaltet",
            heading="{channel} nimmt keine Nachrichten mehr an",
            body=(
                "Der Webhook ({channel}) des Konvois „{convoy}“ wurde dauerhaft abgelehnt (zum Beispiel der"
                " Workflow gelöscht oder seine URL erneuert). Convoy sendet keine Digests und Berichte mehr dorthin.",
                "Hinterlegen Sie bei Bedarf einen neuen Webhook in den Einstellungen des Konvois.",
            ),
            note="Antwort des Webhooks",
            button="Zum Konvoi",
        ),
        "report_hidden": _Words(
            subject="Ihr Bericht in „{convoy}“ wurde ausgeblendet",
            heading="Ihr Bericht wurde ausgeblendet",
            body=(
                "Die Moderation des Konvois „{convoy}“ hat einen Fortschrittsbericht von {company} ausgeblendet."
                " Die anderen Mitglieder sehen ihn nicht mehr.",
            ),
            note="Begründung",
            after=("Bei Fragen wenden Sie sich gern an die Moderation des Konvois.",),
        ),
        "comment_hidden": _Words(
            subject="Ihr Kommentar in „{convoy}“ wurde ausgeblendet",
            heading="Ihr Kommentar wurde ausgeblendet",
            body=(
                "Die Moderation des Konvois „{convoy}“ hat Ihren Kommentar zum Bericht von {company} ausgeblendet."
                " Die anderen Mitglieder sehen ihn nicht mehr.",
            ),
            note="Begründung",
            button="Zum Bericht",
            after=("Bei Fragen wenden Sie sich gern an die Moderation des Konvois.",),
        ),
        "content_flagged": _Words(
            subject="Meldung in „{convoy}“: {category}",
            heading="Ein Beitrag wurde gemeldet",
            body=(
                "Ein Mitglied des Konvois „{convoy}“ hat {what} von {company} gemeldet. Grund: {category}.",
                "Der Beitrag bleibt sichtbar, bis Sie entscheiden: ausblenden oder die Meldung verwerfen.",
            ),
            note="Anmerkung",
            button="Zur Moderation",
            after=("Sie erhalten diese E-Mail als Moderator:in des Konvois.",),
        ),
        "pool_request_received": _Words(
            subject="Digitalisierungscheck: {company} möchte in einen Konvoi zu „{theme}“",
            heading="Neue Anfrage im Formierungspool",
            body=(
                "{contact} hat den Digitalisierungscheck gemacht und möchte mit {company} in einem Konvoi"
                " zum Thema „{theme}“ mitmachen.",
                "Die Anfrage wartet im Formierungspool, bis Sie sie einem Konvoi zuordnen.",
            ),
            note="Nachricht",
            button="Zum Formierungspool",
            after=("Sie erhalten diese E-Mail als Moderator:in des Kompetenzzentrums.",),
        ),
    },
    "en": {
        "invitation": _Words(
            subject='Invitation to join the convoy "{convoy}"',
            heading="You are invited",
            body=(
                '{inviter} has invited you to join the convoy "{convoy}" as a representative of {company}.',
                "In a convoy, small and mid-sized companies move their digitalisation projects forward"
                " together and regularly report their progress to each other.",
            ),
            button="Accept the invitation",
            after=("The invitation is valid until {expires}.",),
        ),
        "sign_in": _Words(
            subject="Your sign-in link for Convoy",
            heading="Your sign-in link",
            body=("Use this link to sign in to Convoy.",),
            button="Sign in now",
            after=(
                "The link is valid for {minutes} minutes and can be used only once.",
                "If you did not ask for a sign-in link, you can simply ignore this email.",
            ),
        ),
        "facilitator_appointed": _Words(
            subject="You are now a facilitator at Convoy",
            heading="Welcome as a facilitator",
            body=(
                "You are now a facilitator at Convoy. You can set up convoys, invite companies"
                " to join them and moderate them.",
                "Sign in to get started.",
            ),
            button="Sign in to Convoy",
        ),
        "join_request_received": _Words(
            subject='Request from {company} to join "{convoy}"',
            heading="New request to join",
            body=('{contact} asks for {company} to join the convoy "{convoy}".',),
            note="Their message",
            button="Review the request",
            after=("You receive this email as a facilitator of the convoy.",),
        ),
        "join_request_declined": _Words(
            subject='Your request to join "{convoy}"',
            heading="Your request to join was declined",
            body=('Unfortunately, your request for {company} to join the convoy "{convoy}" was declined.',),
            note="Reason",
            after=("If you have questions, please contact the competence centre that runs the convoy.",),
        ),
        "observer_invitation": _Words(
            subject='Invitation to observe the convoy "{convoy}"',
            heading="You are invited",
            body=(
                '{inviter} has invited you to follow the convoy "{convoy}" as an observer.',
                "You read the companies' progress reports, comments and board, and get each round's digest"
                " by email. You do not report or comment yourself.",
            ),
            button="Accept the invitation",
            after=("The invitation is valid until {expires}.",),
        ),
        "observer_removed": _Words(
            subject='You no longer observe the convoy "{convoy}"',
            heading="Your observer seat has ended",
            body=('You were removed as an observer from the convoy "{convoy}".',),
            note="Reason",
            after=("If you have questions, please contact the competence centre that runs the convoy.",),
        ),
        "member_removed": _Words(
            subject='You are no longer a member of the convoy "{convoy}"',
            heading="You were removed from the convoy",
            body=('You were removed from the convoy "{convoy}" as a representative of {company}.',),
            note="Reason",
            after=("If you have questions, please contact the competence centre that runs the convoy.",),
        ),
        "help_offered": _Words(
            subject="{helper} ({company}) offers help",
            heading="Someone can help you",
            body=(
                'You asked for help in the convoy "{convoy}": {topic}.',
                "{helper} from {company} offers to help.",
            ),
            note="Their message",
            button="Open the report",
        ),
        "slack_disabled": _Words(
            subject='Slack channel of "{convoy}" switched off',
            heading="Slack no longer accepts messages",
            body=(
                'Slack refused the webhook of the convoy "{convoy}" for good (for example it was revoked or'
                " the channel was deleted). Convoy no longer sends digests there.",
                "If you like, set a new webhook in the convoy's settings.",
            ),
            note="Slack's answer",
            button="Open the convoy",
        ),
        "chat_disabled": _Words(
            subject='{channel} channel of "{convoy}" switched off',
            heading="{channel} no longer accepts messages",
            body=(
                'The {channel} webhook of the convoy "{convoy}" was refused for good (for example the workflow'
                " was deleted or its URL renewed). Convoy no longer sends digests and reports there.",
                "If you like, set a new webhook in the convoy's settings.",
            ),
            note="The webhook's answer",
            button="Open the convoy",
        ),
        "report_hidden": _Words(
            subject='Your report in "{convoy}" was hidden',
            heading="Your report was hidden",
            body=(
                'The facilitators of the convoy "{convoy}" hid a progress report of {company}.'
                " The other members no longer see it.",
            ),
            note="Reason",
            after=("If you have questions, please contact the convoy's facilitators.",),
        ),
        "comment_hidden": _Words(
            subject='Your comment in "{convoy}" was hidden',
            heading="Your comment was hidden",
            body=(
                'The facilitators of the convoy "{convoy}" hid your comment on the report of {company}.'
                " The other members no longer see it.",
            ),
            note="Reason",
            button="Open the report",
            after=("If you have questions, please contact the convoy's facilitators.",),
        ),
        "content_flagged": _Words(
            subject='Flagged in "{convoy}": {category}',
            heading="A contribution was flagged",
            body=(
                'A member of the convoy "{convoy}" flagged {what} of {company}. Reason: {category}.',
                "It stays visible until you decide: hide it, or dismiss the flag.",
            ),
            note="Their note",
            button="Open the moderation queue",
            after=("You receive this email as a facilitator of the convoy.",),
        ),
        "pool_request_received": _Words(
            subject='Digitalisation check: {company} would like to join a convoy on "{theme}"',
            heading="New request in the formation pool",
            body=(
                '{contact} took the digitalisation check and would like {company} to join a convoy on "{theme}".',
                "The request waits in the formation pool until you place it in a convoy.",
            ),
            note="Their message",
            button="Open the formation pool",
            after=("You receive this email as a facilitator of the competence centre.",),
        ),
    },
}

MESSAGE_TEMPLATES: tuple[str, ...] = tuple(_MESSAGE_SPECS)
"""Every template ``message`` renders (the values of schemas.events.EmailTemplate)."""


def message_language(language: str) -> str:
    """``de`` or ``en`` from a language tag (``de``, ``DE``, ``de-AT``); anything else is ``en``."""
    primary = language.strip().lower().replace("_", "-").split("-")[0]
    return primary if primary in _MESSAGE_TEXTS else "en"


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
    words = _MESSAGE_TEXTS[lang][template]
    common = _MESSAGE_COMMON[lang]
    values = {p: " ".join(params[p].split()) for p in spec.needs}  # one line each
    values["link"] = link

    def fill(text: str) -> str:
        return text.format(**values)

    name = " ".join(name.split())
    note = params.get(spec.note, "").replace("\r\n", "\n").replace("\r", "\n").strip() if spec.note else ""
    subject = fill(words.subject)
    context = {
        "lang": lang,
        "subject": subject,
        "heading": fill(words.heading),
        "greeting": common["greeting"].format(name=name) if name else common["greeting_anonymous"],
        "body": [fill(p) for p in words.body],
        "note_label": words.note,
        "note": note,
        "button": words.button,
        "link": link if words.button else "",
        "fallback": common["fallback"],
        "after": [fill(p) for p in words.after],
    }
    return Rendered(
        subject=subject,
        text=_env.get_template("message.txt").render(context),
        html=_env.get_template("message.html").render(context),
        lang=lang,
    )


# --- the footer of every email (send_email adds it) ---------------------------------------------
FOOTER_MARK = "<!--convoy:footer-->"
"""Where _layout.html wants the footer; send_email puts it there (before </body> without it)."""

_FOOTER = {
    "de": {
        "tagline": "Convoy \N{EN DASH} gemeinsam digital vorankommen",
        "settings": "Benachrichtigungen einstellen",
        "unsubscribe": "Diese Art E-Mail abbestellen",
    },
    "en": {
        "tagline": "Convoy \N{EN DASH} moving forward together",
        "settings": "Notification settings",
        "unsubscribe": "Unsubscribe from this kind of email",
    },
}
_WHY = {
    "de": {
        "message": "Sie erhalten diese E-Mail, weil sie Ihr Konto bei Convoy, eine Einladung oder eine Anfrage"
        " an Sie betrifft.",
        "report": "Sie erhalten diese E-Mail, weil Ihr Unternehmen Mitglied dieses Konvois ist und Sie von neuen"
        " Berichten der anderen Unternehmen erfahren.",
        "help_offered": "Sie erhalten diese E-Mail, weil Ihr Unternehmen in einem Bericht um Unterstützung"
        " gebeten hat.",
        "prompt": "Sie erhalten diese E-Mail, weil Ihr Unternehmen Mitglied dieses Konvois ist und in jeder Runde"
        " berichtet.",
        "nudge": "Sie erhalten diese E-Mail, weil der Bericht Ihres Unternehmens für diese Runde noch fehlt.",
        "digest": "Sie erhalten diese E-Mail, weil Sie an diesem Konvoi teilnehmen (für Ihr Unternehmen oder als"
        " Beobachter:in): Nach jeder Runde fasst der Digest zusammen, was passiert ist.",
        "facilitator_digest": "Sie erhalten diese E-Mail, weil Sie Konvois bei Convoy moderieren.",
        "feedback": "Sie erhalten diese E-Mail, weil jemand den Bericht Ihres Unternehmens kommentiert oder ihm"
        " Kudos gegeben hat.",
        "reply": "Sie erhalten diese E-Mail, weil jemand auf Ihren Kommentar geantwortet hat.",
        "help_requested": "Sie erhalten diese E-Mail, weil Sie diesen Konvoi moderieren und ein Unternehmen um"
        " Unterstützung bittet.",
        "facilitator_cycle": "Sie erhalten diese E-Mail, weil Sie diesen Konvoi moderieren: Zum Ende jeder Runde"
        " bekommen Sie eine Zusammenfassung.",
        "": "Sie erhalten diese E-Mail, weil Sie Convoy nutzen.",
    },
    "en": {
        "message": "You get this email because it concerns your Convoy account, an invitation or a request to you.",
        "report": "You get this email because your company is part of the convoy and hears about the other"
        " companies' new reports.",
        "help_offered": "You get this email because your company asked for help in a report.",
        "prompt": "You get this email because your company is part of the convoy and reports every round.",
        "nudge": "You get this email because your company's report for this round is still missing.",
        "digest": "You get this email because you take part in the convoy (for your company or as an observer):"
        " after each round, the digest sums up what happened.",
        "facilitator_digest": "You get this email because you facilitate convoys at Convoy.",
        "feedback": "You get this email because someone commented on your company's report or gave it kudos.",
        "reply": "You get this email because someone replied to your comment.",
        "help_requested": "You get this email because you facilitate this convoy and a company asks for help.",
        "facilitator_cycle": "You get this email because you facilitate this convoy: at the end of each round you"
        " get its summary.",
        "": "You get this email because you use Convoy.",
    },
}


def why(kind: str, lang: str) -> str:
    """Why the person gets an email of this delivery kind (``message`` for sign-in links and invitations)."""
    words = _WHY[lang if lang in _WHY else "en"]
    return words.get(kind, words[""])


def with_footer(rendered: Rendered, *, kind: str, settings_url: str, unsubscribe_url: str | None) -> Rendered:
    """``rendered`` with the footer in both parts: why the person gets it and, for notifications
    (every kind but ``message``), links to their notification settings and to the one-click
    unsubscribe of this kind (``unsubscribe_url``, the List-Unsubscribe header's URL)."""
    lang = rendered.lang if rendered.lang in _FOOTER else "en"
    words = _FOOTER[lang]
    reason = why(kind, lang)
    links: list[tuple[str, str]] = []
    if kind != "message":
        links.append((words["settings"], settings_url))
        if unsubscribe_url:
            links.append((words["unsubscribe"], unsubscribe_url))
    text_lines = ["-- ", reason, *(f"{label}: {url}" for label, url in links), words["tagline"]]
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
        + f'<p style="margin:0;color:#616e7c;">{escape(words["tagline"])}</p></div>'
    )
    html = rendered.html
    if FOOTER_MARK in html:
        html = html.replace(FOOTER_MARK, block, 1)
    elif (at := html.rfind("</body>")) != -1:
        html = html[:at] + block + "\n" + html[at:]
    else:
        html += block
    return Rendered(subject=rendered.subject, text=text, html=html, lang=rendered.lang)
