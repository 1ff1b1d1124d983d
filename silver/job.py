"""`ecom run silver`: the bronze rows not processed yet → `silver.<table>`, `quarantine.<table>`.

Per table, in `PROCESSING_ORDER` (parents first), holding the writer lock `silver.<table>`:

1. increment — the bronze runs not in `ops.silver_progress` (see `silver.progress`), read at
   one bronze Delta version; held rows of the table (`silver._held_<table>`) join them;
2. transform — conform, latest version per key, cross-table facts, rules, outcome (see
   `silver.transforms`); the classified batch is materialised once (local checkpoint), so
   every write and count below sees the same rows;
3. reconcile — bronze rows in = superseded + duplicates + already current + quarantined +
   held back + upserted, and held rows in = superseded + quarantined + still held + released;
   anything else raises `ReconciliationError` before a single write;
4. gate — the `silver` checkpoint (`expectations.gate(...)`) on the candidate rows; a
   failed gate writes nothing;
5. write — quarantine (MERGE on key + version: a rerun adds nothing), silver (MERGE on the
   key, updating only with a newer version; events insert new ones and move the sessions of
   the visitors they touch, or rewrite the table in event-time ranges on a catch-up, see
   `write_events`), the held rows, then the progress record;
6. ledger — one `ops.runs` row per table with the breakdown in `details`.

`--full-refresh` forgets the progress of the chosen tables and rebuilds them from all of
bronze, replacing silver, quarantine and held rows atomically (one overwrite each), so a
change-data-feed reader sees deletes and inserts, never a half-built table.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from core import console
from core.errors import EcomError, ValidationFailedError
from core.lake import LAYOUTS, last_commit, micros_to_datetime, register_table, table_path
from core.ledger import LayerRun, RunRecord
from core.locks import writer_lock
from core.settings import Settings
from core.spark import materialize
from silver import progress
from silver import rules as silver_rules
from silver import transforms as tf
from silver.contracts import PROCESSING_ORDER, TABLES, SilverTable
from silver.progress import lock_name

LAYER = "silver"
HELD_TABLES = frozenset({"orders", "order_items"})  # tables whose rows can wait for another table
# A batch of at most this many candidate rows looks its keys up in the stored tables by
# broadcast semi-joins: each stored table is read once and never shuffled (a sort-merge join
# shuffles all 10M stored events to match 10k new ones). A larger batch — a history load, a
# full refresh — joins the tables whole.
LOOKUP_MAX_ROWS = 500_000


def semi(df: DataFrame, keys: DataFrame, on: str, *, small: bool) -> DataFrame:
    """The rows of `df` whose `on` is among `keys`; broadcast when `keys` is `small`."""
    return df.join(F.broadcast(keys) if small else keys, on, "left_semi")


class ReconciliationError(EcomError):
    """Rows in and rows out of a silver table do not add up: nothing was written."""


def held_name(table: str) -> str:
    return f"_held_{table}"


def select_tables(tables: Sequence[str] | None) -> list[str]:
    """The tables to process, parents first; unknown names fail clearly."""
    if not tables:
        return list(PROCESSING_ORDER)
    unknown = [t for t in tables if t not in TABLES]
    if unknown:
        raise EcomError(f"unknown silver table(s) {', '.join(unknown)}: expected some of {', '.join(TABLES)}")
    return [t for t in PROCESSING_ORDER if t in tables]


# --- reading ---------------------------------------------------------------------------------------------
@dataclass
class Increment:
    """The bronze rows of one table that silver has not processed, at one bronze version."""

    table: str
    version: int | None  # bronze Delta version read; None when bronze has no such table
    previous_version: int | None  # the highest bronze version processed before
    runs: dict[str, int] = field(default_factory=dict)  # new bronze run id → rows
    df: DataFrame | None = None  # the raw bronze rows of those runs

    @property
    def rows(self) -> int:
        return sum(self.runs.values())


def _is_delta(spark: SparkSession, path: str) -> bool:
    from delta.tables import DeltaTable

    return bool(DeltaTable.isDeltaTable(spark, path))


class Job:
    """One silver run: its settings, logical time, and what it has read so far (read once)."""

    def __init__(
        self,
        spark: SparkSession,
        settings: Settings,
        *,
        run_id: str,
        as_of: datetime,
        refreshing: Sequence[str] = (),
    ) -> None:
        self.spark, self.settings, self.run_id = spark, settings, run_id
        self.as_of = as_of
        # Tables being rebuilt whose stored state is not rebuilt yet: it counts as empty.
        self.refreshing = set(refreshing)
        self.ctx = silver_rules.RuleContext(as_of=as_of, total_tolerance=Decimal(settings.total_tolerance))
        self.grace = timedelta(hours=settings.orphan_grace_hours)
        self._increments: dict[str, Increment] = {}
        self._progress: dict[str, progress.Progress] | None = None
        self.processed: list[Increment] = []  # tables written this run, for `ops.silver_progress`

    # -- paths and stored tables ----------------------------------------------------------------------
    def path(self, database: str, table: str) -> str:
        return table_path(self.settings, database, table)

    def _stored(self, database: str, name: str, table: str, schema: T.StructType) -> DataFrame:
        """A stored table, or an empty one of its schema (missing, or being rebuilt)."""
        path = self.path(database, name)
        if table in self.refreshing or not _is_delta(self.spark, path):
            return self.spark.createDataFrame([], schema)
        return self.spark.read.format("delta").load(path)

    def silver(self, table: str) -> DataFrame:
        return self._stored("silver", table, table, TABLES[table].schema)

    def quarantine(self, table: str) -> DataFrame:
        return self._stored("quarantine", table, table, TABLES[table].quarantine_schema)

    def held(self, table: str) -> DataFrame:
        return self._stored("silver", held_name(table), table, TABLES[table].held_schema)

    def ids(self, df: DataFrame, key: str) -> DataFrame:
        return df.select(F.col(key).alias("id"))

    # -- bronze ---------------------------------------------------------------------------------------
    def increment(self, table: str) -> Increment:
        """The unprocessed bronze rows of `table` (computed once per run, so every step that
        needs them sees the same bronze version)."""
        if table not in self._increments:
            self._increments[table] = self._read_increment(table)
        return self._increments[table]

    def _read_increment(self, table: str) -> Increment:
        path = self.path("bronze", table)
        done = progress.Progress(frozenset(), None)
        if table not in self.refreshing:
            if self._progress is None:
                self._progress = progress.read_progress(self.spark, self.settings)
            done = self._progress.get(table, done)
        if not _is_delta(self.spark, path):
            return Increment(table, None, done.bronze_version)
        version = last_commit(self.spark, path)[0]
        if done.bronze_version is not None and version <= done.bronze_version:
            return Increment(table, version, done.bronze_version)  # nothing committed since
        snapshot = self.spark.read.format("delta").option("versionAsOf", version).load(path)
        counts = {r["_run_id"]: int(r["n"]) for r in snapshot.groupBy("_run_id").agg(F.count("*").alias("n")).collect()}
        runs = {run: n for run, n in counts.items() if run not in done.run_ids}
        if not runs:
            df = None
        elif not done.run_ids:
            df = snapshot  # first run or full refresh: all of bronze
        else:
            df = snapshot.where(F.col("_run_id").isin(*runs))
        return Increment(table, version, done.bronze_version, runs, df)

    def conformed_increment(self, table: str) -> DataFrame:
        inc = self.increment(table)
        if inc.df is None:
            return self.spark.createDataFrame([], TABLES[table].held_schema).select(*_candidate_columns(table))
        return inc.df.transform(tf.conform(table)).withColumn("_run_id", F.lit(self.run_id))

    # -- cross-table facts ----------------------------------------------------------------------------
    def order_lines(self, order_ids: DataFrame, *, small: bool) -> DataFrame:
        """Every line of the orders `order_ids` that the lake knows: silver's, held ones and
        unprocessed bronze ones (latest version each, with `_is_countable`)."""
        cols = [*TABLES["order_items"].columns, "_change_version", "_ingested_at"]
        every_line = (
            self.silver("order_items")
            .select(*cols)
            .unionByName(self.held("order_items").select(*cols))
            .unionByName(self.conformed_increment("order_items").select(*cols))
        )
        # Every version of the lines that name one of the orders (a line could move orders).
        touched = semi(every_line, order_ids.select("order_id").distinct(), "order_id", small=small)
        lines = semi(every_line, touched.select("order_item_id").distinct(), "order_item_id", small=small)
        known_products = (
            self.ids(self.silver("products"), "product_id")
            .unionByName(self.ids(self.quarantine("products"), "product_id"))
            .unionByName(self.ids(self.conformed_increment("products"), "product_id"))
        )
        return tf.countable_lines(lines, known_products, self.ctx)

    def parent_states(self, df: DataFrame, *, small: bool) -> DataFrame:
        """`_order_state` and `_product_state` of order lines (after this run's parents)."""
        if small:  # only the orders these lines name
            orders = df.select(F.col("order_id").alias("id")).distinct()
            accepted = semi(self.ids(self.silver("orders"), "order_id"), orders, "id", small=True)
            rejected = semi(self.ids(self.quarantine("orders"), "order_id"), orders, "id", small=True)
        else:
            accepted, rejected = (
                self.ids(self.silver("orders"), "order_id"),
                self.ids(self.quarantine("orders"), "order_id"),
            )
        return df.transform(tf.with_parent_state("order_id", "_order_state", accepted, rejected)).transform(
            tf.with_parent_state(
                "product_id",
                "_product_state",
                self.ids(self.silver("products"), "product_id"),
                self.ids(self.quarantine("products"), "product_id"),
            )
        )


def _candidate_columns(table: str) -> list[str]:
    return [*TABLES[table].columns, "_change_version", "_ingested_at", "_run_id"]


# --- classifying one table --------------------------------------------------------------------------------
def classify(job: Job, table: str, *, with_held: bool, small: bool) -> DataFrame:
    """Every candidate row (new bronze rows, and the held ones when `with_held`) with its
    `_outcome` and `_reasons`; lazy, not yet materialised. A `small` batch reads only the
    stored rows of its keys."""
    spec = TABLES[table]
    cols = _candidate_columns(table)
    candidates = (
        job.conformed_increment(table)
        .select(*cols)
        .withColumn("_held_since", F.lit(None).cast(T.TimestampType()))
        .withColumn("_origin", F.lit(tf.FROM_BRONZE))
    )
    if with_held:
        candidates = candidates.unionByName(
            job.held(table).select(*cols, "_held_since").withColumn("_origin", F.lit(tf.FROM_HELD))
        )
    candidates = candidates.withColumn("_run_id", F.lit(job.run_id))
    if table == "clickstream_events":
        stored = (
            job.silver(table)
            .select("event_id", "event_seq")
            .unionByName(job.quarantine(table).select("event_id", "event_seq"))
        )
    else:
        stored = job.silver(table).select(spec.key, spec.clock, "_change_version")
    if small:
        stored = semi(stored, candidates.select(spec.key).distinct(), spec.key, small=True)
    df = candidates.transform(tf.with_version_rank(spec)).transform(tf.with_current_flag(spec, stored))
    if table == "orders":
        df = df.transform(tf.with_order_lines(job.order_lines(candidates, small=small)))
    elif table == "order_items":
        df = job.parent_states(df, small=small)
    return df.transform(tf.with_reasons(silver_rules.RULES[table](job.ctx))).transform(
        tf.with_outcome(job.ctx, job.grace)
    )


def reconcile(table: str, counts: dict[tuple[str, str], int], bronze_in: int, held_in: int) -> dict[str, Any]:
    """The breakdown of rows in → rows out; raise `ReconciliationError` when it does not add up."""

    def n(origin: str, outcome: str) -> int:
        return counts.get((origin, outcome), 0)

    b, h = tf.FROM_BRONZE, tf.FROM_HELD
    breakdown = {
        "bronze_rows_in": bronze_in,
        "superseded": n(b, tf.SUPERSEDED),
        "duplicates_dropped": n(b, tf.DUPLICATE),
        "already_current": n(b, tf.CURRENT),
        "quarantined": n(b, tf.QUARANTINED),
        "held_back": n(b, tf.HELD),
        "upserted": n(b, tf.VALID),
        "held_rows_in": held_in,
        "held_released": n(h, tf.VALID),
        "held_quarantined": n(h, tf.QUARANTINED),
        "held_still": n(h, tf.HELD),
        "held_superseded": n(h, tf.SUPERSEDED) + n(h, tf.CURRENT) + n(h, tf.DUPLICATE),
    }
    bronze_out = sum(n(b, o) for o in tf.OUTCOMES)
    held_out = sum(n(h, o) for o in tf.OUTCOMES)
    unknown = {k: v for k, v in counts.items() if k[0] not in (b, h) or k[1] not in tf.OUTCOMES}
    if bronze_out != bronze_in or held_out != held_in or unknown:
        raise ReconciliationError(
            f"silver.{table}: rows do not add up, nothing was written — expected {bronze_in} bronze row(s) = "
            f"superseded + duplicates + already current + quarantined + held back + upserted, found {bronze_out}; "
            f"expected {held_in} held row(s) in, found {held_out}; breakdown {json.dumps(breakdown)}"
            + (f"; unknown outcomes {unknown}" if unknown else "")
        )
    return breakdown


# --- writing ----------------------------------------------------------------------------------------------
def _create_or_replace(df: DataFrame, path: str, schema: T.StructType, *, change_feed: bool) -> None:
    """Write `df` as the whole table in one commit (a new table gets the contract's schema and,
    for silver, the change data feed that gold reads)."""
    writer = df.select(*schema.fieldNames()).write.format("delta").mode("overwrite").option("overwriteSchema", "true")
    if change_feed:
        writer = writer.option("delta.enableChangeDataFeed", "true")
    writer.save(path)


def write_quarantine(job: Job, spec: SilverTable, rows: DataFrame, *, overwrite: bool) -> None:
    """Rejected rows, once per (key, version): a rerun of the same bronze rows adds nothing."""
    from delta.tables import DeltaTable

    path = job.path("quarantine", spec.name)
    out = rows.select(*spec.quarantine_schema.fieldNames())
    if overwrite or not _is_delta(job.spark, path):
        _create_or_replace(out, path, spec.quarantine_schema, change_feed=False)
        return
    cond = f"t.{spec.key} <=> s.{spec.key} AND t._change_version <=> s._change_version"
    DeltaTable.forPath(job.spark, path).alias("t").merge(out.alias("s"), cond).whenNotMatchedInsertAll().execute()


def write_silver(job: Job, spec: SilverTable, rows: DataFrame, *, overwrite: bool) -> None:
    """Upsert the latest valid versions: a key is updated only by a newer version."""
    from delta.tables import DeltaTable

    path = job.path("silver", spec.name)
    out = rows.select(*spec.schema.fieldNames())
    if overwrite or not _is_delta(job.spark, path):
        _create_or_replace(out, path, spec.schema, change_feed=True)
        return
    (
        DeltaTable.forPath(job.spark, path)
        .alias("t")
        .merge(out.alias("s"), f"t.{spec.key} = s.{spec.key}")
        .whenMatchedUpdateAll(condition=tf.is_newer(spec))
        .whenNotMatchedInsertAll()
        .execute()
    )


EVENTS_LAYOUT = LAYOUTS[("silver", "clickstream_events")]
# Below the earliest re-assigned event: Delta keeps timestamp statistics at millisecond precision.
SKIP_MARGIN = timedelta(seconds=1)


def write_events(job: Job, rows: DataFrame, *, rows_count: int, new_count: int, overwrite: bool) -> str:
    """New events, and the new `session_id` of stored events whose session changed; how they
    were written ("created", "rewritten", "appended" or "merged").

    The table is kept in event time (`EVENTS_LAYOUT`): a rebuild writes it in event_ts ranges,
    and each batch's new events (an hour or so) land in files of their own. A session changes
    only around new events, so the MERGE names the earliest event time it re-assigns
    (`t.event_ts >= …`): Delta's data skipping then reads and rewrites only the files of that
    time range, not the whole table. New events never match a stored one (an
    event_id already in silver or quarantine is classified current or duplicate), so the bound
    cannot turn a match into an insert. With no stored event re-assigned, the new events are
    simply appended.

    A catch-up — more new events than the table holds (a history load, a backlog after an
    outage) — rewrites the whole table in event-time ranges instead, in one commit: a MERGE
    would write its inserts hashed by event_id, each file spanning the whole period, and every
    later cycle's MERGE would then read and rewrite all of them (at 10M events: 2.2M rows copied
    by the first cycle, 4.5M by the second, against 0.25M on a ranged table: synthetic events,
    2026-11-27). Each run's ledger row records a MERGE's copied rows (`rows_copied`).
    """
    from delta.tables import DeltaTable

    spec = TABLES["clickstream_events"]
    path = job.path("silver", spec.name)
    out = rows.select(*spec.schema.fieldNames())
    if overwrite or not _is_delta(job.spark, path):
        _create_ranged(out, path, rows_count)
        return "created"
    stored = job.spark.read.format("delta").load(path)
    stored_count = stored.count()  # from the Delta log's file statistics
    if new_count > stored_count:
        # Stored events not re-assigned, and the promoted rows (new events, re-assigned ones).
        whole = stored.join(out.select("event_id"), "event_id", "left_anti").select(*out.columns).unionByName(out)
        _create_ranged(whole, path, stored_count + new_count)
        return "rewritten"
    earliest = rows.where(~F.col("_is_new")).agg(F.min(F.unix_micros("event_ts"))).collect()[0][0]
    if earliest is None:
        out.write.format("delta").mode("append").save(path)
        return "appended"
    start = micros_to_datetime(earliest)
    assert start is not None  # a re-assigned event has a time
    bound = (start - SKIP_MARGIN).isoformat(sep=" ")
    (
        DeltaTable.forPath(job.spark, path)
        .alias("t")
        .merge(out.alias("s"), f"t.event_id = s.event_id AND t.event_ts >= TIMESTAMP '{bound}'")
        .whenMatchedUpdate(
            condition="NOT (t.session_id <=> s.session_id)",
            set={"session_id": "s.session_id", "_run_id": "s._run_id"},
        )
        .whenNotMatchedInsertAll()
        .execute()
    )
    return "merged"


def _create_ranged(df: DataFrame, path: str, rows_count: int) -> None:
    """The whole events table in one commit, in event-time ranges of about `rows_per_file` rows."""
    files = max(1, -(-rows_count // EVENTS_LAYOUT.rows_per_file))
    ranged = df.repartitionByRange(files, EVENTS_LAYOUT.order_by, "event_id")
    _create_or_replace(ranged, path, TABLES["clickstream_events"].schema, change_feed=True)


def write_held(job: Job, spec: SilverTable, rows: DataFrame) -> None:
    """Replace the held rows of the table (few rows; one atomic overwrite)."""
    path = job.path("silver", held_name(spec.name))
    out = rows.withColumn("_held_since", F.coalesce(F.col("_held_since"), F.lit(job.as_of).cast(T.TimestampType())))
    out.select(*spec.held_schema.fieldNames()).write.format("delta").mode("overwrite").option(
        "overwriteSchema", "true"
    ).save(path)


def _gate(job: Job, table: str, candidate_df: DataFrame, rows: int, rec: RunRecord) -> None:
    """The `silver` checkpoint on the rows about to be promoted (write–audit–publish: it raises
    `GateFailedError` before anything of the table is written)."""
    from expectations import gate

    facts: dict[str, Any] = {"expected_rows": rows}
    if table == "order_items":
        facts["references"] = {
            "order_id": job.silver("orders").select("order_id"),
            "product_id": job.silver("products").select("product_id"),
        }
    try:
        with rec.phase("gate"):  # as every layer: the checkpoint's share (make bench)
            gate(job.spark, job.settings, layer=LAYER, table=table, df=candidate_df, run_id=job.run_id, extra=facts)
    except ValidationFailedError:
        rec.checkpoint = "failed"
        raise
    rec.checkpoint = "passed"


# --- sessions -----------------------------------------------------------------------------------------------
def sessionise(job: Job, new_events: DataFrame, *, small: bool) -> DataFrame:
    """New events plus stored events whose session changes, each with its `session_id`.

    Sessions are recomputed from ALL events of every visitor the new events touch, so the
    result equals a full recomputation (`_is_new` marks the inserts)."""
    touched = new_events.select("visitor_id").distinct()
    stored = semi(job.silver("clickstream_events"), touched, "visitor_id", small=small)
    everything = (
        stored.withColumn("_is_new", F.lit(False))
        .withColumn("_old_session", F.col("session_id"))
        .unionByName(
            new_events.select(*stored.columns)
            .withColumn("_is_new", F.lit(True))
            .withColumn("_old_session", F.lit(None).cast(T.StringType()))
        )
    )
    return (
        everything.transform(tf.with_sessions(job.settings.session_gap_minutes))
        .where(F.col("_is_new") | ~F.col("session_id").eqNullSafe(F.col("_old_session")))
        .withColumn("_run_id", F.lit(job.run_id))
    )


# --- one table ------------------------------------------------------------------------------------------------
def process_table(job: Job, rec: RunRecord) -> None:
    table = rec.table_name
    spec = TABLES[table]
    full_refresh = table in job.refreshing
    with rec.phase("increment"):
        inc = job.increment(table)
    rec.watermark_from = None if inc.previous_version is None else str(inc.previous_version)
    rec.watermark_to = None if inc.version is None else str(inc.version)
    if inc.version is None:
        rec.finish("skipped", f"bronze.{table} does not exist yet: run `ecom run bronze` first")
        console.warn(f"silver.{table}: {rec.message}")
        return

    held_in = job.held(table).count() if table in HELD_TABLES else 0
    if not inc.runs and not held_in and not full_refresh:
        rec.details.update(bronze_rows_in=0, bronze_version=inc.version)
        rec.finish("succeeded", "no new bronze rows")
        console.ok(f"silver.{table}: nothing new in bronze (v{inc.version})")
        return

    # One materialisation, so that the counts and every write see the same rows.
    with rec.phase("classify"):
        small = not full_refresh and inc.rows + held_in <= LOOKUP_MAX_ROWS
        batch = materialize(classify(job, table, with_held=held_in > 0, small=small))
    counts = {
        (r["_origin"], r["_outcome"]): int(r["n"])
        for r in batch.groupBy("_origin", "_outcome").agg(F.count("*").alias("n")).collect()
    }
    breakdown = reconcile(table, counts, inc.rows, held_in)

    def total(outcome: str) -> int:
        return counts.get((tf.FROM_BRONZE, outcome), 0) + counts.get((tf.FROM_HELD, outcome), 0)

    n_valid, n_quarantined, n_held = total(tf.VALID), total(tf.QUARANTINED), total(tf.HELD)
    valid = batch.where(F.col("_outcome") == tf.VALID)
    if table == "clickstream_events":
        # What will be written: the new events and the stored ones whose session changes.
        with rec.phase("sessionise"):
            promoted = materialize(sessionise(job, valid, small=small))
        n_promoted = promoted.count()
        breakdown["sessions_reassigned"] = n_promoted - n_valid
    else:
        promoted, n_promoted = valid, n_valid
    if n_promoted:
        _gate(job, table, promoted.select(*spec.schema.fieldNames()), n_promoted, rec)

    if n_quarantined or full_refresh:
        quarantined = batch.where(F.col("_outcome") == tf.QUARANTINED).withColumn(
            "_quarantined_at", F.lit(job.as_of).cast(T.TimestampType())
        )
        with rec.phase("write"):
            write_quarantine(job, spec, quarantined, overwrite=full_refresh)
    wrote = (n_promoted if table == "clickstream_events" else n_valid) > 0 or full_refresh
    if table == "clickstream_events":
        if wrote:
            with rec.phase("write"):
                breakdown["events_written"] = write_events(
                    job, promoted, rows_count=n_promoted, new_count=n_valid, overwrite=full_refresh
                )
    elif wrote:
        with rec.phase("write"):
            write_silver(job, spec, valid, overwrite=full_refresh)
            _check_written(job, spec, n_valid)
    # The held rows change when a new row is held, a held one leaves, or the table is rebuilt.
    held_changed = counts.get((tf.FROM_BRONZE, tf.HELD), 0) > 0 or counts.get((tf.FROM_HELD, tf.HELD), 0) != held_in
    rebuilt = full_refresh and _is_delta(job.spark, job.path("silver", held_name(table)))
    if table in HELD_TABLES and (held_changed or rebuilt):
        with rec.phase("write"):
            write_held(job, spec, batch.where(F.col("_outcome") == tf.HELD))

    job.processed.append(inc)
    _register(job, table)
    silver_path = job.path("silver", table)
    if _is_delta(job.spark, silver_path):
        rec.delta_version, metrics = last_commit(job.spark, silver_path)
        if wrote and "numTargetRowsCopied" in metrics:  # this run's MERGE: the unchanged rows it rewrote
            breakdown["rows_copied"] = int(metrics["numTargetRowsCopied"])
    rec.rows_in = inc.rows
    rec.rows_out = n_valid
    rec.rows_quarantined = n_quarantined
    rec.details.update(breakdown, bronze_version=inc.version, bronze_runs=sorted(inc.runs), full_refresh=full_refresh)
    rec.finish("succeeded")
    console.ok(
        f"silver.{table}: {inc.rows:,} bronze row(s) → {n_valid:,} upserted, {n_quarantined:,} quarantined, "
        f"{n_held:,} held, {breakdown['superseded']:,} superseded, {breakdown['duplicates_dropped']:,} duplicates, "
        f"{breakdown['already_current']:,} already current ({rec.seconds:.1f}s)"
    )


def _check_written(job: Job, spec: SilverTable, expected: int) -> None:
    """The write must have stored exactly the valid rows: each is new or newer (we hold the lock)."""
    _, metrics = last_commit(job.spark, job.path("silver", spec.name))
    if "numTargetRowsInserted" in metrics:  # a MERGE
        written = int(metrics["numTargetRowsInserted"]) + int(metrics.get("numTargetRowsUpdated", 0))
    else:  # the table's first write
        written = int(metrics.get("numOutputRows", 0))
    if written != expected:
        raise ReconciliationError(
            f"silver.{spec.name}: the write stored {written} row(s) but {expected} valid newer version(s) were "
            f"expected (metrics {metrics}); another writer may have changed the table during the run"
        )


def _register(job: Job, table: str) -> None:
    for database, name in (("silver", table), ("quarantine", table), ("silver", held_name(table))):
        if not job.spark.catalog.tableExists(f"{database}.`{name}`") and _is_delta(job.spark, job.path(database, name)):
            register_table(job.spark, job.settings, database, name)


# --- the layer ----------------------------------------------------------------------------------------------
def run(
    spark: SparkSession,
    settings: Settings,
    *,
    run_id: str,
    full_refresh: bool = False,
    tables: Sequence[str] | None = None,
    as_of: datetime | None = None,
) -> list[RunRecord]:
    """Process every (or the named) table; record each in `ops.runs`.

    `as_of` is the run's logical time (naive UTC; default now): rules and the grace period
    of held rows are judged against it. A table that fails with an expected error does not
    stop the others (its children wait in the held tables); the layer then raises.
    """
    names = select_tables(tables)
    if as_of is None:
        as_of = datetime.now(UTC)
    if as_of.tzinfo is not None:
        as_of = as_of.astimezone(UTC).replace(tzinfo=None)
    job = Job(spark, settings, run_id=run_id, as_of=as_of, refreshing=names if full_refresh else ())
    with LayerRun(spark, settings, LAYER, run_id) as layer_run:
        for table in names:
            with layer_run.table(table) as rec:
                with writer_lock(settings, lock_name(settings, f"{LAYER}.{table}")):
                    process_table(job, rec)
                job.refreshing.discard(table)  # rebuilt: later tables read its new state
        # The bronze runs of every table written (one commit; after a crash they are simply
        # processed again, which writes nothing new).
        progress.mark_processed(
            spark,
            settings,
            {inc.table: (inc.version or 0, inc.runs) for inc in job.processed},
            silver_run_id=run_id,
            processed_at=as_of,
            replace=full_refresh,
        )
    return layer_run.raise_failures()
