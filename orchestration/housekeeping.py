"""Prune Airflow task logs: keep the newest N runs of every DAG, delete older run folders.

Airflow 3 writes task logs as `<base>/dag_id=<dag>/run_id=<run>/task_id=<task>/attempt=<n>.log`.
A run folder's age is the newest modification time inside it (a retried or cleared run
counts as recent). Run it from `ecom_housekeeping` hourly, or by hand:

    .venv/bin/python -m orchestration.housekeeping --keep 5 [--dry-run] [LOG_FOLDER]
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass, field
from pathlib import Path

KEEP_RUNS = 5


@dataclass
class PruneReport:
    """What a prune did: run folders kept and removed per DAG, bytes freed."""

    kept: dict[str, int] = field(default_factory=dict)
    removed: list[Path] = field(default_factory=list)
    bytes_freed: int = 0


def _newest_mtime(folder: Path) -> float:
    newest = folder.stat().st_mtime
    for path in folder.rglob("*"):
        try:
            newest = max(newest, path.stat().st_mtime)
        except FileNotFoundError:  # a log rotated away while we looked
            continue
    return newest


def _size(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*"):
        try:
            if path.is_file():
                total += path.stat().st_size
        except FileNotFoundError:
            continue
    return total


def prune_task_logs(base: Path, keep: int = KEEP_RUNS, dry_run: bool = False) -> PruneReport:
    """Delete all but the `keep` most recent `run_id=*` folders under each `dag_id=*` folder."""
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    report = PruneReport()
    if not base.is_dir():
        return report
    for dag_dir in sorted(p for p in base.glob("dag_id=*") if p.is_dir()):
        runs = sorted((p for p in dag_dir.glob("run_id=*") if p.is_dir()), key=_newest_mtime, reverse=True)
        dag_id = dag_dir.name.removeprefix("dag_id=")
        report.kept[dag_id] = min(len(runs), keep)
        for old in runs[keep:]:
            report.bytes_freed += _size(old)
            report.removed.append(old)
            if not dry_run:
                shutil.rmtree(old, ignore_errors=True)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Keep the newest N task-log runs per DAG.")
    parser.add_argument("folder", nargs="?", help="Airflow's [logging] base_log_folder (default: from Airflow)")
    parser.add_argument("--keep", type=int, default=KEEP_RUNS)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    if args.folder:
        folder = Path(args.folder)
    else:
        from airflow.configuration import conf

        folder = Path(conf.get("logging", "base_log_folder"))
    report = prune_task_logs(folder, keep=args.keep, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for path in report.removed:
        print(f"{verb} {path}")
    print(f"{verb} {len(report.removed)} run folder(s), {report.bytes_freed / 1e6:.1f} MB; kept {report.kept}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
