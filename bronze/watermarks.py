"""`ops.watermarks`: one row per source table, the horizon up to which bronze has extracted.

Grain: one row per source table. `watermark` is the exclusive upper bound of the last
extraction (the next window starts there), `previous` the one before, `source` the source
it belongs to (a watermark of another database or dialect is meaningless here).

The table is a plain Delta table (`spark-sql` reads it as `ops.watermarks`), but bronze reads
and writes it with delta-rs (`deltalake`), not Spark: it holds one row per source table, and
Spark spends 12 jobs and ~1.5 s on 2 cores to MERGE one row into it, ~1 s to read it back,
per table and per run (measured at 1M rows: a quarter of an extraction). delta-rs does the
same atomic commit — delete the table's row, add its new one — in ~20 ms. Each update holds
the `ops.watermarks` writer lock, which bronze runs on different tables share, so that lock
is awaited briefly; the read of the old value (→ `previous`) happens under it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bronze.locking import waiting_lock
from core.lake import register_table, table_path
from core.settings import Settings

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import SparkSession


@dataclass(frozen=True)
class Watermark:
    table_name: str
    source: str
    watermark: int
    previous: int | None
    run_id: str
    updated_at: datetime


def arrow_schema() -> pa.Schema:
    """The table's columns (Delta: string, string, long, long, string, timestamp)."""
    import pyarrow as pa

    return pa.schema(
        [
            ("table_name", pa.string()),
            ("source", pa.string()),
            ("watermark", pa.int64()),
            ("previous", pa.int64()),
            ("run_id", pa.string()),
            ("updated_at", pa.timestamp("us", tz="UTC")),
        ]
    )


def path(settings: Settings) -> str:
    return table_path(settings, "ops", "watermarks")


def _rows(settings: Settings, table: str) -> list[dict[str, Any]] | None:
    """The rows of `table` (None while `ops.watermarks` does not exist)."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        delta = DeltaTable(path(settings))
    except TableNotFoundError:
        return None
    return list(delta.to_pyarrow_table(filters=[("table_name", "=", table)]).to_pylist())


def read_watermark(settings: Settings, table: str) -> Watermark | None:
    """The stored watermark of one source table, or None before its first extraction."""
    rows = _rows(settings, table)
    return Watermark(**rows[0]) if rows else None


def save_watermark(
    spark: SparkSession, settings: Settings, table: str, *, source: str, watermark: int, run_id: str
) -> None:
    """Set the watermark of `table` in one Delta commit; the old value moves to `previous`.

    `spark` registers the table in the session's catalog (`ops.watermarks`)."""
    import pyarrow as pa
    from deltalake import write_deltalake

    with waiting_lock(settings, "ops.watermarks"):
        rows = _rows(settings, table)
        row = {
            "table_name": table,
            "source": source,
            "watermark": int(watermark),
            "previous": rows[0]["watermark"] if rows else None,
            "run_id": run_id,
            "updated_at": datetime.now(UTC),
        }
        data = pa.Table.from_pylist([row], schema=arrow_schema())
        if rows is None:  # the first watermark creates the table
            write_deltalake(path(settings), data, mode="append")
        else:
            where = "table_name = '" + table.replace("'", "''") + "'"
            write_deltalake(path(settings), data, mode="overwrite", predicate=where)
    register_table(spark, settings, "ops", "watermarks")
