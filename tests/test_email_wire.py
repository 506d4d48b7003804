"""notifier.email.wire_message writes, byte for byte, what build_message(...).as_bytes() writes.

The notifier sends wire_message's bytes (the email package's EmailMessage costs ~3 ms of CPU per
digest); build_message stays the reference. Both draw the MIME boundary from ``random``, so each
comparison seeds it the same; the date is fixed.
"""

from __future__ import annotations

import random
import sys
from datetime import UTC, datetime
from email.utils import getaddresses, parseaddr
from typing import Any

import pytest
from aiosmtplib.email import quote_address
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

from notifier.email import (
    WIRE_POLICY,
    Slotted,
    Wire,
    _encoded_word_line,
    _folded,
    _line,
    _smtp_address,
    build_message,
    wire_message,
)

AT = datetime(2025, 3, 31, 7, 0, 5, tzinfo=UTC)

NAMES = [
    "Anna Schmidt",
    "Person 12-3-1",
    "O'Neil Mary_Ann A+B",
    "-lead -trail-",
    "'quoted'",
    "Anna Müller",
    "Ben",
    "",
    "O'Brien, Pat",
    'Dr. "Doc" Brown',
    "José Ñúñez-Álvarez",
    "李小龙",
    "Zoë  with   spaces ",
    "name\r\nBcc: evil@x.example",
    "A" * 250,
    "Ünïcödé " * 30,
    "=?utf-8?q?encoded?=",
    "a.b (comment) <tag>",
]
ADDRESSES = [
    "anna@mueller.example",
    "rep-12@bench.example",
    "first.last+tag@sub.domain.example",
    "Weird Name <inside@x.example>",
    "odd..dots@x.example",
    "no-at-sign",
    "über@umlaut.example",
]
TEXTS = [
    "",
    "Hallo\n",
    "Hello, plain ASCII\nsecond line\n",
    "Grüße aus Köln\nnächste Zeile\n",
    "no trailing newline",
    "x" * 78 + "\n" + "y" * 79 + "\n",
    "ä" * 39 + "\n",
    "ä" * 40 + "\n",
    ("Ein langer Absatz mit Umlauten: äöü ÄÖÜ ß \N{EN DASH} und Gedankenstrichen „so“. " * 6 + "\n") * 3,
    "Ж" * 200 + "\n",  # mostly non-ASCII and long: base64
    ("Short line\n" * 5) + "€" * 120 + "\n" + ("tail\n" * 20),
    "trailing space \nand tab\t\n" + "w" * 90 + " \n",
    "CR\ronly\r\nCRLF\nLF\n" + "z" * 100,
    "vertical\x0btab and form\x0cfeed\x1cgroup \x85 next \u2028 line \u2029 para " * 3,
    "From the start\n.dot line\n--\n-- \n" + "=" * 80 + "\n",
    "=3D already encoded? =\n" + "q" * 75 + "=\n" + "r" * 74 + "=x\n",
    "\n\n\n",
    "<p>" + "<b>fett</b> " * 100 + "</p>\n",
]


def reference(seed: int, extra: list[tuple[str, str]], **kw: Any) -> tuple[bytes, str, list[str]]:
    random.seed(seed)
    message = build_message(**kw, date=AT)
    for name, value in extra:
        message[name] = value
    sender = parseaddr(str(message["From"]))[1]
    recipients = [address for _, address in getaddresses([str(message["To"])])]
    return message.as_bytes(policy=WIRE_POLICY), sender, recipients


def check(seed: int, extra: list[tuple[str, str]] | None = None, **kw: Any) -> None:
    extra = extra or []
    try:
        expected = reference(seed, extra, **kw)
    except Exception as exc:  # what the email package refuses, wire_message refuses too
        random.seed(seed)
        with pytest.raises(type(exc)):
            wire_message(**kw, date=AT, extra_headers=extra)
        return
    random.seed(seed)
    wire = wire_message(**kw, date=AT, extra_headers=extra)
    assert wire.data == expected[0], (kw, wire.data[:1500], expected[0][:1500])
    assert (wire.sender, wire.recipients) == expected[1:]
    assert wire.payload() == smtp_payload(wire.data)


def smtp_payload(data: bytes) -> bytes:
    """What aiosmtplib's ``SMTP.data(data)`` writes after DATA (the notifier writes Wire.payload() instead)."""
    return PERIOD_REGEX.sub(b"..", normalize_message_line_endings(data)) + b".\r\n"


@pytest.mark.parametrize(
    "data",
    [
        b"Subject: x\r\n\r\nbody\r\n",
        b".starts with a dot\r\n..two\r\n.\r\nmid . dot\r\n",
        b"lone LF\n.dot after LF\nlone CR\r.dot after CR\rend",
        b"no line end at all",
        b"",
        b"\r\n.\r\n",
    ],
)
def test_the_payload_after_data_is_what_aiosmtplib_would_write(data: bytes) -> None:
    assert Wire(sender="a@x.example", recipients=["b@x.example"], data=data).payload() == smtp_payload(data)


def test_the_bytes_of_a_digest_like_message_are_the_email_packages() -> None:
    html = '<!DOCTYPE html>\n<html lang="de">\n' + "".join(
        f'<tr><td style="padding:0 24px 12px 24px;font-size:15px;line-height:22px;">Hallo {n},<br>Zeile {i}'
        " \N{EN DASH} ä</td></tr>\n"
        for i, n in enumerate(NAMES[:6])
    )
    for seed, name in enumerate(NAMES):
        check(
            seed,
            [("X-Correlation-ID", "7f1c0a52-2b8e-4b9e-9a43-0d2f5c1e9b10")],
            key=f"digest:{seed}:3:6f1c0a52-2b8e-4b9e-9a43-0d2f5c1e9b10",
            sender="Convoy <convoy@localhost>",
            to_name=name,
            to_email="rep-1@bench.example",
            subject="Konvoi-Digest „Terminvergabe Nord“ \N{EN DASH} Runde 4",
            text=TEXTS[8],
            html=html,
            list_id="Terminvergabe Nord <6f1c0a52-2b8e-4b9e-9a43-0d2f5c1e9b10.convoys.convoy>",
            unsubscribe="http://convoy.test/unsubscribe/eyJwIjoiNmYxYyIsImsiOiJkaWdlc3QifQ.ZyXw.abc-_def",
        )


REPLY_TOKEN_ADDRESS = (
    "reply+eyJrIjoiY29tbWVudCIsInAiOiI2ZmU0MzhkYS1kOGE3LTQyMmEtOTM4Yy0zNzBhMDYzMjdkYTMiLCJjIjoiM2Y0MDhhYzcifQ"
    ".Zx3-AbC_d.q1W2e3R4t5Y6u7I8o9P0-_aSdFgHjKl@reply.convoy.localhost"
)


@pytest.mark.parametrize("text", range(len(TEXTS)))
def test_every_body_encoding_and_header_matches(text: int) -> None:
    rng = random.Random(text)
    for seed in range(12):
        check(
            text * 100 + seed,
            [("X-Correlation-ID", str(rng.random()))] if seed % 2 else None,
            key=rng.choice(["message:sign_in:abc", f"report:{seed}:x y", "k" * 300, "prompt:a:1:b"]),
            sender=rng.choice(["Convoy <convoy@localhost>", "convoy@example.org", 'Cönvoy "Team" <c@x.example>']),
            to_name=rng.choice(NAMES),
            to_email=rng.choice(ADDRESSES),
            subject=rng.choice(["Kurz", "Ä" * 120, "a " * 150, "Re: =?utf-8?q?x?= \t tabs", "line\nbreak"]),
            text=TEXTS[text],
            html=rng.choice(TEXTS),
            list_id=rng.choice(["Nord <n.convoys.convoy>", "Ümlaut Konvoi <u.convoys.convoy>"]),
            unsubscribe=rng.choice([None, "http://convoy.test/unsubscribe/tok.en-_", "http://x/ with space"]),
            reply_to=rng.choice(
                [
                    None,
                    "reply+abc@in.convoy.test",
                    "Convoy Antwort <r@x.example>",
                    REPLY_TOKEN_ADDRESS,  # as notifier.replies.address makes them: ~150 characters of token
                    "reply+a..b@in.convoy.test",
                    "reply+x.@in.convoy.test",
                    "reply+" + "t" * 1000 + "@in.convoy.test",
                ]
            ),
        )


def test_short_subjects_of_plain_words_are_the_email_packages() -> None:
    """wire_message writes a subject of printable ASCII words up to 900 characters as it is: the same
    bytes as the email package's folding, for quotes, parentheses, brackets, backslashes and lengths
    around 78, 900 and 998 (the wire's fold)."""
    rng = random.Random(21)
    chars = "abcXYZ019 \"(),.:;<>@[]\\=?!#$%&'*+-/^_`{|}~"
    subjects = ['Acme GmbH: new progress report in "Nord"', 'Re: (x) "y" <z> [w] a\\b', "=?utf-8?q?x?= y"]
    subjects += ["w" * n for n in (67, 68, 69, 70)] + ["ab " * 22 + "c" * n for n in range(0, 8)]
    for _ in range(400):
        subjects.append(" ".join("".join(rng.choice(chars) for _ in range(rng.randint(1, 90))).split()))
    for seed, subject in enumerate(subjects):
        check_subject(seed, subject)


def check_subject(seed: int, subject: str) -> None:
    """:func:`check` of a report notice whose only varying part is its subject."""
    check(
        seed,
        key=f"report:{seed}:p",
        sender="Convoy <convoy@localhost>",
        to_name="Anna Schmidt",
        to_email="anna@mueller.example",
        subject=subject,
        text="Hallo\n",
        html="<p>Hallo</p>\n",
        list_id="Nord <n.convoys.convoy>",
    )


def test_subjects_with_umlauts_and_quotes_are_the_email_packages() -> None:
    """wire_message writes a subject of words some of which are not ASCII (German: umlauts, „ “) as one
    encoded word from the first to the last such word, without the email package: the same bytes as
    its folding, for Q and base64 words, prefixes and suffixes of ASCII words, and lengths up to the
    line limit (longer ones, tabs, repeated spaces and encoded-word look-alikes are left to the email package)."""
    rng = random.Random(2117)
    chars = "abcXYZ019\"(),.:;<>@[]\\=?!#$%&'*+-/^_`{|}~äöüßÄÖÜ„“\u201a\u2018é€😀中文ñ"
    subjects = [
        "Firma 0 (12): neuer Fortschrittsbericht in „Bench-Konvoi ab12 12“",
        "Rückmeldungen zum Bericht von Müller & Söhne in „Nord“",
        "Antwort auf deinen Kommentar in „Konvoi“ heute",
        "中文中文中文 x",
        "=?utf-8?q?x?= ä",
        "ä  doppelt",
        " ä vorne",
        "hinten ä ",
        "Tab\tä",
    ]
    subjects += ["ä" * n for n in (1, 100, 290, 300, 440, 450)] + ["a " * 420 + "ä", "ä " + "b" * 880]
    # around the choice between Q and base64 (Q unless it is five or more characters longer)
    subjects += [f"x {'ä' * i}{'y' * j} z" for i in range(1, 12) for j in range(0, 24)]
    for _ in range(300):
        words = rng.randint(1, 12)
        lengths = [rng.randint(1, rng.choice([3, 12, 40])) for _ in range(words)]
        subjects.append(" ".join("".join(rng.choice(chars) for _ in range(n)) for n in lengths))
    # most of them take the fast path (the rest: the email package's own folding, compared as well)
    assert sum(_encoded_word_line("Subject", s) is not None for s in subjects) > 500
    for seed, subject in enumerate(subjects):
        check_subject(seed, subject)


def test_long_header_lines_of_words_are_the_email_packages() -> None:
    """Subjects are cut to 200 characters, but the fast paths take other text headers too (List-Id with
    a convoy's name): up to 900 characters, ASCII words or not, the same line as the email package's
    (which folds only past 998); longer ones are folded by it."""
    rng = random.Random(998)
    values = []
    for n in (880, 889, 890, 891, 899, 900, 901, 986, 987, 988, 989, 990, 997, 998, 999):
        values += [("ab " * 400)[:n].strip(), ("äb " * 400)[:n].strip(), "x " + "ü" * (n - 2)]
        values.append(" ".join("".join(rng.choice("ab(ä)„“") for _ in range(rng.randint(1, 9))) for _ in range(n // 5)))
    for name in ("Subject", "List-Id"):
        for value in values:
            assert _line(name, value) == _folded(name, value)[0], (name, len(value))


def test_a_boundary_found_in_a_body_is_made_unique_as_the_email_package_does() -> None:
    random.seed(99)
    token = random.randrange(sys.maxsize)
    boundary = f"==============={token:0{len(repr(sys.maxsize - 1))}d}=="
    for text in (f"--{boundary}", f"before\n--{boundary}--", f"--{boundary}\n"):
        check(
            99,
            key="message:x",
            sender="Convoy <convoy@localhost>",
            to_name="Anna",
            to_email="anna@x.example",
            subject="s",
            text=text,
            html=text,
            list_id="l <l.convoy>",
        )


def test_a_thread_names_one_parent_in_in_reply_to_and_references() -> None:
    """Emails about one report (its notice, its feedback) name the same parent, so they fold into one thread."""
    for seed, sender in enumerate(["Convoy <convoy@Mail.Example>", "convoy@localhost", "no address"]):
        kw: dict[str, Any] = {
            "key": f"feedback:{seed}:6f1c0a52-2b8e-4b9e-9a43-0d2f5c1e9b10",
            "sender": sender,
            "to_name": "Anna Müller",
            "to_email": "anna@mueller.example",
            "subject": "Rückmeldungen",
            "text": TEXTS[3],
            "html": TEXTS[17],
            "list_id": "Nord <n.convoys.convoy>",
            "unsubscribe": "http://convoy.test/unsubscribe/tok.en-_",
            "reply_to": REPLY_TOKEN_ADDRESS,
            "thread": "report.6f1c0a52-2b8e-4b9e-9a43-0d2f5c1e9b10",
        }
        check(seed, **kw)
        random.seed(seed)
        message = build_message(**kw, date=AT)
        domain = ("mail.example", "localhost", "convoy")[seed]
        root = f"<report.6f1c0a52-2b8e-4b9e-9a43-0d2f5c1e9b10@{domain}>"
        assert message["In-Reply-To"] == message["References"] == root
        assert message["Message-ID"] != root  # each copy keeps a Message-ID of its own
    with pytest.raises(ValueError, match="thread"):
        wire_message(**{**kw, "thread": "report.x>\r\nBcc: evil@x.example"}, date=AT)


SLOT_VALUES = [*NAMES, "Hallo Anna,", "http://convoy.test/unsubscribe/tok.en-_", ".dot first", "=3D", " \t", "x" * 120]


def slotted(text: str, rng: random.Random) -> Slotted:
    """``text`` with placeholders put in at random places (line starts and ends, mid-line, whole lines,
    twice in a line, in a new line) and random values for them (line breaks, CRs, long, non-ASCII)."""
    placeholders = [f"convoy-slot-{i}-{rng.getrandbits(64):016x}" for i in range(rng.randint(1, 3))]
    template = text
    for placeholder in placeholders:
        for _ in range(rng.choice([1, 1, 2])):
            cuts = [0, len(template), *(i + 1 for i, c in enumerate(template) if c == "\n")]
            at = rng.choice([*cuts, rng.randint(0, len(template))])
            template = template[:at] + rng.choice([placeholder, placeholder + "\n", "\n" + placeholder]) + template[at:]
    values = [(p, rng.choice([*SLOT_VALUES, placeholders[0] + "!"])) for p in placeholders]
    return Slotted(template, tuple(values))


@pytest.mark.parametrize("text", range(len(TEXTS)))
def test_a_body_with_slots_comes_out_as_the_same_body_written_out(text: int) -> None:
    """Slotted bodies (a digest: greeting and unsubscribe link per recipient) are encoded from their
    template's cached lines: the bytes, and the payload after DATA, are those of the text written out."""
    rng = random.Random(1000 + text)
    for seed in range(40):
        body, html = slotted(TEXTS[text], rng), slotted(rng.choice(TEXTS), rng)
        kw: dict[str, Any] = {
            "key": f"digest:{seed}:3:x",
            "sender": "Convoy <convoy@localhost>",
            "to_name": rng.choice(NAMES),
            "to_email": "rep-1@bench.example",
            "subject": "Digest",
            "list_id": "Nord <n.convoys.convoy>",
            "unsubscribe": "http://convoy.test/unsubscribe/tok.en-_",
            "date": AT,
        }
        random.seed(seed)
        try:
            expected = wire_message(text=str(body), html=str(html), **kw)
        except Exception as exc:
            random.seed(seed)
            with pytest.raises(type(exc)):
                wire_message(text=body, html=html, **kw)
            continue
        random.seed(seed)
        got = wire_message(text=body, html=html, **kw)
        assert got.data == expected.data, (body, html)
        assert got.payload() == expected.payload() == smtp_payload(got.data)
        random.seed(seed)
        assert got.data == build_message(text=str(body), html=str(html), **kw).as_bytes(policy=WIRE_POLICY)


@pytest.mark.parametrize(
    "address",
    [
        *ADDRESSES,
        "convoy@localhost",
        "a.b-c_d+e%f@x-y.example",
        ".lead@x.example",
        "trail.@x.example",
        "a@-x.example",
        "Convoy <convoy@localhost>",
        '"quoted local"@x.example',
        "in jection@x.example",
        "a@x.example>\r\nRCPT TO:<b@x.example",
        "",
    ],
)
def test_an_envelope_address_goes_on_the_command_line_as_aiosmtplib_puts_it(address: str) -> None:
    """SmtpPool sends MAIL FROM and RCPT TO itself (not client.mail/rcpt): the same bytes, the same refusals."""
    try:
        expected = quote_address(address).encode("ascii")
    except Exception as exc:
        with pytest.raises(type(exc)):
            _smtp_address(address)
        return
    assert _smtp_address(address) == expected
