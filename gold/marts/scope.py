"""Incremental scope: which gold keys a silver change touches, and their recomputation.

Given the rows that changed in each silver table between the version a mart last consumed
(`old`) and the current one (`new`) — every row image of Delta's change data feed — each
`*_scope` function returns the gold scope keys whose rows may differ. It evaluates the
dependency on *both* states (old: where a row used to count; new: where it counts now), so a
re-dated order, a moved event or a re-assigned session is taken out of its old key and put
into its new one; a key with no row left is deleted by the caller.

The change feed holds the old and the new version of every changed row, so what depends on
a changed row alone is read from it, not looked up in the (large) silver tables. A lookup
by another column (the orders of changed lines, the events of touched sessions) reads the
new state plus the images: an unchanged row is the same in both states, and a changed row's
old version is among the images. Only aggregates over a whole state (a session's customer,
a customer's first order day) still read the old state itself.

Every lookup of a large silver table by a set of keys is a broadcast semi-join: the table is
read once and never shuffled (a sort-merge join would shuffle all 10M events to find a few
thousand sessions, whatever the scope's size).

Each `recompute_*` function then rebuilds the rows of a scope by calling the mart's own
pure transform on silver filtered to what those keys need, so the incremental path and a
full rebuild share one definition of every metric.

Dependencies (→ gold keys):
- orders (changed in customer, order date, standing or total: a status move within its
  standing changes no mart), order_items → their orders' customers, sales dates, product × dates;
- products → only when a column a mart uses changed: `category` (customer top categories,
  daily_sales) or `unit_price` (sessions' cart value);
- clickstream_events → their sessions (old and new session_id) and product × event dates;
- customers → themselves, and when their visitor_id changed (or they are new or gone) the
  sessions of that visitor (sign-up attribution);
- gold.sessions (customer_360 reads its clickstream metrics there) → the customers of its
  changed rows, old and new attribution, from its change data feed: customer_360 follows
  what the sessions MERGE changed instead of re-deriving it from the events;
- a customer's first order date moving → the old and the new date of daily_sales
  (new vs returning customers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import date, datetime
from functools import reduce

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from gold.marts.common import order_lines, order_standing
from gold.marts.customer_360 import build_customer_360
from gold.marts.daily_sales import build_daily_sales, first_order_dates
from gold.marts.product_performance import build_product_performance
from gold.marts.sessions import CART_EVENTS, build_sessions

# Computes a frame read more than once, once (`gold.job` passes a local checkpoint).
Materialize = Callable[[DataFrame], DataFrame]

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


CHANGE_TYPE = "_change_type"  # insert | delete | update_preimage | update_postimage
SIDE_CHANGES = ("insert", "delete")  # the key exists on one side only


@dataclass(frozen=True)
class Changes:
    """Per silver table, every image of its changed rows (business columns and `_change_type`):
    inserted and deleted rows, and each update's before and after image. A key changed several
    times has several images; its old and its new version are among them."""

    customers: DataFrame
    products: DataFrame
    orders: DataFrame
    order_items: DataFrame
    clickstream_events: DataFrame

    @classmethod
    def of(cls, frames: dict[str, DataFrame]) -> Changes:
        return cls(**{f.name: frames[f.name] for f in fields(cls)})


def as_is(df: DataFrame) -> DataFrame:
    return df


def union_keys(frames: list[DataFrame]) -> DataFrame:
    """Distinct non-null keys of frames that share their columns."""
    combined = reduce(DataFrame.unionByName, frames)
    return combined.dropna().distinct()


def changed_on(images: DataFrame, key: str, columns: list[str]) -> DataFrame:
    """The changed keys whose `columns` may differ between old and new: inserted or deleted
    ones, and those whose images disagree on them (a value changed and changed back counts)."""
    return (
        images.groupBy(key)
        .agg(
            F.count_distinct(F.struct(*columns)).alias("_values"),
            F.max(F.col(CHANGE_TYPE).isin(*SIDE_CHANGES)).alias("_one_side"),
        )
        .where((F.col("_values") > 1) | F.col("_one_side"))
        .select(key)
    )


def either_state(new_df: DataFrame, images: DataFrame) -> DataFrame:
    """The rows of the new state and every image of a changed row: a superset of the rows of
    the old state and of the new one, for row-wise lookups (never for aggregates)."""
    return new_df.unionByName(images.drop(CHANGE_TYPE))


# What the marts read of an order: a change elsewhere (a status move within its standing, a
# shipping address) moves no mart row.
ORDER_FACTS = ["customer_id", "_order_date", "_standing", "total_amount"]


def changed_orders(changes: Changes) -> DataFrame:
    """(order_id): inserted or deleted orders, and those whose customer, order date, standing
    (net / cancelled / returned) or total changed."""
    images = changes.orders.withColumn("_order_date", F.to_date("order_ts")).withColumn(
        "_standing", order_standing(F.col("status"))
    )
    return changed_on(images, "order_id", ORDER_FACTS)


def affected_orders(changes: Changes, new: SilverState, *, products: DataFrame | None = None) -> DataFrame:
    """(order_id): orders changed in what the marts read of them, orders of changed lines and,
    if given, orders with lines of `products`."""
    parts = [changed_orders(changes), changes.order_items.select("order_id")]
    if products is not None:
        lines = either_state(new.order_items, changes.order_items)
        parts.append(lines.join(F.broadcast(products), "product_id", "left_semi").select("order_id"))
    return union_keys(parts)


def session_scope(changes: Changes, new: SilverState, *, priced_products: DataFrame | None = None) -> DataFrame:
    """(session_id): sessions of changed events (before and after), of the visitors of
    customers whose sign-up visitor changed (new, deleted or re-linked customers: a profile
    change moves no session) and, if given, sessions with cart events of `priced_products`
    (the last two in one pass over the events)."""
    signed_up = changes.customers.join(changed_on(changes.customers, "customer_id", ["visitor_id"]), "customer_id")
    visitors = union_keys([signed_up.select("visitor_id")]).withColumn("_visitor", F.lit(True))
    events = new.clickstream_events.select("session_id", "visitor_id", "event_type", "product_id").join(
        F.broadcast(visitors), "visitor_id", "left"
    )
    hit = F.col("_visitor")  # NULL (no match) everywhere: not in scope
    if priced_products is not None:
        priced = priced_products.select("product_id").withColumn("_priced", F.lit(True))
        events = events.join(F.broadcast(priced), "product_id", "left")
        hit = hit | (F.col("_priced") & F.col("event_type").isin(*CART_EVENTS))
    return union_keys([changes.clickstream_events.select("session_id"), events.where(hit).select("session_id")])


def sessions_scope(changes: Changes, new: SilverState) -> DataFrame:
    """Scope of gold.sessions (session_id)."""
    priced = changed_on(changes.products, "product_id", ["unit_price"])
    return session_scope(changes, new, priced_products=priced)


def customer_360_scope(changes: Changes, new: SilverState, sessions: DataFrame) -> DataFrame:
    """Scope of gold.customer_360 (customer_id): changed customers, the customers of touched
    orders (before and after), and the customers of the gold.sessions rows that changed since
    customer_360 read it (`sessions`: every image of their change data feed, before and after,
    so a session moved to another customer touches both)."""
    recategorised = changed_on(changes.products, "product_id", ["category"])
    orders = affected_orders(changes, new, products=recategorised)
    return union_keys(
        [
            changes.customers.select("customer_id"),
            either_state(new.orders, changes.orders)
            .join(F.broadcast(orders), "order_id", "left_semi")
            .select("customer_id"),
            sessions.select("customer_id"),
        ]
    )


def daily_sales_scope(changes: Changes, old: SilverState, new: SilverState) -> DataFrame:
    """Scope of gold.daily_sales (sales_date): days of touched orders, and the old and new
    first-order day of their customers when it moved."""
    recategorised = changed_on(changes.products, "product_id", ["category"])
    orders = affected_orders(changes, new, products=recategorised)
    touched = either_state(new.orders, changes.orders).join(F.broadcast(orders), "order_id", "left_semi")
    parts = [touched.select(F.to_date("order_ts").alias("sales_date"))]
    customers = union_keys([touched.select("customer_id")])
    before = first_order_dates(old.orders.join(F.broadcast(customers), "customer_id", "left_semi")).withColumnRenamed(
        "first_order_date", "before"
    )
    after = first_order_dates(new.orders.join(F.broadcast(customers), "customer_id", "left_semi")).withColumnRenamed(
        "first_order_date", "after"
    )
    moved = before.join(after, "customer_id", "full").where(~F.col("before").eqNullSafe(F.col("after")))
    parts += [moved.select(F.col("before").alias("sales_date")), moved.select(F.col("after").alias("sales_date"))]
    return union_keys(parts)


def daily_sales_scope_floor(changes: Changes) -> DataFrame:
    """A part of daily_sales' scope, from the change feed alone: every day the changed orders
    had (status moves into or out of net, re-dated orders, new orders). Spread over most days,
    they make the mart rebuild before its scope's lookups (three reads of all orders) run."""
    images = changes.orders.join(changed_orders(changes), "order_id", "left_semi")
    return union_keys([images.select(F.to_date("order_ts").alias("sales_date"))])


def product_performance_scope(changes: Changes, new: SilverState) -> DataFrame:
    """Scope of gold.product_performance (product_id, activity_date)."""
    orders = affected_orders(changes, new)
    parts = [changes.clickstream_events.select("product_id", F.to_date("event_ts").alias("activity_date"))]
    # Every version of an affected order paired with every version of its lines: the old and
    # the new pairs are among them (a mixed pair only widens the scope).
    lines = order_lines(
        either_state(new.orders, changes.orders).join(F.broadcast(orders), "order_id", "left_semi"),
        either_state(new.order_items, changes.order_items).join(F.broadcast(orders), "order_id", "left_semi"),
    )
    parts.append(lines.select("product_id", F.col("order_date").alias("activity_date")))
    return union_keys(parts)


# --- recomputation of a scope from the current silver state -----------------------------------------
def recompute_sessions(new: SilverState, scope: DataFrame, materialize: Materialize = as_is) -> DataFrame:
    """Sessions in scope, from their events (read once: the transform uses them three times)."""
    events = materialize(new.clickstream_events.join(F.broadcast(scope), "session_id", "left_semi"))
    return build_sessions(events, new.customers, new.products).join(F.broadcast(scope), "session_id", "left_semi")


def recompute_customer_360(
    new: SilverState, scope: DataFrame, as_of: datetime | date | None, sessions: DataFrame
) -> DataFrame:
    """Customers in scope, from their silver rows and their rows of gold.sessions (`sessions`,
    as this run wrote it: every session in the scope's change is current there)."""
    customers = new.customers.join(F.broadcast(scope), "customer_id", "left_semi")
    orders = new.orders.join(F.broadcast(scope), "customer_id", "left_semi")
    items = new.order_items.join(F.broadcast(orders.select("order_id")), "order_id", "left_semi")
    theirs = sessions.join(F.broadcast(scope), "customer_id", "left_semi")
    return build_customer_360(customers, orders, items, new.products, theirs, as_of)


def recompute_daily_sales(new: SilverState, scope: DataFrame) -> DataFrame:
    """Days in scope: their orders' lines, and all orders of their customers (first order day)."""
    days = scope.select(F.col("sales_date").alias("_day"))
    on_days = new.orders.join(F.broadcast(days), F.to_date(new.orders["order_ts"]) == days["_day"], "left_semi")
    customers = on_days.select("customer_id").dropna().distinct()
    orders = on_days.unionByName(new.orders.join(F.broadcast(customers), "customer_id", "left_semi")).dropDuplicates(
        ["order_id"]
    )
    items = new.order_items.join(F.broadcast(on_days.select("order_id")), "order_id", "left_semi")
    return build_daily_sales(orders, items, new.products).join(F.broadcast(scope), "sales_date", "left_semi")


def recompute_product_performance(new: SilverState, scope: DataFrame) -> DataFrame:
    keys = ["product_id", "activity_date"]
    events = (
        new.clickstream_events.withColumn("activity_date", F.to_date("event_ts"))
        .join(F.broadcast(scope), keys, "left_semi")
        .drop("activity_date")
    )
    days = scope.select(F.col("activity_date").alias("_day")).distinct()
    orders = new.orders.join(F.broadcast(days), F.to_date(new.orders["order_ts"]) == days["_day"], "left_semi")
    items = new.order_items.join(F.broadcast(scope.select("product_id").distinct()), "product_id", "left_semi").join(
        F.broadcast(orders.select("order_id")), "order_id", "left_semi"
    )
    return build_product_performance(events, orders, items).join(F.broadcast(scope), keys, "left_semi")
