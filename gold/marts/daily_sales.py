"""`gold.daily_sales` — one row per sales day × product category.

A day is the UTC date an order was placed (`order_ts`); an order counts in every category
it has a line in. Revenue is net: lines of cancelled and returned orders are left out (and
counted in `cancelled_orders` / `returned_orders` instead). Whether a customer is new or
returning depends on their first order overall, so a late or re-dated order can change
another day's row: the incremental scope accounts for it (see `gold.marts.scope`).
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from gold.marts.common import UNKNOWN_CATEGORY, order_lines, with_order_facts
from gold.marts.contract import AMOUNT, Col, Mart

MART = Mart(
    name="daily_sales",
    grain="one row per sales_date × category with at least one order line (any status)",
    key=("sales_date", "category"),
    scope=("sales_date",),
    sources=("orders", "order_items", "products"),
    columns=(
        Col("sales_date", T.DateType(), "UTC date the orders were placed"),
        Col(
            "category",
            T.StringType(),
            f"product category of the lines (`{UNKNOWN_CATEGORY}` if the product is not in silver)",
        ),
        Col(
            "orders", T.LongType(), "net orders (not cancelled or returned) placed that day with a line in the category"
        ),
        Col("units", T.LongType(), "Σ quantity of those orders' lines in the category"),
        Col(
            "revenue",
            AMOUNT,
            "Σ (quantity × unit_price − discount_amount) of those lines: net of cancellations and returns",
        ),
        Col("avg_order_value", AMOUNT, "revenue / orders, rounded to cents; NULL when orders = 0"),
        Col(
            "new_customers",
            T.LongType(),
            "distinct customers among those orders whose first order ever (any status) was placed that day",
        ),
        Col(
            "returning_customers",
            T.LongType(),
            "distinct customers among those orders who had placed an order before that day (guests are neither)",
        ),
        Col("cancelled_orders", T.LongType(), "orders placed that day with a line in the category, now cancelled"),
        Col("returned_orders", T.LongType(), "orders placed that day with a line in the category, now returned"),
    ),
)


def first_order_dates(orders_df: DataFrame) -> DataFrame:
    """(customer_id, first_order_date) over every order of the customer, any status."""
    return (
        orders_df.where(F.col("customer_id").isNotNull())
        .transform(with_order_facts)
        .groupBy("customer_id")
        .agg(F.min("order_date").alias("first_order_date"))
    )


def build_daily_sales(orders_df: DataFrame, order_items_df: DataFrame, products_df: DataFrame) -> DataFrame:
    """The daily_sales mart from silver orders, order items and products."""
    lines = order_lines(orders_df, order_items_df, products_df).join(
        first_order_dates(orders_df), "customer_id", "left"
    )
    net = F.col("is_net")
    status = F.lower(F.col("status"))
    is_new = net & (F.col("first_order_date") == F.col("order_date"))
    is_returning = net & (F.col("first_order_date") < F.col("order_date"))
    return (
        lines.groupBy(F.col("order_date").alias("sales_date"), "category")
        .agg(
            F.count_distinct(F.when(net, F.col("order_id"))).alias("orders"),
            F.coalesce(F.sum(F.when(net, F.col("quantity"))), F.lit(0)).alias("units"),
            F.coalesce(F.sum(F.when(net, F.col("line_amount"))), F.lit(0)).alias("revenue"),
            F.count_distinct(F.when(is_new, F.col("customer_id"))).alias("new_customers"),
            F.count_distinct(F.when(is_returning, F.col("customer_id"))).alias("returning_customers"),
            F.count_distinct(F.when(status == "cancelled", F.col("order_id"))).alias("cancelled_orders"),
            F.count_distinct(F.when(status == "returned", F.col("order_id"))).alias("returned_orders"),
        )
        .withColumn("avg_order_value", F.when(F.col("orders") > 0, F.round(F.col("revenue") / F.col("orders"), 2)))
        .transform(MART.conform)
    )
