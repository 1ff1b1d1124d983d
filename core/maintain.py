"""`ecom maintain`: Delta OPTIMIZE (bin-packing) then VACUUM on every lake table.

A table with a layout (`core.lake.LAYOUTS`: silver events, kept in event time) is re-sorted
by its column into bounded files instead (ZORDER BY on one column), which keeps it so.

Each table is maintained under its writer lock (`core.locks`, the name the layers use,
e.g. `bronze.orders`), so maintenance never races a pipeline write: a table whose lock
stays busy for `wait_s` is skipped and reported, and the next run picks it up. VACUUM
keeps at least 7 days (168 h) of history — time travel, readers of older snapshots and
the change data feed gold reads all stay valid — or the table's own
`delta.deletedFileRetentionDuration` when that is longer.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core import console
from core.errors import EcomError, LockBusyError
from core.lake import DATABASES, LAYOUTS, Layout, discover_tables, table_path
from core.locks import writer_lock
from core.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

MIN_RETENTION_HOURS = 168  # 7 days: never VACUUM younger files
RETENTION_PROPERTY = "delta.deletedFileRetentionDuration"
MAX_FILE_SIZE_CONF = "spark.databricks.delta.optimize.maxFileSize"
_UNIT_HOURS = {"week": 168.0, "day": 24.0, "hour": 1.0, "minute": 1 / 60, "second": 1 / 3600}
_INTERVAL_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(week|day|hour|minute|second)s?", re.IGNORECASE)


@dataclass
class MaintainResult:
    """What maintenance did to one table. Grain: database × table × run."""

    database: str
    table: str
    status: str  # maintained | busy | failed
    files_removed: int | None = None  # OPTIMIZE: small files compacted away
    files_added: int | None = None  # OPTIMIZE: compacted files written
    files_vacuumed: int | None = None  # VACUUM: unreferenced files deleted
    retain_hours: float | None = None
    seconds: float = 0.0
    message: str | None = None


def interval_hours(interval: str | None) -> float | None:
    """Hours in a Delta interval property (`interval 7 days`, `interval 1 day 12 hours`)."""
    if not interval:
        return None
    parts = _INTERVAL_PART.findall(interval)
    if not parts:
        return None
    return sum(float(n) * _UNIT_HOURS[unit.lower()] for n, unit in parts)


def retention_hours(requested: float, table_property: str | None) -> float:
    """The VACUUM retention: the request, at least 168 h, and at least the table's own setting."""
    if requested < MIN_RETENTION_HOURS:
        raise EcomError(f"VACUUM retention must be at least {MIN_RETENTION_HOURS} hours (7 days), got {requested:g}")
    configured = interval_hours(table_property)
    return max(requested, configured or 0.0)


def _metric(row: Any, name: str) -> int | None:
    try:
        value = row[name]
    except (KeyError, ValueError, TypeError):
        return None
    return int(value) if value is not None else None


def optimize_table(spark: SparkSession, path: str, layout: Layout | None = None) -> tuple[int | None, int | None]:
    """OPTIMIZE one Delta table — compaction, or for a table with a `Layout` a re-sort by its
    column into files of at most its size —; returns (files removed, files added)."""
    from delta.tables import DeltaTable

    optimizer = DeltaTable.forPath(spark, path).optimize()
    if layout is None:
        rows = optimizer.executeCompaction().collect()
    else:
        key, previous = MAX_FILE_SIZE_CONF, spark.conf.get(MAX_FILE_SIZE_CONF, None)
        spark.conf.set(key, str(layout.max_file_bytes))
        try:
            rows = optimizer.executeZOrderBy(layout.order_by).collect()
        finally:
            if previous is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, previous)
    if not rows:
        return None, None
    metrics = rows[0]["metrics"]
    return _metric(metrics, "numFilesRemoved"), _metric(metrics, "numFilesAdded")


def vacuum_table(spark: SparkSession, path: str, requested_hours: float) -> tuple[float, int | None]:
    """VACUUM one Delta table; returns (retention used, files deleted when Delta logged it)."""
    from delta.tables import DeltaTable

    table = DeltaTable.forPath(spark, path)
    properties = table.detail().select("properties").collect()[0]["properties"] or {}
    hours = retention_hours(requested_hours, properties.get(RETENTION_PROPERTY))
    table.vacuum(hours)
    deleted = None
    for entry in table.history(5).select("operation", "operationMetrics").collect():
        if entry["operation"] == "VACUUM END":
            deleted = _metric(entry["operationMetrics"] or {}, "numDeletedFiles")
            break
    return hours, deleted


def maintain_table(
    spark: SparkSession, settings: Settings, database: str, table: str, *, retain_hours: float, wait_s: float
) -> MaintainResult:
    """OPTIMIZE then VACUUM one table under its writer lock."""
    result = MaintainResult(database, table, status="maintained")
    t0 = time.monotonic()
    path = table_path(settings, database, table)
    try:
        with writer_lock(settings, f"{database}.{table}", wait_s=wait_s):
            layout = LAYOUTS.get((database, table))
            result.files_removed, result.files_added = optimize_table(spark, path, layout)
            result.retain_hours, result.files_vacuumed = vacuum_table(spark, path, retain_hours)
    except LockBusyError as exc:
        result.status, result.message = "busy", str(exc)
    except EcomError:
        raise
    except Exception as exc:  # one broken table must not stop the others
        result.status, result.message = "failed", f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
    result.seconds = round(time.monotonic() - t0, 1)
    return result


def maintain(
    settings: Settings, *, retain_hours: float = MIN_RETENTION_HOURS, wait_s: float = 30.0
) -> list[MaintainResult]:
    """Maintain every Delta table in the lake; print progress per table and a summary."""
    retention_hours(retain_hours, None)  # refuse a short retention before Spark starts
    found = discover_tables(settings)
    targets = [(db, t) for db in DATABASES for t in found.get(db, [])]
    if not targets:
        console.warn(f"no Delta tables under {settings.lake_root}: nothing to maintain")
        return []
    from core.spark import get_spark

    spark = get_spark(settings, "ecom-maintain", register=False)
    console.step(f"maintaining {len(targets)} table(s) in {settings.lake_root}; VACUUM retains ≥ {retain_hours:g} h")
    results = []
    for i, (database, table) in enumerate(targets, 1):
        console.step(f"[{i}/{len(targets)}] {database}.{table}: OPTIMIZE, VACUUM")
        r = maintain_table(spark, settings, database, table, retain_hours=retain_hours, wait_s=wait_s)
        results.append(r)
        if r.status == "maintained":
            console.ok(
                f"{database}.{table}: compacted {r.files_removed or 0} → {r.files_added or 0} file(s), "
                f"vacuumed {r.files_vacuumed if r.files_vacuumed is not None else '?'} (retain {r.retain_hours:g} h) "
                f"in {r.seconds}s"
            )
        elif r.status == "busy":
            console.warn(f"{database}.{table}: skipped, {r.message}")
        else:
            console.error(f"{database}.{table}: {r.message}")
    console.table(
        "Maintenance",
        ["table", "status", "files compacted", "files written", "vacuumed", "retain h", "s"],
        [
            (
                f"{r.database}.{r.table}",
                r.status,
                r.files_removed,
                r.files_added,
                r.files_vacuumed,
                r.retain_hours,
                r.seconds,
            )
            for r in results
        ],
    )
    failed = [f"{r.database}.{r.table}" for r in results if r.status == "failed"]
    if failed:
        raise EcomError(f"maintenance failed for {', '.join(failed)}; see the messages above")
    return results
