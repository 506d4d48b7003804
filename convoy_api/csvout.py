"""CSV for spreadsheets: every field quoted, no cell a spreadsheet would run as a formula (CSV injection).

OWASP's guidance: quote every field and give a cell that starts with ``=``, ``+``, ``-``, ``@``, tab or carriage
return a leading ``'``. A spreadsheet that splits on another separator than ours (German Excel and LibreOffice
split on ``;``) starts a cell after every ``;`` or ``,`` inside a field as well, so a formula character after one
of those (and optional spaces) gets the same ``'``: ``Weiter;=1+1;Ende`` is exported as ``Weiter;'=1+1;Ende``.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_AFTER_SEPARATOR = re.compile(r"([;,\t\r\n][ ]*)([=+\-@])")


def cell(value: object) -> object:
    """One field, neutralised; None becomes an empty field."""
    if value is None:
        return ""
    if not isinstance(value, str):
        return value
    value = _AFTER_SEPARATOR.sub(r"\1'\2", value)
    if value[:1] in FORMULA_START:
        return "'" + value
    return value


def table(rows: Iterable[Iterable[object]]) -> str:
    """The CSV text of these rows: every field quoted and neutralised (an empty row stays empty)."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL)
    for row in rows:
        writer.writerow([cell(value) for value in row])
    return out.getvalue()
