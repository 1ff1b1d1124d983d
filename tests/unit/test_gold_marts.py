"""Gold mart transforms on inline silver rows (each with a NULL and an edge case), via chispa."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from functools import reduce
from typing import Any

import pytest
from chispa import assert_column_equality, assert_df_equality

from core.schema import EVENT_TYPES

CUSTOMERS = (
    "customer_id BIGINT, visitor_id STRING, email STRING, first_name STRING, last_name STRING, phone STRING, "
    "country_code STRING, city STRING, signup_at TIMESTAMP, updated_at TIMESTAMP"
)
PRODUCTS = (
    "product_id BIGINT, sku STRING, name STRING, category STRING, unit_price DECIMAL(12,2), is_active BOOLEAN, "
    "created_at TIMESTAMP, updated_at TIMESTAMP"
)
ORDERS = (
    "order_id BIGINT, customer_id BIGINT, status STRING, order_ts TIMESTAMP, total_amount DECIMAL(12,2), "
    "currency STRING, payment_method STRING, visitor_id STRING, updated_at TIMESTAMP"
)
ITEMS = (
    "order_item_id BIGINT, order_id BIGINT, product_id BIGINT, quantity INT, unit_price DECIMAL(12,2), "
    "discount_amount DECIMAL(12,2), updated_at TIMESTAMP"
)
EVENTS = (
    "event_id STRING, visitor_id STRING, customer_id BIGINT, event_type STRING, page_url STRING, product_id BIGINT, "
    "event_ts TIMESTAMP, device STRING, channel STRING, referrer STRING, ingested_at TIMESTAMP, session_id STRING"
)
T0 = datetime(2024, 6, 4, 12, 0, tzinfo=UTC)


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def d(text: str) -> date:
    return date.fromisoformat(text)


def money(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def customer(cid: int, visitor: str | None) -> tuple[Any, ...]:
    return (cid, visitor, f"c{cid}@example.com", f"F{cid}", f"L{cid}", None, "DE", "Berlin", ts("2024-01-01 00:00"), T0)


def product(pid: int, category: str, price: str | None) -> tuple[Any, ...]:
    return (pid, f"SKU{pid}", f"P{pid}", category, money(price), True, T0, T0)


def order(oid: int, cid: int | None, status: str, when: str, total: str) -> tuple[Any, ...]:
    return (oid, cid, status, ts(when), money(total), "USD", "card", None, T0)


def item(iid: int, oid: int, pid: int, qty: int, price: str, discount: str | None = "0.00") -> tuple[Any, ...]:
    return (iid, oid, pid, qty, money(price), money(discount), T0)


def event(
    eid: str,
    session: str | None,
    visitor: str,
    etype: str,
    when: str,
    *,
    customer_id: int | None = None,
    product_id: int | None = None,
    page: str | None = "/",
    device: str | None = "mobile",
) -> tuple[Any, ...]:
    return (eid, visitor, customer_id, etype, page, product_id, ts(when), device, "social", "https://r", T0, session)


def expected_df(spark, mart, rows: list[dict[str, Any]], defaults: dict[str, Any]):  # type: ignore[no-untyped-def]
    full = [{**defaults, **r} for r in rows]
    return spark.createDataFrame([tuple(r[c] for c in mart.column_names) for r in full], mart.schema)


# --- sessions ---------------------------------------------------------------------------------------
def test_sessions_one_row_per_session_with_attribution_funnel_and_cart_value(spark) -> None:  # type: ignore[no-untyped-def]
    from gold.marts.sessions import MART, build_sessions

    events = spark.createDataFrame(
        [
            event("e1", "S1", "v1", "page_view", "2024-05-01 10:00:00", page="/home"),
            event("e2", "S1", "v1", "product_view", "2024-05-01 10:05:00", product_id=1, page="/p/1"),
            # same instant as e2: event_id breaks the tie, so e3 comes after e2
            event("e3", "S1", "v1", "add_to_cart", "2024-05-01 10:05:00", customer_id=7, product_id=1, page="/p/1"),
            event("e4", "S1", "v1", "add_to_cart", "2024-05-01 10:06:00", product_id=1, page="/p/1"),
            event("e5", "S1", "v1", "remove_from_cart", "2024-05-01 10:07:00", product_id=1, page="/cart"),
            event("e6", "S1", "v1", "add_to_cart", "2024-05-01 10:08:00", product_id=99, page="/p/99"),
            event("e7", "S1", "v1", "remove_from_cart", "2024-05-01 10:09:00", product_id=2, page="/cart"),
            event("e8", "S1", "v1", "purchase", "2024-05-01 10:20:30", customer_id=7, page="/done"),
            event("e9", "S2", "v2", "page_view", "2024-05-02 08:00:00", page="/home"),
            event("e10", "S3", "v3", "search", "2024-05-02 23:59:59", page=None, device=None),
            event("e11", "S3", "v3", "page_view", "2024-05-03 00:00:01", page="/search"),
            event("e12", None, "v4", "page_view", "2024-05-03 00:00:01"),  # no session: not a row
        ],
        EVENTS,
    )
    customers = spark.createDataFrame([customer(7, None), customer(9, "v2"), customer(8, "v2")], CUSTOMERS)
    products = spark.createDataFrame([product(1, "books", "20.00"), product(2, "toys", "5.00")], PRODUCTS)

    zero = {f"{t}_count": 0 for t in EVENT_TYPES}
    defaults = {**zero, "channel": "social", "referrer": "https://r", "is_converted": False, "is_bounced": False}
    expected = expected_df(
        spark,
        MART,
        [
            {
                "session_id": "S1",
                "visitor_id": "v1",
                "customer_id": 7,
                "session_date": d("2024-05-01"),
                "session_start": ts("2024-05-01 10:00:00"),
                "session_end": ts("2024-05-01 10:20:30"),
                "duration_seconds": 1230.0,
                "events_count": 8,
                "page_view_count": 1,
                "product_view_count": 1,
                "add_to_cart_count": 3,
                "remove_from_cart_count": 2,
                "purchase_count": 1,
                "entry_page": "/home",
                "exit_page": "/done",
                "device": "mobile",
                "is_converted": True,
                "cart_value": money("20.00"),  # p1: 2 added − 1 removed; p99 unknown: 0; p2 never added: 0
            },
            {
                "session_id": "S2",
                "visitor_id": "v2",
                "customer_id": 8,  # signed up as v2 (two customers did: the lowest id)
                "session_date": d("2024-05-02"),
                "session_start": ts("2024-05-02 08:00:00"),
                "session_end": ts("2024-05-02 08:00:00"),
                "duration_seconds": 0.0,
                "events_count": 1,
                "page_view_count": 1,
                "entry_page": "/home",
                "exit_page": "/home",
                "device": "mobile",
                "is_bounced": True,
                "cart_value": money("0.00"),
            },
            {
                "session_id": "S3",
                "visitor_id": "v3",
                "customer_id": None,
                "session_date": d("2024-05-02"),
                "session_start": ts("2024-05-02 23:59:59"),
                "session_end": ts("2024-05-03 00:00:01"),
                "duration_seconds": 2.0,
                "events_count": 2,
                "page_view_count": 1,
                "search_count": 1,
                "entry_page": None,
                "exit_page": "/search",
                "device": None,
                "cart_value": money("0.00"),
            },
        ],
        defaults,
    )
    assert_df_equality(
        build_sessions(events, customers, products), expected, ignore_row_order=True, ignore_nullable=True
    )


# --- customer_360 -----------------------------------------------------------------------------------
def test_customer_360_orders_categories_sessions_and_rfm(spark) -> None:  # type: ignore[no-untyped-def]
    from gold.marts.customer_360 import MART, build_customer_360
    from gold.marts.sessions import build_sessions

    customers = spark.createDataFrame(
        [customer(1, "v1"), customer(2, None), customer(3, None), customer(4, None)], CUSTOMERS
    )
    products = spark.createDataFrame(
        [
            product(1, "books", "30.00"),
            product(2, "toys", "40.00"),
            product(3, "garden", "50.00"),
            product(4, "art", "10.00"),
            product(5, "zoo", "5.00"),
            product(6, "cars", "1.00"),
        ],
        PRODUCTS,
    )
    orders = spark.createDataFrame(
        [
            order(1, 1, "delivered", "2024-05-01 09:00", "100.00"),
            order(2, 1, "cancelled", "2024-05-20 09:00", "50.00"),
            order(3, 1, "paid", "2024-05-25 23:59", "200.00"),
            order(4, 3, "returned", "2024-01-10 10:00", "30.00"),
            order(5, 4, "delivered", "2024-06-04 01:00", "26.00"),
            order(6, None, "paid", "2024-06-01 10:00", "9.00"),  # guest: in no customer's row
            order(7, 99, "paid", "2024-06-01 10:00", "9.00"),  # unknown customer: no row
        ],
        ORDERS,
    )
    items = spark.createDataFrame(
        [
            item(1, 1, 1, 2, "30.00"),
            item(2, 1, 2, 1, "40.00"),
            item(3, 2, 3, 1, "50.00"),
            item(4, 3, 2, 5, "40.00"),
            item(5, 4, 1, 1, "30.00"),
            item(6, 5, 1, 1, "10.00"),  # books 10 ties with art 10: name decides
            item(7, 5, 4, 1, "10.00"),
            item(8, 5, 5, 1, "5.00"),
            item(9, 5, 6, 1, "1.00", None),  # 4th category: beyond the top 3
        ],
        ITEMS,
    )
    events = spark.createDataFrame(
        [
            event("a1", "A", "v1", "add_to_cart", "2024-05-25 23:40:00", customer_id=1, product_id=2),
            event("a2", "A", "v1", "purchase", "2024-05-25 23:50:00", customer_id=1),
            event("b1", "B", "v1", "add_to_cart", "2024-05-30 10:00:00", product_id=1),  # anonymous, v1 = customer 1
            event("c1", "C", "v9", "page_view", "2024-05-30 10:00:00"),  # nobody's
        ],
        EVENTS,
    )
    defaults = {
        "email": None,
        "first_name": None,
        "last_name": None,
        "phone": None,
        "country_code": "DE",
        "city": "Berlin",
        "signup_at": ts("2024-01-01 00:00"),
        "orders_count": 0,
        "net_orders_count": 0,
        "cancelled_orders_count": 0,
        "returned_orders_count": 0,
        "revenue": money("0.00"),
        "avg_order_value": None,
        "first_order_date": None,
        "last_order_date": None,
        "avg_days_between_orders": None,
        "top_categories": [],
        "top_categories_csv": None,
        "sessions_count": 0,
        "avg_session_duration_seconds": None,
        "last_seen_at": None,
        "conversion_rate": None,
        "cart_abandonment_rate": None,
        "as_of_date": d("2024-06-04"),
        "days_since_last_order": None,
        "r_score": None,
        "f_score": None,
        "m_score": None,
        "rfm_segment": "Prospect",
        "clv_estimate": money("0.00"),
        "is_churn_risk": False,
    }
    rows = [
        {
            "customer_id": 1,
            "orders_count": 3,
            "net_orders_count": 2,
            "cancelled_orders_count": 1,
            "revenue": money("300.00"),
            "avg_order_value": money("150.00"),
            "first_order_date": d("2024-05-01"),
            "last_order_date": d("2024-05-25"),
            "avg_days_between_orders": 12.0,
            "top_categories": ["toys", "books"],  # garden only in a cancelled order
            "top_categories_csv": "toys,books",
            "sessions_count": 2,
            "avg_session_duration_seconds": 300.0,
            "last_seen_at": ts("2024-05-30 10:00:00"),
            "conversion_rate": 0.5,
            "cart_abandonment_rate": 0.5,
            "days_since_last_order": 10,
            "r_score": 5,
            "f_score": 2,
            "m_score": 3,
            "rfm_segment": "Promising",
            "clv_estimate": money("9385.71"),  # 150 × 2 × 365 × 3 / 35 days
            "is_churn_risk": False,
        },
        {"customer_id": 2},
        {
            "customer_id": 3,
            "orders_count": 1,
            "returned_orders_count": 1,
            "first_order_date": d("2024-01-10"),
            "last_order_date": d("2024-01-10"),
            "days_since_last_order": 146,
            "is_churn_risk": True,
        },
        {
            "customer_id": 4,
            "orders_count": 1,
            "net_orders_count": 1,
            "revenue": money("26.00"),
            "avg_order_value": money("26.00"),
            "first_order_date": d("2024-06-04"),
            "last_order_date": d("2024-06-04"),
            "top_categories": ["art", "books", "zoo"],
            "top_categories_csv": "art,books,zoo",
            "days_since_last_order": 0,
            "r_score": 5,
            "f_score": 1,
            "m_score": 1,
            "rfm_segment": "New",
            "clv_estimate": money("949.00"),  # 26 × 365 × 3 / 30 (minimum tenure)
        },
    ]
    for r in rows:
        cid = r["customer_id"]
        r.update(email=f"c{cid}@example.com", first_name=f"F{cid}", last_name=f"L{cid}")
    expected = expected_df(spark, MART, rows, defaults)
    sessions = build_sessions(events, customers, products)  # gold.sessions, as the run builds it first
    actual = build_customer_360(customers, orders, items, products, sessions, T0)
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


@pytest.mark.parametrize(
    ("days", "score"), [(None, None), (0, 5), (14, 5), (15, 4), (30, 4), (90, 3), (180, 2), (181, 1)]
)
def test_recency_score_thresholds(spark, days, score) -> None:  # type: ignore[no-untyped-def]
    from pyspark.sql import functions as F

    from gold.marts.customer_360 import RECENCY_DAYS, score_lower_is_better

    df = spark.createDataFrame([(days, score)], "days INT, expected INT").withColumn(
        "score", score_lower_is_better(F.col("days"), RECENCY_DAYS)
    )
    assert_column_equality(df, "score", "expected")


def test_monetary_and_frequency_scores_count_from_the_bottom(spark) -> None:  # type: ignore[no-untyped-def]
    from pyspark.sql import functions as F

    from gold.marts.customer_360 import MONETARY_REVENUE, score_higher_is_better

    rows = [(None, None), (Decimal("0.00"), 1), (Decimal("99.99"), 1), (Decimal("100.00"), 2), (Decimal("1000"), 5)]
    df = spark.createDataFrame(rows, "revenue DECIMAL(18,2), expected INT").withColumn(
        "score", score_higher_is_better(F.col("revenue"), MONETARY_REVENUE)
    )
    assert_column_equality(df, "score", "expected")


def test_refresh_as_of_equals_a_rebuild_at_the_new_date(spark) -> None:  # type: ignore[no-untyped-def]
    from gold.marts.customer_360 import build_customer_360, refresh_as_of
    from gold.marts.sessions import build_sessions

    customers = spark.createDataFrame([customer(1, None), customer(2, None)], CUSTOMERS)
    products = spark.createDataFrame([product(1, "books", "10.00")], PRODUCTS)
    orders = spark.createDataFrame([order(1, 1, "paid", "2024-05-01 10:00", "10.00")], ORDERS)
    items = spark.createDataFrame([item(1, 1, 1, 1, "10.00")], ITEMS)
    events = spark.createDataFrame([], EVENTS)
    later = datetime(2024, 9, 1, tzinfo=UTC)
    sessions = build_sessions(events, customers, products)
    stored = build_customer_360(customers, orders, items, products, sessions, T0)
    rebuilt = build_customer_360(customers, orders, items, products, sessions, later)
    assert_df_equality(refresh_as_of(stored, later), rebuilt, ignore_row_order=True, ignore_nullable=True)


# --- daily_sales ------------------------------------------------------------------------------------
def test_daily_sales_net_revenue_and_new_vs_returning(spark) -> None:  # type: ignore[no-untyped-def]
    from gold.marts.daily_sales import MART, build_daily_sales

    products = spark.createDataFrame([product(1, "books", "10.00"), product(2, "toys", "5.00")], PRODUCTS)
    orders = spark.createDataFrame(
        [
            order(1, 1, "delivered", "2024-05-01 10:00", "24.00"),
            order(2, 1, "paid", "2024-05-02 10:00", "10.00"),
            order(3, 2, "cancelled", "2024-05-02 09:00", "30.00"),  # c2's first order: cancelled, still first
            order(4, 2, "paid", "2024-05-02 23:59:59", "5.00"),
            order(5, None, "paid", "2024-05-02 12:00", "7.50"),  # guest, unknown product
            order(6, 3, "returned", "2024-05-03 00:00", "10.00"),
        ],
        ORDERS,
    )
    items = spark.createDataFrame(
        [
            item(1, 1, 1, 2, "10.00", "1.00"),
            item(2, 1, 2, 1, "5.00"),
            item(3, 2, 1, 1, "10.00"),
            item(4, 3, 1, 3, "10.00"),
            item(5, 4, 2, 1, "5.00", None),
            item(6, 5, 9, 1, "7.50"),
            item(7, 6, 1, 1, "10.00"),
            item(8, 404, 1, 1, "10.00"),  # its order is not in silver: ignored
        ],
        ITEMS,
    )
    defaults = {"new_customers": 0, "returning_customers": 0, "cancelled_orders": 0, "returned_orders": 0}
    rows = [
        {"sales_date": d("2024-05-01"), "category": "books", "orders": 1, "units": 2, "revenue": money("19.00"),
         "avg_order_value": money("19.00"), "new_customers": 1},
        {"sales_date": d("2024-05-01"), "category": "toys", "orders": 1, "units": 1, "revenue": money("5.00"),
         "avg_order_value": money("5.00"), "new_customers": 1},
        {"sales_date": d("2024-05-02"), "category": "books", "orders": 1, "units": 1, "revenue": money("10.00"),
         "avg_order_value": money("10.00"), "returning_customers": 1, "cancelled_orders": 1},
        {"sales_date": d("2024-05-02"), "category": "toys", "orders": 1, "units": 1, "revenue": money("5.00"),
         "avg_order_value": money("5.00"), "new_customers": 1},
        {"sales_date": d("2024-05-02"), "category": "unknown", "orders": 1, "units": 1, "revenue": money("7.50"),
         "avg_order_value": money("7.50")},
        {"sales_date": d("2024-05-03"), "category": "books", "orders": 0, "units": 0, "revenue": money("0.00"),
         "avg_order_value": None, "returned_orders": 1},
    ]  # fmt: skip
    expected = expected_df(spark, MART, rows, defaults)
    assert_df_equality(
        build_daily_sales(orders, items, products), expected, ignore_row_order=True, ignore_nullable=True
    )


# --- product_performance ----------------------------------------------------------------------------
def test_product_performance_funnel_and_net_sales(spark) -> None:  # type: ignore[no-untyped-def]
    from gold.marts.product_performance import MART, build_product_performance

    events = spark.createDataFrame(
        [
            event("e1", "S1", "v1", "product_view", "2024-05-01 10:00", product_id=1),
            event("e2", "S1", "v1", "product_view", "2024-05-01 10:01", product_id=1),
            event("e3", "S1", "v1", "add_to_cart", "2024-05-01 10:02", product_id=1),
            event("e4", "S1", "v1", "page_view", "2024-05-01 10:03"),  # no product
            event("e5", "S2", "v2", "product_view", "2024-05-02 10:00", product_id=2),
            event("e6", "S2", "v2", "add_to_cart", "2024-05-02 10:01", product_id=3),
        ],
        EVENTS,
    )
    orders = spark.createDataFrame(
        [
            order(1, 1, "delivered", "2024-05-01 11:00", "20.00"),
            order(2, 2, "cancelled", "2024-05-01 11:00", "10.00"),
            order(3, None, "paid", "2024-05-02 11:00", "2.50"),
        ],
        ORDERS,
    )
    items = spark.createDataFrame(
        [item(1, 1, 1, 2, "10.00"), item(2, 2, 1, 1, "10.00"), item(3, 3, 4, 1, "3.00", "0.50")], ITEMS
    )
    defaults = {"views": 0, "unique_viewers": 0, "add_to_carts": 0, "purchases": 0, "units_sold": 0,
                "revenue": money("0.00"), "view_to_purchase_rate": None, "cart_to_purchase_rate": None}  # fmt: skip
    rows = [
        {"product_id": 1, "activity_date": d("2024-05-01"), "views": 2, "unique_viewers": 1, "add_to_carts": 1,
         "purchases": 1, "units_sold": 2, "revenue": money("20.00"), "view_to_purchase_rate": 0.5,
         "cart_to_purchase_rate": 1.0},
        {"product_id": 2, "activity_date": d("2024-05-02"), "views": 1, "unique_viewers": 1,
         "view_to_purchase_rate": 0.0},
        {"product_id": 3, "activity_date": d("2024-05-02"), "add_to_carts": 1, "cart_to_purchase_rate": 0.0},
        {"product_id": 4, "activity_date": d("2024-05-02"), "purchases": 1, "units_sold": 1, "revenue": money("2.50")},
    ]  # fmt: skip
    expected = expected_df(spark, MART, rows, defaults)
    actual = build_product_performance(events, orders, items)
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


# --- incremental scope --------------------------------------------------------------------------------
def _state(spark, *, orders, items=(), events=(), customers=(), products=()):  # type: ignore[no-untyped-def]
    from gold.marts.scope import SilverState

    return SilverState(
        customers=spark.createDataFrame(list(customers), CUSTOMERS),
        products=spark.createDataFrame(list(products), PRODUCTS),
        orders=spark.createDataFrame(list(orders), ORDERS),
        order_items=spark.createDataFrame(list(items), ITEMS),
        clickstream_events=spark.createDataFrame(list(events), EVENTS),
    )


def _changes(old, new, **keys):  # type: ignore[no-untyped-def]
    """What the change data feed from `old` to `new` holds for the changed `keys`: a key on both
    sides as an update's before and after image, on one side as an insert or a delete."""
    from pyspark.sql import functions as F

    from gold.marts.scope import CHANGE_TYPE, SILVER_KEYS, Changes

    frames = {}
    for table, key in SILVER_KEYS.items():
        wanted = [F.col(key) == k for k in keys.get(table, [])]
        picked = F.lit(False) if not wanted else reduce(lambda a, b: a | b, wanted)
        before, after = (getattr(state, table).where(picked) for state in (old, new))
        both = before.select(key).intersect(after.select(key))
        frames[table] = (
            before.join(both, key, "left_semi")
            .withColumn(CHANGE_TYPE, F.lit("update_preimage"))
            .unionByName(after.join(both, key, "left_semi").withColumn(CHANGE_TYPE, F.lit("update_postimage")))
            .unionByName(before.join(both, key, "left_anti").withColumn(CHANGE_TYPE, F.lit("delete")))
            .unionByName(after.join(both, key, "left_anti").withColumn(CHANGE_TYPE, F.lit("insert")))
        )
    return Changes.of(frames)


def test_daily_sales_scope_holds_old_and_new_day_and_a_moved_first_order_day(spark) -> None:  # type: ignore[no-untyped-def]
    from gold.marts.scope import daily_sales_scope, daily_sales_scope_floor

    old = _state(
        spark,
        orders=[order(1, 1, "paid", "2024-05-10 10:00", "1.00"), order(2, 1, "paid", "2024-05-20 10:00", "1.00")],
    )
    # order 2 is re-dated to before order 1: its old and new days change, and customer 1's
    # first order day moves from 05-10 (unchanged order) to 05-05.
    new = _state(
        spark,
        orders=[order(1, 1, "paid", "2024-05-10 10:00", "1.00"), order(2, 1, "paid", "2024-05-05 10:00", "1.00")],
    )
    scope = daily_sales_scope(_changes(old, new, orders=[2]), old, new)
    assert sorted(r.sales_date for r in scope.collect()) == [d("2024-05-05"), d("2024-05-10"), d("2024-05-20")]
    # from the change feed alone: the re-dated order's two days, not the first-order day it moved
    floor = daily_sales_scope_floor(_changes(old, new, orders=[2]))
    assert sorted(r.sales_date for r in floor.collect()) == [d("2024-05-05"), d("2024-05-20")]


def _sessions_feed(old, new, changes):  # type: ignore[no-untyped-def]
    """What gold.sessions' change data feed holds after its MERGE of the sessions scope: each
    scope session's row before (old state) and after (new state), as customer_360's scope reads it."""
    from gold.marts.scope import sessions_scope
    from gold.marts.sessions import build_sessions

    scope = sessions_scope(changes, new)
    rows = [build_sessions(s.clickstream_events, s.customers, s.products) for s in (old, new)]
    return reduce(lambda a, b: a.unionByName(b), rows).join(scope, "session_id", "left_semi")


def test_a_status_move_within_its_standing_touches_no_mart(spark) -> None:  # type: ignore[no-untyped-def]
    from gold.marts.scope import (
        customer_360_scope,
        daily_sales_scope,
        daily_sales_scope_floor,
        product_performance_scope,
    )

    old = _state(
        spark,
        orders=[
            order(1, 1, "placed", "2024-05-10 10:00", "1.00"),
            order(2, 2, "paid", "2024-05-11 10:00", "1.00"),
            order(3, 3, "delivered", "2024-05-12 10:00", "1.00"),
        ],
        items=[item(1, 1, 7, 1, "1.00"), item(2, 2, 7, 1, "1.00"), item(3, 3, 7, 1, "1.00")],
    )
    new = _state(
        spark,
        orders=[
            order(1, 1, "shipped", "2024-05-10 10:00", "1.00"),  # placed → shipped: still net
            order(2, 2, "cancelled", "2024-05-11 10:00", "1.00"),  # no longer net
            order(3, 3, "Delivered", "2024-05-12 23:00", "1.00"),  # case and time of day: same facts
            order(4, 4, "placed", "2024-05-13 10:00", "1.00"),  # new
        ],
        items=[item(1, 1, 7, 1, "1.00"), item(2, 2, 7, 1, "1.00"), item(3, 3, 7, 1, "1.00")],
    )
    changes = _changes(old, new, orders=[1, 2, 3, 4])
    assert sorted(
        r.customer_id for r in customer_360_scope(changes, new, _sessions_feed(old, new, changes)).collect()
    ) == [2, 4]
    assert sorted(r.sales_date for r in daily_sales_scope(changes, old, new).collect()) == [
        d("2024-05-11"),
        d("2024-05-13"),
    ]
    assert sorted(r.sales_date for r in daily_sales_scope_floor(changes).collect()) == [
        d("2024-05-11"),
        d("2024-05-13"),
    ]
    assert sorted(r.activity_date for r in product_performance_scope(changes, new).collect()) == [d("2024-05-11")]


def test_only_a_changed_sign_up_visitor_moves_sessions(spark) -> None:  # type: ignore[no-untyped-def]
    from gold.marts.scope import customer_360_scope, sessions_scope

    events = [
        event("e1", "S1", "v1", "page_view", "2024-05-01 10:00"),
        event("e2", "S2", "v2", "page_view", "2024-05-01 10:00"),
        event("e3", "S3", "v3", "page_view", "2024-05-01 10:00"),
    ]
    moved = customer(3, "v9")  # re-linked from v3 to v9
    relocated = (*customer(1, "v1")[:7], "Hamburg", *customer(1, "v1")[8:])  # a profile change
    old = _state(spark, orders=[], events=events, customers=[customer(1, "v1"), customer(3, "v3")])
    new = _state(
        spark,
        orders=[],
        events=events,
        customers=[relocated, customer(2, "v2"), moved],
    )  # 1's sessions stay as they were; 2 signed up as v2
    changes = _changes(old, new, customers=[1, 2, 3])
    assert sorted(r.session_id for r in sessions_scope(changes, new).collect()) == ["S2", "S3"]
    assert sorted(
        r.customer_id for r in customer_360_scope(changes, new, _sessions_feed(old, new, changes)).collect()
    ) == [1, 2, 3]


def test_session_and_customer_scope_follow_a_moved_event(spark) -> None:  # type: ignore[no-untyped-def]
    from gold.marts.scope import customer_360_scope, sessions_scope

    old_events = [
        event("e1", "S1", "v1", "page_view", "2024-05-01 10:00", customer_id=5),
        event("e2", "S2", "v1", "page_view", "2024-05-01 12:00"),
    ]
    new_events = [  # a late event joined S2 into S1: e2 moved
        event("e1", "S1", "v1", "page_view", "2024-05-01 10:00", customer_id=5),
        event("e2", "S1", "v1", "page_view", "2024-05-01 12:00"),
        event("e3", "S1", "v1", "page_view", "2024-05-01 11:00"),
    ]
    customers = [customer(5, None), customer(6, "v1")]
    old = _state(spark, orders=[], events=old_events, customers=customers)
    new = _state(spark, orders=[], events=new_events, customers=customers)
    changes = _changes(old, new, clickstream_events=["e2", "e3"])
    assert sorted(r.session_id for r in sessions_scope(changes, new).collect()) == ["S1", "S2"]
    # S2 belonged to customer 6 (signed up as v1), S1 to customer 5: both rows change
    assert sorted(
        r.customer_id for r in customer_360_scope(changes, new, _sessions_feed(old, new, changes)).collect()
    ) == [5, 6]


def test_changed_on_compares_images_and_counts_inserts_and_deletes(spark) -> None:  # type: ignore[no-untyped-def]
    from gold.marts.scope import changed_on

    images = spark.createDataFrame(
        [
            (1, "books", "update_preimage"), (1, "books", "update_postimage"),  # same category: unchanged
            (2, "books", "update_preimage"), (2, "games", "update_postimage"),  # re-categorised
            (3, "toys", "update_preimage"), (3, "games", "update_postimage"),  # changed, then back
            (3, "games", "update_preimage"), (3, "toys", "update_postimage"),
            (4, "toys", "insert"), (4, "toys", "update_preimage"), (4, "toys", "update_postimage"),  # new
            (5, "toys", "delete"),  # gone
        ],
        "product_id BIGINT, category STRING, _change_type STRING",
    )  # fmt: skip
    assert sorted(r.product_id for r in changed_on(images, "product_id", ["category"]).collect()) == [2, 3, 4, 5]


def test_conform_names_missing_columns(spark) -> None:  # type: ignore[no-untyped-def]
    from gold.marts.daily_sales import MART

    with pytest.raises(ValueError, match="missing column\\(s\\) category"):
        MART.conform(spark.createDataFrame([(d("2024-05-01"),)], "sales_date DATE"))
