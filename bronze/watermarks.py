"""`ops.watermarks`: one row per source table, the horizon up to which bronze has extracted.

Grain: one row per source table. `watermark` is the exclusive upper bound of the last
extraction (the next window starts there), `previous` the one before, `source` the source
it belongs to (a watermark of another database or dialect is meaningless here).
Updated by a Delta MERGE on `table_name` under the `ops.watermarks` writer lock, which
bronze runs on different tables share, so that lock is awaited briefly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from bronze.locking import waiting_lock
from core.lake import register_table, table_path
from core.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.types import StructType


@dataclass(frozen=True)
class Watermark:
    table_name: str
    source: str
    watermark: int
    previous: int | None
    run_id: str
    updated_at: datetime


def watermarks_schema() -> StructType:
    from pyspark.sql import types as T

    return T.StructType(
        [
            T.StructField("table_name", T.StringType(), False),
            T.StructField("source", T.StringType(), False),
            T.StructField("watermark", T.LongType(), False),
            T.StructField("previous", T.LongType(), True),
            T.StructField("run_id", T.StringType(), False),
            T.StructField("updated_at", T.TimestampType(), False),
        ]
    )


def path(settings: Settings) -> str:
    return table_path(settings, "ops", "watermarks")


def read_watermark(spark: SparkSession, settings: Settings, table: str) -> Watermark | None:
    """The stored watermark of one source table, or None before its first extraction."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    if not DeltaTable.isDeltaTable(spark, path(settings)):
        return None
    rows = spark.read.format("delta").load(path(settings)).where(F.col("table_name") == table).collect()
    if not rows:
        return None
    return Watermark(**rows[0].asDict())


def save_watermark(
    spark: SparkSession, settings: Settings, table: str, *, source: str, watermark: int, run_id: str
) -> None:
    """Set the watermark of `table` (MERGE on table_name); the old value moves to `previous`."""
    from delta.tables import DeltaTable

    row = {
        "table_name": table,
        "source": source,
        "watermark": int(watermark),
        "previous": None,
        "run_id": run_id,
        "updated_at": datetime.now(UTC).replace(tzinfo=None),
    }
    src = spark.createDataFrame([row], schema=watermarks_schema())
    with waiting_lock(settings, "ops.watermarks"):
        if not DeltaTable.isDeltaTable(spark, path(settings)):  # the first watermark creates the table
            src.write.format("delta").mode("append").save(path(settings))
            register_table(spark, settings, "ops", "watermarks")
            return
        (
            DeltaTable.forPath(spark, path(settings))
            .alias("t")
            .merge(src.alias("s"), "t.table_name = s.table_name")
            .whenMatchedUpdate(
                set={
                    "source": "s.source",
                    "watermark": "s.watermark",
                    "previous": "t.watermark",
                    "run_id": "s.run_id",
                    "updated_at": "s.updated_at",
                }
            )
            .whenNotMatchedInsertAll()
            .execute()
        )
    register_table(spark, settings, "ops", "watermarks")
