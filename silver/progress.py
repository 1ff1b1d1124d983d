"""`ops.silver_progress`: which bronze runs silver has processed, per table.

Grain: one row per (silver table, bronze `_run_id`). Bronze appends each extraction of a
table as one Delta commit whose rows all carry that run's `_run_id`, so "not processed yet"
is "a `_run_id` in bronze that has no row here". That survives everything that rewrites
bronze's files without changing its rows (OPTIMIZE, VACUUM), and a bronze `--full-refresh`
(a new run id) is simply processed again — idempotently, since silver only takes newer
versions. `bronze_version` is the bronze Delta version silver read: when bronze has no newer
version, there is nothing to scan.

Rows are appended after a table's silver, quarantine and held writes have committed; a
crash before that means the runs are processed again, which changes nothing.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from core.errors import LockBusyError
from core.lake import register_table, table_path
from core.locks import writer_lock
from core.settings import Settings, project_dir

NAME = "silver_progress"
LOCK = "ops.silver_progress"
LOCK_WAIT_S = 60.0

SCHEMA = T.StructType(
    [
        T.StructField("table_name", T.StringType(), False),
        T.StructField("bronze_run_id", T.StringType(), False),
        T.StructField("bronze_version", T.LongType(), False),
        T.StructField("bronze_rows", T.LongType(), False),
        T.StructField("silver_run_id", T.StringType(), False),
        T.StructField("processed_at", T.TimestampType(), False),
    ]
)


@dataclass(frozen=True)
class Progress:
    """What silver has processed of one bronze table."""

    run_ids: frozenset[str]
    bronze_version: int | None  # the highest bronze version read, None before the first run


def path(settings: Settings) -> str:
    return table_path(settings, "ops", NAME)


def read_progress(spark: SparkSession, settings: Settings) -> dict[str, Progress]:
    """What silver has processed, per table (one small read for all tables)."""
    from delta.tables import DeltaTable

    if not DeltaTable.isDeltaTable(spark, path(settings)):
        return {}
    rows = (
        spark.read.format("delta")
        .load(path(settings))
        .groupBy("table_name", "bronze_run_id")
        .agg(F.max("bronze_version").alias("v"))
        .collect()
    )
    out: dict[str, Progress] = {}
    for table in {r.table_name for r in rows}:
        mine = [r for r in rows if r.table_name == table]
        out[table] = Progress(frozenset(r.bronze_run_id for r in mine), max(r.v for r in mine))
    return out


def lock_name(settings: Settings, name: str) -> str:
    """Writer locks protect a lake's tables, so they are scoped to the lake: `name` for the
    project's default lake, `name@<digest of the lake root>` for any other (a test's)."""
    default = Settings.model_fields["lake_root"].default
    default_root = str(Path(default) if Path(default).is_absolute() else (project_dir() / default).resolve())
    if settings.lake_root == default_root:
        return name
    return f"{name}@{hashlib.sha1(settings.lake_root.encode()).hexdigest()[:10]}"


@contextmanager
def _waiting_lock(settings: Settings) -> Iterator[None]:
    """The progress table is shared by all silver tables: wait briefly for another writer."""
    deadline = time.monotonic() + LOCK_WAIT_S
    with ExitStack() as stack:
        while True:
            try:
                stack.enter_context(writer_lock(settings, lock_name(settings, LOCK)))
                break
            except LockBusyError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.2)
        yield


def mark_processed(
    spark: SparkSession,
    settings: Settings,
    tables: Mapping[str, tuple[int, Mapping[str, int]]],
    *,
    silver_run_id: str,
    processed_at: datetime,
    replace: bool = False,
) -> None:
    """Record, in one commit, the bronze runs processed per table: {table: (bronze version,
    {bronze run id: rows})}. `replace` (full refresh) first forgets those tables' earlier runs."""
    rows = [
        (table, run, version, int(n), silver_run_id, processed_at)
        for table, (version, runs) in sorted(tables.items())
        for run, n in sorted(runs.items())
    ]
    if not rows and not (replace and tables):
        return
    writer = spark.createDataFrame(rows, schema=SCHEMA).write.format("delta")
    if replace:
        names = ", ".join(f"'{t}'" for t in sorted(tables))
        writer = writer.mode("overwrite").option("replaceWhere", f"table_name IN ({names})")
    else:
        writer = writer.mode("append")
    with _waiting_lock(settings):
        writer.save(path(settings))
    register_table(spark, settings, "ops", NAME)
