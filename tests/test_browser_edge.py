"""Issue #19, browser edge: security headers on every response, ``safe_next``, the mail viewer on loopback only."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from services.runtime.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "convoy_api" / "web" / "templates"


@pytest.fixture
def public_url() -> str:
    return "http://convoy.test"


@pytest.fixture
def settings(settings: Settings, public_url: str) -> Settings:
    return settings.with_(public_url=public_url)


def directives(csp: str) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    for part in csp.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


async def responses(client: httpx.AsyncClient) -> dict[str, httpx.Response]:
    """A page, an API answer, an API refusal, a page error, a static file and an unknown address."""
    got = {
        "page": await client.get("/sign-in"),
        "api": await client.get("/health"),
        "api refusal": await client.get("/api/v1/me"),
        "page error": await client.get("/invitations/inv_no-such-invitation"),
        "static": await client.get("/static/convoy.js"),
        "unknown": await client.get("/no/such/address", headers={"Accept": "text/html"}),
    }
    assert got["page"].status_code == 200 and "<form" in got["page"].text
    assert got["api"].status_code in (200, 503) and got["api"].headers["content-type"].startswith("application/json")
    assert got["api refusal"].status_code == 401
    assert 400 <= got["page error"].status_code < 500 and "text/html" in got["page error"].headers["content-type"]
    assert got["static"].status_code == 200
    assert got["unknown"].status_code == 404 and "text/html" in got["unknown"].headers["content-type"]
    return got


async def test_every_response_carries_the_browser_edge_headers(client: httpx.AsyncClient) -> None:
    for what, r in (await responses(client)).items():
        csp = directives(r.headers.get("content-security-policy", ""))
        assert csp.get("default-src") == ["'self'"], what
        assert csp.get("script-src") == ["'self'"], what  # no inline script, no eval
        assert csp.get("frame-ancestors") == ["'none'"], what
        assert csp.get("object-src") == ["'none'"] and csp.get("base-uri") == ["'none'"], what
        assert r.headers.get("x-frame-options") == "DENY", what
        assert r.headers.get("x-content-type-options") == "nosniff", what
        assert r.headers.get("referrer-policy") == "same-origin", what
        assert "strict-transport-security" not in r.headers, what  # plain http: HSTS would mean nothing
        assert len(r.headers.get_list("content-security-policy")) == 1, what


async def test_the_api_documentation_pages_get_their_own_policy(client: httpx.AsyncClient) -> None:
    """Litestar renders /schema/swagger with an inline script and a CDN's scripts: allowed there only."""
    swagger = await client.get("/schema/swagger")
    assert swagger.status_code == 200 and "swagger-ui" in swagger.text
    csp = directives(swagger.headers["content-security-policy"])
    assert "'unsafe-inline'" in csp["script-src"] and "https://cdn.jsdelivr.net" in csp["script-src"]
    assert csp["frame-ancestors"] == ["'none'"] and swagger.headers["x-frame-options"] == "DENY"
    document = await client.get("/schema/openapi.json")
    assert directives(document.headers["content-security-policy"])["script-src"] == ["'self'"]


@pytest.mark.parametrize("public_url", ["https://convoy.example"])
async def test_hsts_when_the_public_url_is_https(client: httpx.AsyncClient) -> None:
    for what, r in (await responses(client)).items():
        assert r.headers.get("strict-transport-security") == "max-age=31536000", what
        assert r.headers.get("x-frame-options") == "DENY", what


async def test_pages_have_no_inline_script(client: httpx.AsyncClient) -> None:
    """What the CSP relies on: every script comes from /static, no ``on…=`` handler in any template."""
    page = (await client.get("/sign-in")).text
    scripts = re.findall(r"<script\b[^>]*>", page)
    assert scripts and all(re.search(r'\bsrc="/static/', s) for s in scripts), scripts
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text(encoding="utf-8")
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), template.name
        assert not re.search(r"\son[a-z]+\s*=", text), template.name
        assert "javascript:" not in text.lower(), template.name
        assert "hx-on" not in text, template.name  # htmx would need eval


# --- safe_next ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "target",
    [
        "/\\evil.example",
        "/\\\\evil.example",
        "\\\\evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        "/\x00/evil.example",
        "/\x7f/evil.example",
        "/\x1b/x",
        "//evil.example",
        "https://evil.example/",
        "/%5Cevil.example\\",
        "",
        "reports",
    ],
)
def test_safe_next_refuses_what_a_browser_could_read_as_another_host(target: str) -> None:
    from convoy_api.web.pages.auth import safe_next

    assert safe_next(target) == "/"


@pytest.mark.parametrize("target", ["/", "/convoys/abc?tab=reports#r1", "/profile/", "/reports/%5C"])
def test_safe_next_keeps_paths_on_this_site(target: str) -> None:
    from convoy_api.web.pages.auth import safe_next

    assert safe_next(target) == target
