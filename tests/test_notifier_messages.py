"""EmailRequested messages, end to end on real servers: outbox of services/convoys -> JetStream
messages stream -> notifier -> SMTP; once per key, escaped HTML, dead letters for bad params."""

from __future__ import annotations

import contextlib
import html
import typing
import uuid
from email.message import EmailMessage

import asyncpg
import msgspec
import pytest
from nats.aio.msg import Msg

from notifier import render
from schemas import api
from schemas import envelope as env
from schemas import events as ev
from services.runtime import outbox, sealing
from tests.conftest import SmtpSink, Stack, eventually

# The contract as the producers read it in EmailRequested's docstring: the params each template
# needs. ``message`` and ``reason`` are the sender's own words: shown when given, optional.
NEEDS: dict[str, tuple[str, ...]] = {
    "invitation": ("convoy", "company", "inviter", "link", "expires"),
    "sign_in": ("link", "minutes"),
    "facilitator_appointed": ("link",),
    "join_request_received": ("convoy", "link"),
    "join_request_declined": ("convoy", "company"),
    "member_removed": ("convoy", "company"),
    "help_offered": ("convoy", "helper", "company", "topic", "link"),
    "slack_disabled": ("convoy", "link"),
    "chat_disabled": ("convoy", "channel", "link"),
    "report_hidden": ("convoy", "company"),
    "comment_hidden": ("convoy", "company", "link"),
    "content_flagged": ("convoy", "company", "what", "category", "link"),
    "pool_request_received": ("theme", "link"),
    "pool_joined": ("theme", "days", "link"),
    "observer_invitation": ("convoy", "inviter", "link", "expires"),
    "observer_removed": ("convoy",),
}
PARAMS = {
    "convoy": "Terminvergabe Nord",
    "company": "Sanitär Müller",
    "inviter": "Fiona Facil",
    "expires": "31.12.2026",
    "minutes": "15",
    "contact": "Ben Schmidt",
    "message": "Wir möchten gern mitmachen.",
    "reason": "Der Konvoi ist voll.",
    "helper": "Clara Stahl",
    "topic": "Kalender-Synchronisation",
    "what": "einen Kommentar zum Bericht",
    "category": "vertraulich",
    "note": "Nennt Kundennamen.",
    "theme": "Online-Terminbuchung",
    "channel": "Microsoft Teams",
    "days": "180",
}
SUBJECTS = {
    ("observer_invitation", "de"): "Einladung in den Konvoi „Terminvergabe Nord“ als Beobachter:in",
    ("observer_invitation", "en"): 'Invitation to observe the convoy "Terminvergabe Nord"',
    ("observer_removed", "de"): "Sie begleiten den Konvoi „Terminvergabe Nord“ nicht mehr",
    ("observer_removed", "en"): 'You no longer observe the convoy "Terminvergabe Nord"',
    ("invitation", "de"): "Einladung in den Konvoi „Terminvergabe Nord“",
    ("invitation", "en"): 'Invitation to join the convoy "Terminvergabe Nord"',
    ("sign_in", "de"): "Ihr Anmeldelink für Convoy",
    ("sign_in", "en"): "Your sign-in link for Convoy",
    ("facilitator_appointed", "de"): "Sie sind jetzt Moderator:in bei Convoy",
    ("facilitator_appointed", "en"): "You are now a facilitator at Convoy",
    ("join_request_received", "de"): "Neue Beitrittsanfrage für „Terminvergabe Nord“",
    ("join_request_received", "en"): 'New request to join "Terminvergabe Nord"',
    ("join_request_declined", "de"): "Ihre Beitrittsanfrage für „Terminvergabe Nord“",
    ("join_request_declined", "en"): 'Your request to join "Terminvergabe Nord"',
    ("member_removed", "de"): "Sie sind nicht mehr Mitglied im Konvoi „Terminvergabe Nord“",
    ("member_removed", "en"): 'You are no longer a member of the convoy "Terminvergabe Nord"',
    ("help_offered", "de"): "Clara Stahl (Sanitär Müller) bietet Hilfe an",
    ("help_offered", "en"): "Clara Stahl (Sanitär Müller) offers help",
    ("slack_disabled", "de"): "Slack-Kanal von „Terminvergabe Nord“ abgeschaltet",
    ("slack_disabled", "en"): 'Slack channel of "Terminvergabe Nord" switched off',
    ("chat_disabled", "de"): "Microsoft Teams: Kanal von „Terminvergabe Nord“ abgeschaltet",
    ("chat_disabled", "en"): 'Microsoft Teams channel of "Terminvergabe Nord" switched off',
    ("report_hidden", "de"): "Ihr Bericht in „Terminvergabe Nord“ wurde ausgeblendet",
    ("report_hidden", "en"): 'Your report in "Terminvergabe Nord" was hidden',
    ("comment_hidden", "de"): "Ihr Kommentar in „Terminvergabe Nord“ wurde ausgeblendet",
    ("comment_hidden", "en"): 'Your comment in "Terminvergabe Nord" was hidden',
    ("content_flagged", "de"): "Meldung in „Terminvergabe Nord“: vertraulich",
    ("content_flagged", "en"): 'Flagged in "Terminvergabe Nord": vertraulich',
    ("pool_request_received", "de"): "Digitalisierungscheck: eine neue Anfrage für einen Konvoi zum Thema"
    " „Online-Terminbuchung“",
    ("pool_request_received", "en"): 'Digitalisation check: a new request for a convoy on "Online-Terminbuchung"',
    ("pool_joined", "de"): "Ihre Anfrage für einen Konvoi zum Thema „Online-Terminbuchung“",
    ("pool_joined", "en"): 'Your request for a convoy on "Online-Terminbuchung"',
}
# One sentence of each body, to see the params and the language arrived.
SAYS = {
    ("observer_invitation", "de"): "Fiona Facil lädt Sie ein, den Konvoi „Terminvergabe Nord“ als Beobachter:in"
    " zu begleiten.",
    ("observer_invitation", "en"): "The invitation is valid until 31.12.2026.",
    ("observer_removed", "de"): "Der Konvoi ist voll.",
    ("observer_removed", "en"): "You were removed as an observer from the convoy",
    ("invitation", "de"): "Fiona Facil lädt Sie ein, dem Konvoi „Terminvergabe Nord“ als Vertreter:in"
    " von Sanitär Müller beizutreten.",
    ("invitation", "en"): "The invitation is valid until 31.12.2026.",
    ("sign_in", "de"): "Der Link ist 15 Minuten lang gültig und kann nur einmal verwendet werden.",
    ("sign_in", "en"): "If you did not ask for a sign-in link, you can simply ignore this email.",
    ("facilitator_appointed", "de"): "Sie sind jetzt Moderator:in bei Convoy.",
    ("facilitator_appointed", "en"): "You are now a facilitator at Convoy.",
    ("join_request_received", "de"): "Eine neue Anfrage, dem Konvoi „Terminvergabe Nord“ beizutreten, wartet auf"
    " Ihre Entscheidung.",
    ("join_request_received", "en"): "Who is asking and what they wrote is shown in Convoy, not in this email.",
    ("join_request_declined", "de"): "Der Konvoi ist voll.",
    ("join_request_declined", "en"): "was declined.",
    ("member_removed", "de"): "Der Konvoi ist voll.",
    ("member_removed", "en"): "You were removed from the convoy",
    (
        "help_offered",
        "de",
    ): "Sie haben im Konvoi „Terminvergabe Nord“ um Unterstützung gebeten: Kalender-Synchronisation.",
    ("help_offered", "en"): "Clara Stahl from Sanitär Müller offers to help.",
    ("slack_disabled", "de"): "Convoy sendet keine Digests mehr dorthin.",
    ("slack_disabled", "en"): "Convoy no longer sends digests there.",
    ("chat_disabled", "de"): "Convoy sendet keine Digests und Berichte mehr dorthin.",
    ("chat_disabled", "en"): "Convoy no longer sends digests and reports there.",
    ("report_hidden", "de"): "Der Konvoi ist voll.",
    ("report_hidden", "en"): "hid a progress report of Sanitär Müller.",
    ("comment_hidden", "de"): "hat Ihren Kommentar zum Bericht von Sanitär Müller ausgeblendet.",
    ("comment_hidden", "en"): "Der Konvoi ist voll.",
    ("content_flagged", "de"): "Ein Mitglied des Konvois „Terminvergabe Nord“ hat einen Kommentar zum Bericht"
    " von Sanitär Müller gemeldet. Grund: vertraulich.",
    ("content_flagged", "en"): "Nennt Kundennamen.",
    ("pool_request_received", "de"): "Ein Unternehmen hat den Digitalisierungscheck gemacht und möchte in einem"
    " Konvoi zum Thema „Online-Terminbuchung“ mitmachen.",
    ("pool_request_received", "en"): "The request waits in the formation pool until you place it in a convoy.",
    ("pool_joined", "de"): "Wir speichern Ihre Kontaktdaten nur dafür und löschen sie nach 180 Tagen, wenn sich kein"
    " Konvoi bildet.",
    ("pool_joined", "en"): "Changed your mind? Withdraw the request here; your contact is then deleted at once.",
}


def link_of(template: str, lang: str) -> str:
    return f"http://convoy.test/links/{template}-{lang}?token=t0k&from=mail"


def email_requested(
    key: str, to: str, template: str, params: dict[str, str], language: str = "de", name: str = ""
) -> ev.EmailRequested:
    return ev.EmailRequested(
        key=key,
        to_email=to,
        to_name=name,
        language=language,
        template=template,  # type: ignore[arg-type]
        params=params,
    )


async def request(stack: Stack, *messages: ev.EmailRequested) -> list[env.Envelope]:
    """Write messages to the outbox of services/convoys, as that service does (sealed for the notifier, on
    their recipient's subject); its relay publishes."""
    conn = await asyncpg.connect(stack.settings.database_url, server_settings={"search_path": "convoys"})
    key = stack.settings.notifier_box_public_key
    try:
        async with conn.transaction():
            added = []
            for m in messages:
                subject, sealed = sealing.addressed(stack.subjects, m, key)
                added.append(await outbox.add(conn, stack.subjects, sealed, producer="convoys", subject=subject))
            return added
    finally:
        await conn.close()


async def publish(stack: Stack, envelope: env.Envelope) -> None:
    """Publish an envelope straight to JetStream under a fresh Nats-Msg-Id (JetStream keeps both)."""
    ack = await stack.nc.jetstream().publish(
        stack.subjects.of(ev.EmailRequested),
        env.encode(envelope),
        headers={"Nats-Msg-Id": str(uuid.uuid4())},
    )
    assert not ack.duplicate


async def deliveries(stack: Stack) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(stack.settings.database_url)
    try:
        return await conn.fetch("SELECT key, status, attempts FROM notifier.deliveries ORDER BY key")
    finally:
        await conn.close()


async def dead_letters(stack: Stack, count: int) -> list[Msg]:
    js = stack.nc.jetstream()
    sub = await js.pull_subscribe(stack.subjects.dead_letter_wildcard, stream=stack.subjects.dead_letter_stream)
    got: list[Msg] = []

    async def fetch() -> bool:
        with contextlib.suppress(TimeoutError):
            got.extend(await sub.fetch(count - len(got), timeout=1))
        return len(got) >= count

    await eventually(fetch)
    return got


def bodies(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",))
    markup = message.get_body(("html",))
    assert text is not None and markup is not None
    return text.get_content(), markup.get_content()


# --- rendering alone ---------------------------------------------------------------------------
def test_the_renderer_knows_every_template_of_the_contract() -> None:
    assert set(render.MESSAGE_TEMPLATES) == set(typing.get_args(ev.EmailTemplate)) == set(NEEDS)


@pytest.mark.parametrize("template", NEEDS)
@pytest.mark.parametrize("language", ["de", "en"])
def test_each_template_renders_from_exactly_the_params_it_needs(template: str, language: str) -> None:
    params = {p: PARAMS.get(p, "https://convoy.test/x") for p in NEEDS[template]}
    rendered = render.message(template, language, params, name="Anna Müller")
    assert rendered.subject
    assert rendered.text.startswith("Hallo Anna Müller," if language == "de" else "Hello Anna Müller,")
    assert f'<html lang="{language}">' in rendered.html
    for missing in NEEDS[template]:
        with pytest.raises(render.MessageParamsError, match=f"'{template}' needs params \\['{missing}'\\]"):
            render.message(template, language, {p: v for p, v in params.items() if p != missing})


def test_render_refuses_blank_params_bad_links_and_unknown_templates_without_echoing_values() -> None:
    with pytest.raises(render.MessageParamsError, match=r"needs params \['minutes'\]") as blank:
        render.message("sign_in", "de", {"link": "https://convoy.test/s/secret-token", "minutes": " "})
    assert "secret-token" not in str(blank.value)
    with pytest.raises(render.MessageParamsError, match="must be an http"):
        render.message("facilitator_appointed", "de", {"link": "javascript:alert(1)"})
    with pytest.raises(render.MessageParamsError, match="unknown email template"):
        render.message("newsletter", "de", {})


@pytest.mark.parametrize(
    ("tag", "language"), [("de", "de"), ("DE", "de"), ("de-AT", "de"), ("en", "en"), ("fr", "en"), ("", "en")]
)
def test_language_falls_back_to_english(tag: str, language: str) -> None:
    assert render.message_language(tag) == language


# --- end to end --------------------------------------------------------------------------------
async def test_every_template_arrives_in_both_languages(stack: Stack, smtp_sink: SmtpSink) -> None:
    health = await stack.nc.request(stack.subjects.health("notifier"), b"{}", timeout=2)
    assert msgspec.json.decode(health.data, type=api.Health).checks["consumer:messages"] == "ok"

    wanted = [
        email_requested(
            f"all-{template}-{lang}",
            f"{template}.{lang}@example.test",
            template,
            {**PARAMS, "link": link_of(template, lang)},
            language=lang,
            name="Anna Müller",
        )
        for template, lang in SUBJECTS
    ]
    wanted.append(  # a language the notifier does not speak: English
        email_requested("all-fr", "fr@example.test", "sign_in", {**PARAMS, "link": link_of("sign_in", "fr")}, "fr")
    )
    await request(stack, *wanted)
    await smtp_sink.wait_for(len(wanted))

    for (template, lang), subject in SUBJECTS.items():
        [message] = smtp_sink.to(f"<{template}.{lang}@example.test>")  # whole: invitation.de in observer_invitation.de
        assert message["Subject"] == subject
        assert message["To"] == f"Anna Müller <{template}.{lang}@example.test>"
        assert message["List-Id"] == "Convoy <account.convoy>"
        assert message["X-Convoy-Delivery"] == f"message:all-{template}-{lang}"
        text, markup = bodies(message)
        assert SAYS[template, lang] in " ".join(text.split()), (template, lang, text)
        assert html.escape(SAYS[template, lang], quote=True) in " ".join(markup.split())
        link = link_of(template, lang)
        if "link" in NEEDS[template]:
            assert link in text
            assert f'<a href="{html.escape(link)}"' in markup
        else:
            assert "http" not in text and "<a " not in markup
        assert "src=" not in markup and "<img" not in markup  # nothing loaded from elsewhere

    [fallback] = smtp_sink.to("fr@example.test")
    assert fallback["Subject"] == "Your sign-in link for Convoy"
    assert bodies(fallback)[0].startswith("Hello,")
    assert len(smtp_sink.messages) == len(wanted)


async def test_user_text_is_escaped_in_html(stack: Stack, smtp_sink: SmtpSink) -> None:
    await request(
        stack,
        email_requested(
            "escape-1",
            "facil@example.test",
            "help_offered",
            {
                "convoy": "Nord & Süd",
                "company": "<script>alert(1)</script> GmbH",
                "helper": 'Eve "<b>"',
                "topic": "Kalender",
                "message": "Erste Zeile\r\nZweite <i>Zeile</i>",
                "link": "https://convoy.test/requests/1?a=1&b=2",
            },
        ),
    )
    [message] = await smtp_sink.wait_for(1)
    assert message["Subject"] == 'Eve "<b>" (<script>alert(1)</script> GmbH) bietet Hilfe an'
    text, markup = bodies(message)
    assert "<script>alert(1)</script> GmbH" in text and "Erste Zeile\r\nZweite <i>Zeile</i>" in text
    assert "<script>" not in markup and "<i>" not in markup and "<b>" not in markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt; GmbH" in markup
    assert "Nord &amp; Süd" in markup and "Eve &#34;&lt;b&gt;&#34;" in markup
    assert "Erste Zeile<br>Zweite &lt;i&gt;Zeile&lt;/i&gt;" in markup
    assert 'href="https://convoy.test/requests/1?a=1&amp;b=2"' in markup


async def test_the_same_key_sends_one_email(stack: Stack, smtp_sink: SmtpSink) -> None:
    params = {"link": "https://convoy.test/sign-in/abc", "minutes": "15"}
    [first] = await request(stack, email_requested("once", "anna@example.test", "sign_in", params))
    await smtp_sink.wait_for(1)

    # The same key again: re-published as a new message, and the first envelope redelivered
    # under another Nats-Msg-Id; then one more message, which arrives after both.
    await request(stack, email_requested("once", "anna@example.test", "sign_in", params))
    await publish(stack, first)
    await request(stack, email_requested("after", "ben@example.test", "sign_in", params))
    messages = await smtp_sink.wait_for(2)

    assert [m["To"] for m in messages] == ["anna@example.test", "ben@example.test"]
    assert [(r["key"], r["status"], r["attempts"]) for r in await deliveries(stack)] == [
        ("message:after", "sent", 1),
        ("message:once", "sent", 1),
    ]
    assert len(smtp_sink.messages) == 2


async def test_a_message_missing_a_param_is_dead_lettered_and_the_next_is_sent(
    stack: Stack, smtp_sink: SmtpSink
) -> None:
    incomplete = {"convoy": "Nord", "company": "Laden", "inviter": "Fiona", "link": "https://convoy.test/i/secret"}
    await request(
        stack,
        email_requested("broken", "anna@example.test", "invitation", incomplete),
        email_requested("fine", "ben@example.test", "member_removed", {"convoy": "Nord", "company": "Laden"}),
    )
    [message] = await smtp_sink.wait_for(1)
    assert message["To"] == "ben@example.test"

    [dead] = await dead_letters(stack, 1)
    assert dead.headers is not None
    tag = sealing.recipient_tag("anna@example.test")
    assert dead.headers["Convoy-Subject"] == stack.subjects.addressed(ev.EmailRequested, tag)
    # the recipient's tag goes along: an erasure purges the dead letters of the person's messages too
    assert dead.subject == stack.subjects.dead_letter(stack.subjects.consumer("notifier", "messages"), tag)
    assert b"secret" not in dead.data and b"anna@" not in dead.data  # sealed: no link, no address
    assert dead.headers["Convoy-Consumer"] == stack.subjects.consumer("notifier", "messages")
    error = dead.headers["Convoy-Error"]
    assert f"failed {stack.settings.consumer_max_deliver} times" in error
    assert "'invitation' needs params ['expires']" in error and "secret" not in error
    event = env.decode(dead.data)[1]
    assert isinstance(event, ev.EmailRequested) and event.key == "broken" and event.sealed
    opened = sealing.unseal(event, stack.settings.notifier_box_key)  # the notifier's key opens it
    assert opened.to_email == "anna@example.test" and opened.params == incomplete

    assert [r["key"] for r in await deliveries(stack)] == ["message:fine"]  # nothing claimed for it
    assert len(smtp_sink.messages) == 1


async def test_a_long_non_ascii_subject_arrives_whole(smtp_sink: SmtpSink) -> None:
    """Folding a long subject into encoded words must keep the spaces between them."""
    from notifier.email import SmtpConfig, SmtpPool, wire_message

    subject = "Metallbau Özdemir KG: neuer Fortschrittsbericht in „Digital-Konvoi Nord“"
    pool = SmtpPool(SmtpConfig(hostname="127.0.0.1", port=smtp_sink.port), size=1, timeout=10)
    message = wire_message(  # the bytes the notifier sends
        key="k1",
        sender="Convoy <convoy@localhost>",
        to_name="Anna Brändt",
        to_email="anna@brandt.example",
        subject=subject,
        text="Hallo",
        html="<p>Hallo</p>",
        list_id="konvoi.convoy.localhost",
    )
    await pool.send(message)
    await pool.close()
    (got,) = await smtp_sink.wait_for(1)
    assert str(got["Subject"]) == subject
    assert "anna@brandt.example" in str(got["To"]) and "Brändt" in str(got["To"])
