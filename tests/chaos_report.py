"""pytest plugin of `make chaos` (``-p tests.chaos_report``): after the run, print what every fault
scenario did and counted, and write it into docs/reliability.md between the ``chaos-run`` markers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.chaos import RESULTS

DOC = Path(__file__).resolve().parent.parent / "docs" / "reliability.md"
BEGIN, END = "<!-- chaos-run:begin -->", "<!-- chaos-run:end -->"
OUTCOMES: dict[str, str] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or report.outcome != "passed":
        name = report.nodeid.split("::")[-1]
        if report.when == "call" or name not in OUTCOMES:
            OUTCOMES[name] = "xfailed" if hasattr(report, "wasxfail") else report.outcome


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    rows = []
    for result in RESULTS:
        outcome = OUTCOMES.get(f"{result['test']}[{result['size']}]", "?")
        counts = ", ".join(f"{k} {v}" for k, v in result["counts"].items())
        rows.append(f"| {result['scenario']} | {result['size']} | {outcome} | {counts} |")
    terminalreporter.section("chaos: what each scenario did and counted")
    for row in rows:
        terminalreporter.write_line(row)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    table = "\n".join(
        [
            f"Last `make chaos` run: {stamp} (written by tests/chaos_report.py).",
            "",
            "| Scenario | Size | Outcome | Counts |",
            "|---|---|---|---|",
            *rows,
        ]
    )
    if DOC.exists():
        text = DOC.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            DOC.write_text(f"{head}{BEGIN}\n{table}\n{END}{rest.split(END, 1)[1]}")
            terminalreporter.write_line(f"written to {DOC}")
