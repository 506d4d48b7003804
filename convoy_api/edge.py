"""The browser edge: security headers on every response.

Every response (pages, API, errors, static files, 404s of unknown paths) gets the same headers, added
by a ``before_send`` hook that sees every ``http.response.start`` the application sends:

- ``Content-Security-Policy``: scripts only from our own origin (``/static/htmx.min.js``,
  ``/static/convoy.js``; no template has an inline script or ``on…=`` handler, and htmx's ``eval``
  features are not used), no plugins, no ``<base>``, forms only to us, and no framing by anyone
  (``frame-ancestors 'none'``). Styles allow ``'unsafe-inline'``: a few templates use ``style``
  attributes, htmx injects its indicator style, and the mail viewer shows HTML emails (inline styles by
  necessity) in a ``srcdoc`` frame, which inherits this policy. Style cannot run script.
- ``X-Frame-Options: DENY`` for browsers that predate ``frame-ancestors``.
- ``X-Content-Type-Options: nosniff``; ``Referrer-Policy: same-origin`` (sign-in and invitation links
  carry their token in the path: it never leaves in a ``Referer`` to another site).
- ``Strict-Transport-Security`` only when ``CONVOY_PUBLIC_URL`` is https.
"""

from __future__ import annotations

from litestar.types import BeforeMessageSendHookHandler, Message, Scope

from services.runtime.settings import Settings

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
DOCS_CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://unpkg.com https://cdn.redoc.ly",
        "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://unpkg.com https://fonts.googleapis.com",
        "font-src 'self' data: https://fonts.gstatic.com",
        "img-src 'self' data: https:",
        "worker-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
"""The API's own documentation pages (``/schema``, ``/schema/swagger`` …): Litestar renders them with an
inline script and scripts from a CDN. They show no one's data and take no input of ours."""
HSTS = "max-age=31536000"
"""One year; no ``includeSubDomains``: Convoy does not speak for the operator's other hosts."""


def security_headers(settings: Settings, path: str = "/") -> list[tuple[str, str]]:
    docs = _is_docs_page(path)
    headers = [
        ("content-security-policy", DOCS_CONTENT_SECURITY_POLICY if docs else CONTENT_SECURITY_POLICY),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
    ]
    if settings.public_url.lower().startswith("https://"):
        headers.append(("strict-transport-security", HSTS))
    return headers


def add_security_headers(settings: Settings) -> BeforeMessageSendHookHandler:
    """A ``before_send`` hook: the headers above on every response, unless a handler set its own.

    ``settings`` is read per response (the test suite points one app at each test's settings); the
    encoded headers are made once per (public URL scheme, docs page or not) and kept.
    """
    encoded: dict[tuple[bool, bool], tuple[tuple[bytes, bytes], ...]] = {}

    def headers_for(path: str) -> tuple[tuple[bytes, bytes], ...]:
        https = settings.public_url[:8].lower() == "https://"
        docs = path.startswith("/schema") and _is_docs_page(path)
        key = (https, docs)
        found = encoded.get(key)
        if found is None:
            found = encoded[key] = tuple(
                (name.encode(), value.encode()) for name, value in security_headers(settings, path)
            )
        return found

    async def hook(message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start":
            return
        ours = headers_for(scope.get("path", "/"))
        headers = message.get("headers")
        if not headers:
            message["headers"] = list(ours)
            return
        headers = list(headers)
        present = {bytes(name).lower() for name, _ in headers}
        headers += [pair for pair in ours if pair[0] not in present]
        message["headers"] = headers

    return hook


def _is_docs_page(path: str) -> bool:
    """The API's documentation pages (not the schema files): see :func:`security_headers`."""
    return (path == "/schema" or path.startswith("/schema/")) and not path.endswith((".json", ".yaml", ".yml"))
