"""``make messages``: extract the emails' strings and merge them into every language's catalogue.

New strings arrive untranslated (and fail tests/test_email_catalogue.py until someone translates them).
"""

from __future__ import annotations

from pathlib import Path

from services.runtime import i18n

HERE = Path(__file__).parent


def main() -> None:
    i18n.update(HERE.parent / "babel.cfg", HERE, HERE.parents[1])


if __name__ == "__main__":
    main()
