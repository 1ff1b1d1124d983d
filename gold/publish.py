"""`ecom run publish`: load gold into ecom_dwh atomically, reconciled, as the publisher role.

Per table:
1. the candidate rows — all of gold (`--full-refresh`, first publish, or when the previously
   published gold version is no longer readable) or only the rows changed since the gold
   version last published: when every commit since is a MERGE (an incremental gold run), the
   current image of each key in gold's change data feed and the keys it deleted — the cost
   follows the change —, else (a rebuild in between, or no feed that far back) Delta time
   travel: current EXCEPT published, plus vanished keys;
2. arrays/maps/structs → JSON strings (`to_json`), then a Spark JDBC append into a staging
   table created by us with the live table's exact types (never Spark's auto-created tables);
3. one database transaction applies the stage to the live table (full: delete all + insert;
   incremental: upsert + delete vanished keys) and, before committing, reconciles the live
   table against gold: row count and an order-independent checksum of the key and money
   columns (gold's side observed in the staging pass itself for a full load, a pass of its
   own otherwise). A mismatch rolls back: readers keep seeing the previous live table.

The gold checkpoint gates publish: if gold's latest run of a table failed, it is not published.
SQL Server gets `UPDATE … FROM` + `INSERT … WHERE NOT EXISTS` under SERIALIZABLE, not MERGE.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from core import console, db
from core.errors import EcomError, ValidationFailedError
from core.lake import change_feed, table_path
from core.ledger import LayerRun, RunRecord
from core.locks import writer_lock
from core.schema import WAREHOUSE_SCHEMA
from core.settings import Settings
from gold.job import FEED_OPERATIONS
from gold.marts.contract import Mart
from gold.marts.registry import MARTS
from gold.warehouse import NESTED

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

LAYER = "publish"


class ReconciliationError(EcomError):
    """The warehouse disagrees with gold after the load; the transaction was rolled back."""


# --- pure parts --------------------------------------------------------------------------------
def flatten_for_jdbc(df: DataFrame) -> DataFrame:
    """Arrays, maps and structs become JSON strings (JDBC cannot write them)."""
    from pyspark.sql import functions as F

    return df.select(
        *[
            F.to_json(F.col(f.name)).alias(f.name) if isinstance(f.dataType, NESTED) else F.col(f.name)
            for f in df.schema.fields
        ]
    )


def money_columns(mart: Mart) -> list[str]:
    from pyspark.sql import types as T

    return [c.name for c in mart.columns if isinstance(c.type, T.DecimalType)]


@dataclass(frozen=True)
class Checksum:
    rows: int
    key_hash: int
    money: tuple[Decimal, ...]

    @classmethod
    def of(cls, values: Sequence[Any]) -> Checksum:
        """From (count, key hash, Σ money…), as Spark or the warehouse returns them."""
        return cls(int(values[0]), int(values[1] or 0), tuple(Decimal(v or 0) for v in values[2:]))


def checksum_columns(mart: Mart) -> list[Column]:
    """Count, Σ of the first 32 bits of md5(key) and Σ of each money column (order-independent)."""
    from pyspark.sql import functions as F

    key = F.concat_ws("|", *[F.col(k).cast("string") for k in mart.key])
    aggs = [
        F.count(F.lit(1)).alias("rows"),
        F.sum(F.conv(F.substring(F.md5(key), 1, 8), 16, 10).cast("bigint")).alias("key_hash"),
    ]
    return aggs + [F.sum(F.col(c)).alias(f"sum_{c}") for c in money_columns(mart)]


def spark_checksum(df: DataFrame, mart: Mart) -> Checksum:
    """The checksum of a frame, in a pass of its own."""
    row = df.agg(*checksum_columns(mart)).first()
    assert row is not None
    return Checksum.of(row)


# --- the dialect adapter: every statement publish sends, per dialect ------------------------------
class Dialect:
    def __init__(self, name: str) -> None:
        self.name = name

    def q(self, ident: str) -> str:
        return f"[{ident}]" if self.name == "mssql" else f'"{ident}"'

    def table(self, name: str) -> str:
        return f"{WAREHOUSE_SCHEMA}.{self.q(name)}"

    def create_stage(self, live: str, stage: str, columns: list[str] | None = None) -> list[str]:
        cols = ", ".join(self.q(c) for c in columns) if columns else "*"
        if self.name == "mssql":
            return [
                f"IF OBJECT_ID(N'{WAREHOUSE_SCHEMA}.{stage}', N'U') IS NOT NULL DROP TABLE {self.table(stage)}",
                f"SELECT TOP 0 {cols} INTO {self.table(stage)} FROM {self.table(live)}",
            ]
        # UNLOGGED: the stage is a transfer buffer, written once and read once in this run, so
        # it skips the write-ahead log (a crash empties it, and a rerun loads it again); the
        # live table, written from it in the apply transaction, is logged as always.
        return [
            f"DROP TABLE IF EXISTS {self.table(stage)}",
            f"CREATE UNLOGGED TABLE {self.table(stage)} AS SELECT {cols} FROM {self.table(live)} WITH NO DATA",
        ]

    def drop(self, table: str) -> str:
        if self.name == "mssql":
            return f"IF OBJECT_ID(N'{WAREHOUSE_SCHEMA}.{table}', N'U') IS NOT NULL DROP TABLE {self.table(table)}"
        return f"DROP TABLE IF EXISTS {self.table(table)}"

    def begin(self) -> list[str]:
        return ["SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"] if self.name == "mssql" else []

    def replace_all(self, live: str, stage: str, columns: list[str]) -> list[str]:
        cols = ", ".join(self.q(c) for c in columns)
        return [
            f"DELETE FROM {self.table(live)}",
            f"INSERT INTO {self.table(live)} ({cols}) SELECT {cols} FROM {self.table(stage)}",
        ]

    def upsert(self, live: str, stage: str, columns: list[str], keys: list[str]) -> list[str]:
        cols = ", ".join(self.q(c) for c in columns)
        on = " AND ".join(f"t.{self.q(k)} = s.{self.q(k)}" for k in keys)
        rest = [c for c in columns if c not in keys]
        if self.name == "mssql":
            sets = ", ".join(f"{self.q(c)} = s.{self.q(c)}" for c in rest)
            return [
                f"UPDATE t SET {sets} FROM {self.table(live)} AS t WITH (UPDLOCK, HOLDLOCK) "
                f"JOIN {self.table(stage)} AS s ON {on}",
                f"INSERT INTO {self.table(live)} ({cols}) SELECT {cols} FROM {self.table(stage)} AS s "
                f"WHERE NOT EXISTS (SELECT 1 FROM {self.table(live)} AS t WITH (UPDLOCK, HOLDLOCK) WHERE {on})",
            ]
        sets = ", ".join(f"{self.q(c)} = EXCLUDED.{self.q(c)}" for c in rest)
        conflict = ", ".join(self.q(k) for k in keys)
        return [
            f"INSERT INTO {self.table(live)} ({cols}) SELECT {cols} FROM {self.table(stage)} "
            f"ON CONFLICT ({conflict}) DO UPDATE SET {sets}"
        ]

    def delete_keys(self, live: str, deleted: str, keys: list[str]) -> list[str]:
        on = " AND ".join(f"t.{self.q(k)} = d.{self.q(k)}" for k in keys)
        if self.name == "mssql":
            return [f"DELETE t FROM {self.table(live)} AS t JOIN {self.table(deleted)} AS d ON {on}"]
        return [f"DELETE FROM {self.table(live)} AS t USING {self.table(deleted)} AS d WHERE {on}"]

    def checksum(self, live: str, keys: list[str], money: list[str]) -> str:
        if self.name == "mssql":
            key = "CONCAT_WS('|', " + ", ".join(f"CONVERT(VARCHAR(400), {self.q(k)})" for k in keys) + ")"
            key_hash = f"SUM(CONVERT(BIGINT, CONVERT(BINARY(4), SUBSTRING(HASHBYTES('MD5', {key}), 1, 4))))"
        else:
            key = " || '|' || ".join(f"{self.q(k)}::text" for k in keys)
            key_hash = f"SUM(('x' || substr(md5({key}), 1, 8))::bit(32)::bigint)"
        sums = "".join(f", SUM({self.q(c)})" for c in money)
        return f"SELECT COUNT(*), {key_hash}{sums} FROM {self.table(live)}"


# --- the edge ---------------------------------------------------------------------------------
def _gold_gate_open(spark: SparkSession, settings: Settings, table: str) -> None:
    """Refuse to publish a table whose latest gold run failed (its checkpoint or its build)."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    path = table_path(settings, "ops", "runs")
    if not DeltaTable.isDeltaTable(spark, path):
        return
    last = (
        spark.read.format("delta")
        .load(path)
        .where((F.col("layer") == "gold") & (F.col("table_name") == table))
        .orderBy(F.col("started_at").desc())
        .first()
    )
    if last is not None and last.status == "failed":
        raise ValidationFailedError(
            f"gold.{table}: its latest gold run {last.run_id} failed"
            f"{' its checkpoint' if last.checkpoint == 'failed' else ''} ({last.message}); "
            "publish refuses — the warehouse keeps its previous table"
        )


def _last_published_version(spark: SparkSession, settings: Settings, table: str) -> int | None:
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    path = table_path(settings, "ops", "runs")
    if not DeltaTable.isDeltaTable(spark, path):
        return None
    last = (
        spark.read.format("delta")
        .load(path)
        .where((F.col("layer") == LAYER) & (F.col("table_name") == table) & (F.col("status") == "succeeded"))
        .orderBy(F.col("started_at").desc())
        .first()
    )
    return None if last is None else last.delta_version


def feed_changes(
    spark: SparkSession, path: str, mart: Mart, previous: int, version: int
) -> tuple[DataFrame, DataFrame] | None:
    """(changed rows, deleted keys) of a mart from its change data feed in (previous, version]:
    per key, the last image — an insert or update's row, or a deletion. None when a commit in
    that range is not in `FEED_OPERATIONS`, or the feed does not reach back that far."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    feed = change_feed(spark, path, previous, version, FEED_OPERATIONS, list(mart.column_names))
    if feed is None:
        return None
    keys = list(mart.key)
    latest = Window.partitionBy(*keys).orderBy(F.col("_commit_version").desc())
    last = (
        feed.where(F.col("_change_type") != "update_preimage")
        .withColumn("_latest", F.row_number().over(latest))
        .where("_latest = 1")
    )
    is_deleted = F.col("_change_type") == "delete"
    return last.where(~is_deleted).select(*mart.column_names), last.where(is_deleted).select(*keys)


def _jdbc_append(df: DataFrame, settings: Settings, table: str) -> None:
    opts = db.jdbc_options(settings, "publisher")
    (
        df.write.format("jdbc")
        .options(**opts, dbtable=f"{WAREHOUSE_SCHEMA}.{table}", batchsize=str(settings.jdbc_batchsize))
        .option("isolationLevel", "READ_COMMITTED")
        .mode("append")
        .save()
    )


def publish_table(spark: SparkSession, settings: Settings, mart: Mart, rec: RunRecord, *, full_refresh: bool) -> None:
    from delta.tables import DeltaTable
    from pyspark.sql import Observation

    path = table_path(settings, "gold", mart.name)
    if not DeltaTable.isDeltaTable(spark, path):
        raise EcomError(f"gold.{mart.name} does not exist yet: run `ecom run gold` first")
    with rec.phase("gate"):
        _gold_gate_open(spark, settings, mart.name)
    version = int(DeltaTable.forPath(spark, path).history(1).first().version)  # type: ignore[union-attr]
    current = spark.read.format("delta").option("versionAsOf", version).load(path).select(*mart.column_names)
    previous = None if full_refresh else _last_published_version(spark, settings, mart.name)
    rec.delta_version = version
    rec.watermark_from = None if previous is None else str(previous)
    rec.watermark_to = str(version)
    mode, old, feed = "full", None, None
    if previous is not None and previous == version:
        mode = "unchanged"
    elif previous is not None:
        with rec.phase("diff"):
            feed = feed_changes(spark, path, mart, previous, version)
        if feed is not None:
            mode = "incremental"
        else:
            try:
                old = spark.read.format("delta").option("versionAsOf", previous).load(path).select(*mart.column_names)
                old.limit(1).collect()
                mode = "incremental"
            except Exception:  # the published version was vacuumed: fall back to a full load
                mode = "full"
    keys = list(mart.key)
    flat = flatten_for_jdbc(current)
    if feed is not None:
        changed, deleted = flatten_for_jdbc(feed[0]), feed[1]
    elif mode == "incremental" and old is not None:
        old_flat = flatten_for_jdbc(old)
        changed = flat.exceptAll(old_flat)
        deleted = old_flat.select(*keys).exceptAll(flat.select(*keys))
    else:
        changed, deleted = flat, None
    dialect = Dialect(settings.dialect)
    stage, stage_del = f"{mart.name}__stage", f"{mart.name}__deleted"
    with db.connect(settings, "publisher") as conn:
        live_exists = sa.inspect(conn).has_table(mart.name, schema=WAREHOUSE_SCHEMA)
    if not live_exists:
        raise EcomError(f"warehouse table {WAREHOUSE_SCHEMA}.{mart.name} is missing: run `ecom db init`")
    observation = None
    if mode != "unchanged" and deleted is None:
        # A full load stages every gold row: its checksum is observed in the same pass.
        observation = Observation(f"publish_{mart.name}")
        changed = changed.observe(observation, *checksum_columns(mart))
    else:
        with rec.phase("checksum"):
            expected = spark_checksum(current, mart)
    if mode == "unchanged":
        rec.rows_out = 0
    else:
        if deleted is not None:  # the difference feeds a count and the load: computed once
            changed = changed.cache()
            rec.rows_out = changed.count()
        with rec.phase("stage"):
            with db.connect(settings, "publisher") as conn:
                for s in dialect.create_stage(mart.name, stage):
                    conn.exec_driver_sql(s)
                if deleted is not None:
                    for s in dialect.create_stage(mart.name, stage_del, keys):
                        conn.exec_driver_sql(s)
            _jdbc_append(changed, settings, stage)
            if deleted is not None:
                _jdbc_append(deleted, settings, stage_del)
        changed.unpersist()
        if observation is not None:
            expected = Checksum.of(list(observation.get.values()))
            rec.rows_out = expected.rows
    rec.rows_in = expected.rows
    with rec.phase("apply"):
        _apply(settings, dialect, mart, mode, stage, stage_del if deleted is not None else None, expected)
    diff = None if mode != "incremental" else ("change data feed" if feed is not None else "compare")
    rec.details.update(mode=mode, diff=diff, stage_rows=rec.rows_out, checksum=expected.key_hash)


def _apply(
    settings: Settings,
    dialect: Dialect,
    mart: Mart,
    mode: str,
    stage: str,
    stage_del: str | None,
    expected: Checksum,
) -> None:
    """One transaction: apply the stage, reconcile, commit — or roll back and raise."""
    keys, columns, money = list(mart.key), mart.column_names, money_columns(mart)
    try:
        with db.connect(settings, "publisher") as conn:
            for s in dialect.begin():
                conn.exec_driver_sql(s)
            if mode == "full":
                statements = dialect.replace_all(mart.name, stage, columns)
            elif mode == "incremental":
                statements = dialect.upsert(mart.name, stage, columns, keys)
                statements += dialect.delete_keys(mart.name, stage_del, keys) if stage_del else []
            else:
                statements = []
            for s in statements:
                conn.exec_driver_sql(s)
            row = conn.exec_driver_sql(dialect.checksum(mart.name, keys, money)).one()
            got = Checksum.of(row)
            if got != expected:
                raise ReconciliationError(
                    f"{WAREHOUSE_SCHEMA}.{mart.name}: warehouse {got} ≠ gold {expected}; rolled back, "
                    "the previous live table is unchanged"
                )
    finally:
        with db.connect(settings, "publisher") as conn:
            for t in (stage, stage_del):
                if t:
                    conn.exec_driver_sql(dialect.drop(t))


def run(
    spark: SparkSession,
    settings: Settings,
    *,
    run_id: str,
    full_refresh: bool = False,
    tables: list[str] | None = None,
) -> list[RunRecord]:
    names = list(tables) if tables else list(MARTS)
    unknown = [n for n in names if n not in MARTS]
    if unknown:
        raise EcomError(f"unknown gold table(s) {', '.join(unknown)}: expected some of {', '.join(MARTS)}")
    with LayerRun(spark, settings, LAYER, run_id) as layer_run:
        for name in names:
            with layer_run.table(name) as rec:
                t0 = time.monotonic()
                with writer_lock(settings, f"publish.{name}"):
                    publish_table(spark, settings, MARTS[name], rec, full_refresh=full_refresh)
                rec.finish("succeeded")
                console.ok(
                    f"publish {name}: {rec.details.get('mode')}"
                    + (f" ({rec.details['diff']})" if rec.details.get("diff") else "")
                    + f", {rec.rows_out:,} rows staged, warehouse "
                    f"reconciled at {rec.rows_in:,} rows ({time.monotonic() - t0:.1f}s)"
                )
    return layer_run.raise_failures()


def warehouse_counts(settings: Settings) -> dict[str, int]:
    """Row counts of the live warehouse tables (for `make demo`)."""
    dialect = Dialect(settings.dialect)
    with db.connect(settings, "publisher") as conn:
        return {n: int(conn.exec_driver_sql(f"SELECT COUNT(*) FROM {dialect.table(n)}").scalar_one()) for n in MARTS}
