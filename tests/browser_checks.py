"""What the Chromium tests check on every page: axe-core's audit, and that the CSP refused nothing.

The pages' Content-Security-Policy allows no inline script, so axe-core is not added as a ``<script>``
element (Chromium would refuse it): it is evaluated through DevTools, which page policies do not govern.
"""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import ConsoleMessage, Page

AXE = Path(__file__).resolve().parent / "assets" / "axe.min.js"
"""axe-core 4.14.1 (MPL-2.0, assets/axe-core.LICENSE), unmodified, from the npm registry."""
_AXE_SOURCE = AXE.read_text(encoding="utf-8") + "\n;void 0"  # the script's value is not a function to call


async def load_axe(page: Page) -> None:
    """Define ``axe`` in the page (again after every navigation)."""
    await page.evaluate(_AXE_SOURCE)


def record_csp_violations(page: Page, refused: list[str]) -> None:
    """Append to ``refused`` each console report of what the page's Content-Security-Policy refused."""

    def seen(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            refused.append(f"{page.url}: {message.text}")

    page.on("console", seen)
