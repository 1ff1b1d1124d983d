"""Bronze throughput: one extraction of an N-row, orders-shaped table; prints rows/s.

`python -m bronze.bench [--rows 1000000] [--partitions N]` creates a scratch table
`shop.bronze_bench_<hex>` shaped like `shop.orders` (same `_change_version` trigger), fills
it as the admin role with `INSERT … SELECT generate_series`, lets the extractor read it,
extracts the N new rows into a temporary lake (checkpoint included), `--rounds` times (the first on a cold JVM,
the last is the steady state), prints the figures, then drops table and lake.
The shared shop tables are never touched.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from core import console, db
from core.schema import SOURCE_SCHEMA
from core.settings import Settings, load_settings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

T = TypeVar("T")


def create_table(settings: Settings, name: str, *, version_index: bool = False) -> None:
    """The scratch table: shaped like shop.orders, with its trigger, readable by the extractor."""
    with db.connect(settings, "admin", settings.source_db) as conn:
        conn.exec_driver_sql(f"CREATE TABLE {SOURCE_SCHEMA}.{name} (LIKE {SOURCE_SCHEMA}.orders INCLUDING ALL)")
        if version_index:
            conn.exec_driver_sql(f"CREATE INDEX ix_{name}_change_version ON {SOURCE_SCHEMA}.{name} (_change_version)")
        conn.exec_driver_sql(
            f"CREATE TRIGGER touch_{name} BEFORE INSERT OR UPDATE ON {SOURCE_SCHEMA}.{name} "
            f"FOR EACH ROW EXECUTE FUNCTION {SOURCE_SCHEMA}.touch_row('updated_at')"
        )
        conn.exec_driver_sql(f'GRANT SELECT ON {SOURCE_SCHEMA}.{name} TO "{settings.extractor_user}"')


def fill(settings: Settings, name: str, rows: int) -> float:
    """Insert `rows` new rows in one transaction; seconds spent."""
    t0 = time.monotonic()
    with db.connect(settings, "admin", settings.source_db) as conn:
        conn.exec_driver_sql(
            f"INSERT INTO {SOURCE_SCHEMA}.{name} "
            "(customer_id, status, order_ts, total_amount, currency, payment_method, visitor_id) "
            "SELECT mod(g, 50000), (ARRAY['placed','paid','shipped','delivered'])[1 + mod(g, 4)], "
            "TIMESTAMP '2026-01-01' + g * INTERVAL '1 second', mod(g, 100000) / 100.0, 'EUR', 'card', "
            f"md5(g::text) FROM generate_series(1, {int(rows)}) AS g"
        )
    with db.connect(settings, "admin", settings.source_db) as conn:
        conn.exec_driver_sql(f"ANALYZE {SOURCE_SCHEMA}.{name}")
    return time.monotonic() - t0


def _window_df(spark: SparkSession, settings: Settings, name: str, start: int) -> DataFrame:
    """The extraction's partitioned JDBC read of the scratch table, as bronze plans it."""
    from bronze.job import plan_read, read_window

    live, window, _, plan = plan_read(settings, name, start)
    return read_window(spark, settings, live, window, plan)


def raw_read(spark: SparkSession, settings: Settings, name: str, start: int) -> None:
    """The same partitioned JDBC read into Spark's no-op sink: the ceiling for bronze."""
    _window_df(spark, settings, name, start).write.format("noop").mode("overwrite").save()


def raw_append(spark: SparkSession, settings: Settings, name: str, start: int, path: str) -> None:
    """The same read appended to a plain Delta table (no lineage columns, cache, checkpoint,
    partitioning, watermark or ledger): the floor of any extraction that lands rows in Delta."""
    _window_df(spark, settings, name, start).write.format("delta").mode("append").save(path)


def jvm_cpu_seconds(spark: SparkSession) -> float:
    """CPU seconds used so far by the Spark driver JVM (Linux `/proc`); NaN elsewhere."""
    proc = getattr(spark.sparkContext._gateway, "proc", None)
    try:
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()  # type: ignore[union-attr]
    except (AttributeError, OSError):
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _cores(master: str) -> int:
    inside = master[master.find("[") + 1 : master.find("]")] if "[" in master else "1"
    return (os.cpu_count() or 1) if inside == "*" else int(inside.split(",")[0])


def drop_table(settings: Settings, name: str) -> None:
    with db.connect(settings, "admin", settings.source_db) as conn:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {SOURCE_SCHEMA}.{name}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=None, help="JDBC partitions (default: the setting)")
    parser.add_argument("--rounds", type=int, default=3, help="extractions of N new rows each (the first is cold)")
    parser.add_argument(
        "--version-index", action="store_true", help="index _change_version (the source tables have none yet)"
    )
    parser.add_argument(
        "--conf", action="append", default=[], metavar="KEY=VALUE", help="a Spark SQL conf to try (repeatable)"
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.rows < 1:
        parser.error("--rows and --rounds must be at least 1")

    from bronze.job import current_horizon, extract_table
    from core.spark import get_spark

    lake = tempfile.mkdtemp(prefix="ecom-bench-lake-")
    # The bronze checkpoint's results and Data Docs go with the scratch lake, not into expectations/gx.
    overrides: dict[str, object] = {"lake_root": lake, "gx_root": str(Path(lake) / "_gx")}
    if args.partitions:
        overrides["jdbc_partitions"] = args.partitions
    settings = load_settings(**overrides)
    name = f"bronze_bench_{uuid.uuid4().hex[:8]}"
    try:
        create_table(settings, name, version_index=args.version_index)
        spark = get_spark(settings, "ecom-bench-bronze", register=False)
        for key, _, value in (c.partition("=") for c in args.conf):
            spark.conf.set(key, value)
        cores = _cores(settings.spark_master)
        rows_out: list[tuple[object, ...]] = []

        def measured(what: str, rows: int, step: Callable[[], T]) -> T:
            cpu0, t0 = jvm_cpu_seconds(spark), time.monotonic()
            result = step()
            wall, cpu = time.monotonic() - t0, jvm_cpu_seconds(spark) - cpu0
            rows_out.append(
                (what, f"{rows:,}", f"{wall:.1f}", f"{rows / wall:,.0f}", f"{cpu:.1f}", f"{rows / (cpu / cores):,.0f}")
            )
            return result

        # Round 1 runs on a cold JVM (JIT, code generation), as the first table of `ecom run bronze`;
        # every round extracts N new rows; the last one is the steady state.
        horizon = current_horizon(settings)
        for n in range(1, args.rounds + 1):
            console.step(f"round {n}: {args.rows:,} new rows in {fill(settings, name, args.rows):.1f}s")
            if n == args.rounds:
                measured(
                    "raw JDBC read of the window (noop sink)",
                    args.rows,
                    partial(raw_read, spark, settings, name, horizon),
                )
            rec = measured(
                f"round {n}: bronze extraction" + (" (cold JVM)" if n == 1 else ""),
                args.rows,
                partial(extract_table, spark, settings, name, run_id=f"bench-{n}", start_at=horizon, suite="orders"),
            )
            horizon = int(rec.watermark_to or 0)
        console.table(
            f"bronze throughput ({rec.details.get('partitions')} JDBC partitions, {settings.spark_master}, "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs{', ' if args.conf else ''}"
            f"{', '.join(args.conf)})",
            ["step", "rows", "wall s", "rows/s", "Spark CPU s", f"rows/s if Spark had {cores} idle cores"],
            rows_out,
        )
        phases = rec.details.get("timings", {})
        console.console.print(
            f"last round's phases (s): {phases} — read+audit+append {args.rows / phases['copy']:,.0f} rows/s, "
            f"of which the bronze checkpoint (gate) {phases.get('gate', 0.0):.2f}s"
        )
    finally:
        drop_table(settings, name)
        shutil.rmtree(lake, ignore_errors=True)


if __name__ == "__main__":
    main()
