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
    batch_id = latest_batch_id(settings)

    layers = runner.built_layers()
    missing = [name for name in runner.ORDER if name not in layers]
    if layers:
        runner.run_layers(settings, layers)
    for name in missing:
        console.warn(f"layer {name!r} is not built yet: skipped")

    if "silver" in layers and batch_id:
        from core.spark import get_spark
        from silver.scorecard import format_scores, read_scorecard

        scores = read_scorecard(get_spark(settings, "ecom-demo"), settings, [batch_id])
        console.step(f"silver vs the generator's defect manifest (batch {batch_id})")
        console.console.print(format_scores(scores), markup=False, highlight=False)
        from datetime import UTC, datetime

        from silver.rules import RULES, RuleContext

        # Rows breaking a rule that waits for another table (a parent that may arrive late) are
        # held in `silver._held_<table>` and quarantined only after the grace period.
        ctx = RuleContext(as_of=datetime.now(UTC).replace(tzinfo=None))
        waiting = {r.name for rules in RULES.values() for r in rules(ctx) if r.waits}
        pending = [s for s in scores if s.rule in waiting and s.caught < s.injected]
        settled = [s for s in scores if s not in pending]
        if all(s.perfect for s in settled) and all(s.precision == 1.0 for s in pending):
            console.ok("every injected defect quarantined by its rule, and nothing else (100% precision and recall)")
        else:
            console.warn("quarantine differs from the manifest: see the rows above below 100%")
        if pending:
            console.step(
                f"{', '.join(s.kind for s in pending)}: held in silver._held_* waiting for a late parent; "
                f"quarantined once {settings.orphan_grace_hours} h have passed (recall counts quarantine only)"
            )
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


def latest_batch_id(settings: Settings) -> str | None:
    """The generator batch committed last (its defect manifest is in `sim.defects`)."""
    import sqlalchemy as sa

    from core import db
    from core.schema import sim_batches

    with db.connect(settings, "admin", settings.source_db) as conn:
        return conn.execute(
            sa.select(sim_batches.c.batch_id).order_by(sim_batches.c.ended_at.desc()).limit(1)
        ).scalar_one_or_none()
