"""Incremental scope: which gold keys a silver change touches, and their recomputation.

Given the keys that changed in each silver table between the version a mart last consumed
(`old`) and the current one (`new`) — from Delta's change data feed — each `*_scope`
function returns the gold scope keys whose rows may differ. It evaluates the dependency on
*both* states (old: where a row used to count; new: where it counts now), so a re-dated
order, a moved event or a re-assigned session is taken out of its old key and put into
its new one; a key with no row left is deleted by the caller.

Each `recompute_*` function then rebuilds the rows of a scope by calling the mart's own
pure transform on silver filtered to what those keys need, so the incremental path and a
full rebuild share one definition of every metric.

Dependencies (→ gold keys):
- orders, order_items → their orders' customers, sales dates, product × dates;
- products → only when a column a mart uses changed: `category` (customer top categories,
  daily_sales) or `unit_price` (sessions' cart value);
- clickstream_events → their sessions (old and new session_id), those sessions' customers
  (old and new attribution) and product × event dates;
- customers → themselves, and the sessions of their visitor_id (sign-up attribution);
- a customer's first order date moving → the old and the new date of daily_sales
  (new vs returning customers).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date, datetime
from functools import reduce

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from gold.marts.common import order_lines
from gold.marts.customer_360 import build_customer_360
from gold.marts.daily_sales import build_daily_sales, first_order_dates
from gold.marts.product_performance import build_product_performance
from gold.marts.sessions import CART_EVENTS, build_sessions, session_customers

SILVER_KEYS: dict[str, str] = {
    "customers": "customer_id",
    "products": "product_id",
    "orders": "order_id",
    "order_items": "order_item_id",
    "clickstream_events": "event_id",
}


@dataclass(frozen=True)
class SilverState:
    """The silver tables at one version: business columns only."""

    customers: DataFrame
    products: DataFrame
    orders: DataFrame
    order_items: DataFrame
    clickstream_events: DataFrame

    @classmethod
    def of(cls, frames: dict[str, DataFrame]) -> SilverState:
        return cls(**{f.name: frames[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class Changes:
    """The business keys changed per silver table (one key column each)."""

    customers: DataFrame
    products: DataFrame
    orders: DataFrame
    order_items: DataFrame
    clickstream_events: DataFrame

    @classmethod
    def of(cls, frames: dict[str, DataFrame]) -> Changes:
        return cls(**{f.name: frames[f.name] for f in fields(cls)})


def union_keys(frames: list[DataFrame]) -> DataFrame:
    """Distinct non-null keys of frames that share their columns."""
    combined = reduce(DataFrame.unionByName, frames)
    return combined.dropna().distinct()


def changed_on(ids: DataFrame, old_df: DataFrame, new_df: DataFrame, key: str, columns: list[str]) -> DataFrame:
    """The keys among `ids` whose `columns` differ between old and new, or that exist on one side only."""
    old = old_df.join(ids, key, "left_semi").select(key, F.struct(*columns).alias("_old"))
    new = new_df.join(ids, key, "left_semi").select(key, F.struct(*columns).alias("_new"))
    return old.join(new, key, "full").where(~F.col("_old").eqNullSafe(F.col("_new"))).select(key)


def affected_orders(
    changes: Changes, old: SilverState, new: SilverState, *, products: DataFrame | None = None
) -> DataFrame:
    """(order_id): changed orders, orders of changed lines and, if given, orders with lines of `products`."""
    parts = [changes.orders.select("order_id")]
    for state in (old, new):
        parts.append(state.order_items.join(changes.order_items, "order_item_id", "left_semi").select("order_id"))
        if products is not None:
            parts.append(state.order_items.join(products, "product_id", "left_semi").select("order_id"))
    return union_keys(parts)


def session_scope(
    changes: Changes, old: SilverState, new: SilverState, *, priced_products: DataFrame | None = None
) -> DataFrame:
    """(session_id): sessions of changed events (before and after), of visitors of changed
    customers and, if given, sessions with cart events of `priced_products`."""
    parts = [
        state.clickstream_events.join(changes.clickstream_events, "event_id", "left_semi").select("session_id")
        for state in (old, new)
    ]
    visitors = union_keys(
        [
            state.customers.join(changes.customers, "customer_id", "left_semi").select("visitor_id")
            for state in (old, new)
        ]
    )
    parts.append(new.clickstream_events.join(visitors, "visitor_id", "left_semi").select("session_id"))
    if priced_products is not None:
        carts = new.clickstream_events.where(F.col("event_type").isin(*CART_EVENTS))
        parts.append(carts.join(priced_products, "product_id", "left_semi").select("session_id"))
    return union_keys(parts)


def sessions_scope(changes: Changes, old: SilverState, new: SilverState) -> DataFrame:
    """Scope of gold.sessions (session_id)."""
    priced = changed_on(changes.products, old.products, new.products, "product_id", ["unit_price"])
    return session_scope(changes, old, new, priced_products=priced)


def customer_360_scope(changes: Changes, old: SilverState, new: SilverState) -> DataFrame:
    """Scope of gold.customer_360 (customer_id)."""
    recategorised = changed_on(changes.products, old.products, new.products, "product_id", ["category"])
    orders = affected_orders(changes, old, new, products=recategorised)
    sessions = session_scope(changes, old, new)
    parts = [changes.customers.select("customer_id")]
    for state in (old, new):
        parts.append(state.orders.join(orders, "order_id", "left_semi").select("customer_id"))
        events = state.clickstream_events.join(sessions, "session_id", "left_semi")
        parts.append(session_customers(events, state.customers).select("customer_id"))
    return union_keys(parts)


def daily_sales_scope(changes: Changes, old: SilverState, new: SilverState) -> DataFrame:
    """Scope of gold.daily_sales (sales_date): days of touched orders, and the old and new
    first-order day of their customers when it moved."""
    recategorised = changed_on(changes.products, old.products, new.products, "product_id", ["category"])
    orders = affected_orders(changes, old, new, products=recategorised)
    touched = [state.orders.join(orders, "order_id", "left_semi") for state in (old, new)]
    parts = [t.select(F.to_date("order_ts").alias("sales_date")) for t in touched]
    customers = union_keys([t.select("customer_id") for t in touched])
    before = first_order_dates(old.orders.join(customers, "customer_id", "left_semi")).withColumnRenamed(
        "first_order_date", "before"
    )
    after = first_order_dates(new.orders.join(customers, "customer_id", "left_semi")).withColumnRenamed(
        "first_order_date", "after"
    )
    moved = before.join(after, "customer_id", "full").where(~F.col("before").eqNullSafe(F.col("after")))
    parts += [moved.select(F.col("before").alias("sales_date")), moved.select(F.col("after").alias("sales_date"))]
    return union_keys(parts)


def product_performance_scope(changes: Changes, old: SilverState, new: SilverState) -> DataFrame:
    """Scope of gold.product_performance (product_id, activity_date)."""
    orders = affected_orders(changes, old, new)
    parts = []
    for state in (old, new):
        events = state.clickstream_events.join(changes.clickstream_events, "event_id", "left_semi")
        parts.append(events.select("product_id", F.to_date("event_ts").alias("activity_date")))
        lines = order_lines(
            state.orders.join(orders, "order_id", "left_semi"),
            state.order_items.join(orders, "order_id", "left_semi"),
        )
        parts.append(lines.select("product_id", F.col("order_date").alias("activity_date")))
    return union_keys(parts)


# --- recomputation of a scope from the current silver state -----------------------------------------
def recompute_sessions(new: SilverState, scope: DataFrame) -> DataFrame:
    events = new.clickstream_events.join(scope, "session_id", "left_semi")
    return build_sessions(events, new.customers, new.products).join(scope, "session_id", "left_semi")


def recompute_customer_360(new: SilverState, scope: DataFrame, as_of: datetime | date | None) -> DataFrame:
    """Customers in scope; every customer is passed on so sign-up attribution sees all visitors."""
    orders = new.orders.join(scope, "customer_id", "left_semi")
    items = new.order_items.join(orders.select("order_id"), "order_id", "left_semi")
    visitors = new.customers.join(scope, "customer_id", "left_semi").select("visitor_id").dropna()
    events = new.clickstream_events
    sessions = union_keys(
        [
            events.join(scope, "customer_id", "left_semi").select("session_id"),
            events.join(visitors, "visitor_id", "left_semi").select("session_id"),
        ]
    )
    return build_customer_360(
        new.customers,
        orders,
        items,
        new.products,
        events.join(sessions, "session_id", "left_semi"),
        as_of,
    ).join(scope, "customer_id", "left_semi")


def recompute_daily_sales(new: SilverState, scope: DataFrame) -> DataFrame:
    """Days in scope: their orders' lines, and all orders of their customers (first order day)."""
    days = scope.select(F.col("sales_date").alias("_day"))
    on_days = new.orders.join(days, F.to_date(new.orders["order_ts"]) == days["_day"], "left_semi")
    customers = on_days.select("customer_id").dropna().distinct()
    orders = on_days.unionByName(new.orders.join(customers, "customer_id", "left_semi")).dropDuplicates(["order_id"])
    items = new.order_items.join(on_days.select("order_id"), "order_id", "left_semi")
    return build_daily_sales(orders, items, new.products).join(scope, "sales_date", "left_semi")


def recompute_product_performance(new: SilverState, scope: DataFrame) -> DataFrame:
    keys = ["product_id", "activity_date"]
    events = (
        new.clickstream_events.withColumn("activity_date", F.to_date("event_ts"))
        .join(scope, keys, "left_semi")
        .drop("activity_date")
    )
    days = scope.select(F.col("activity_date").alias("_day")).distinct()
    orders = new.orders.join(days, F.to_date(new.orders["order_ts"]) == days["_day"], "left_semi")
    items = new.order_items.join(scope.select("product_id").distinct(), "product_id", "left_semi").join(
        orders.select("order_id"), "order_id", "left_semi"
    )
    return build_product_performance(events, orders, items).join(scope, keys, "left_semi")
