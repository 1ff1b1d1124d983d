"""A late commit through every layer: an order whose transaction commits after a later one's.

On a source database of its own, with one small generated batch already in bronze:

- T1 (the generator role) inserts an order with its lines and stays open;
- T2 inserts another order with its lines and commits;
- bronze, silver and gold run while T1 is open: the safe horizon waits at T1, so neither
  order is extracted yet (T2's change version lies above T1's, so T2 waits too);
- T1 commits; once the horizon has passed both, bronze, silver and gold run again.

Then each order is in bronze once, in silver once (its lines too, nothing quarantined or
held), and counted once in gold: its customer's `orders_count` and `revenue` in
`gold.customer_360`, and its day's `orders` and `revenue` in `gold.daily_sales`, moved by
exactly the two orders and equal a recomputation from silver written here in Spark SQL.
(That plain `updated_at > watermark` or `id > max_id` extractors lose T1's order for good is
shown by tests/integration/test_bronze.py; this test follows the order to gold.)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from tests.reliability.conftest import OUTCOMES, Outcome
from tests.support import fresh_source, wait_for_horizon

pytestmark = pytest.mark.reliability

SOURCE_DB = "ecom_db_late_commit"
WAREHOUSE_DB = "ecom_dwh_reliability"  # created by `fresh_source`, never written here
LAYERS = ("bronze", "silver", "gold")
GOLD_MARTS = ["customer_360", "daily_sales"]


@pytest.fixture(scope="module")
def settings(pg_settings: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Its own source database with one small clean batch, and a lake of its own."""
    from core.settings import load_settings
    from generator.simulate import Spec
    from generator.stream import run_batch

    source = load_settings(source_db=SOURCE_DB, warehouse_db=WAREHOUSE_DB, spark_shuffle_partitions=2)
    fresh_source(source)
    run_batch(source, Spec(customers=20, products=5, orders=40, events=300, seed=41, defect_rate=0.0))
    wait_for_horizon(source)
    root = tmp_path_factory.mktemp("late-commit")
    yield source.model_copy(update={"lake_root": str(root / "lake"), "gx_root": str(root / "gx")})


# --- the source side ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Order:
    """An order written by this test, with what its lines add up to."""

    order_id: int
    customer_id: int
    item_ids: tuple[int, ...]
    total: Decimal
    day: date
    category: str


def xid(conn: sa.Connection) -> int:
    return int(conn.exec_driver_sql("SELECT pg_current_xact_id()::text::bigint").scalar_one())


def insert_order(conn: sa.Connection, customer_id: int, product: sa.Row[Any], order_ts: datetime) -> Order:
    """A paid order (it counts as revenue) of two lines of `product`; its total matches them."""
    from core.schema import order_items, orders

    price = Decimal(product.unit_price)
    lines = [(2, price, Decimal("0.00")), (1, price, Decimal("0.50"))]
    total = sum((q * p - d for q, p, d in lines), Decimal("0.00"))
    order_id = conn.execute(
        sa.insert(orders).returning(orders.c.order_id),
        {
            "customer_id": customer_id,
            "status": "paid",
            "order_ts": order_ts,
            "total_amount": total,
            "currency": "USD",
            "payment_method": "card",
        },
    ).scalar_one()
    item_ids = conn.execute(
        sa.insert(order_items).returning(order_items.c.order_item_id),
        [
            {
                "order_id": order_id,
                "product_id": product.product_id,
                "quantity": q,
                "unit_price": p,
                "discount_amount": d,
            }
            for q, p, d in lines
        ],
    ).scalars()
    return Order(order_id, customer_id, tuple(item_ids), total, order_ts.date(), product.category)


# --- the lake side --------------------------------------------------------------------------------
def run_layers(spark: Any, settings: Any, layers: tuple[str, ...] = LAYERS) -> int:
    """The layers in turn, in process (the session's Spark); each must succeed. Runs made.
    Gold builds the two marts the test reads (the others add time, not evidence)."""
    from core.ledger import new_run_id
    from core.runner import job_module

    for layer in layers:
        tables = GOLD_MARTS if layer == "gold" else None
        records = job_module(layer).run(spark, settings, run_id=new_run_id(layer), tables=tables)
        assert all(r.status in ("succeeded", "skipped") for r in records), [(r.table_name, r.message) for r in records]
    return len(layers)


def table(spark: Any, settings: Any, database: str, name: str) -> Any:
    from core.lake import table_path

    return spark.read.format("delta").load(table_path(settings, database, name))


def count_keys(spark: Any, settings: Any, database: str, name: str, key: str, ids: list[int]) -> dict[int, int]:
    """{id: rows holding it} in a lake table (0 for an id it does not hold)."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    from core.lake import table_path

    out = dict.fromkeys(ids, 0)
    if not DeltaTable.isDeltaTable(spark, table_path(settings, database, name)):
        return out
    for r in table(spark, settings, database, name).where(F.col(key).isin(ids)).groupBy(key).count().collect():
        out[int(r[0])] = int(r[1])
    return out


def gold_figures(spark: Any, settings: Any, orders: list[Order]) -> dict[str, dict[Any, tuple[int, Decimal]]]:
    """(orders, revenue) per customer of `orders` in customer_360 and per (day, category) in daily_sales."""
    from pyspark.sql import functions as F

    customers = table(spark, settings, "gold", "customer_360").where(
        F.col("customer_id").isin([o.customer_id for o in orders])
    )
    days = table(spark, settings, "gold", "daily_sales")
    return {
        "customer_360": {
            int(r.customer_id): (int(r.orders_count), Decimal(r.revenue))
            for r in customers.select("customer_id", "orders_count", "revenue").collect()
        },
        "daily_sales": {
            (r.sales_date, r.category): (int(r.orders), Decimal(r.revenue))
            for r in days.select("sales_date", "category", "orders", "revenue").collect()
            if (r.sales_date, r.category) in {(o.day, o.category) for o in orders}
        },
    }


def recomputed_from_silver(spark: Any, settings: Any, orders: list[Order]) -> dict[str, dict[Any, tuple[int, Decimal]]]:
    """The same figures from silver, in Spark SQL written here (not the marts' code): orders of
    any status and net revenue (not cancelled or returned) per customer; net orders and their
    lines' net amount per (UTC day of order_ts, product category)."""
    for name in ("orders", "order_items", "products"):
        table(spark, settings, "silver", name).createOrReplaceTempView(f"late_silver_{name}")
    net = "lower(o.status) NOT IN ('cancelled', 'returned')"
    customer_ids = ", ".join(str(o.customer_id) for o in orders)
    per_customer = spark.sql(
        f"""SELECT o.customer_id, count(*) AS n, coalesce(sum(CASE WHEN {net} THEN o.total_amount END), 0) AS revenue
            FROM late_silver_orders o WHERE o.customer_id IN ({customer_ids}) GROUP BY o.customer_id"""
    ).collect()
    per_day = spark.sql(
        f"""SELECT to_date(o.order_ts) AS day, coalesce(p.category, 'unknown') AS category,
                   count(DISTINCT o.order_id) AS n,
                   sum(i.quantity * i.unit_price - coalesce(i.discount_amount, 0)) AS revenue
            FROM late_silver_order_items i
            JOIN late_silver_orders o ON o.order_id = i.order_id
            LEFT JOIN late_silver_products p ON p.product_id = i.product_id
            WHERE {net} GROUP BY 1, 2"""
    ).collect()
    wanted = {(o.day, o.category) for o in orders}
    return {
        "customer_360": {int(r.customer_id): (int(r.n), Decimal(r.revenue)) for r in per_customer},
        "daily_sales": {
            (r.day, r.category): (int(r.n), Decimal(r.revenue)) for r in per_day if (r.day, r.category) in wanted
        },
    }


# --- the scenario ---------------------------------------------------------------------------------
def test_a_late_commit_reaches_bronze_silver_and_gold_exactly_once(spark: Any, settings: Any) -> None:
    from core import db

    runs = run_layers(spark, settings, ("bronze",))  # the generated batch
    with db.connect(settings, "generator") as conn:
        customer_a, customer_b = conn.exec_driver_sql(
            "SELECT customer_id FROM shop.customers ORDER BY customer_id LIMIT 2"
        ).scalars()
        product = conn.exec_driver_sql(
            "SELECT product_id, unit_price, category FROM shop.products WHERE unit_price > 0 ORDER BY product_id LIMIT 1"
        ).one()
    order_ts = datetime.now(UTC).replace(tzinfo=None, microsecond=0) - timedelta(minutes=10)

    t1_conn = db.engine(settings, "generator").connect()
    t1 = t1_conn.begin()
    try:
        late = insert_order(t1_conn, customer_a, product, order_ts)  # T1: inserts, stays open
        t1_xid = xid(t1_conn)
        with db.connect(settings, "generator") as conn:  # T2: begins after T1, commits first
            early = insert_order(conn, customer_b, product, order_ts)
            t2_xid = xid(conn)
        assert t1_xid < t2_xid and late.order_id < early.order_id

        runs += run_layers(spark, settings)  # while T1 is open
        ids = [late.order_id, early.order_id]
        assert count_keys(spark, settings, "bronze", "orders", "order_id", ids) == dict.fromkeys(ids, 0), (
            "the horizon waits at T1: neither order is extracted while it is open"
        )
        before = gold_figures(spark, settings, [late, early])
        t1.commit()
    finally:
        if t1.is_active:
            t1.rollback()
        t1_conn.close()
    wait_for_horizon(settings, max(t1_xid, t2_xid))
    runs += run_layers(spark, settings)

    # Bronze and silver: each order and line once; nothing quarantined or held back.
    orders = [late, early]
    item_ids = [i for o in orders for i in o.item_ids]
    found = {
        "bronze": count_keys(spark, settings, "bronze", "orders", "order_id", ids),
        "silver": count_keys(spark, settings, "silver", "orders", "order_id", ids),
    }
    assert count_keys(spark, settings, "bronze", "order_items", "order_item_id", item_ids) == dict.fromkeys(item_ids, 1)
    assert count_keys(spark, settings, "silver", "order_items", "order_item_id", item_ids) == dict.fromkeys(item_ids, 1)
    for database, name in (("quarantine", "orders"), ("silver", "_held_orders")):
        assert count_keys(spark, settings, database, name, "order_id", ids) == dict.fromkeys(ids, 0), name
    for database, name in (("quarantine", "order_items"), ("silver", "_held_order_items")):
        assert count_keys(spark, settings, database, name, "order_item_id", item_ids) == dict.fromkeys(item_ids, 0)

    # Gold: each customer's row counts its order once; the day's row counts both orders once.
    after = gold_figures(spark, settings, orders)
    found["gold"] = {
        o.order_id: after["customer_360"][o.customer_id][0] - before["customer_360"][o.customer_id][0] for o in orders
    }
    lost = sum(abs(n - 1) for layer in found.values() for n in layer.values())  # missing or doubled
    OUTCOMES.append(Outcome("late commit (T1 open over a run) through every layer", runs, 0, lost))
    assert found == {layer: dict.fromkeys(ids, 1) for layer in ("bronze", "silver", "gold")}

    assert after == recomputed_from_silver(spark, settings, orders)
    for o in orders:
        n, revenue = before["customer_360"][o.customer_id]
        assert after["customer_360"][o.customer_id] == (n + 1, revenue + o.total)
    key = (late.day, late.category)
    n, revenue = before["daily_sales"].get(key, (0, Decimal("0.00")))
    assert after["daily_sales"][key] == (n + 2, revenue + late.total + early.total)
