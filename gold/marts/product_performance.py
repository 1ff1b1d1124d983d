"""`gold.product_performance` — one row per product × day of activity (views, carts, sales).

Funnel counts come from the clickstream (`event_ts` date); purchases, units and revenue
from silver orders (`order_ts` date), net of cancellations and returns. A day appears when
the product had at least one event or one order line that day.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from gold.marts.common import order_lines, ratio
from gold.marts.contract import AMOUNT, RATE, Col, Mart

MART = Mart(
    name="product_performance",
    grain="one row per product_id × activity_date with at least one product event or order line",
    key=("product_id", "activity_date"),
    scope=("product_id", "activity_date"),
    sources=("clickstream_events", "orders", "order_items"),
    columns=(
        Col("product_id", T.LongType(), "the product (events and order lines may name one not in silver.products)"),
        Col("activity_date", T.DateType(), "UTC date of the events (event_ts) and orders (order_ts)"),
        Col("views", T.LongType(), "`product_view` events of the product that day"),
        Col("unique_viewers", T.LongType(), "distinct visitors with a `product_view` of the product that day"),
        Col("add_to_carts", T.LongType(), "`add_to_cart` events of the product that day"),
        Col(
            "purchases",
            T.LongType(),
            "net orders (not cancelled or returned) placed that day with a line of the product",
        ),
        Col("units_sold", T.LongType(), "Σ quantity of the product in those orders"),
        Col("revenue", AMOUNT, "Σ (quantity × unit_price − discount_amount) of those lines"),
        Col(
            "view_to_purchase_rate",
            RATE,
            "purchases / views that day, rounded to 4 decimals; NULL without views (can exceed 1 when buyers skip the page)",
        ),
        Col("cart_to_purchase_rate", RATE, "purchases / add_to_carts that day; NULL without add_to_carts"),
    ),
)


def product_events(events_df: DataFrame) -> DataFrame:
    """Per product × day: funnel events from the clickstream."""
    is_view = F.col("event_type") == "product_view"
    return (
        events_df.where(F.col("product_id").isNotNull())
        .groupBy("product_id", F.to_date("event_ts").alias("activity_date"))
        .agg(
            F.count(F.when(is_view, True)).alias("views"),
            F.count_distinct(F.when(is_view, F.col("visitor_id"))).alias("unique_viewers"),
            F.count(F.when(F.col("event_type") == "add_to_cart", True)).alias("add_to_carts"),
        )
    )


def product_sales(orders_df: DataFrame, order_items_df: DataFrame) -> DataFrame:
    """Per product × day: net orders, units and revenue from silver order lines."""
    return (
        order_lines(orders_df, order_items_df)
        .where(F.col("is_net") & F.col("product_id").isNotNull())
        .groupBy("product_id", F.col("order_date").alias("activity_date"))
        .agg(
            F.count_distinct("order_id").alias("purchases"),
            F.sum("quantity").alias("units_sold"),
            F.sum("line_amount").alias("revenue"),
        )
    )


def build_product_performance(events_df: DataFrame, orders_df: DataFrame, order_items_df: DataFrame) -> DataFrame:
    """The product_performance mart from silver clickstream events, orders and order items."""
    counts = ["views", "unique_viewers", "add_to_carts", "purchases", "units_sold"]
    return (
        product_events(events_df)
        .join(product_sales(orders_df, order_items_df), ["product_id", "activity_date"], "full")
        .fillna(0, subset=counts)
        .withColumn("revenue", F.coalesce(F.col("revenue"), F.lit(0)).cast(AMOUNT))
        .withColumn("view_to_purchase_rate", ratio(F.col("purchases"), F.col("views")))
        .withColumn("cart_to_purchase_rate", ratio(F.col("purchases"), F.col("add_to_carts")))
        .transform(MART.conform)
    )
