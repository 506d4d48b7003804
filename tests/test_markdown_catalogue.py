"""Safe Markdown for reports and comments; the milestone catalogue (shipped data and validation)."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from importlib import resources
from typing import Any

import pytest

from services.milestones import catalogue as cat
from services.runtime.markdown import ALLOWED_TAGS, LINK_REL, plain, render, sanitize

# ---------------------------------------------------------------------------------------------
# Markdown: what must never come out


class _Elements(HTMLParser):
    """The elements and attributes a browser would see (text and escaped markup are not elements)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        self.elements.append((tag, {}))


def _elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Elements()
    parser.feed(html)
    parser.close()
    return parser.elements


def _hrefs(html: str) -> list[str]:
    return [attrs["href"] or "" for _, attrs in _elements(html) if "href" in attrs]


def _assert_inert(html: str) -> None:
    """Only allowed tags; no event handler, style, src; links only to http(s)/mailto, with rel."""
    for tag, attrs in _elements(html):
        assert tag in ALLOWED_TAGS, html
        for name in attrs:
            assert name in {"href", "title", "rel", "start"}, html
        if tag == "a" and attrs:
            assert attrs.get("rel") == LINK_REL, html
    for href in _hrefs(html):
        assert href.split(":", 1)[0] in {"http", "https", "mailto"}, html


XSS = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=https://evil.example/x.js></SCRIPT>",
    "<img src=x onerror=alert(1)>",
    "<img src=x onerror=alert(1)//",
    "![x](javascript:alert(1))",
    '![x](https://evil.example/pixel.gif "tracking")',
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    "[x]( javascript:alert(1) )",
    "[x](<javascript:alert(1)>)",
    "[x](vbscript:msgbox(1))",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[x](data:image/png;base64,iVBORw0KGgo=)",
    "[x](file:///etc/passwd)",
    "[x](&#106;avascript:alert(1))",
    "[x](&#x6A;&#x61;&#x76;&#x61;&#x73;&#x63;&#x72;&#x69;&#x70;&#x74;:alert(1))",
    "[x](java&#x09;script:alert(1))",
    "[x](javascript&colon;alert(1))",
    "[x](java\\script:alert(1))",
    "[ref]\n\n[ref]: javascript:alert(1)",
    "<javascript:alert(1)>",
    '<a href="data:text/html,<script>alert(1)</script>">x</a>',
    '<a href="javascript:alert(1)">x</a>',
    "<div>\n<script>alert(1)</script>\n</div>",
    '<div onclick="alert(1)">raw block</div>\n\nafter',
    "<!-- <script>alert(1)</script> -->",
    '<iframe src="https://evil.example"></iframe>',
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    '<p onmouseover="alert(1)">hi</p>',
    '<span style="background:url(javascript:alert(1))">x</span>',
    "<style>body{display:none}</style>",
    '<form action="https://evil.example"><input name=pw></form>',
    '<object data="https://evil.example/x.swf"></object>',
    '<meta http-equiv="refresh" content="0;url=https://evil.example">',
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "&#60;script&#62;alert(1)&#60;/script&#62;",
    '[x](https://ok.example/"onmouseover="alert(1))',
    '[x](https://ok.example "title\\" onmouseover=\\"alert(1)")',
    "`<script>alert(1)</script>`",
    "```html\n<script>alert(1)</script>\n```",
    "| a |\n|---|\n| <img src=x onerror=alert(1)> |",
    "**<img src=x onerror=alert(1)>**",
]


@pytest.mark.parametrize("payload", XSS)
def test_xss_payloads_are_inert(payload: str) -> None:
    html = render(payload)
    _assert_inert(html)
    assert "<script" not in html.lower()
    assert "<img" not in html.lower()
    assert "<iframe" not in html.lower()
    assert "<svg" not in html.lower()


@pytest.mark.parametrize(
    "unsafe",
    ["<img src=x>", '<a href="javascript:x">x</a>', '<p onclick="x()">x</p>', '<p style="color:red">x</p>', "<svg>"],
)
def test_the_inertness_check_catches_unsafe_html(unsafe: str) -> None:
    with pytest.raises(AssertionError):
        _assert_inert(unsafe)


def test_cached_rendering_gives_what_rendering_gives() -> None:
    """render() keeps results by text (docs/performance.md); cached, uncached and long texts agree."""
    from services.runtime import markdown

    text = "Buchungsseite ist **live** <script>alert(1)</script> [x](javascript:alert(1))"
    first, again = render(text), render(text)
    assert first == again == markdown._render(text)
    assert "<strong>live</strong>" in first and "<script" not in first and "href" not in first
    long = "wort " * (markdown.RENDER_CACHE_MAX_CHARS // 5 + 1) + "<script>x</script>"
    assert render(long) == markdown._render(long) and "<script" not in render(long)
    assert render("") == ""
    assert markdown._render_cached.cache_info().maxsize == markdown.RENDER_CACHE_ENTRIES


def test_raw_html_is_shown_as_text_not_interpreted() -> None:
    assert render("<script>alert(1)</script>") == "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>\n"
    assert render("<b>fett</b>") == "<p>&lt;b&gt;fett&lt;/b&gt;</p>\n"


def test_javascript_link_is_no_link() -> None:
    for payload in ("[x](javascript:alert(1))", "[x](JaVaScRiPt:alert(1))", "[x](&#106;avascript:alert(1))"):
        assert "<a" not in render(payload)


def test_entity_obfuscated_link_keeps_text_but_loses_href() -> None:
    html = render("[klick](java&#x09;script:alert(1))")
    assert "klick" in html
    assert _hrefs(html) == []


def test_images_are_not_embedded_but_linked() -> None:
    html = render("![Angebot](https://example.com/angebot.pdf)")
    assert "<img" not in html
    assert _hrefs(html) == ["https://example.com/angebot.pdf"]


SANITIZE = [
    ('<img src=x onerror="alert(1)">', ""),
    ('<a href="JaVaScRiPt:alert(1)" onclick="x()">k</a>', f'<a rel="{LINK_REL}">k</a>'),
    ('<a href="&#106;avascript:alert(1)">k</a>', f'<a rel="{LINK_REL}">k</a>'),
    ('<a href="data:text/html,x">k</a>', f'<a rel="{LINK_REL}">k</a>'),
    ("<svg onload=alert(1)><circle/></svg>ok", "ok"),
    ("<iframe src=https://evil.example>inside</iframe>ok", "ok"),
    ("<div><script>alert(1)</script>text</div>", "text"),
    ('<p style="color:red" class="x" id="y">t</p>', "<p>t</p>"),
    ("<!-- comment -->x", "x"),
    (
        '<a href="https://ok.example" target="_blank" rel="opener">o</a>',
        f'<a href="https://ok.example" rel="{LINK_REL}">o</a>',
    ),
    ('<a href="/relative">r</a>', f'<a rel="{LINK_REL}">r</a>'),
]


@pytest.mark.parametrize(("html", "expected"), SANITIZE)
def test_sanitizer_alone_strips_what_markdown_might_let_through(html: str, expected: str) -> None:
    """Layer 2 holds even if layer 1 (markdown-it without raw HTML) ever let HTML through."""
    assert sanitize(html) == expected


# ---------------------------------------------------------------------------------------------
# Markdown: what ordinary reports look like


def test_emphasis_strikethrough_and_umlauts() -> None:
    html = render("Wir haben **endlich** das _Buchungstool_ gewählt, ~~Müller~~ Schäfer & Söhne hilft. ß")
    assert html == (
        "<p>Wir haben <strong>endlich</strong> das <em>Buchungstool</em> gewählt, "
        "<del>Müller</del> Schäfer &amp; Söhne hilft. ß</p>\n"
    )


def test_single_newline_is_a_line_break() -> None:
    assert render("Erste Zeile\nzweite Zeile") == "<p>Erste Zeile<br>\nzweite Zeile</p>\n"


def test_lists() -> None:
    assert render("- Kalender\n- Leistungen") == "<ul>\n<li>Kalender</li>\n<li>Leistungen</li>\n</ul>\n"
    assert render("3. drei\n4. vier") == '<ol start="3">\n<li>drei</li>\n<li>vier</li>\n</ol>\n'


def test_links_get_rel_and_keep_safe_schemes() -> None:
    html = render('[Anbieter](https://example.com/preise?a=1&b=2 "Preise") oder [Mail](mailto:info@firma.de)')
    assert html == (
        f'<p><a href="https://example.com/preise?a=1&amp;b=2" title="Preise" rel="{LINK_REL}">Anbieter</a> '
        f'oder <a href="mailto:info@firma.de" rel="{LINK_REL}">Mail</a></p>\n'
    )
    assert _hrefs(render("<http://example.com>")) == ["http://example.com"]


def test_relative_links_lose_their_href() -> None:
    assert _hrefs(render("[intern](/admin) [Anker](#oben)")) == []


def test_code() -> None:
    assert render("Datei `config.yml` ändern") == "<p>Datei <code>config.yml</code> ändern</p>\n"
    assert render("```python\nif a < b:\n    pass\n```") == "<pre><code>if a &lt; b:\n    pass\n</code></pre>\n"


def test_headings_are_demoted_below_the_page_headings() -> None:
    assert render("# Stand\n## Nächste Schritte\n### Details\n###### Klein") == (
        "<h3>Stand</h3>\n<h4>Nächste Schritte</h4>\n<h5>Details</h5>\n<h6>Klein</h6>\n"
    )
    assert render("Stand\n=====") == "<h3>Stand</h3>\n"


def test_blockquote_hr_and_table() -> None:
    assert render("> Zitat\n\n---") == "<blockquote>\n<p>Zitat</p>\n</blockquote>\n<hr>\n"
    html = render("| Schritt | Status |\n|:--|--:|\n| Kalender | fertig |")
    assert html == (
        "<table>\n<thead>\n<tr>\n<th>Schritt</th>\n<th>Status</th>\n</tr>\n</thead>\n"
        "<tbody>\n<tr>\n<td>Kalender</td>\n<td>fertig</td>\n</tr>\n</tbody>\n</table>\n"
    )


def test_empty_input() -> None:
    assert render("") == ""
    assert plain("") == ""


# ---------------------------------------------------------------------------------------------
# plain()


def test_plain_drops_markup_and_collapses_whitespace() -> None:
    text = (
        "# Stand\n\nWir haben **endlich** ein [Tool](https://example.com) gewählt.\n"
        "Nächste   Woche: `Kalender`.\n\n- eins\n- zwei\n\n```\nx = 1\n```\n\n| a | b |\n|--|--|\n| 1 | 2 |"
    )
    assert plain(text) == "Stand Wir haben endlich ein Tool gewählt. Nächste Woche: Kalender. eins zwei x = 1 a b 1 2"


def test_plain_is_text_not_html() -> None:
    assert plain("Schäfer &amp; Söhne <b>fett</b> &lt;x&gt;") == "Schäfer & Söhne <b>fett</b> <x>"


def test_plain_removes_control_and_bidi_characters() -> None:
    assert plain("Betreff\r\nBcc: x@example.com\u202eevil\tend\x0b!") == "Betreff Bcc: x@example.comevil end !"


def test_plain_limit_cuts_with_ellipsis_at_a_word_boundary() -> None:
    text = "Über die Brücke gehen wir heute gemeinsam"
    assert plain(text, limit=100) == text
    assert plain(text, limit=len(text)) == text
    cut = plain(text, limit=20)
    assert cut == "Über die Brücke…"
    assert len(cut) <= 20
    assert plain("Donaudampfschifffahrtsgesellschaft", limit=10) == "Donaudamp…"
    assert plain("**abc** def", limit=1) == "…"
    with pytest.raises(ValueError, match="limit"):
        plain("x", limit=0)


def test_plain_limit_counts_characters_of_the_result() -> None:
    for limit in range(1, 60):
        assert len(plain("**Fortschritt:** Kalender angebunden, Leistungen gepflegt, Testlauf läuft.", limit)) <= limit


# ---------------------------------------------------------------------------------------------
# Catalogue: the shipped data

TYPES = {"online_booking", "web_shop", "e_invoicing", "gdpr_website", "digital_stock", "route_planning"}


def _shipped() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(resources.files("services.milestones").joinpath("catalogue.json").read_bytes())
    return data


def test_shipped_catalogue_loads_and_is_cached() -> None:
    c = cat.catalogue()
    assert c.version == 1
    assert {t.key for t in c.project_types} == TYPES
    assert cat.catalogue() is c


def test_every_type_has_five_to_eight_rungs_with_titles() -> None:
    for t in cat.catalogue().project_types:
        assert t.title_de and t.title_en and t.description_de and t.description_en
        assert 5 <= len(t.rungs) <= 8, t.key
        for r in t.rungs:
            assert r.title_de.strip() and r.title_en.strip(), r.key
            assert r.title_de != r.title_en, r.key
            assert 1 <= r.weight <= 5, r.key


def test_keys_are_unique_and_prefixed() -> None:
    c = cat.catalogue()
    type_keys = [t.key for t in c.project_types]
    assert len(type_keys) == len(set(type_keys))
    rung_keys = [r.key for t in c.project_types for r in t.rungs]
    assert len(rung_keys) == len(set(rung_keys))
    for t in c.project_types:
        for r in t.rungs:
            assert r.key.startswith(t.key + "."), r.key


def test_german_is_german() -> None:
    booking = cat.project_type("online_booking")
    assert booking is not None
    assert booking.title_de == "Online-Terminbuchung"
    titles = [r.title_de for r in booking.rungs]
    assert titles[1] == "Buchungstool auswählen"
    assert "Testlauf mit Stammkunden" in titles
    assert any("AVV" in t for t in titles)


def test_lookups() -> None:
    web_shop = cat.project_type("web_shop")
    assert web_shop is not None and web_shop.title_en == "Web shop"
    assert cat.project_type("nope") is None
    assert cat.project_type("") is None

    found = cat.rung("online_booking.choose_tool")
    assert found is not None
    t, position, r = found
    assert t.key == "online_booking"
    assert position == 1
    assert r.key == "online_booking.choose_tool"
    assert t.rungs[position] is r
    assert cat.rung("online_booking.nope") is None
    assert cat.rung("online_booking") is None

    for t in cat.catalogue().project_types:
        for i, r in enumerate(t.rungs):
            assert cat.rung(r.key) == (t, i, r)


def test_structs_are_frozen() -> None:
    r = cat.catalogue().project_types[0].rungs[0]
    with pytest.raises(AttributeError):
        r.weight = 5  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# Catalogue: validation of a payload


def _load(mutate: Any) -> cat.Catalogue:
    data = _shipped()
    mutate(data)
    return cat.load(json.dumps(data).encode())


def test_load_accepts_the_shipped_payload() -> None:
    assert cat.load(json.dumps(_shipped()).encode()) == cat.catalogue()


def test_duplicate_rung_key_is_rejected() -> None:
    def dup(d: dict[str, Any]) -> None:
        rungs = d["project_types"][0]["rungs"]
        rungs[1]["key"] = rungs[0]["key"]

    with pytest.raises(cat.CatalogueError, match=r"duplicate rung key 'online_booking\.clarify_requirements'"):
        _load(dup)


def test_duplicate_project_type_key_is_rejected() -> None:
    def dup(d: dict[str, Any]) -> None:
        d["project_types"].append(dict(d["project_types"][2]))

    with pytest.raises(cat.CatalogueError, match="duplicate project type key 'e_invoicing'"):
        _load(dup)


@pytest.mark.parametrize("weight", [0, 6, -1, 2.5, "3", None])
def test_bad_weight_is_rejected(weight: object) -> None:
    def bad(d: dict[str, Any]) -> None:
        d["project_types"][1]["rungs"][2]["weight"] = weight

    with pytest.raises(cat.CatalogueError, match=r"project_types\[1\]\.rungs\[2\]\.weight"):
        _load(bad)


def test_rung_key_of_another_type_is_rejected() -> None:
    def foreign(d: dict[str, Any]) -> None:
        d["project_types"][0]["rungs"][0]["key"] = "web_shop.choose_tool"

    with pytest.raises(cat.CatalogueError, match=r"must start with 'online_booking\.'"):
        _load(foreign)


def test_malformed_rung_key_is_rejected() -> None:
    def malformed(d: dict[str, Any]) -> None:
        d["project_types"][0]["rungs"][0]["key"] = "online_booking"

    with pytest.raises(cat.CatalogueError, match=r"rungs\[0\]\.key"):
        _load(malformed)


@pytest.mark.parametrize("count", [4, 9])
def test_too_few_or_too_many_rungs_are_rejected(count: int) -> None:
    def resize(d: dict[str, Any]) -> None:
        t = d["project_types"][0]
        t["rungs"] = [
            {"key": f"online_booking.step_{i}", "title_de": f"Schritt {i}", "title_en": f"Step {i}", "weight": 1}
            for i in range(count)
        ]

    with pytest.raises(cat.CatalogueError, match=r"project_types\[0\]\.rungs"):
        _load(resize)


def test_missing_title_and_unknown_field_are_rejected() -> None:
    def missing(d: dict[str, Any]) -> None:
        del d["project_types"][3]["rungs"][0]["title_en"]

    with pytest.raises(cat.CatalogueError, match="title_en"):
        _load(missing)

    def typo(d: dict[str, Any]) -> None:
        d["project_types"][0]["titel_de"] = "Tippfehler"

    with pytest.raises(cat.CatalogueError, match="unknown field `titel_de`"):
        _load(typo)

    def empty(d: dict[str, Any]) -> None:
        d["project_types"][0]["title_de"] = ""

    with pytest.raises(cat.CatalogueError, match=r"project_types\[0\]\.title_de"):
        _load(empty)


def test_not_json_is_rejected() -> None:
    with pytest.raises(cat.CatalogueError, match="not valid JSON"):
        cat.load(b'{"version": 1,')
