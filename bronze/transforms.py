"""Pure bronze transforms: ingestion metadata, and the schema contract between source and bronze."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from core.errors import SchemaDriftError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
    from pyspark.sql.types import StructType

# Added by bronze to every row; never taken from (or compared with) the source.
METADATA_COLUMNS: tuple[str, ...] = ("_run_id", "_ingested_at", "_source", "_extract_horizon", "_ingest_date")
PARTITION_COLUMNS: tuple[str, ...] = ("_ingest_date",)


def with_ingestion_metadata(
    df: DataFrame, *, run_id: str, source: str, ingested_at: datetime, horizon: int
) -> DataFrame:
    """Add the bronze metadata columns; the source columns pass through untouched.

    `_extract_horizon` is the window's safe horizon: it strictly increases from one
    non-empty extraction to the next, and one extraction holds at most one version of a
    source row, so the latest version of a key is the one with the greatest horizon.
    """
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    clash = [c for c in df.columns if c in METADATA_COLUMNS]
    if clash:
        raise SchemaDriftError(f"source column(s) {', '.join(clash)} collide with bronze's own metadata columns")
    if ingested_at.tzinfo is None:
        raise ValueError("ingested_at must be timezone-aware (UTC)")
    ts = ingested_at.astimezone(UTC)
    return (
        df.withColumn("_run_id", F.lit(run_id).cast(T.StringType()))
        .withColumn("_ingested_at", F.lit(ts).cast(T.TimestampType()))
        .withColumn("_source", F.lit(source).cast(T.StringType()))
        .withColumn("_extract_horizon", F.lit(horizon).cast(T.LongType()))
        .withColumn("_ingest_date", F.lit(ts.date()).cast(T.DateType()))
    )


@dataclass(frozen=True)
class SchemaChange:
    """How the live source columns differ from the bronze table's source columns."""

    added: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    retyped: tuple[tuple[str, str, str], ...] = ()  # (column, bronze type, source type)

    @property
    def is_drift(self) -> bool:
        return bool(self.dropped or self.retyped)


def compare_schemas(bronze: StructType, source: StructType) -> SchemaChange:
    """Compare by (case-insensitive) name and Spark type; nullability and metadata are ignored."""
    ours = {f.name.lower(): f for f in bronze.fields if f.name not in METADATA_COLUMNS}
    theirs = {f.name.lower(): f for f in source.fields}
    added = tuple(theirs[n].name for n in theirs if n not in ours)
    dropped = tuple(ours[n].name for n in ours if n not in theirs)
    retyped = tuple(
        (ours[n].name, ours[n].dataType.simpleString(), theirs[n].dataType.simpleString())
        for n in ours
        if n in theirs and ours[n].dataType != theirs[n].dataType
    )
    return SchemaChange(added, dropped, retyped)


def check_schema(table: str, bronze: StructType, source: StructType) -> SchemaChange:
    """Accept new source columns; raise `SchemaDriftError` naming dropped or retyped ones."""
    change = compare_schemas(bronze, source)
    if change.is_drift:
        parts = [f"column {c!r} was dropped from the source" for c in change.dropped]
        parts += [f"column {c!r} changed type from {old} (bronze) to {new} (source)" for c, old, new in change.retyped]
        raise SchemaDriftError(
            f"schema drift in source table {table!r}: {'; '.join(parts)} — bronze.{table} keeps history in the "
            f"old shape; fix the source, or rebuild with `ecom run bronze --tables {table} --full-refresh`"
        )
    return change
