"""The reliability suite's ledger: every scenario adds a row; the table is printed at the end."""

from __future__ import annotations

from dataclasses import dataclass

import pytest


@dataclass
class Outcome:
    test: str
    runs: int
    failures: int  # runs that ended other than planned (a killed run is planned)
    rows_lost: int


OUTCOMES: list[Outcome] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not OUTCOMES:
        return
    tr = terminalreporter
    tr.section("reliability: runs, failures, rows lost")
    tr.write_line(f"{'test':<58} {'runs':>5} {'failures':>9} {'rows lost':>10}")
    for o in OUTCOMES:
        tr.write_line(f"{o.test:<58} {o.runs:>5} {o.failures:>9} {o.rows_lost:>10}")
    lost = sum(o.rows_lost for o in OUTCOMES)
    tr.write_line(f"{'total':<58} {sum(o.runs for o in OUTCOMES):>5} {sum(o.failures for o in OUTCOMES):>9} {lost:>10}")
