"""Bronze throughput: one extraction of an N-row, orders-shaped table; prints rows/s.

`python -m bronze.bench [--rows 1000000] [--partitions N]` creates a scratch table
`shop.bronze_bench_<hex>` shaped like `shop.orders` (same `_change_version` trigger), fills
it as the admin role with `INSERT … SELECT generate_series`, lets the extractor read it,
runs `extract_table` into a temporary lake, prints the figures, then drops table and lake.
The shared shop tables are never touched.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import uuid
from typing import TYPE_CHECKING

from core import console, db
from core.schema import SOURCE_SCHEMA
from core.settings import Settings, load_settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def create_table(settings: Settings, name: str, rows: int) -> float:
    """Create and fill the scratch table; seconds spent filling."""
    extractor = settings.extractor_user
    with db.connect(settings, "admin", settings.source_db) as conn:
        conn.exec_driver_sql(f"CREATE TABLE {SOURCE_SCHEMA}.{name} (LIKE {SOURCE_SCHEMA}.orders INCLUDING ALL)")
        conn.exec_driver_sql(
            f"CREATE TRIGGER touch_{name} BEFORE INSERT OR UPDATE ON {SOURCE_SCHEMA}.{name} "
            f"FOR EACH ROW EXECUTE FUNCTION {SOURCE_SCHEMA}.touch_row('updated_at')"
        )
        conn.exec_driver_sql(f'GRANT SELECT ON {SOURCE_SCHEMA}.{name} TO "{extractor}"')
    t0 = time.monotonic()
    with db.connect(settings, "admin", settings.source_db) as conn:
        conn.exec_driver_sql(
            f"INSERT INTO {SOURCE_SCHEMA}.{name} "
            "(customer_id, status, order_ts, total_amount, currency, payment_method, visitor_id) "
            "SELECT mod(g, 50000), (ARRAY['placed','paid','shipped','delivered'])[1 + mod(g, 4)], "
            "TIMESTAMP '2026-01-01' + g * INTERVAL '1 second', mod(g, 100000) / 100.0, 'EUR', 'card', "
            f"md5(g::text) FROM generate_series(1, {int(rows)}) AS g"
        )
        conn.exec_driver_sql(f"ANALYZE {SOURCE_SCHEMA}.{name}")
    return time.monotonic() - t0


def raw_read_seconds(spark: SparkSession, settings: Settings, name: str, start: int) -> float:
    """The same partitioned JDBC read into Spark's no-op sink: the ceiling for bronze."""
    from bronze.extract import partition_plan
    from bronze.job import describe_source, plan_window, read_window

    live = describe_source(settings, name)
    window, stats = plan_window(settings, live, start)
    plan = partition_plan(
        stats.row_count, live.key, stats.min_key, stats.max_key, max_partitions=settings.jdbc_partitions
    )
    t0 = time.monotonic()
    read_window(spark, settings, live, window, plan).write.format("noop").mode("overwrite").save()
    return time.monotonic() - t0


def drop_table(settings: Settings, name: str) -> None:
    with db.connect(settings, "admin", settings.source_db) as conn:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {SOURCE_SCHEMA}.{name}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=None, help="JDBC partitions (default: the setting)")
    args = parser.parse_args(argv)

    from bronze.job import current_horizon, extract_table
    from core.spark import get_spark

    lake = tempfile.mkdtemp(prefix="ecom-bench-lake-")
    overrides: dict[str, object] = {"lake_root": lake}
    if args.partitions:
        overrides["jdbc_partitions"] = args.partitions
    settings = load_settings(**overrides)
    name = f"bronze_bench_{uuid.uuid4().hex[:8]}"
    try:
        start = current_horizon(settings)
        fill_s = create_table(settings, name, args.rows)
        console.step(f"filled {SOURCE_SCHEMA}.{name} with {args.rows:,} rows in {fill_s:.1f}s")
        spark = get_spark(settings, "ecom-bench-bronze", register=False)
        raw_s = raw_read_seconds(spark, settings, name, start)  # also warms the JVM up
        rec = extract_table(spark, settings, name, run_id=f"bench-{uuid.uuid4().hex[:8]}", start_at=start)
        phases = rec.details.get("phase_s", {})
        copy_s = phases.get("copy") or float("nan")
        console.table(
            "bronze throughput",
            ["rows", "partitions", "raw JDBC read rows/s", "read+append rows/s", "whole extraction rows/s"],
            [
                (
                    f"{rec.rows_out:,}",
                    rec.details.get("partitions"),
                    f"{args.rows / raw_s:,.0f} ({raw_s:.1f}s)",
                    f"{rec.rows_out / copy_s:,.0f} ({copy_s:.1f}s)",
                    f"{rec.rows_out / (rec.seconds or 1):,.0f} ({rec.seconds:.1f}s)",
                )
            ],
        )
        console.console.print(f"phases (s): {phases}")
    finally:
        drop_table(settings, name)
        shutil.rmtree(lake, ignore_errors=True)


if __name__ == "__main__":
    main()
