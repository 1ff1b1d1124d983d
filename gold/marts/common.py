"""Shared pure building blocks: net orders, order lines with their facts, event ordering.

Business rules that more than one mart uses live here once:

- an order is *net* (it counts as revenue) unless its status is cancelled or returned; its
  standing (net, cancelled, returned) is all a mart reads of its status;
- a line's net amount is quantity × unit_price − discount_amount (exact decimals);
- a line whose product is not in silver is filed under the category `unknown`;
- dates are UTC calendar dates of the source timestamps (the session time zone is UTC).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from gold.marts.contract import AMOUNT

NON_NET_STATUSES: tuple[str, ...] = ("cancelled", "returned")
UNKNOWN_CATEGORY = "unknown"


def is_net_order(status: Column) -> Column:
    """True when an order counts as revenue: its status is neither cancelled nor returned."""
    return F.coalesce(~F.lower(status).isin(*NON_NET_STATUSES), F.lit(False))


def order_standing(status: Column) -> Column:
    """What an order's status means to every mart: `cancelled`, `returned`, `net`, or NULL (no
    status: not net). A move within a standing (placed → paid → shipped → delivered) changes no
    mart row."""
    lowered = F.lower(status)
    return F.when(lowered.isin(*NON_NET_STATUSES), lowered).when(is_net_order(status), F.lit("net"))


def line_amount(quantity: Column, unit_price: Column, discount_amount: Column) -> Column:
    """Net amount of an order line: quantity × unit_price − discount_amount, as DECIMAL(18,2)."""
    return (quantity * unit_price - F.coalesce(discount_amount, F.lit(0))).cast(AMOUNT)


def event_order() -> Column:
    """The total order of events within a session: time, then event_id to break ties."""
    return F.struct(F.col("event_ts"), F.col("event_id"))


def with_order_facts(orders_df: DataFrame) -> DataFrame:
    """Add `order_date` and `is_net` to orders."""
    return orders_df.withColumn("order_date", F.to_date("order_ts")).withColumn("is_net", is_net_order(F.col("status")))


def order_lines(orders_df: DataFrame, order_items_df: DataFrame, products_df: DataFrame | None = None) -> DataFrame:
    """One row per order line of a known order, with its order's facts (and its product's
    category when `products_df` is given)."""
    orders = orders_df.transform(with_order_facts).select(
        "order_id", "customer_id", "status", "order_ts", "order_date", "is_net"
    )
    lines = (
        order_items_df.select("order_item_id", "order_id", "product_id", "quantity", "unit_price", "discount_amount")
        .join(orders, "order_id", "inner")
        .withColumn("line_amount", line_amount(F.col("quantity"), F.col("unit_price"), F.col("discount_amount")))
    )
    if products_df is None:
        return lines
    return lines.join(products_df.select("product_id", "category"), "product_id", "left").withColumn(
        "category", F.coalesce(F.col("category"), F.lit(UNKNOWN_CATEGORY))
    )


def ratio(numerator: Column, denominator: Column) -> Column:
    """numerator / denominator rounded to 4 decimals; NULL when the denominator is 0 or NULL."""
    return F.when(denominator > 0, F.round(numerator.cast("double") / denominator, 4))
