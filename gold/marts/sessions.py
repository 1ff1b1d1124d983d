"""`gold.sessions` — one row per clickstream session (silver's 30-minute inactivity sessions).

A session's customer is the one logged on its events (the last one, if several), else the
customer who signed up as its visitor (`silver.customers.visitor_id`): browsing before
sign-up counts for the customer. Its cart value is priced at the current list price.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from core.schema import EVENT_TYPES
from gold.marts.common import event_order
from gold.marts.contract import AMOUNT, Col, Mart

CART_EVENTS = ("add_to_cart", "remove_from_cart")


def event_count_column(event_type: str) -> str:
    return f"{event_type}_count"


MART = Mart(
    name="sessions",
    grain="one row per clickstream session (`session_id` from silver)",
    key=("session_id",),
    scope=("session_id",),
    sources=("clickstream_events", "customers", "products"),
    columns=(
        Col(
            "session_id",
            T.StringType(),
            "silver's session id: a visitor's events with no gap longer than ECOM_SESSION_GAP_MINUTES (30)",
        ),
        Col("visitor_id", T.StringType(), "the anonymous visitor (browser) of the session"),
        Col(
            "customer_id",
            T.LongType(),
            "customer when known: the last customer_id logged on the session's events, else the customer "
            "who signed up as this visitor (the lowest customer_id if several); NULL if anonymous",
        ),
        Col("session_date", T.DateType(), "UTC date of the session's first event"),
        Col("session_start", T.TimestampType(), "time of the session's first event"),
        Col("session_end", T.TimestampType(), "time of the session's last event"),
        Col("duration_seconds", T.DoubleType(), "session_end − session_start in seconds (0 for one event)"),
        Col("events_count", T.LongType(), "number of events in the session"),
        *(Col(event_count_column(t), T.LongType(), f"number of `{t}` events in the session") for t in EVENT_TYPES),
        Col("entry_page", T.StringType(), "page_url of the first event (ties broken by event_id)"),
        Col("exit_page", T.StringType(), "page_url of the last event (ties broken by event_id)"),
        Col("device", T.StringType(), "device of the first event"),
        Col("channel", T.StringType(), "marketing channel of the first event"),
        Col("referrer", T.StringType(), "referrer of the first event"),
        Col("is_converted", T.BooleanType(), "the session has at least one `purchase` event"),
        Col("is_bounced", T.BooleanType(), "the session has exactly one event"),
        Col(
            "cart_value",
            AMOUNT,
            "value of the cart at the session's end at current list price: Σ over products of "
            "max(add_to_cart − remove_from_cart, 0) × silver.products.unit_price (unknown product or price: 0)",
        ),
    ),
)


def session_customers(events_df: DataFrame, customers_df: DataFrame) -> DataFrame:
    """(session_id, visitor_id, customer_id): who each session belongs to, when known."""
    stitched = (
        customers_df.where(F.col("visitor_id").isNotNull())
        .groupBy("visitor_id")
        .agg(F.min("customer_id").alias("signed_up_customer_id"))
    )
    logged = F.when(F.col("customer_id").isNotNull(), event_order())
    per_session = (
        events_df.where(F.col("session_id").isNotNull())
        .groupBy("session_id")
        .agg(
            F.min_by("visitor_id", event_order()).alias("visitor_id"),
            F.max_by("customer_id", logged).alias("logged_customer_id"),
        )
    )
    return (
        per_session.join(stitched, "visitor_id", "left")
        .withColumn("customer_id", F.coalesce("logged_customer_id", "signed_up_customer_id"))
        .select("session_id", "visitor_id", "customer_id")
    )


def session_facts(events_df: DataFrame, customers_df: DataFrame) -> DataFrame:
    """Every sessions column except `cart_value` (which needs prices): one row per session."""
    events = events_df.where(F.col("session_id").isNotNull())
    first, last = F.min_by, F.max_by
    facts = events.groupBy("session_id").agg(
        F.min("event_ts").alias("session_start"),
        F.max("event_ts").alias("session_end"),
        F.count(F.lit(1)).alias("events_count"),
        *(F.count(F.when(F.col("event_type") == t, True)).alias(event_count_column(t)) for t in EVENT_TYPES),
        first("page_url", event_order()).alias("entry_page"),
        last("page_url", event_order()).alias("exit_page"),
        first("device", event_order()).alias("device"),
        first("channel", event_order()).alias("channel"),
        first("referrer", event_order()).alias("referrer"),
    )
    return (
        facts.join(session_customers(events, customers_df), "session_id", "inner")
        .withColumn("session_date", F.to_date("session_start"))
        .withColumn(
            "duration_seconds",
            (F.unix_micros("session_end") - F.unix_micros("session_start")).cast("double") / 1_000_000,
        )
        .withColumn("is_converted", F.col(event_count_column("purchase")) > 0)
        .withColumn("is_bounced", F.col("events_count") == 1)
    )


def cart_values(events_df: DataFrame, products_df: DataFrame) -> DataFrame:
    """(session_id, cart_value) for sessions with cart events."""
    delta = F.when(F.col("event_type") == "add_to_cart", 1).otherwise(-1)
    in_cart = (
        events_df.where(F.col("session_id").isNotNull() & F.col("event_type").isin(*CART_EVENTS))
        .where(F.col("product_id").isNotNull())
        .groupBy("session_id", "product_id")
        .agg(F.greatest(F.sum(delta), F.lit(0)).alias("units"))
    )
    prices = products_df.select("product_id", F.col("unit_price"))
    return (
        in_cart.join(prices, "product_id", "left")
        .groupBy("session_id")
        .agg(F.sum(F.col("units") * F.coalesce(F.col("unit_price"), F.lit(0))).cast(AMOUNT).alias("cart_value"))
    )


def build_sessions(events_df: DataFrame, customers_df: DataFrame, products_df: DataFrame) -> DataFrame:
    """The sessions mart from silver clickstream events, customers and products."""
    return (
        session_facts(events_df, customers_df)
        .join(cart_values(events_df, products_df), "session_id", "left")
        .withColumn("cart_value", F.coalesce(F.col("cart_value"), F.lit(0).cast(AMOUNT)))
        .transform(MART.conform)
    )
