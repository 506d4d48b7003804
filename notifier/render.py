"""Rendering notifications from Jinja2 templates, in the recipient's language (de or en)."""

from __future__ import annotations

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


def report_submitted(
    *, recipient: api.Recipient, company: str, convoy: str, report: api.Report, link: str
) -> Rendered:
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
            (t["help"], report.help_wanted),
        ],
    }
    return Rendered(
        subject=t["subject"],
        text=_env.get_template(f"report_submitted.{lang}.txt").render(context),
        html=_env.get_template("report_submitted.html").render(context),
    )
