"""The benchmark cases. Each measures a figure and its baseline in the same run."""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from bench.env import bench_spark, command_env, ecom, isolated, run_command
from bench.pipeline import (
    checkpoint_share,
    command_footprint,
    gold_incremental_vs_full,
    gold_sql_vs_duckdb,
    incremental_cycle,
)
from bench.report import Figure, Report, timed

# Volumes per profile. generator: one generator batch (generator_rate); publish_rows: the
# mart publish_rate writes; history: the pipeline's 1× history (same shape as
# the demo's volumes; 10× it is the second point of the incremental cycle, and gold is
# timed there). fresh_load: the history multiple loaded by fresh `ecom run` commands, where
# each command's peak memory, Spark sessions and Spark start are measured; the 1× load runs in
# the bench's JVM, which it warms for the timed cycles (tiny loads its 1× fresh, for speed: a
# quick run loading 1× fresh timed its first cycle in a cold JVM, 77.5 s against 59.8 s at 10×).
# cycle_repeats (per history multiple) / gold_repeats: a cycle or a gold run takes minutes,
# not a short figure, so quick times each once; full takes the median of three cycles at 1×
# and times the 10× cycle once (each takes minutes there: three would not fit the hour).
# Incremental gold is the gold step of the 10× cycles (gold_repeats of them: more cycles run
# if asked), and its full rebuild that history's load when every mart rebuilt in full there.
# gold_fresh: with a fresh 10× load, incremental gold and its rebuild are both fresh `ecom run
# gold` commands (full: the figure the issue asks for, as production runs gold); quick runs
# both in the bench's JVM, like for like as well, and saves a further change and a fresh
# command (1.3 of its 7.6 minutes on 2026-11-28). fresh_command: how the fresh load runs —
# "layer", an `ecom run <layer>` per layer (each command's memory on its own; full), or "all",
# one `ecom run all` (quick: each fresh command pays Spark's start and a cold JVM, ~40 s at
# quick's volumes, more than its data costs).
# Short figures are medians of `repeats`.
PROFILES: dict[str, dict[str, Any]] = {
    "tiny": {  # for developing a case: seconds, not minutes
        "generator": {"customers": 200, "products": 30, "orders": 1_000, "events": 10_000},
        "publish_rows": 10_000,
        "repeats": 3,
        "bronze_rows": 20_000,
        "history": {"customers": 40, "products": 6, "orders": 200, "events": 2_000},
        "cycle_repeats": {1: 1, 10: 1},
        "gold_repeats": 1,
        "gold_fresh": False,
        "fresh_load": 1,
        "fresh_command": "layer",
        "demo": False,
    },
    "quick": {
        "generator": {"customers": 2000, "products": 300, "orders": 10_000, "events": 100_000},
        "publish_rows": 100_000,
        "repeats": 3,
        "bronze_rows": 300_000,
        "history": {"customers": 400, "products": 60, "orders": 2_000, "events": 20_000},
        "cycle_repeats": {1: 1, 10: 1},
        "gold_repeats": 1,
        "gold_fresh": False,
        "fresh_load": 10,
        "fresh_command": "all",
        "demo": False,
    },
    "full": {
        # 1M orders and 10M events: the pipeline cases' history at 10× (`history` × 10). The
        # generator's rate is measured on batches of the 1× volumes (1.3M rows each): a rate
        # needs no 13M-row batch, and three of them took over a quarter of the hour.
        "generator": {"customers": 20_000, "products": 3_000, "orders": 100_000, "events": 1_000_000},
        "publish_rows": 1_000_000,
        "repeats": 3,
        "bronze_rows": 1_000_000,
        "history": {"customers": 20_000, "products": 3_000, "orders": 100_000, "events": 1_000_000},
        "cycle_repeats": {1: 3, 10: 1},
        "gold_repeats": 1,
        "gold_fresh": True,
        "fresh_load": 10,
        "fresh_command": "layer",
        "demo": True,
        "run_time_goal_min": 60,  # the whole run, on 2 cores
    },
}
for _name, _profile in PROFILES.items():
    _profile["name"] = _name


def generator_rate(report: Report, profile: dict[str, Any]) -> None:
    """Generator rows/s into PostgreSQL vs a raw COPY of the same rows (same run)."""
    from generator.simulate import Spec
    from generator.stream import measure_throughput

    spec = Spec(**profile["generator"])
    with isolated("generator") as settings:  # each batch adds to the last, as a stream does
        runs = [measure_throughput(settings, spec) for _ in range(profile["repeats"])]
    rate = statistics.median(tp.rows_per_s for tp in runs)
    report.add(
        Figure(
            "generator rows/s into PostgreSQL",
            rate,
            "rows/s",
            baseline=statistics.median(tp.raw_rows_per_s for tp in runs),
            baseline_name="raw COPY",
            goal="≥ 50,000 rows/s",
            met=rate >= 50_000,
            note=f"median of {len(runs)} batches: "
            + "; ".join(f"{tp.rows:,} rows in {tp.batch_s:.2f}s (simulation {tp.generate_s:.2f}s)" for tp in runs),
        )
    )


def bronze_rate(report: Report, profile: dict[str, Any]) -> None:
    """Bronze rows/s (bronze.job.extract_table) vs a bare Spark JDBC read of the same window."""
    from bronze import bench as bronze_bench
    from bronze.job import current_horizon, extract_table

    rows = profile["bronze_rows"]
    name = f"bronze_bench_{uuid.uuid4().hex[:8]}"  # a scratch table shaped like shop.orders
    ours: list[float] = []
    bare: list[float] = []
    landed: list[float] = []
    with isolated("bronze") as settings:
        bronze_bench.create_table(settings, name)
        spark = bench_spark(settings)
        horizon = current_horizon(settings)
        for n in range(profile["repeats"] + 1):  # round 0 (a tenth of the rows) warms JVM and caches: not counted
            batch = rows if n else max(1, rows // 10)
            bronze_bench.fill(settings, name, batch)
            bare_s, _ = timed(partial(bronze_bench.raw_read, spark, settings, name, horizon))
            plain = str(Path(settings.lake_root) / "bench_plain_append")
            landed_s, _ = timed(partial(bronze_bench.raw_append, spark, settings, name, horizon, plain))
            extract = partial(
                extract_table, spark, settings, name, run_id=f"bench-{n}", start_at=horizon, suite="orders"
            )
            ours_s, rec = timed(extract)
            if rec.rows_out != batch:
                raise RuntimeError(f"bronze extracted {rec.rows_out:,} rows of the {batch:,} new ones")
            horizon = int(rec.watermark_to or 0)
            if n:
                ours.append(ours_s)
                bare.append(bare_s)
                landed.append(landed_s)
    rate, bare_rate = rows / statistics.median(ours), rows / statistics.median(bare)
    report.add(
        Figure(
            "bronze rows/s (extraction to Delta)",
            rate,
            "rows/s",
            baseline=bare_rate,
            baseline_name="bare Spark JDBC read",
            goal="≥ 200,000 rows/s",
            met=rate >= 200_000,
            note=f"{rows:,} new rows per round, median of {len(ours)}: bronze "
            + ", ".join(f"{s:.1f}" for s in ours)
            + " s; bare read (noop sink) "
            + ", ".join(f"{s:.1f}" for s in bare)
            + f" s; the same read appended to a plain Delta table {rows / statistics.median(landed):,.0f} rows/s ("
            + ", ".join(f"{s:.1f}" for s in landed)
            + f" s), the floor of any extraction into Delta; {rec.details.get('partitions')} JDBC partition(s); "
            + "bronze's phases: "
            + ", ".join(f"{k} {v:.1f}s" for k, v in rec.details.get("timings", {}).items()),
        )
    )


def publish_rate(report: Report, profile: dict[str, Any]) -> None:
    """Publish rows/s into PostgreSQL (stage + atomic apply + reconcile) vs a bare Spark JDBC write."""
    from pyspark.sql import functions as F

    from core import db
    from core.lake import table_path
    from core.ledger import RunRecord, new_run_id
    from gold import publish
    from gold.marts.registry import MARTS

    rows = profile["publish_rows"]
    mart = MARTS["daily_sales"]
    with isolated("publish") as settings:
        spark = bench_spark(settings)
        df = mart.conform(
            spark.range(rows).select(
                F.date_add(F.lit("2020-01-01").cast("date"), (F.col("id") % 3000).cast("int")).alias("sales_date"),
                F.concat(F.lit("cat"), (F.col("id") / 3000).cast("long").cast("string")).alias("category"),
                *[F.col("id").alias(c.name) for c in mart.columns if c.name in ("orders", "units")],
                (F.col("id") % 1000 / 100).cast("decimal(18,2)").alias("revenue"),
                F.lit(1.5).cast("decimal(18,2)").alias("avg_order_value"),
                *[
                    F.lit(None).alias(c.name)
                    for c in mart.columns
                    if c.name not in ("sales_date", "category", "orders", "units", "revenue", "avg_order_value")
                ],
            )
        )
        df.write.format("delta").mode("overwrite").save(table_path(settings, "gold", mart.name))
        bare = spark.read.format("delta").load(table_path(settings, "gold", mart.name))
        writer = (
            bare.write.format("jdbc")
            .options(**db.jdbc_options(settings, "publisher"), dbtable="gold.bench_bare_write")
            .option("batchsize", str(settings.jdbc_batchsize))
            .mode("overwrite")
        )

        phases: list[dict[str, float]] = []

        def ours_once() -> float:
            rec = RunRecord(new_run_id("bench"), "publish", mart.name)
            seconds = timed(partial(publish.publish_table, spark, settings, mart, rec, full_refresh=True))[0]
            phases.append(rec.details["timings"])
            return seconds

        # The first run of each in a JVM pays for code generation: one untimed warm-up each,
        # then alternate, so both figures are the same JVM's steady state (medians).
        cold = ours_once()
        timed(writer.save)
        samples = [(ours_once(), timed(writer.save)[0]) for _ in range(profile["repeats"])]
        ours = statistics.median(o for o, _ in samples)
        raw = statistics.median(r for _, r in samples)
    report.add(
        Figure(
            "publish rows/s into PostgreSQL",
            rows / ours,
            "rows/s",
            baseline=rows / raw,
            baseline_name="bare Spark JDBC write",
            goal="≥ 45,000 rows/s",
            met=rows / ours >= 45_000,
            note=f"{rows:,} rows: publish {ours:.1f}s (stage, apply, reconcile), bare write {raw:.1f}s "
            f"(medians of {profile['repeats']}, warm JVM; the first publish in a fresh JVM took {cold:.1f}s); "
            "publish's median phases: "
            + ", ".join(f"{k} {statistics.median(p[k] for p in phases[1:]):.2f}s" for k in phases[-1]),
        )
    )


def demo_time(report: Report, profile: dict[str, Any]) -> None:
    """`make demo`'s work (`ecom demo` on its default volumes) on fresh databases and lake."""
    from core.demo import DEMO_VOLUMES

    volumes = " ".join(DEMO_VOLUMES)
    if not profile["demo"]:
        report.skip("`make demo` time", f"full profile only (several minutes: setup check, {volumes}, every layer)")
        return
    with isolated("demo", init=False) as settings:
        seconds, peak_mib, starts = run_command(ecom("demo"), command_env(settings))
    report.add(
        Figure(
            "`make demo` work (`ecom demo`, default volumes)",
            seconds / 60,
            "min",
            goal="≤ 5 min",
            met=seconds <= 300,
            note=f"after setup (venv, jars, PostgreSQL cluster present); fresh databases and lake; {volumes}; "
            f"peak RSS {peak_mib} MiB, {len(starts)} Spark session(s)",
        )
    )


CASES: list[Callable[[Report, dict[str, Any]], None]] = [
    generator_rate,
    bronze_rate,
    publish_rate,
    incremental_cycle,  # first of the shared-lakehouse cases: it needs the history at 1×
    gold_incremental_vs_full,
    gold_sql_vs_duckdb,
    checkpoint_share,
    command_footprint,
    demo_time,
]
