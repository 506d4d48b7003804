"""Rendering notifications from Jinja2 templates, in the recipient's language (de or en)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import jinja2

from schemas import api

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
        "greeting": "Hallo",
        "intro": "{company} hat im Konvoi „{convoy}“ einen neuen Fortschrittsbericht veröffentlicht.",
        "done": "Erledigt",
        "next": "Als Nächstes",
        "blockers": "Hindernisse",
        "help": "Sucht Unterstützung bei",
        "open": "Zum Konvoi",
    },
    "en": {
        "subject": '{company}: new progress report in "{convoy}"',
        "heading": "New progress report",
        "greeting": "Hello",
        "intro": '{company} posted a new progress report in the convoy "{convoy}".',
        "done": "Done",
        "next": "Next",
        "blockers": "Blockers",
        "help": "Would welcome help with",
        "open": "Open the convoy",
    },
}


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str
    lang: str = "en"


def report_submitted(*, recipient: api.Recipient, company: str, convoy: str, report: api.Report, link: str) -> Rendered:
    lang = recipient.language if recipient.language in _TEXTS else "en"
    raw = _TEXTS[lang]
    # Formatting happens on plain strings; the HTML template escapes every value it prints.
    t = {k: v.format(company=company, convoy=convoy) for k, v in raw.items()}
    context = {
        "recipient": recipient,
        "company": company,
        "convoy": convoy,
        "report": report,
        "link": link,
        "lang": lang,
        "t": t,
        "subject": t["subject"],
        "sections": [
            (t["done"], report.done),
            (t["next"], report.next),
            (t["blockers"], report.blockers),
            (t["help"], report.help_topic or ("✓" if report.help_wanted else "")),
        ],
    }
    return Rendered(
        subject=t["subject"],
        text=_env.get_template(f"report_submitted.{lang}.txt").render(context),
        html=_env.get_template("report_submitted.html").render(context),
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
    "report_hidden": _Spec(needs=("convoy", "company"), note="reason"),
    "comment_hidden": _Spec(needs=("convoy", "company", "link"), note="reason"),
    "content_flagged": _Spec(needs=("convoy", "company", "what", "category", "link"), note="note"),
    "pool_request_received": _Spec(needs=("company", "theme", "contact", "link"), note="message"),
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
        "footer": "Convoy \N{EN DASH} gemeinsam digital vorankommen",
    },
    "en": {
        "greeting": "Hello {name},",
        "greeting_anonymous": "Hello,",
        "fallback": "If the button does not work, copy this link into your browser:",
        "footer": "Convoy \N{EN DASH} moving forward together",
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
        "footer": common["footer"],
    }
    return Rendered(
        subject=subject,
        text=_env.get_template("message.txt").render(context),
        html=_env.get_template("message.html").render(context),
    )
