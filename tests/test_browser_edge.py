"""Issue #19, browser edge: security headers on every response, ``safe_next``, the mail viewer on loopback only."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from services import embedded
from services.runtime.settings import Settings
from tests.conftest import ADMIN_TOKEN, SmtpSink, Stack, eventually, new_token_for, tokens_for
from tests.world import ADMIN, appoint_facilitator

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


# --- the mail viewer only on loopback ----------------------------------------------------------------
ANY = "0.0.0.0"  # noqa: S104 — a host named in settings, not bound here
REACHABLE = [ANY, "::", "[::]", "192.168.1.20", "convoy.example", ""]
LOOPBACK = ["127.0.0.1", "127.0.0.5", "::1", "[::1]", "localhost"]


@pytest.mark.parametrize("host", REACHABLE)
def test_the_mail_viewer_on_a_reachable_interface_refuses_to_start(host: str) -> None:
    from convoy_api.app import create_app
    from services.runtime import settings as settings_mod

    environ = {"CONVOY_DEV_MAIL_VIEWER": "true", "CONVOY_HTTP_HOST": host}
    with pytest.raises(settings_mod.SettingsError, match=r"CONVOY_DEV_MAIL_VIEWER.*not a loopback"):
        settings_mod.load(environ)
    with pytest.raises(settings_mod.SettingsError, match="CONVOY_HTTP_HOST"):
        create_app(Settings(dev_mail_viewer=True, http_host=host))
    assert settings_mod.load({"CONVOY_HTTP_HOST": host}).dev_mail_viewer is False  # without the viewer: fine


@pytest.mark.parametrize("host", LOOPBACK)
def test_the_mail_viewer_on_loopback_starts(host: str) -> None:
    from services.runtime import settings as settings_mod

    assert settings_mod.load({"CONVOY_DEV_MAIL_VIEWER": "true", "CONVOY_HTTP_HOST": host}).dev_mail_viewer


def test_convoy_run_api_names_the_refused_setting_and_exits(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CONVOY_")},
        "CONVOY_DEV_MAIL_VIEWER": "true",
        "CONVOY_HTTP_HOST": ANY,
        "CONVOY_DATA_DIR": str(tmp_path),
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "run", "api"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "CONVOY_HTTP_HOST=0.0.0.0 is not a loopback address" in done.stderr
    assert not list(tmp_path.iterdir())  # refused before anything was made


@pytest.mark.parametrize(("host", "viewer"), [(ANY, False), ("127.0.0.1", True)])
async def test_convoy_up_turns_the_viewer_on_with_its_sink_only_on_loopback(
    tmp_path: Path, host: str, viewer: bool
) -> None:
    from structlog.testing import capture_logs

    from services import embedded
    from services.supervisor import Supervisor

    given = Settings(
        data_dir=str(tmp_path),
        database_url="postgresql://127.0.0.1:1/unused",  # given: nothing embedded but the mail sink
        nats_url="nats://127.0.0.1:1",
        admin_token="adm_test",
        secret_key="key_test",
        http_host=host,
        http_port=embedded.free_port(),
        embedded_smtp_port=embedded.free_port(),
        inbound_smtp_port=0,
    )
    supervisor = Supervisor(given)
    with capture_logs() as logs:
        prepared = await supervisor.prepare()
    supervisor._lock_file.close()
    assert prepared.smtp_url.startswith("smtp://127.0.0.1:")  # the sink runs either way
    assert prepared.dev_mail_viewer is viewer
    warned = [e for e in logs if e["event"].startswith("mail viewer off")]
    assert bool(warned) is not viewer


# --- metrics: the admin token on the public port, anyone inside on the ops port -----------------------
async def test_metrics_on_the_public_port_need_the_admin_token(client: httpx.AsyncClient) -> None:
    for path in ("/metrics", "/metrics/notifier"):
        anonymous = await client.get(path)
        assert anonymous.status_code == 401 and "admin token" in anonymous.json()["detail"], path
        assert anonymous.headers["www-authenticate"] == "Bearer"
        assert (await client.get(path, headers={"Authorization": "Bearer adm_wrong"})).status_code == 401
        assert (await client.get(path, headers={"Authorization": f"Basic {ADMIN_TOKEN}"})).status_code == 401
    r = await client.get("/metrics", headers=ADMIN)
    assert r.status_code == 200 and "convoy_api_requests_total" in r.text


async def test_the_api_serves_metrics_on_the_ops_port(stack: Stack) -> None:
    """The API process with CONVOY_OPS_PORT (the back-end services of this stack have none)."""
    import asyncio

    import uvicorn

    from convoy_api.app import create_app

    web, ops_port = embedded.free_port(), embedded.free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(stack.settings.with_(ops_port=ops_port)), host="127.0.0.1", port=web, log_config=None)
    )
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: _started(server))
        async with httpx.AsyncClient(timeout=10) as http:
            assert (await http.get(f"http://127.0.0.1:{web}/metrics")).status_code == 401
            metrics = await http.get(f"http://127.0.0.1:{ops_port}/metrics")
            assert metrics.status_code == 200 and "convoy_api_requests_total" in metrics.text
            assert (await http.get(f"http://127.0.0.1:{ops_port}/live")).json() == {"service": "api", "live": True}
            assert (await http.get(f"http://127.0.0.1:{ops_port}/health")).status_code == 404  # probes' needs only
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)
    assert embedded.port_free("127.0.0.1", ops_port)  # closed with the API


async def _started(server: Any) -> bool:
    return bool(server.started)


# --- sign-in completion: JSON only, from our own pages when a browser names its origin ------------------
async def test_sign_in_completion_takes_only_json_from_this_site(
    client: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    email = "frieda@zentrum.example"
    await appoint_facilitator(client, smtp_sink, email)
    seen = tokens_for(smtp_sink, email, "cvl_")
    assert (await client.post("/api/v1/auth/sign-in", json={"email": email})).status_code == 202
    link = await new_token_for(smtp_sink, email, "cvl_", seen)
    url = "/api/v1/auth/sign-in/complete"
    body = json.dumps({"token": link})

    # A form on another site can send text/plain or a form encoding without a preflight: refused, link unspent.
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        r = await client.post(url, content=body, headers={"Content-Type": content_type})
        assert r.status_code == 415 and "application/json" in r.json()["detail"], content_type
    r = await client.post(
        url, content=body, headers={"Content-Type": "application/json", "Origin": "https://evil.example"}
    )
    assert r.status_code == 403, r.text
    r = await client.post(url, content=body, headers={"Content-Type": "application/json", "Origin": "null"})
    assert r.status_code == 403, r.text
    assert "set-cookie" not in r.headers

    # Our own origin (the public URL's) and JSON: signed in, once.
    r = await client.post(
        url, content=body, headers={"Content-Type": "application/json; charset=utf-8", "Origin": "http://convoy.test"}
    )
    assert r.status_code == 200 and r.json()["access_token"].startswith("cva_"), r.text
    assert (await client.post(url, json={"token": link})).status_code == 410  # no Origin: an API client
