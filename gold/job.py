"""`ecom run gold`: silver → the gold marts, incrementally, equal to a full rebuild.

One run:

1. pin — the current Delta version of each silver table; every read below is at that
   version, so a silver run committing meanwhile is simply seen next time;
2. as of — the run's logical time is the newest silver clock (`updated_at` / `ingested_at`,
   the source database's clock) at those versions, unless given; no metric reads the wall
   clock;
3. per mart, each after the marts it reads (`Recipe.upstream`: customer_360 reads
   gold.sessions as this run left it, and is not built when sessions failed), holding the
   writer lock `gold.<mart>`:
   - plan — full when asked (`--full-refresh`), when the mart or its progress does not exist,
     when a silver table was recreated, restored or overwritten since the versions the mart
     consumed, or when the changes are half of what it would recompute or more
     (`FULL_REBUILD_SHARE`: a full build is then cheaper) — first by the rows silver's
     commits changed, before any scope is computed (a history load), then by the part of the
     scope the change feed alone gives (`Recipe.scope_floor`: daily_sales' days of changed
     orders), then by the scope's keys; else incremental;
   - incremental — the keys changed in each silver table since those versions (change data
     feed) → the gold keys they touch (`gold.marts.scope`, comparing the old and the new
     silver state; customer_360 also follows the change data feed of gold.sessions since the
     version it read last, and rebuilds in full when sessions was rebuilt) → those keys
     recomputed with the mart's own transform → gate → one MERGE that upserts them and
     deletes the ones left without a row. `customer_360` is rewritten
     whole (base columns kept, as-of columns re-derived) when the as-of date moved;
   - full — the mart's transform on all of silver → gate → overwrite;
4. ledger — one `ops.runs` row per mart: rows recomputed (in), rows written (out), Delta
   version, and in `details` the progress: the silver versions and table ids consumed
   (`silver_versions`, `silver_table_ids`), the versions of the marts read
   (`upstream_versions`) and the `as_of`. The next run starts from the
   mart's last succeeded row; a crash before the ledger append only replays the same
   changes, and recomputing a key from silver is idempotent.

The `gold` checkpoint (`expectations.gate`) judges the candidate rows before anything is
written, with the cross-table facts gold knows (`gate_facts`: every customer_360 row is a
silver customer, and every silver customer / session of the candidate's scope is in it); a
failure writes nothing for that mart, and `ecom run all` stops before publish.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import reduce
from typing import TYPE_CHECKING, Any

from pyspark.sql import DataFrame

from core import console
from core.errors import EcomError, ValidationFailedError
from core.lake import change_feed, last_commit, micros_to_datetime, register_table, table_path
from core.ledger import LayerRun, RunRecord
from core.locks import writer_lock
from core.schema import SOURCE_TABLES
from core.settings import Settings
from core.spark import materialize
from gold.marts.registry import RECIPES, Recipe
from gold.marts.scope import CHANGE_TYPE, SILVER_KEYS, Changes, SilverState

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

LAYER = "gold"
SILVER_TABLES: tuple[str, ...] = tuple(SILVER_KEYS)
PROGRESS_KEY = "silver_versions"  # in a gold ops.runs row's details: the silver versions it consumed
UPSTREAM_KEY = "upstream_versions"  # … and the versions of the marts it read (`Recipe.upstream`)
# Commits after which a change feed is no use: everything may have changed, rebuild instead.
REWRITING_OPERATIONS = frozenset(
    {
        "CREATE OR REPLACE TABLE",
        "REPLACE TABLE",
        "CREATE OR REPLACE TABLE AS SELECT",
        "REPLACE TABLE AS SELECT",
        "RESTORE",
        "TRUNCATE",
    }
)


# An incremental run that would recompute this share of a mart's keys rebuilds it instead.
FULL_REBUILD_SHARE = 0.5
# Per silver commit operation, the metrics that count the rows it changed (a MERGE's
# numOutputRows also counts the unchanged rows it copied, so it is not one of them).
CHANGED_ROW_METRICS: dict[str, tuple[str, ...]] = {
    "WRITE": ("numOutputRows",),
    "MERGE": ("numTargetRowsInserted", "numTargetRowsUpdated", "numTargetRowsDeleted"),
    "DELETE": ("numDeletedRows",),
    "UPDATE": ("numUpdatedRows",),
}


# --- pinned silver ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PinnedTable:
    """A silver table at the version this run reads."""

    name: str
    path: str
    table_id: str
    version: int


@dataclass(frozen=True)
class SilverHistory:
    """A silver table's commits since a version: a wholesale rewrite (why, if any) and the rows changed."""

    rewritten: str | None
    changed_rows: int


@dataclass(frozen=True)
class Progress:
    """What a mart consumed last: silver version and table id per table, and the as-of."""

    versions: dict[str, int]
    table_ids: dict[str, str]
    as_of: datetime | None
    upstream: dict[str, int] = field(default_factory=dict)  # upstream mart → the version it read


def select_marts(tables: Sequence[str] | None) -> list[str]:
    """The marts to build, each after the marts it reads (`Recipe.upstream`): all, or the named
    marts and the marts reading the named silver tables, with their upstream marts."""
    if not tables:
        return build_order(RECIPES)
    chosen: set[str] = set()
    unknown = []
    for name in tables:
        if name in RECIPES:
            chosen.add(name)
        elif name in SILVER_KEYS:
            chosen.update(m for m, r in RECIPES.items() if name in r.mart.sources)
        else:
            unknown.append(name)
    if unknown:
        raise EcomError(
            f"unknown gold table(s) {', '.join(unknown)}: expected marts ({', '.join(RECIPES)}) "
            f"or silver tables ({', '.join(SILVER_TABLES)})"
        )
    return build_order(chosen)


def build_order(chosen: Iterable[str]) -> list[str]:
    """`chosen` and the marts they read, each after its upstream marts, else in `RECIPES` order."""
    wanted, order = set(chosen), []

    def visit(name: str) -> None:
        if name not in order:
            for upstream in RECIPES[name].upstream:
                visit(upstream)
            order.append(name)

    for name in RECIPES:
        if name in wanted:
            visit(name)
    return order


def pin_silver(spark: SparkSession, settings: Settings) -> dict[str, PinnedTable]:
    """The current version and table id of every silver table; a clear error when one is missing."""
    from delta.tables import DeltaTable

    pinned = {}
    for name in SILVER_TABLES:
        path = table_path(settings, "silver", name)
        if not DeltaTable.isDeltaTable(spark, path):
            raise EcomError(f"silver.{name} does not exist at {path}: run `ecom run silver` first")
        table = DeltaTable.forPath(spark, path)
        version = int(table.history(1).select("version").collect()[0][0])
        table_id = str(table.detail().select("id").collect()[0][0])
        pinned[name] = PinnedTable(name, path, table_id, version)
    return pinned


def business_columns(df: DataFrame) -> DataFrame:
    """Silver's business columns: lineage and other `_` columns dropped."""
    return df.select(*[c for c in df.columns if not c.startswith("_")])


def read_state(spark: SparkSession, pinned: dict[str, PinnedTable], versions: dict[str, int]) -> SilverState:
    frames = {
        name: business_columns(spark.read.format("delta").option("versionAsOf", versions[name]).load(t.path))
        for name, t in pinned.items()
    }
    return SilverState.of(frames)


def logical_time(state: SilverState) -> datetime | None:
    """The newest source-database clock in silver (UTC, naive): the run's "as of"."""
    from pyspark.sql import functions as F

    maxima = [
        getattr(state, name).select(F.max(F.unix_micros(SOURCE_TABLES[name].clock)).alias("us"))
        for name in SILVER_TABLES
    ]
    return micros_to_datetime(reduce(lambda a, b: a.unionByName(b), maxima).agg(F.max("us")).first()[0])


# --- progress: the ledger -------------------------------------------------------------------------
def read_progress(spark: SparkSession, settings: Settings) -> dict[str, Progress]:
    """Per mart, what its last succeeded run consumed, from that run's `ops.runs` details."""
    from delta.tables import DeltaTable
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    path = table_path(settings, "ops", "runs")
    if not DeltaTable.isDeltaTable(spark, path):
        return {}
    latest = Window.partitionBy("table_name").orderBy(F.col("ended_at").desc(), F.col("run_id").desc())
    rows = (
        spark.read.format("delta")
        .load(path)
        .where(
            (F.col("layer") == LAYER)
            & (F.col("status") == "succeeded")
            & F.get_json_object("details", f"$.{PROGRESS_KEY}").isNotNull()  # runs that recorded progress
        )
        .withColumn("_rank", F.row_number().over(latest))
        .where("_rank = 1")
        .select("table_name", "details")
        .collect()
    )
    out = {}
    for row in rows:
        details = json.loads(row.details)
        as_of = details.get("as_of")
        out[row.table_name] = Progress(
            versions={t: int(v) for t, v in details[PROGRESS_KEY].items()},
            table_ids=dict(details.get("silver_table_ids", {})),
            as_of=datetime.fromisoformat(as_of) if as_of else None,
            upstream={m: int(v) for m, v in details.get(UPSTREAM_KEY, {}).items()},
        )
    return out


# --- one run's shared state ------------------------------------------------------------------------
@dataclass
class GoldRun:
    spark: SparkSession
    settings: Settings
    run_id: str
    pinned: dict[str, PinnedTable]
    new: SilverState
    as_of_given: datetime | None
    progress: dict[str, Progress]
    _changes: dict[tuple[tuple[str, int], ...], tuple[Changes, SilverState, dict[str, int]]] = field(
        default_factory=dict
    )
    _histories: dict[tuple[str, int], SilverHistory] = field(default_factory=dict)
    _rows: dict[str, int] = field(default_factory=dict)
    _mart_keys: dict[str, int] = field(default_factory=dict)
    built: dict[str, int] = field(default_factory=dict)  # mart → the Delta version this run left it at

    _as_of: list[datetime | None] = field(default_factory=list)

    @property
    def as_of(self) -> datetime | None:
        """The logical time: given, else the newest silver clock (computed once, when first needed)."""
        if not self._as_of:
            value = self.as_of_given if self.as_of_given is not None else logical_time(self.new)
            self._as_of.append(value)
            console.step(f"gold: as of {value.isoformat() if value else 'n/a (silver is empty)'}")
        return self._as_of[0]

    @property
    def versions(self) -> dict[str, int]:
        return {name: t.version for name, t in self.pinned.items()}

    def history_since(self, name: str, start: int) -> SilverHistory:
        """What silver table `name` committed after version `start`, up to the pinned version:
        its first wholesale rewrite if any, and the rows its commits changed (from their
        operation metrics: no data is read)."""
        from delta.tables import DeltaTable

        key = (name, start)
        if key not in self._histories:
            pinned = self.pinned[name]
            rewritten, changed = None, 0
            if pinned.version > start:
                table = DeltaTable.forPath(self.spark, pinned.path)
                latest = int(table.history(1).select("version").collect()[0][0])  # silver may have moved on
                history = table.history(latest - start).select(
                    "version", "operation", "operationParameters", "operationMetrics"
                )
                for row in sorted(history.collect(), key=lambda r: r.version):
                    if row.version <= start or row.version > pinned.version:
                        continue
                    mode = (row.operationParameters or {}).get("mode")
                    if rewritten is None and (
                        row.operation in REWRITING_OPERATIONS or (row.operation == "WRITE" and mode == "Overwrite")
                    ):
                        rewritten = f"silver.{name} was rewritten at v{row.version} ({row.operation})"
                    metrics = row.operationMetrics or {}
                    changed += sum(int(metrics.get(m, 0)) for m in CHANGED_ROW_METRICS.get(row.operation, ()))
            self._histories[key] = SilverHistory(rewritten, changed)
        return self._histories[key]

    def rows(self, name: str) -> int:
        """Rows of silver table `name` at the pinned version (Delta counts them from its log)."""
        if name not in self._rows:
            self._rows[name] = getattr(self.new, name).count()
        return self._rows[name]

    def mart_keys(self, recipe: Recipe, path: str) -> int:
        """The scope keys gold.<mart> holds, as this run found it (counted once)."""
        name = recipe.mart.name
        if name not in self._mart_keys:
            mart, stored = recipe.mart, self.spark.read.format("delta").load(path)
            self._mart_keys[name] = (
                stored.count() if mart.scope == mart.key else stored.select(*mart.scope).distinct().count()
            )
        return self._mart_keys[name]

    def changes_since(self, start: dict[str, int]) -> tuple[Changes, SilverState, dict[str, int]]:
        """The changes per silver table in (start, pinned] — every row image of its change data
        feed, business columns and `_change_type`, materialised once —, the silver state at
        `start`, and the number of changed keys per table."""
        from pyspark.sql import functions as F

        cache_key = tuple(sorted(start.items()))
        if cache_key not in self._changes:
            frames = {}
            counts = dict.fromkeys(SILVER_KEYS, 0)
            for name, pinned in self.pinned.items():
                columns = [*getattr(self.new, name).columns, CHANGE_TYPE]
                if start[name] >= pinned.version:
                    frames[name] = getattr(self.new, name).limit(0).withColumn(CHANGE_TYPE, F.lit(None).cast("string"))
                    continue
                feed = (
                    self.spark.read.format("delta")
                    .option("readChangeFeed", "true")
                    .option("startingVersion", start[name] + 1)
                    .option("endingVersion", pinned.version)
                    .load(pinned.path)
                )
                frames[name] = materialize(feed.select(*columns))
                counts[name] = frames[name].select(SILVER_KEYS[name]).distinct().count()
            old = read_state(self.spark, self.pinned, start)
            self._changes[cache_key] = (Changes.of(frames), old, counts)
        return self._changes[cache_key]


# --- writing ---------------------------------------------------------------------------------------
def gate_facts(run: GoldRun, name: str, scope_df: DataFrame | None) -> dict[str, Any]:
    """The cross-table facts of a mart's checkpoint (`expectations.suites.Facts`), from the
    pinned silver state: `references` — every mart key is a silver key; `covers` — every
    silver key is in the mart. A candidate that is the whole table (`scope_df` None: a full
    build, or customer_360 re-derived for a new as-of) must cover all of silver; an
    incremental candidate, the silver rows of its scope."""

    from pyspark.sql import functions as F

    def in_scope(df: DataFrame) -> DataFrame:
        return df if scope_df is None else df.join(F.broadcast(scope_df), list(RECIPES[name].mart.scope), "left_semi")

    if name == "customer_360":
        customers = run.new.customers.select("customer_id")
        return {"references": {"customer_id": customers}, "covers": {"customer_id": in_scope(customers)}}
    if name == "sessions":
        return {"covers": {"session_id": in_scope(run.new.clickstream_events.select("session_id"))}}
    return {}


def gate(run: GoldRun, table: str, candidate_df: DataFrame, rec: RunRecord, *, scope_df: DataFrame | None) -> None:
    """The `gold` checkpoint on the candidate rows, before they are written (write–audit–publish:
    a failure raises `GateFailedError` after the alert, and the mart is left as it was)."""
    from expectations import gate as run_gate

    try:
        run_gate(
            run.spark,
            run.settings,
            layer=LAYER,
            table=table,
            df=candidate_df,
            run_id=run.run_id,
            delta_version=None,
            extra=gate_facts(run, table, scope_df),
        )
    except ValidationFailedError:
        rec.checkpoint = "failed"
        raise
    rec.checkpoint = "passed"


# A gold mart is merged a few keys at a time and published by what changed:
# - deletion vectors: a MERGE marks the rows it replaces instead of rewriting every file that
#   holds one (2,700 keys into 1M rows: 4 s and no row copied, against 6–8 s copying 997k);
# - the change data feed, which publish follows (`gold.publish.feed_changes`).
# Their readers are Spark (gold, publish, `ecom sql`); the warehouse gets plain rows. Silver
# tables keep no deletion vectors: with them (2026-11-27, 1M orders) silver's MERGEs copied no
# row, but every gold read of silver slowed down, and incremental gold took 107 s against 66 s.
MART_PROPERTIES = {"delta.enableDeletionVectors": "true", "delta.enableChangeDataFeed": "true"}
# Commits after which a mart's change data feed gives each changed key's images (publish
# takes the last, customer_360 the customers of all): MERGEs (a key is matched once per
# commit) and commits that change no row. A rebuild's overwrite holds every row twice
# (deleted and inserted in one commit): its readers compare, or rebuild, instead.
FEED_OPERATIONS = frozenset({"MERGE", "SET TBLPROPERTIES", "OPTIMIZE", "VACUUM START", "VACUUM END"})


def overwrite(candidate_df: DataFrame, path: str) -> None:
    """Write a mart whole (a new table is created with `MART_PROPERTIES`)."""
    (
        candidate_df.write.format("delta")
        .mode("overwrite")
        .option("overwriteSchema", "true")
        .options(**MART_PROPERTIES)
        .save(path)
    )


def with_mart_properties(spark: SparkSession, path: str) -> None:
    """Turn `MART_PROPERTIES` on for a mart created without them (a lake built before they
    were used: an overwrite does not change an existing table's properties). One metadata
    read; an `ALTER TABLE` only the first time."""
    from delta.tables import DeltaTable

    properties = DeltaTable.forPath(spark, path).detail().select("properties").collect()[0][0] or {}
    missing = {k: v for k, v in MART_PROPERTIES.items() if properties.get(k) != v}
    if missing:
        settings = ", ".join(f"'{k}' = '{v}'" for k, v in missing.items())
        spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ({settings})")


def merge_scope(spark: SparkSession, path: str, recipe: Recipe, candidate_df: DataFrame, scope_df: DataFrame) -> None:
    """One MERGE: upsert the recomputed rows; delete the stored rows of the scope left without
    one. When the scope is the mart's key (all marts but daily_sales), those are the scope's keys
    without a recomputed row, and the mart is not scanned for them: a deletion that matches no
    stored row does nothing."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    mart = recipe.mart
    keys = list(mart.key)
    with_mart_properties(spark, path)
    target = DeltaTable.forPath(spark, path)
    if set(mart.scope) == set(keys):
        in_scope = scope_df.select(*keys)
    else:
        in_scope = target.toDF().select(*keys).join(F.broadcast(scope_df), list(mart.scope), "left_semi")
    gone = in_scope.join(F.broadcast(candidate_df.select(*keys)), keys, "left_anti")
    source = candidate_df.withColumn("_is_deleted", F.lit(False)).unionByName(
        gone.withColumn("_is_deleted", F.lit(True)), allowMissingColumns=True
    )
    values = {c: f"s.`{c}`" for c in mart.column_names}
    (
        target.alias("t")
        .merge(source.alias("s"), " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys))
        .whenMatchedDelete(condition="s._is_deleted")
        .whenMatchedUpdate(set=values)  # type: ignore[arg-type]  # str-only dict: delta's stub is invariant
        .whenNotMatchedInsert(condition="NOT s._is_deleted", values=values)  # type: ignore[arg-type]
        .execute()
    )


def upstream_changes(run: GoldRun, name: str) -> tuple[dict[str, DataFrame], str | None]:
    """Per mart that `name` reads (`Recipe.upstream`), the row images of its change data feed
    since the version `name` read last up to the one this run left it at — or why there are
    none to follow (then `name` rebuilds in full)."""
    done = run.progress[name]
    out = {}
    for upstream in RECIPES[name].upstream:
        consumed, built = done.upstream.get(upstream), run.built[upstream]
        if consumed is None:
            return {}, f"no version of gold.{upstream} recorded for gold.{name}"
        if built < consumed:
            return {}, f"gold.{upstream} is at v{built}, behind the v{consumed} gold.{name} read"
        path = table_path(run.settings, LAYER, upstream)
        feed = change_feed(run.spark, path, consumed, built, FEED_OPERATIONS, list(RECIPES[upstream].mart.column_names))
        if feed is None:
            return (
                {},
                f"gold.{upstream} was rebuilt since the v{consumed} gold.{name} read (or its change feed is gone)",
            )
        out[upstream] = feed
    return out, None


def _versions_text(versions: dict[str, int]) -> str:
    return ",".join(f"{name}={v}" for name, v in versions.items())


def _as_of_date(value: datetime | None) -> date | None:
    return None if value is None else value.date()


# --- one mart --------------------------------------------------------------------------------------
def plan(run: GoldRun, name: str, *, full_refresh: bool) -> tuple[str, str, dict[str, int] | None]:
    """("full" | "incremental", why, the silver versions consumed last)."""
    from delta.tables import DeltaTable

    if full_refresh:
        return "full", "--full-refresh", None
    if not DeltaTable.isDeltaTable(run.spark, table_path(run.settings, LAYER, name)):
        return "full", f"gold.{name} does not exist yet", None
    done = run.progress.get(name)
    if done is None or set(done.versions) != set(SILVER_TABLES):
        return "full", f"no progress recorded for gold.{name}", None
    for table, pinned in run.pinned.items():
        if done.table_ids[table] != pinned.table_id:
            return "full", f"silver.{table} was recreated since the last gold run", None
        if done.versions[table] > pinned.version:
            return "full", f"silver.{table} is at v{pinned.version}, behind the consumed v{done.versions[table]}", None
        rewritten = run.history_since(table, done.versions[table]).rewritten
        if rewritten:
            return "full", rewritten, None
    sources = RECIPES[name].mart.sources
    changed = sum(run.history_since(t, done.versions[t]).changed_rows for t in sources)
    size = sum(run.rows(t) for t in sources)
    if size and changed >= FULL_REBUILD_SHARE * size:
        # A history load: finding its scope would cost more than the rebuild it leads to.
        reason = (
            f"silver changed {changed:,} row(s) since, of the {size:,} it reads "
            f"(≥ {FULL_REBUILD_SHARE:.0%}): rebuilding in full"
        )
        return "full", reason, None
    return "incremental", "changes since the last gold run", dict(done.versions)


def too_wide(run: GoldRun, recipe: Recipe, path: str, scope_keys: int, *, at_least: bool = False) -> str | None:
    """Why rebuilding in full is cheaper, when the changes touch `FULL_REBUILD_SHARE` or more of
    the mart's scope keys (a history load, or status moves spread over every day): a MERGE of
    most of a table costs more than writing it anew, and the result is the same. `at_least`:
    `scope_keys` counts a part of the scope (`Recipe.scope_floor`)."""
    mart, keys = recipe.mart, run.mart_keys(recipe, path)
    if keys and scope_keys >= FULL_REBUILD_SHARE * keys:
        return (
            f"the changes touch {'at least ' if at_least else ''}{scope_keys:,} of its {keys:,} "
            f"{'/'.join(mart.scope)} keys "
            f"(≥ {FULL_REBUILD_SHARE:.0%}): rebuilding in full"
        )
    return None


def build_mart(run: GoldRun, rec: RunRecord, *, full_refresh: bool) -> None:
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException
    from pyspark.sql import functions as F

    name = rec.table_name
    recipe = RECIPES[name]
    path = table_path(run.settings, LAYER, name)
    missing = [f"gold.{m}" for m in recipe.upstream if m not in run.built]
    if missing:
        raise EcomError(f"gold.{name} reads {', '.join(missing)}, which did not build in this run: nothing written")
    upstream = {
        m: run.spark.read.format("delta").option("versionAsOf", run.built[m]).load(table_path(run.settings, LAYER, m))
        for m in recipe.upstream
    }
    with writer_lock(run.settings, f"{LAYER}.{name}"):
        with rec.phase("plan"):
            mode, reason, start = plan(run, name, full_refresh=full_refresh)
        up_changes: dict[str, DataFrame] = {}
        if start is not None and recipe.upstream:
            with rec.phase("changes"):
                up_changes, why = upstream_changes(run, name)
            if why:
                mode, reason, start = "full", why, None
        scope_df = None
        if start is not None:
            try:
                with rec.phase("changes"):
                    changes, old, counts = run.changes_since(start)
                rec.details["changed_silver_keys"] = counts
                wide = None
                if recipe.scope_floor is not None and any(counts.values()):
                    with rec.phase("plan"):
                        floor = rec.details["scope_keys_at_least"] = recipe.scope_floor(changes).count()
                        wide = too_wide(run, recipe, path, floor, at_least=True) if floor else None
                if wide:
                    console.step(f"gold.{name}: {wide}")
                    mode, reason = "full", wide
                elif any(counts.values()) or any(not feed.isEmpty() for feed in up_changes.values()):
                    with rec.phase("scope"):
                        scope_df = materialize(recipe.scope(changes, old, run.new, up_changes))
                        rec.details["scope_keys"] = scope_df.count()
                else:
                    scope_df = run.spark.createDataFrame([], recipe.mart.schema).select(*recipe.mart.scope)
                    rec.details["scope_keys"] = 0
            except (PySparkException, Py4JJavaError) as exc:
                first_line = " ".join(str(exc).split())[:300] or type(exc).__name__
                console.warn(f"gold.{name}: change data feed unusable ({first_line}): rebuilding in full")
                mode, reason, scope_df = "full", f"change data feed unusable: {first_line}", None
        if scope_df is not None and rec.details["scope_keys"] > 0:
            with rec.phase("plan"):
                wide = too_wide(run, recipe, path, rec.details["scope_keys"])
            if wide:
                console.step(f"gold.{name}: {wide}")
                mode, reason, scope_df = "full", wide, None
        rec.watermark_from = _versions_text(start) if start else None
        rec.watermark_to = _versions_text(run.versions)
        unchanged = start == run.versions and run.as_of_given is None  # silver did not move, nor the as-of
        as_of = run.progress[name].as_of if unchanged else run.as_of
        rec.details.update(mode=mode, reason=reason, as_of=as_of.isoformat() if as_of else None)
        console.step(f"gold.{name}: {mode} ({reason})")

        as_of_moved = (
            start is not None
            and not unchanged
            and recipe.refresh_as_of is not None
            and _as_of_date(run.progress[name].as_of) != _as_of_date(as_of)
        )
        candidate = None
        with rec.phase("compute"):
            if scope_df is None:
                candidate = materialize(recipe.build(run.new, as_of, upstream))
            elif as_of_moved:
                assert recipe.refresh_as_of is not None
                fresh = recipe.recompute(run.new, scope_df, as_of, materialize, upstream)
                stored = (
                    run.spark.read.format("delta")
                    .load(path)
                    .join(F.broadcast(scope_df), list(recipe.mart.scope), "left_anti")
                )
                candidate = materialize(recipe.refresh_as_of(stored, as_of).unionByName(fresh))
                rec.details["as_of_moved"] = True
            elif rec.details["scope_keys"] > 0:
                candidate = materialize(recipe.recompute(run.new, scope_df, as_of, materialize, upstream))
            if candidate is not None:
                rec.rows_in = candidate.count()
        written = candidate is not None
        if candidate is not None:
            with rec.phase("gate"):
                gate(run, name, candidate, rec, scope_df=None if as_of_moved else scope_df)
            with rec.phase("write"):
                if scope_df is None or as_of_moved:
                    overwrite(candidate, path)
                else:
                    merge_scope(run.spark, path, recipe, candidate, scope_df)

        version, metrics = last_commit(run.spark, path)
        rec.delta_version = version
        run.built[name] = version
        if written:
            inserted = int(metrics.get("numTargetRowsInserted", metrics.get("numOutputRows", 0)))
            updated = int(metrics.get("numTargetRowsUpdated", 0))
            deleted = int(metrics.get("numTargetRowsDeleted", 0))
            rec.rows_out = inserted + updated + deleted
            rec.details.update(inserted=inserted, updated=updated, deleted=deleted)
        # progress: recorded with the run in ops.runs (a crash before that replays the same changes)
        rec.details[PROGRESS_KEY] = run.versions
        rec.details["silver_table_ids"] = {t: p.table_id for t, p in run.pinned.items()}
        if recipe.upstream:
            rec.details[UPSTREAM_KEY] = {m: run.built[m] for m in recipe.upstream}
        with rec.phase("register"):
            register_table(run.spark, run.settings, LAYER, name)
    rec.finish("succeeded", None if written else "no silver changes touch this mart")
    console.ok(
        f"gold.{name}: {rec.rows_in:,} row(s) computed, {rec.rows_out:,} written → Delta v{rec.delta_version} "
        f"in {rec.seconds:.1f}s"
    )


# --- the layer -------------------------------------------------------------------------------------
def run(
    spark: SparkSession,
    settings: Settings,
    *,
    run_id: str,
    full_refresh: bool = False,
    tables: Sequence[str] | None = None,
    as_of: datetime | None = None,
) -> list[RunRecord]:
    """Build every (or the named) mart; record each in `ops.runs`.

    `as_of` (naive UTC) overrides the logical time, for backfills and tests. A mart that
    fails with an expected error (gate, lock) does not stop the others; the layer then raises.
    """
    names = select_marts(tables)
    pinned = pin_silver(spark, settings)
    new = read_state(spark, pinned, {n: t.version for n, t in pinned.items()})
    console.step(f"gold: silver {_versions_text({n: t.version for n, t in pinned.items()})}")
    gold_run = GoldRun(spark, settings, run_id, pinned, new, as_of, read_progress(spark, settings))
    with LayerRun(spark, settings, LAYER, run_id) as layer_run:
        for name in names:
            with layer_run.table(name) as rec:
                build_mart(gold_run, rec, full_refresh=full_refresh)
    return layer_run.raise_failures()
