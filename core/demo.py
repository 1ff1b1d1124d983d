"""`ecom demo`: set up what is missing, generate a batch, run every built layer, say where to look."""

from __future__ import annotations

import subprocess
import sys
import time

from core import console, dbinit, localpg, runner
from core.errors import EcomError
from core.settings import Settings, get_settings

# Default demo volumes: the acceptance volumes of the generator issue; minutes, not hours.
DEMO_VOLUMES = ["--customers", "2000", "--products", "300", "--orders", "10000", "--events", "100000"]


def run(settings: Settings) -> None:
    t0 = time.monotonic()
    if settings.dialect == "postgresql" and settings.db_host in ("127.0.0.1", "localhost"):
        console.step("local PostgreSQL")
        console.ok(localpg.up(settings))
        get_settings.cache_clear()
        settings = get_settings()  # credentials may have just been created
    console.step("databases, schemas and roles")
    dbinit.init(settings, echo=console.ok)

    console.step("generator: one batch into ecom_db")
    proc = subprocess.run([sys.executable, "-m", "core.cli", "generate", *DEMO_VOLUMES], check=False)
    if proc.returncode != 0:
        raise EcomError(f"the generator failed (exit {proc.returncode}); see above")

    layers = runner.built_layers()
    missing = [name for name in runner.ORDER if name not in layers]
    if layers:
        runner.run_layers(settings, layers)
    for name in missing:
        console.warn(f"layer {name!r} is not built yet: skipped")

    if "gold" in layers:
        from core.spark import get_spark

        spark = get_spark(settings, "ecom-demo")
        console.step("a few rows of gold.customer_360")
        spark.sql(
            "SELECT customer_id, orders_count, revenue, avg_order_value, rfm_segment, top_categories_csv, "
            "sessions_count FROM gold.customer_360 ORDER BY revenue DESC NULLS LAST LIMIT 5"
        ).show(truncate=False)
    if "publish" in layers:
        from gold.publish import warehouse_counts

        console.table("ecom_dwh row counts", ["table", "rows"], sorted(warehouse_counts(settings).items()))
    try:
        from expectations import docs_index

        console.ok(f"Data Docs: {docs_index(settings)}")
    except ImportError:
        console.warn("Data Docs: the expectations package is not built yet")
    console.step(f"done in {time.monotonic() - t0:.0f}s. Where to look:")
    console.console.print(
        f"  lake            {settings.lake_root}\n"
        '  query it        ecom sql -e "SHOW TABLES IN bronze"\n'
        "  runs            ecom status\n"
        f'  source          ecom db shell ecom_db -c "SELECT count(*) FROM shop.orders"'
    )
