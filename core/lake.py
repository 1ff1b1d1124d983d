"""The lake layout and its catalog: databases, table paths, discovery and registration."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from core.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

EPOCH = datetime(1970, 1, 1)

# catalog database → folder under the lake root
DATABASES: dict[str, str] = {
    "bronze": "bronze",
    "silver": "silver",
    "quarantine": "quarantine",
    "gold": "gold",
    "ops": "_ops",
}


@dataclass(frozen=True)
class Layout:
    """How a table keeps its files: in ranges of `order_by`, of about `rows_per_file` rows
    when a layer writes it whole and at most `max_file_bytes` when `ecom maintain` re-sorts it."""

    order_by: str
    rows_per_file: int
    max_file_bytes: int


# Silver events are kept in event time, so that a MERGE around new events touches few files
# (`silver.job.write_events`); `ecom maintain` re-sorts them instead of bin-packing them.
LAYOUTS: dict[tuple[str, str], Layout] = {
    ("silver", "clickstream_events"): Layout("event_ts", rows_per_file=250_000, max_file_bytes=32 * 1024 * 1024),
}


def database_path(settings: Settings, database: str) -> str:
    return f"{settings.lake_root}/{DATABASES[database]}"


def table_path(settings: Settings, database: str, table: str) -> str:
    return f"{database_path(settings, database)}/{table}"


def _filesystem(root: str) -> tuple[Any, str]:
    from pyarrow import fs

    uri = root.replace("s3a://", "s3://", 1)
    if "://" not in uri:
        return fs.LocalFileSystem(), uri
    return fs.FileSystem.from_uri(uri)


def discover_tables(settings: Settings) -> dict[str, list[str]]:
    """Delta tables present in the lake: {database: [table, ...]} (folders with a _delta_log)."""
    from pyarrow import fs

    filesystem, root = _filesystem(settings.lake_root)
    found: dict[str, list[str]] = {}
    for database, folder in DATABASES.items():
        base = f"{root}/{folder}"
        try:
            infos = filesystem.get_file_info(fs.FileSelector(base, allow_not_found=True))
        except OSError:
            infos = []
        names = []
        for info in infos:
            if info.type != fs.FileType.Directory:
                continue
            log = filesystem.get_file_info(f"{info.path}/_delta_log")
            if log.type == fs.FileType.Directory:
                names.append(info.base_name)
        found[database] = sorted(names)
    return found


def catalog_sql(settings: Settings) -> list[str]:
    """Statements that make every lake table visible by `database.table` name."""
    stmts = []
    tables = discover_tables(settings)
    for database in DATABASES:
        stmts.append(f"CREATE DATABASE IF NOT EXISTS {database} LOCATION '{database_path(settings, database)}'")
        for table in tables.get(database, []):
            stmts.append(
                f"CREATE TABLE IF NOT EXISTS {database}.`{table}` USING delta "
                f"LOCATION '{table_path(settings, database, table)}'"
            )
    return stmts


def register_lake(spark: SparkSession, settings: Settings) -> None:
    for stmt in catalog_sql(settings):
        spark.sql(stmt)


def register_table(spark: SparkSession, settings: Settings, database: str, table: str) -> None:
    """Make a table written by this session visible by name (idempotent)."""
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {database} LOCATION '{database_path(settings, database)}'")
    spark.sql(
        f"CREATE TABLE IF NOT EXISTS {database}.`{table}` USING delta "
        f"LOCATION '{table_path(settings, database, table)}'"
    )


def last_commit(spark: SparkSession, path: str) -> tuple[int, dict[str, str]]:
    """The version and operation metrics of a Delta table's latest commit."""
    from delta.tables import DeltaTable

    from core.errors import EcomError

    row = DeltaTable.forPath(spark, path).history(1).select("version", "operationMetrics").first()
    if row is None:
        raise EcomError(f"the Delta table at {path} has no commit history")
    return int(row.version), dict(row.operationMetrics or {})


def micros_to_datetime(micros: int | None) -> datetime | None:
    """Microseconds since the epoch (`unix_micros`) → naive UTC datetime, exactly and whatever
    the machine's time zone (collecting a timestamp would convert it to local time)."""
    return None if micros is None else EPOCH + timedelta(microseconds=int(micros))


def change_feed(
    spark: SparkSession, path: str, previous: int, version: int, operations: frozenset[str], columns: list[str]
) -> DataFrame | None:
    """Every row image of a Delta table's change data feed in (previous, version]: `columns`,
    `_change_type` and `_commit_version`, computed once (`core.spark.materialize`). None when
    a commit in that range is not one of `operations` (a rewrite: every row may have
    changed), or the feed does not reach back that far (it was off, or its files were
    vacuumed). An empty range gives no rows."""
    from delta.tables import DeltaTable
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException

    from core.spark import materialize

    wanted = [*columns, "_change_type", "_commit_version"]
    if version <= previous:
        return (
            spark.read.format("delta")
            .load(path)
            .limit(0)
            .selectExpr(*columns, "CAST(NULL AS STRING) AS _change_type", "CAST(NULL AS BIGINT) AS _commit_version")
        )
    history = DeltaTable.forPath(spark, path).history(version - previous + 1).select("version", "operation")
    found = {r.version: r.operation for r in history.collect() if previous < r.version <= version}
    if len(found) != version - previous or set(found.values()) - operations:
        return None
    try:
        return materialize(
            spark.read.format("delta")
            .option("readChangeFeed", "true")
            .option("startingVersion", previous + 1)
            .option("endingVersion", version)
            .load(path)
            .select(*wanted)
        )
    except (PySparkException, Py4JJavaError):
        return None
