"""Render the Teams digest card as Teams would show it: ``python -m notifier.chat.preview``.

Builds the digest card from the email gallery's sample round (notifier/gallery.py), renders it with the
Adaptive Cards JavaScript renderer (npm package ``adaptivecards``, fetched once with ``npm pack`` into
``build/npm/``) in Chromium through Playwright (launched like the browser tests) and writes a PNG
(default docs/screenshots/teams-card.png, the README's picture) and the card's JSON beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import tarfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from notifier import gallery, i18n
from notifier.chat import DigestPost, teams
from notifier.cycles import absence

RENDERER = "adaptivecards@3.0.6"
CACHE = Path("build/npm")

PAGE = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8">
<style>
  body {{ margin: 0; padding: 24px; background: #f5f5f5; font-family: "Segoe UI", "Noto Sans", sans-serif; }}
  #post {{ width: 560px; background: #fff; border-radius: 6px; box-shadow: 0 1px 4px rgba(0,0,0,.15); }}
  #from {{ padding: 12px 16px 0; font-size: 13px; color: #616161; }}
  #from b {{ color: #242424; }}
  #card {{ padding: 4px 0 8px; }}
  .ac-pushButton {{ border: 1px solid #d1d1d1; background: #fff; border-radius: 4px; padding: 6px 12px;
    font: 600 14px "Segoe UI", "Noto Sans", sans-serif; color: #242424; }}
</style></head>
<body><div id="post"><div id="from"><b>Workflows</b> · Convoy</div><div id="card"></div></div>
<script>{renderer}</script>
<script>
  const card = new AdaptiveCards.AdaptiveCard();
  card.hostConfig = new AdaptiveCards.HostConfig({host_config});
  card.parse({card});
  document.getElementById("card").appendChild(card.render());
</script></body></html>
"""

HOST_CONFIG: dict[str, Any] = {
    "fontFamily": "Segoe UI, Noto Sans, sans-serif",
    "spacing": {"small": 4, "default": 8, "medium": 16, "large": 20, "extraLarge": 24, "padding": 16},
    "separator": {"lineThickness": 1, "lineColor": "#E0E0E0"},
    "fontSizes": {"small": 12, "default": 14, "medium": 16, "large": 18, "extraLarge": 24},
    "fontWeights": {"lighter": 200, "default": 400, "bolder": 600},
    "containerStyles": {
        "default": {
            "backgroundColor": "#FFFFFF",
            "foregroundColors": {
                "default": {"default": "#242424", "subtle": "#616161"},
                "good": {"default": "#0B6A0B", "subtle": "#0B6A0B"},
                "attention": {"default": "#C4314B", "subtle": "#C4314B"},
                "accent": {"default": "#5B5FC7", "subtle": "#5B5FC7"},
            },
        }
    },
    "actions": {"maxActions": 5, "buttonSpacing": 8, "actionsOrientation": "horizontal", "actionAlignment": "left"},
}


def renderer_js() -> str:
    """dist/adaptivecards.min.js of the npm package (``npm pack`` once into build/npm/)."""
    name, version = RENDERER.split("@")
    folder = CACHE / f"{name}-{version}"
    script = folder / "package" / "dist" / "adaptivecards.min.js"
    if not script.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise SystemExit("npm is needed once to fetch the Adaptive Cards renderer (apt-get install npm)")
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "pack", RENDERER, "--silent"], cwd=CACHE, check=True, stdout=subprocess.DEVNULL)  # noqa: S603
        with tarfile.open(CACHE / f"{name}-{version}.tgz") as tar:
            tar.extractall(folder, filter="data")
    return script.read_text()


def sample_digest_card(lang: str) -> dict[str, Any]:
    """The Teams digest card of the gallery's sample round."""
    absences = {a.company_id: absence(i18n.Words(lang), a) for a in gallery.DIGEST_ABSENCES}
    post = DigestPost(
        digest=gallery.digest_data(),
        language=lang,
        company_names=dict(gallery.DIGEST_COMPANIES),
        absences=absences,
        link=f"{gallery.PUBLIC_URL}/convoys/{uuid.UUID(int=11)}",
    )
    return teams.digest_card(post)


async def screenshot(card: dict[str, Any], out: Path, lang: str) -> None:
    from playwright.async_api import async_playwright

    html = PAGE.format(
        lang=lang,
        renderer=renderer_js(),
        host_config=json.dumps(HOST_CONFIG),
        card=json.dumps(card).replace("</", "<\\/"),
    )
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=gallery.CHROMIUM, args=list(gallery.CHROMIUM_ARGS))
        try:
            page = await browser.new_page(viewport={"width": 608, "height": 400}, device_scale_factor=1)
            await page.set_content(html)
            await page.wait_for_selector("#card .ac-adaptiveCard")
            await page.locator("#post").screenshot(path=str(out))
        finally:
            await browser.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots/teams-card.png"))
    parser.add_argument("--lang", choices=("de", "en"), default="de")
    args = parser.parse_args(argv)
    card = sample_digest_card(args.lang)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(teams.envelope(card), ensure_ascii=False, indent=2) + "\n")
    asyncio.run(screenshot(card, args.out, args.lang))
    print(f"{args.out} ({args.out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
