"""A digest is rendered and encoded once per language (notifier.cycles.DigestRenderer, notifier.email.Slotted),
and each member's email is spliced from it: the greeting, the unsubscribe link and the headers are theirs.
What every member receives must be what rendering the digest for them alone gives, byte for byte
where the MIME boundary is seeded, and header for header and part for part through real SMTP."""

from __future__ import annotations

import functools
import random
import uuid
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import msgspec
import pytest

from notifier import access, cycles, gallery, i18n, render
from notifier.delivery import SETTINGS_PATH, Mailer
from notifier.email import WIRE_POLICY, build_message, wire_message
from schemas import api
from services.runtime import db
from tests.conftest import SmtpSink

AT = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
NAMES = [
    "Anna Müller-Lüdenscheidt",
    "Ben",
    "",  # no name: "Hello," / "Guten Tag,"
    "<b>Bold</b> & \"quoted\" 'single'",  # escaped in the HTML part, as written in the text part
    "Zoë   with\tspaces ",
    "李小龙",
    "<!--convoy:footer--> </body>",  # escaped: no footer mark, no end of body
    "x" * 200,  # a long greeting line (quoted-printable soft breaks around it)
    ".dot first",
]


def renderer(public: str = gallery.PUBLIC_URL) -> cycles.DigestRenderer:
    return cycles.DigestRenderer(
        d=gallery.digest_data(),
        people=gallery.DIGEST_PEOPLE,
        companies=gallery.DIGEST_COMPANIES,
        absences=gallery.DIGEST_ABSENCES,
        link=f"{public}/convoys/{uuid.UUID(int=11)}",
        report_link=f"{public}/reports/{{report_id}}",
    )


def member(i: int, lang: str) -> api.Recipient:
    return api.Recipient(
        person_id=uuid.UUID(int=1000 + i),
        company_id=uuid.UUID(int=2000 + i),
        company_name=f"Firma {i}",
        name=NAMES[i % len(NAMES)],
        email=f"member-{i}@example.org",
        language=lang,
    )


def alone(digests: cycles.DigestRenderer, m: api.Recipient) -> render.Rendered:
    """The digest rendered for this member alone: the templates with their greeting, no shared form."""
    lang = render.message_language(m.language)
    ctx = digests.context(lang, render.greeting(i18n.Words(lang), m.name))
    plain = render.from_templates("cycle_digest", ctx, subject=ctx["subject"], lang=lang)
    assert plain.shared is None
    return plain


@pytest.mark.parametrize("lang", ["de", "en"])
def test_each_members_digest_is_the_digest_rendered_for_them_alone(lang: str) -> None:
    digests = renderer()
    shared_forms = set()
    for i in range(len(NAMES)):
        m = member(i, lang)
        spliced, reference = digests.render(m), alone(digests, m)
        assert spliced.shared is not None  # (the spliced path is the one under test)
        shared_forms.add(id(spliced.shared))
        assert (spliced.subject, spliced.text, spliced.html, spliced.lang) == (
            reference.subject,
            reference.text,
            reference.html,
            reference.lang,
        )
        for unsubscribe in (f"{gallery.PUBLIC_URL}/unsubscribe/tok-{i}.x_y", None):
            footer: dict[str, Any] = {"kind": "digest", "settings_url": gallery.SETTINGS_URL}
            footed = render.with_footer(spliced, **footer, unsubscribe_url=unsubscribe)
            expected = render.with_footer(reference, **footer, unsubscribe_url=unsubscribe)
            assert footed.shared is not None and expected.shared is None
            assert (footed.text, footed.html) == (expected.text, expected.html)
            if unsubscribe:
                assert footed.text.count(unsubscribe) == 1 and footed.html.count(unsubscribe) == 1
            text, html = render.footed_bodies(spliced, **footer, unsubscribe_url=unsubscribe)
            assert (str(text), str(html)) == (expected.text, expected.html)
            # the bytes on the wire: the email package's own, from the text written out
            headers: dict[str, Any] = {
                "key": f"digest:{uuid.UUID(int=11)}:3:{m.person_id}",
                "sender": "Convoy <convoy@convoy.example.org>",
                "to_name": m.name,
                "to_email": m.email,
                "subject": expected.subject,
                "list_id": "Konvoi <c.convoys.convoy>",
                "unsubscribe": unsubscribe,
                "date": AT,
            }
            random.seed(i)
            wire = wire_message(text=text, html=html, **headers)
            random.seed(i)
            assert wire.data == build_message(text=expected.text, html=expected.html, **headers).as_bytes(
                policy=WIRE_POLICY
            )
            assert wire.stuffed is not None  # the payload came spliced too
            random.seed(i)
            assert wire.payload() == wire_message(text=expected.text, html=expected.html, **headers).payload()
    assert len(shared_forms) == 1  # rendered once for the language


def parts(message: EmailMessage) -> list[tuple[str, str, str]]:
    """Each leaf part: its type, transfer encoding and decoded content."""
    return [
        (p.get_content_type(), str(p["Content-Transfer-Encoding"]), str(p.get_content()))
        for p in message.walk()
        if not p.is_multipart()
    ]


def headers(message: EmailMessage) -> list[tuple[str, str]]:
    """The headers but Date and the multipart boundary (the reference is built at another moment)."""
    return [
        (name, "multipart/alternative" if name == "Content-Type" else str(value))
        for name, value in message.items()
        if name != "Date"
    ]


async def test_a_digest_fan_out_delivers_to_each_member_what_the_digest_for_them_alone_would_be(
    settings: Any, smtp_sink: SmtpSink
) -> None:
    """Through Mailer.fan_out, the delivery log and real SMTP: members in both languages (one with a
    reply address, one unsubscribe link each) get the headers and the decoded parts of their own digest."""
    mail_settings = msgspec.structs.replace(settings, smtp_url=f"smtp://127.0.0.1:{smtp_sink.port}")
    database = await db.connect(mail_settings, "notifier")
    mailer = Mailer(mail_settings, database)
    digests = renderer(mailer.public(""))
    members = [member(i, "de" if i % 2 else "en") for i in range(len(NAMES))]
    run = uuid.uuid4()
    list_id = f"Konvoi <{run}.convoys.convoy>"

    def key(m: api.Recipient) -> str:
        return f"digest:{run}:3:{m.person_id}"

    try:
        await mailer.fan_out(
            functools.partial(
                mailer.send_email,
                key(m),
                uuid.uuid4(),
                to_name=m.name,
                to_email=m.email,
                rendered=digests.render(m),
                list_id=list_id,
                prefs=api.NotificationPrefs(),
            )
            for m in members
        )
        received = await smtp_sink.wait_for(len(members))
    finally:
        await mailer.close()
        await database.close(5)
    assert len(received) == len(members)
    by_key = {str(message["X-Convoy-Delivery"]): message for message in received}
    for m in members:
        got = by_key[key(m)]
        link = str(got["List-Unsubscribe"]).strip("<>")
        assert link.startswith(mailer.public("/unsubscribe/"))
        # the link is this member's, for digests
        assert access.unsubscribe_claim(mail_settings, link.rsplit("/", 1)[1]) == (m.person_id, "digest")
        expected = render.with_footer(
            alone(digests, m), kind="digest", settings_url=mailer.public(SETTINGS_PATH), unsubscribe_url=link
        )
        reference = message_from_bytes(
            build_message(
                key=key(m),
                sender=mail_settings.mail_from,
                to_name=m.name,
                to_email=m.email,
                subject=expected.subject,
                text=expected.text,
                html=expected.html,
                list_id=list_id,
                unsubscribe=link,
            ).as_bytes(policy=WIRE_POLICY),
            policy=policy.default,
        )
        assert isinstance(reference, EmailMessage)
        assert headers(got) == headers(reference)
        assert parts(got) == parts(reference)
        assert next(p for p in parts(got) if p[0] == "text/html")[2].count(link.replace("&", "&amp;")) == 1
