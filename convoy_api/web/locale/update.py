"""``make messages``: extract the pages' strings and merge them into every language's catalogue.

New strings arrive untranslated (and fail tests/test_pages.py until someone translates them).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parents[2]


def main() -> None:
    pot = HERE / "messages.pot"
    babel = [sys.executable, "-m", "babel.messages.frontend"]
    extract = ["extract", "-F", str(HERE.parent / "babel.cfg"), "-k", "N_", "--no-location", "--omit-header"]
    subprocess.run([*babel, *extract, "-o", str(pot), str(ROOT)], check=True, cwd=ROOT)  # noqa: S603
    for po in HERE.glob("*/LC_MESSAGES/messages.po"):
        update = ["update", "-i", str(pot), "-d", str(HERE), "-l", po.parent.parent.name, "--no-fuzzy-matching"]
        subprocess.run([*babel, *update], check=True)  # noqa: S603


if __name__ == "__main__":
    main()
