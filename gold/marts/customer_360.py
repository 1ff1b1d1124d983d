"""`gold.customer_360` — one row per customer: profile, orders, RFM, categories, clickstream.

Two kinds of columns:

- *base* columns depend only on the customer's own rows (silver profile, orders and lines;
  their `gold.sessions` rows, built earlier in the same run from the same silver versions:
  the mart reads them rather than sessionising the clickstream a second time): an
  incremental run recomputes them for the touched customers only;
- *as-of* columns (`AS_OF_COLUMNS`) are a row-wise function of the base columns and the
  run's logical date `as_of_date` — never of the wall clock nor of other customers. RFM
  scores therefore use fixed, documented thresholds, not quantiles over all customers (a
  quantile score would change every customer's row when one customer orders). When the
  as-of date moves, every row's as-of columns are re-derived from its stored base columns
  (one row per customer, no silver read), which equals a rebuild.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from gold.marts.common import order_lines, ratio, with_order_facts
from gold.marts.contract import AMOUNT, RATE, Col, Mart, conform
from gold.marts.sessions import event_count_column

# RFM thresholds (tune to the business; the dictionary shows the values in force).
RECENCY_DAYS: tuple[int, int, int, int] = (14, 30, 90, 180)  # ≤ 14 days → 5, ≤ 30 → 4, ≤ 90 → 3, ≤ 180 → 2, else 1
FREQUENCY_ORDERS: tuple[int, int, int, int] = (2, 3, 5, 10)  # ≥ 10 net orders → 5, ≥ 5 → 4, ≥ 3 → 3, ≥ 2 → 2, else 1
MONETARY_REVENUE: tuple[int, int, int, int] = (100, 250, 500, 1000)  # ≥ 1000 → 5, ≥ 500 → 4, ≥ 250 → 3, ≥ 100 → 2
TOP_CATEGORIES = 3
CLV_HORIZON_YEARS = 3
CLV_MIN_TENURE_DAYS = 30
CHURN_MIN_DAYS = 60
CHURN_GAP_FACTOR = 2


@dataclass(frozen=True)
class Segment:
    name: str
    rule: str
    when: Callable[[Column, Column, Column], Column]  # (r, f, m) → condition


# First match wins; Prospect (no net order) is decided before the scores.
SEGMENTS: tuple[Segment, ...] = (
    Segment("Champions", "R ≥ 4, F ≥ 4 and M ≥ 4", lambda r, f, m: (r >= 4) & (f >= 4) & (m >= 4)),
    Segment("Loyal", "R ≥ 3 and F ≥ 4", lambda r, f, m: (r >= 3) & (f >= 4)),
    Segment("New", "R ≥ 4 and F = 1", lambda r, f, m: (r >= 4) & (f == 1)),
    Segment("Promising", "R ≥ 3 and F ≤ 3", lambda r, f, m: (r >= 3) & (f <= 3)),
    Segment("At risk", "R ≤ 2 and F ≥ 3", lambda r, f, m: (r <= 2) & (f >= 3)),
    Segment("Hibernating", "R ≤ 2 and F ≤ 2", lambda r, f, m: (r <= 2) & (f <= 2)),
)
PROSPECT = "Prospect"


def _lower_is_better(bounds: tuple[int, ...]) -> str:
    parts = [f"{5 - i} if ≤ {b}" for i, b in enumerate(bounds)]
    return ", ".join(parts) + ", else 1"


def _higher_is_better(bounds: tuple[int, ...]) -> str:
    parts = [f"{i + 2} if ≥ {b}" for i, b in reversed(list(enumerate(bounds)))]
    return ", ".join(parts) + ", else 1"


BASE_COLUMNS: tuple[Col, ...] = (
    Col("customer_id", T.LongType(), "the customer (silver.customers key)"),
    Col("email", T.StringType(), "e-mail address (lower case)"),
    Col("first_name", T.StringType(), "first name, from silver.customers"),
    Col("last_name", T.StringType(), "last name, from silver.customers"),
    Col("phone", T.StringType(), "phone number (E.164 when the country is known)"),
    Col("country_code", T.StringType(), "ISO 3166-1 alpha-2 country code"),
    Col("city", T.StringType(), "city of the customer's address"),
    Col("signup_at", T.TimestampType(), "when the customer signed up"),
    Col("orders_count", T.LongType(), "orders placed, any status"),
    Col("net_orders_count", T.LongType(), "orders neither cancelled nor returned"),
    Col("cancelled_orders_count", T.LongType(), "orders whose status is cancelled"),
    Col("returned_orders_count", T.LongType(), "orders whose status is returned"),
    Col("revenue", AMOUNT, "Σ total_amount of net orders (net of cancellations and returns); 0 without"),
    Col("avg_order_value", AMOUNT, "revenue / net_orders_count, rounded to cents; NULL without net orders"),
    Col("first_order_date", T.DateType(), "UTC date of the first order placed (any status)"),
    Col("last_order_date", T.DateType(), "UTC date of the last order placed (any status)"),
    Col(
        "avg_days_between_orders",
        T.DoubleType(),
        "(last_order_date − first_order_date) / (orders_count − 1) in days; NULL with fewer than 2 orders",
    ),
    Col(
        "top_categories",
        T.ArrayType(T.StringType()),
        f"up to {TOP_CATEGORIES} categories by net line amount of net orders, highest first (ties: name); empty without",
    ),
    Col("top_categories_csv", T.StringType(), "top_categories joined with ',' (for JDBC); NULL when empty"),
    Col("sessions_count", T.LongType(), "clickstream sessions attributed to the customer (see sessions.customer_id)"),
    Col("avg_session_duration_seconds", T.DoubleType(), "mean sessions.duration_seconds; NULL without sessions"),
    Col("last_seen_at", T.TimestampType(), "end of the customer's latest session; NULL without sessions"),
    Col("conversion_rate", RATE, "sessions with a purchase event / sessions; NULL without sessions"),
    Col(
        "cart_abandonment_rate",
        RATE,
        "sessions with add_to_cart but no purchase / sessions with add_to_cart; NULL without such sessions",
    ),
)

AS_OF_COLUMNS: tuple[Col, ...] = (
    Col(
        "as_of_date",
        T.DateType(),
        "the run's logical date (UTC date of the newest silver clock): what 'days since' count to",
    ),
    Col("days_since_last_order", T.IntegerType(), "as_of_date − last_order_date in days; NULL without orders"),
    Col(
        "r_score",
        T.IntegerType(),
        f"recency score from days_since_last_order: {_lower_is_better(RECENCY_DAYS)}; NULL without net orders",
    ),
    Col(
        "f_score",
        T.IntegerType(),
        f"frequency score from net_orders_count: {_higher_is_better(FREQUENCY_ORDERS)}; NULL without net orders",
    ),
    Col(
        "m_score",
        T.IntegerType(),
        f"monetary score from revenue: {_higher_is_better(MONETARY_REVENUE)}; NULL without net orders",
    ),
    Col(
        "rfm_segment",
        T.StringType(),
        f"{PROSPECT} (no net order), else the first of: "
        + "; ".join(f"{s.name} ({s.rule})" for s in SEGMENTS)
        + " — R, F, M are r_score, f_score, m_score",
    ),
    Col(
        "clv_estimate",
        AMOUNT,
        f"{CLV_HORIZON_YEARS}-year customer lifetime value: avg_order_value × net_orders_count × 365 / "
        f"max(as_of_date − first_order_date + 1, {CLV_MIN_TENURE_DAYS}) × {CLV_HORIZON_YEARS}, rounded to cents; "
        "0 without net orders",
    ),
    Col(
        "is_churn_risk",
        T.BooleanType(),
        f"has ordered and days_since_last_order > max({CHURN_MIN_DAYS}, "
        f"{CHURN_GAP_FACTOR} × avg_days_between_orders) (avg taken as 0 with one order)",
    ),
)

MART = Mart(
    name="customer_360",
    grain="one row per customer in silver.customers",
    key=("customer_id",),
    scope=("customer_id",),
    sources=("customers", "orders", "order_items", "products", "clickstream_events"),
    columns=BASE_COLUMNS + AS_OF_COLUMNS,
    notes=(
        "Orders of a customer_id that is not in silver.customers (guest or unknown) are not in this mart; "
        "they still count in daily_sales and product_performance.",
        "RFM uses fixed thresholds, not quantiles, so a customer's scores depend only on their own history "
        "and the as-of date (incremental runs equal a rebuild).",
        "The clickstream columns aggregate the customer's gold.sessions rows, built earlier in the same run "
        "from the same silver versions.",
    ),
)


# --- base columns -------------------------------------------------------------------------------
def customer_orders(orders_df: DataFrame) -> DataFrame:
    """Per customer: order counts, net revenue, first/last order date, average gap."""
    orders = orders_df.where(F.col("customer_id").isNotNull()).transform(with_order_facts)
    status = F.lower(F.col("status"))
    return (
        orders.groupBy("customer_id")
        .agg(
            F.count(F.lit(1)).alias("orders_count"),
            F.count(F.when(F.col("is_net"), True)).alias("net_orders_count"),
            F.count(F.when(status == "cancelled", True)).alias("cancelled_orders_count"),
            F.count(F.when(status == "returned", True)).alias("returned_orders_count"),
            F.sum(F.when(F.col("is_net"), F.col("total_amount"))).alias("revenue"),
            F.min("order_date").alias("first_order_date"),
            F.max("order_date").alias("last_order_date"),
        )
        .withColumn(
            "avg_days_between_orders",
            F.when(
                F.col("orders_count") > 1,
                F.datediff("last_order_date", "first_order_date") / (F.col("orders_count") - 1),
            ),
        )
    )


def customer_top_categories(lines_df: DataFrame) -> DataFrame:
    """Per customer: `top_categories`, the categories with the highest net line amount."""
    ranked = F.array_sort(F.collect_list(F.struct((-F.col("amount")).alias("neg_amount"), F.col("category"))))
    return (
        lines_df.where(F.col("is_net") & F.col("customer_id").isNotNull())
        .groupBy("customer_id", "category")
        .agg(F.sum("line_amount").alias("amount"))
        .groupBy("customer_id")
        .agg(F.transform(F.slice(ranked, 1, TOP_CATEGORIES), lambda x: x["category"]).alias("top_categories"))
    )


def customer_sessions(sessions_df: DataFrame) -> DataFrame:
    """Per customer: sessions, mean duration, last seen, conversion and cart abandonment, from
    `gold.sessions` rows."""
    has_cart = F.col(event_count_column("add_to_cart")) > 0
    abandoned = has_cart & ~F.col("is_converted")
    return (
        sessions_df.where(F.col("customer_id").isNotNull())
        .groupBy("customer_id")
        .agg(
            F.count(F.lit(1)).alias("sessions_count"),
            F.avg("duration_seconds").alias("avg_session_duration_seconds"),
            F.max("session_end").alias("last_seen_at"),
            F.count(F.when(F.col("is_converted"), True)).alias("converted_sessions"),
            F.count(F.when(has_cart, True)).alias("cart_sessions"),
            F.count(F.when(abandoned, True)).alias("abandoned_sessions"),
        )
        .withColumn("conversion_rate", ratio(F.col("converted_sessions"), F.col("sessions_count")))
        .withColumn("cart_abandonment_rate", ratio(F.col("abandoned_sessions"), F.col("cart_sessions")))
    )


def customer_360_base(
    customers_df: DataFrame,
    orders_df: DataFrame,
    order_items_df: DataFrame,
    products_df: DataFrame,
    sessions_df: DataFrame,
) -> DataFrame:
    """The base columns for every customer in `customers_df` (`sessions_df`: gold.sessions rows)."""
    lines = order_lines(orders_df, order_items_df, products_df)
    empty = F.array().cast(T.ArrayType(T.StringType()))
    zero = F.lit(0).cast(T.LongType())
    return (
        customers_df.join(customer_orders(orders_df), "customer_id", "left")
        .join(customer_top_categories(lines), "customer_id", "left")
        .join(customer_sessions(sessions_df), "customer_id", "left")
        .fillna(0, subset=["orders_count", "net_orders_count", "cancelled_orders_count", "returned_orders_count"])
        .withColumn("revenue", F.coalesce(F.col("revenue"), F.lit(0)).cast(AMOUNT))
        .withColumn(
            "avg_order_value",
            F.when(F.col("net_orders_count") > 0, F.round(F.col("revenue") / F.col("net_orders_count"), 2)),
        )
        .withColumn("top_categories", F.coalesce(F.col("top_categories"), empty))
        .withColumn("top_categories_csv", F.when(F.size("top_categories") > 0, F.array_join("top_categories", ",")))
        .withColumn("sessions_count", F.coalesce(F.col("sessions_count"), zero))
        .transform(lambda df: conform(df, BASE_COLUMNS))
    )


# --- as-of columns ------------------------------------------------------------------------------
def score_lower_is_better(value: Column, bounds: tuple[int, ...]) -> Column:
    """5 when value ≤ bounds[0], 4 when ≤ bounds[1], … else 1 (NULL stays NULL)."""
    expr = F.when(value.isNull(), F.lit(None))
    for i, bound in enumerate(bounds):
        expr = expr.when(value <= bound, F.lit(5 - i))
    return expr.otherwise(F.lit(1)).cast(T.IntegerType())


def score_higher_is_better(value: Column, bounds: tuple[int, ...]) -> Column:
    """5 when value ≥ bounds[-1], 4 when ≥ bounds[-2], … else 1 (NULL stays NULL)."""
    expr = F.when(value.isNull(), F.lit(None))
    for i, bound in reversed(list(enumerate(bounds))):
        expr = expr.when(value >= bound, F.lit(i + 2))
    return expr.otherwise(F.lit(1)).cast(T.IntegerType())


def rfm_segment(net_orders: Column, r: Column, f: Column, m: Column) -> Column:
    expr = F.when(net_orders == 0, F.lit(PROSPECT))
    for segment in SEGMENTS:
        expr = expr.when(segment.when(r, f, m), F.lit(segment.name))
    return expr.otherwise(F.lit(None))


def _as_of_date(as_of: datetime | date | None) -> Column:
    if as_of is None:
        return F.lit(None).cast(T.DateType())
    day = as_of.date() if isinstance(as_of, datetime) else as_of
    return F.lit(day).cast(T.DateType())


def with_as_of_metrics(df: DataFrame, as_of: datetime | date | None) -> DataFrame:
    """Add the as-of columns, row by row, from the base columns and the logical date."""
    has_net = F.col("net_orders_count") > 0
    tenure = F.greatest(F.datediff("as_of_date", "first_order_date") + 1, F.lit(CLV_MIN_TENURE_DAYS))
    clv = F.col("avg_order_value") * F.col("net_orders_count") * 365 * CLV_HORIZON_YEARS / tenure
    churn_after = F.greatest(
        F.lit(float(CHURN_MIN_DAYS)), CHURN_GAP_FACTOR * F.coalesce(F.col("avg_days_between_orders"), F.lit(0.0))
    )
    return (
        df.withColumn("as_of_date", _as_of_date(as_of))
        .withColumn("days_since_last_order", F.datediff("as_of_date", "last_order_date"))
        .withColumn("r_score", F.when(has_net, score_lower_is_better(F.col("days_since_last_order"), RECENCY_DAYS)))
        .withColumn("f_score", F.when(has_net, score_higher_is_better(F.col("net_orders_count"), FREQUENCY_ORDERS)))
        .withColumn("m_score", F.when(has_net, score_higher_is_better(F.col("revenue"), MONETARY_REVENUE)))
        .withColumn(
            "rfm_segment",
            rfm_segment(F.col("net_orders_count"), F.col("r_score"), F.col("f_score"), F.col("m_score")),
        )
        .withColumn("clv_estimate", F.when(has_net, F.round(clv, 2)).otherwise(F.lit(0)).cast(AMOUNT))
        .withColumn(
            "is_churn_risk",
            F.coalesce((F.col("orders_count") > 0) & (F.col("days_since_last_order") > churn_after), F.lit(False)),
        )
    )


def refresh_as_of(customer_360_df: DataFrame, as_of: datetime | date | None) -> DataFrame:
    """Stored customer_360 rows with their as-of columns re-derived for a new logical date."""
    return (
        customer_360_df.transform(lambda df: conform(df, BASE_COLUMNS))
        .transform(lambda df: with_as_of_metrics(df, as_of))
        .transform(MART.conform)
    )


def build_customer_360(
    customers_df: DataFrame,
    orders_df: DataFrame,
    order_items_df: DataFrame,
    products_df: DataFrame,
    sessions_df: DataFrame,
    as_of: datetime | date | None,
) -> DataFrame:
    """The customer_360 mart from silver frames, gold.sessions and the run's logical time."""
    return (
        customer_360_base(customers_df, orders_df, order_items_df, products_df, sessions_df)
        .transform(lambda df: with_as_of_metrics(df, as_of))
        .transform(MART.conform)
    )
