"""Housekeeping logic: task-log pruning and the VACUUM retention policy of `ecom maintain`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.errors import EcomError
from core.maintain import MIN_RETENTION_HOURS, interval_hours, retention_hours
from orchestration.housekeeping import main, prune_task_logs


def _run(base: Path, dag: str, run: str, age_s: float) -> Path:
    folder = base / f"dag_id={dag}" / f"run_id={run}" / "task_id=t"
    folder.mkdir(parents=True)
    log = folder / "attempt=1.log"
    log.write_text("x" * 100)
    when = 1_700_000_000 - age_s
    for p in (log, folder, folder.parent):
        os.utime(p, (when, when))
    return folder.parent


def test_prune_keeps_the_newest_runs_of_every_dag(tmp_path: Path) -> None:
    runs = [_run(tmp_path, "ecom_bronze", f"scheduled__{i}", age_s=i * 600) for i in range(8)]
    silver = [_run(tmp_path, "ecom_silver", f"asset_triggered__{i}", age_s=i) for i in range(3)]
    (tmp_path / "dag_processor").mkdir()  # not a task-log folder: untouched

    report = prune_task_logs(tmp_path, keep=5)

    assert sorted(report.removed) == sorted(runs[5:])
    assert all(r.exists() for r in runs[:5]) and not any(r.exists() for r in runs[5:])
    assert all(r.exists() for r in silver)
    assert report.kept == {"ecom_bronze": 5, "ecom_silver": 3}
    assert report.bytes_freed == 300
    assert (tmp_path / "dag_processor").exists()


def test_a_retried_old_run_counts_as_recent(tmp_path: Path) -> None:
    old = _run(tmp_path, "d", "manual__old", age_s=10_000)
    newer = [_run(tmp_path, "d", f"scheduled__{i}", age_s=100 + i) for i in range(2)]
    (old / "task_id=t" / "attempt=2.log").write_text("retry")  # written now
    prune_task_logs(tmp_path, keep=2)
    assert old.exists() and newer[0].exists() and not newer[1].exists()


def test_dry_run_and_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = [_run(tmp_path, "d", f"r{i}", age_s=i) for i in range(3)]
    assert main([str(tmp_path), "--keep", "1", "--dry-run"]) == 0
    assert all(r.exists() for r in runs)
    assert "would remove 2 run folder(s)" in capsys.readouterr().out
    assert prune_task_logs(tmp_path / "nothing-here").removed == []
    with pytest.raises(ValueError, match="at least 1"):
        prune_task_logs(tmp_path, keep=0)


@pytest.mark.parametrize(
    ("interval", "hours"),
    [
        ("interval 7 days", 168.0),
        ("interval 1 week", 168.0),
        ("interval 1 day 12 hours", 36.0),
        ("INTERVAL 30 DAYS", 720.0),
        ("interval 90 minutes", 1.5),
        (None, None),
        ("", None),
        ("not an interval", None),
    ],
)
def test_delta_interval_properties_in_hours(interval: str | None, hours: float | None) -> None:
    assert interval_hours(interval) == hours


def test_vacuum_keeps_at_least_seven_days_and_the_tables_own_longer_setting() -> None:
    assert MIN_RETENTION_HOURS == 168
    assert retention_hours(168, None) == 168
    assert retention_hours(200, "interval 7 days") == 200
    assert retention_hours(168, "interval 30 days") == 720
    with pytest.raises(EcomError, match="at least 168 hours"):
        retention_hours(24, None)
