"""The emails' words: one gettext catalogue (notifier/locale), English msgids in the templates and the code.

Every string the templates and the notifier's Python mark is translated into German with the same
placeholders; dates and numbers come from Babel in the recipient's locale; plurals agree with their
number; every HTML email extends the one layout.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from babel.messages.pofile import read_po

import notifier
from notifier import cycles, facilitation, facilitator, feedback, i18n, render
from schemas import api
from tests.test_facilitator_mail import health, person
from tests.test_facilitator_mail import render as facilitator_digest

ROOT = Path(__file__).parents[1]
NOTIFIER = Path(notifier.__file__).parent
TEMPLATES = NOTIFIER / "templates"
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def _extracted(tmp_path: Path) -> set[str]:
    out = tmp_path / "emails.pot"
    babel = [sys.executable, "-m", "babel.messages.frontend"]
    extract = ["extract", "-F", str(NOTIFIER / "babel.cfg"), "-k", "N_", "--no-location", "--omit-header"]
    subprocess.run(
        [*babel, *extract, "-o", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    with out.open("rb") as f:
        return {m.id if isinstance(m.id, str) else m.id[0] for m in read_po(f) if m.id}


def test_every_email_string_has_its_german_translation_with_the_same_placeholders(tmp_path: Path) -> None:
    wanted = _extracted(tmp_path)
    assert "Open the report" in wanted and "Hello %(name)s," in wanted  # templates and Python both extracted
    assert "%(num)s convoy" in wanted  # and the plurals (``_.ngettext``)
    with (i18n.LOCALE_DIR / "de" / "LC_MESSAGES" / "messages.po").open("rb") as f:
        catalog = read_po(f, locale="de")
    german = {m.id if isinstance(m.id, str) else m.id[0]: m for m in catalog if m.id}
    assert wanted - german.keys() == set(), "run `make messages` and translate the new strings"
    assert german.keys() - wanted == set(), "strings no email uses any more: remove them from the catalogue"
    for msgid, m in german.items():
        ids = [m.id] if isinstance(m.id, str) else list(m.id)
        strings = [m.string] if isinstance(m.string, str) else list(m.string or ())
        assert all(strings) and not m.fuzzy, f"untranslated: {msgid!r}"
        names = set(PLACEHOLDER.findall(ids[-1]))
        for s in strings:
            assert set(PLACEHOLDER.findall(s)) <= names | {"num"}, f"{msgid!r}: {s!r} names other placeholders"
            s % dict.fromkeys(names | {"num"}, "x")  # a well-formed %-format string (a lone % would raise)


def test_words_dates_and_numbers_in_the_recipients_language() -> None:
    de, en = i18n.Words("de"), i18n.Words("en")
    assert de("Open the report") == "Zum Bericht" and en("Open the report") == "Open the report"
    assert de("Hello %(name)s,", name="Anna") == "Hallo Anna,"
    assert i18n.language("de-AT") == "de" and i18n.language("fr") == "en" and i18n.Words("fr")("Hello,") == "Hello,"
    at = datetime(2025, 3, 31, 7, 0, tzinfo=UTC)
    berlin = ZoneInfo("Europe/Berlin")
    assert i18n.when_long(at, "de", berlin) == "Montag, 31. März 2025, 09:00 Uhr"
    assert i18n.when_long(at, "en", berlin) == "Monday, 31 March 2025, 09:00"
    assert i18n.when_short(at, "de", berlin) == "31.03.2025, 09:00 Uhr"
    assert i18n.when_short(at, "en", berlin) == "31 Mar 2025, 09:00"
    assert i18n.day(date(2026, 1, 5), "de") == "5. Januar 2026" and i18n.day(date(2026, 1, 5), "en") == "5 January 2026"
    assert i18n.number(1234.5, "de") == "1.234,5" and i18n.number(1234.5, "en") == "1,234.5"


def test_plurals_agree_with_their_number() -> None:
    one = health("Nord", silent_companies=[api.SilentCompany(company_id=uuid.uuid4(), name="Laden", cycles_silent=1)])
    many = health("Süd", silent_companies=[api.SilentCompany(company_id=uuid.uuid4(), name="Werk", cycles_silent=2)])
    de = facilitator_digest(person("de"), one, many)
    en = facilitator_digest(person("en"), one)
    assert "- Laden (1 Runde)" in de.text and "- Werk (2 Runden)" in de.text
    assert "- Laden (1 round)" in en.text
    assert "Moderations-Digest: 2 Konvois" in de.subject and "Facilitator digest: 1 convoy " in en.subject
    assert facilitator.subject("de", 1, "2026-W48").startswith("Moderations-Digest: 1 Konvoi ")


def test_the_round_summary_names_one_rating_and_an_average_with_a_decimal_comma() -> None:
    def digest(*moods: int) -> api.Digest:
        return api.Digest(
            convoy_id=uuid.uuid4(),
            convoy_name="Nord",
            cycle_index=1,
            completed_milestones=[],
            help_requests=[],
            reports=[
                api.DigestReport(
                    report_id=uuid.uuid4(),
                    company_id=uuid.uuid4(),
                    company_name=f"Firma {i}",
                    cycle_index=1,
                    late=False,
                    done="Erledigt.",
                    next="",
                    blockers="",
                    help_wanted=False,
                    help_topic="",
                    mood=m,
                    progress=0.5,
                    milestone_changes=[],
                    kudos_by=[],
                )
                for i, m in enumerate(moods)
            ],
            late_addenda=[],
            silent_company_ids=[],
            progress=0.5,
            participation=1.0,
        )

    def summary(d: api.Digest, lang: str) -> render.Rendered:
        digests = cycles.DigestRenderer(
            d=d, people={}, companies={}, absences=[], link="https://x.test/c", report_link="https://x.test/{report_id}"
        )
        contact = api.FacilitatorContact(
            person_id=uuid.uuid4(), name="Fiona", email="f@x.test", language=lang, timezone="Europe/Berlin"
        )
        return facilitation.RoundSummary(
            digests=digests, link="https://x.test/c", schedule_link="https://x.test/s"
        ).render(contact)

    assert "4,0 von 5 (eine Angabe)" in summary(digest(4), "de").text
    assert "3,5 von 5 (Durchschnitt aus 2 Angaben)" in summary(digest(3, 4), "de").text
    assert "3.5 of 5 (average of 2 ratings)" in summary(digest(3, 4), "en").text


def test_the_reply_email_speaks_the_recipients_language() -> None:
    def reply(lang: str) -> render.Rendered:
        return feedback.render_batch(
            "reply",
            language=lang,
            name="",
            convoy="Nord",
            company="Laden",
            lines=[feedback.Line(who="Ben (Werk)", text="Gern!")],
            kudos=[],
            link="https://x.test/r",
            reply_hint="hint_report",
        )

    de, en = reply("de"), reply("en")
    assert de.subject == "Antwort auf Ihren Kommentar in „Nord“" and en.subject == 'Reply to your comment in "Nord"'
    assert de.text.startswith("Guten Tag,\n") and "Antworten Sie einfach auf diese E-Mail" in de.text
    assert "Zum Bericht: https://x.test/r" in de.text and "Open the report: https://x.test/r" in en.text


def test_every_html_email_extends_the_one_layout_and_no_words_live_outside_the_catalogue() -> None:
    pages = [p for p in TEMPLATES.glob("*.html") if not p.name.startswith("_")]
    assert len(pages) >= 8
    for page in pages:
        source = page.read_text(encoding="utf-8")
        assert source.startswith('{% extends "_layout.html" %}'), page.name
        assert "<html" not in source and "<body" not in source and "<style" not in source, page.name
    # no words live outside the catalogue: no table of German strings, no inline "if German" in the notifier
    for module in NOTIFIER.rglob("*.py"):
        code = module.read_text(encoding="utf-8")
        assert '"de": {' not in code and not re.search(r"\bif (de|german) else\b", code), module.name


def test_every_email_template_is_compiled_at_the_notifiers_start() -> None:
    """The notifier compiles its templates before its first event (notifier/__init__.py ``setup``): a broken
    template stops the start instead of an email, and no email after a deploy waits for a compilation."""
    files = sorted(p.name for p in TEMPLATES.iterdir() if p.suffix in {".html", ".txt"})
    assert render.compile_templates() == len(files) >= 20
    cached = {key[1] for key in render._env.cache or {}}  # served from here, never read or checked again
    assert set(files) <= cached
    assert render._env.auto_reload is False
