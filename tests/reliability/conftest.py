"""The reliability suite's ledger: every scenario adds a row; the table is printed at the end.

A scenario adds its own row when it passes (its runs, and the rows it found lost). A scenario
that fails before it gets there is recorded by `pytest_runtest_makereport` as one failed run
whose lost rows are unknown (`?`), so the table never reads clean over a failure.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import pytest


@dataclass
class Outcome:
    test: str
    runs: int
    failures: int  # runs that ended other than planned (a killed run is planned)
    rows_lost: int | None  # None: unknown (the scenario failed before counting)


OUTCOMES: list[Outcome] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    before = len(OUTCOMES)
    report: pytest.TestReport = yield
    if report.failed and len(OUTCOMES) == before:
        OUTCOMES.append(Outcome(f"{item.name} ({report.when})", 1, 1, None))
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not OUTCOMES:
        return
    tr = terminalreporter
    tr.section("reliability: runs, failures, rows lost")
    tr.write_line(f"{'test':<58} {'runs':>5} {'failures':>9} {'rows lost':>10}")
    for o in OUTCOMES:
        lost = "?" if o.rows_lost is None else o.rows_lost
        tr.write_line(f"{o.test:<58} {o.runs:>5} {o.failures:>9} {lost:>10}")
    known = [o.rows_lost for o in OUTCOMES if o.rows_lost is not None]
    lost_total = f"{sum(known)}" + ("" if len(known) == len(OUTCOMES) else " + ?")
    tr.write_line(
        f"{'total':<58} {sum(o.runs for o in OUTCOMES):>5} {sum(o.failures for o in OUTCOMES):>9} {lost_total:>10}"
    )
