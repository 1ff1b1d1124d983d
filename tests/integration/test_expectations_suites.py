"""Every suite passes on good data and fails, naming the rule, on a crafted bad frame.

Real GX checkpoints on inline Spark frames (the session `spark` fixture), in a temporary GX
context: nothing is written to the repository's expectations/gx.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from core.schema import SOURCE_TABLES
from core.settings import load_settings
from expectations import GateFailedError, GateResult, gate, suites

pytestmark = pytest.mark.integration

TS = datetime(2025, 3, 1, 12, 0, tzinfo=UTC).replace(tzinfo=None)
SESSION = "a" * 64
D = Decimal


@pytest.fixture(scope="module")
def gx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gx-suites")


@pytest.fixture(scope="module")
def settings():  # type: ignore[no-untyped-def]
    return load_settings(webhook_url=None)


def frame(spark: Any, ddl: str, rows: list[tuple]) -> Any:
    return spark.createDataFrame(rows, ddl)


def check(spark: Any, settings: Any, gx_dir: Path, layer: str, table: str, df: Any, **kw: Any) -> GateResult:
    return gate(spark, settings, layer=layer, table=table, df=df, run_id=f"test-{layer}-{table}", gx_root=gx_dir, **kw)


def failed_rules(
    spark: Any, settings: Any, gx_dir: Path, layer: str, table: str, df: Any, **kw: Any
) -> set[tuple[str, str | None]]:
    with pytest.raises(GateFailedError) as info:
        check(spark, settings, gx_dir, layer, table, df, **kw)
    result = info.value.result
    assert result.status == "failed" and f"{layer}.{table}" in str(info.value)
    assert all(f.observed and f.observed != "no observed value" for f in result.failures), result.failures
    return {(f.type, f.column) for f in result.failures}


# --- bronze: one generic shape per source table ---------------------------------------------------------
def bronze_frame(spark: Any, table: str, *, drop: str | None = None, null_key: bool = False) -> Any:
    columns = [c.name for c in SOURCE_TABLES[table].table.columns] + ["_run_id", "_ingested_at", "_source"]
    key = SOURCE_TABLES[table].key
    good = {c: "x" for c in columns} | {key: "1"}
    other = {c: None for c in columns} | {
        key: "1",
        "_run_id": "bronze-r1",
        "_ingested_at": "2025-03-01",
    }  # repeats: fine
    rows = [good, other]
    if null_key:
        rows.append(good | {key: None, "_run_id": None})
    kept = [c for c in columns if c != drop]
    return spark.createDataFrame([tuple(r[c] for c in kept) for r in rows], ", ".join(f"`{c}` string" for c in kept))


@pytest.mark.parametrize("table", suites.layer_tables("bronze"))
def test_bronze_suites(spark: Any, settings: Any, gx_dir: Path, table: str) -> None:
    assert check(spark, settings, gx_dir, "bronze", table, bronze_frame(spark, table)).passed
    dropped = [c.name for c in SOURCE_TABLES[table].table.columns][-2]
    bad = bronze_frame(spark, table, drop=dropped, null_key=True)
    key = SOURCE_TABLES[table].key
    assert failed_rules(spark, settings, gx_dir, "bronze", table, bad) == {
        ("expect_table_columns_to_match_set", None),
        ("expect_column_values_to_not_be_null", key),
        ("expect_column_values_to_not_be_null", "_run_id"),
    }


# --- silver -----------------------------------------------------------------------------------------------
LINEAGE = "_change_version bigint, _ingested_at timestamp, _run_id string"
L = (1, TS, "silver-r1")
SILVER: dict[str, tuple[str, list[tuple], list[tuple], set[tuple[str, str | None]]]] = {
    # table: (ddl, good rows, bad rows, rules the bad rows break)
    "customers": (
        "customer_id bigint, visitor_id string, email string, first_name string, last_name string, phone string, "
        f"country_code string, city string, signup_at timestamp, updated_at timestamp, {LINEAGE}",
        [
            (1, None, "ann@example.com", "Ann", None, None, "DE", "Berlin", TS, TS, *L),
            (2, "v2", "bo.b+x@mail.example.co.uk", "Bob", "B", "+4930", None, None, TS, TS, *L),
        ],
        [
            (1, None, "ANN@example", "Ann", None, None, "de", None, TS, TS, *L),
            (1, None, "bob@example.com", "Bob", None, None, "DE", None, TS, TS, *L),
        ],
        {
            ("expect_column_values_to_be_unique", "customer_id"),
            ("expect_column_values_to_match_regex", "email"),
            ("expect_column_values_to_match_regex", "country_code"),
        },
    ),
    "products": (
        "product_id bigint, sku string, name string, category string, unit_price decimal(12,2), is_active boolean, "
        f"created_at timestamp, updated_at timestamp, {LINEAGE}",
        [
            (1, "SKU-1", "Mug", "home", D("0.00"), True, TS, TS, *L),
            (2, "SKU-2", "Pen", None, D("1.50"), False, TS, TS, *L),
        ],
        [(1, None, "Mug", "home", D("-1.00"), True, TS, TS, *L)],
        {("expect_column_values_to_not_be_null", "sku"), ("expect_column_values_to_be_between", "unit_price")},
    ),
    "orders": (
        "order_id bigint, customer_id bigint, status string, order_ts timestamp, total_amount decimal(12,2), "
        f"currency string, payment_method string, visitor_id string, updated_at timestamp, {LINEAGE}",
        [
            (1, 1, "placed", TS, D("10.00"), "EUR", "card", None, TS, *L),
            (2, None, "returned", TS, D("0.00"), "USD", None, "v", TS, *L),
        ],
        [(1, 1, "lost", TS, D("-0.01"), "eur", "card", None, TS, *L)],
        {
            ("expect_column_values_to_be_in_set", "status"),
            ("expect_column_values_to_be_between", "total_amount"),
            ("expect_column_values_to_match_regex", "currency"),
        },
    ),
    "order_items": (
        "order_item_id bigint, order_id bigint, product_id bigint, quantity int, unit_price decimal(12,2), "
        f"discount_amount decimal(12,2), line_amount decimal(18,2), updated_at timestamp, {LINEAGE}",
        [
            (1, 1, 1, 2, D("5.00"), D("1.00"), D("9.00"), TS, *L),
            (2, 1, 2, 1, D("5.00"), D("0.00"), D("5.00"), None, *L),
        ],
        [(1, 1, 1, 0, D("5.00"), D("-1.00"), D("1.00"), TS, *L), (2, 9, 7, 1, D("5.00"), D("0.00"), D("5.00"), TS, *L)],
        {
            ("expect_column_values_to_be_between", "quantity"),
            ("expect_column_values_to_be_between", "discount_amount"),
            ("unexpected_rows_expectation", None),
        },  # order 9 and product 7 do not exist
    ),
    "clickstream_events": (
        "event_id string, event_seq bigint, visitor_id string, customer_id bigint, event_type string, page_url string, "
        "product_id bigint, event_ts timestamp, device string, channel string, referrer string, ingested_at timestamp, "
        f"session_id string, {LINEAGE}",
        [
            ("e1", 1, "v1", None, "page_view", "/", None, TS, "mobile", "seo", None, TS, SESSION, *L),
            ("e2", 2, "v1", 7, "purchase", "/checkout", 3, TS, None, None, None, TS, SESSION, *L),
        ],
        [
            ("e1", 1, "v1", None, "teleport", "/", None, TS, None, None, None, TS, "not-a-session", *L),
            ("e1", 2, "v1", None, "page_view", "/", None, TS, None, None, None, TS, None, *L),
        ],
        {
            ("expect_column_values_to_be_unique", "event_id"),
            ("expect_column_values_to_be_in_set", "event_type"),
            ("expect_column_values_to_match_regex", "session_id"),
            ("expect_column_values_to_not_be_null", "session_id"),
        },
    ),
}


@pytest.mark.parametrize("table", list(SILVER))
def test_silver_suites(spark: Any, settings: Any, gx_dir: Path, table: str) -> None:
    ddl, good, bad, broken = SILVER[table]
    extra: dict[str, Any] = {}
    if table == "order_items":
        extra = {
            "references": {
                "order_id": frame(spark, "order_id bigint", [(1,)]),
                "product_id": frame(spark, "product_id bigint", [(1,), (2,)]),
            },
            "expected_rows": 2,
        }
    assert check(spark, settings, gx_dir, "silver", table, frame(spark, ddl, good), extra=extra).passed
    assert failed_rules(spark, settings, gx_dir, "silver", table, frame(spark, ddl, bad), extra=extra) == broken


def test_silver_reconciliation_count_is_a_parameter(spark: Any, settings: Any, gx_dir: Path) -> None:
    ddl, good, _, _ = SILVER["products"]
    rules = failed_rules(
        spark, settings, gx_dir, "silver", "products", frame(spark, ddl, good), extra={"expected_rows": 3}
    )
    assert rules == {("expect_table_row_count_to_equal", None)}


# --- gold -----------------------------------------------------------------------------------------------
C360 = (
    "customer_id bigint, orders_count bigint, net_orders_count bigint, revenue decimal(18,2), "
    "avg_order_value decimal(18,2), r_score int, f_score int, m_score int, rfm_segment string, "
    "sessions_count bigint, conversion_rate double, cart_abandonment_rate double, top_categories array<string>"
)
GOLD: dict[str, tuple[str, list[tuple], list[tuple], set[tuple[str, str | None]]]] = {
    "customer_360": (
        C360,
        [
            (1, 2, 2, D("30.00"), D("15.00"), 5, 2, 1, "Promising", 3, 0.5, None, ["home"]),
            (2, 0, 0, D("0.00"), None, None, None, None, "Prospect", 0, None, 1.0, []),
        ],
        [
            (1, 2, 2, D("-1.00"), D("15.00"), 6, 0, 1, "Whales", 3, 1.5, -0.1, []),
            (1, 0, 0, D("0.00"), None, None, None, None, "Prospect", 0, None, None, []),
        ],
        {
            ("expect_column_values_to_be_unique", "customer_id"),
            ("expect_column_values_to_be_between", "revenue"),
            ("expect_column_values_to_be_between", "r_score"),
            ("expect_column_values_to_be_between", "f_score"),
            ("expect_column_values_to_be_in_set", "rfm_segment"),
            ("expect_column_values_to_be_between", "conversion_rate"),
            ("expect_column_values_to_be_between", "cart_abandonment_rate"),
            ("unexpected_rows_expectation", None),
        },  # silver customer 2 is missing
    ),
    "sessions": (
        "session_id string, visitor_id string, customer_id bigint, session_start timestamp, duration_seconds double, "
        "events_count bigint, cart_value decimal(18,2)",
        [(SESSION, "v1", None, TS, 0.0, 1, D("0.00")), ("b" * 64, "v2", 3, TS, 61.5, 4, D("12.50"))],
        [(SESSION, "v1", None, TS, -1.0, 1, D("0.00")), (SESSION, None, None, TS, 1.0, 2, D("-2.00"))],
        {
            ("expect_column_values_to_be_unique", "session_id"),
            ("expect_column_values_to_not_be_null", "visitor_id"),
            ("expect_column_values_to_be_between", "duration_seconds"),
            ("expect_column_values_to_be_between", "cart_value"),
        },
    ),
    "daily_sales": (
        "sales_date date, category string, orders bigint, units bigint, revenue decimal(18,2), avg_order_value decimal(18,2)",
        [(TS.date(), "home", 2, 3, D("20.00"), D("10.00")), (TS.date(), "unknown", 0, 0, D("0.00"), None)],
        [(TS.date(), "home", 2, 3, D("20.00"), D("10.00")), (TS.date(), "home", 1, -1, D("-5.00"), None)],
        {
            ("expect_compound_columns_to_be_unique", "sales_date+category"),
            ("expect_column_values_to_be_between", "units"),
            ("expect_column_values_to_be_between", "revenue"),
        },
    ),
    "product_performance": (
        "product_id bigint, activity_date date, views bigint, add_to_carts bigint, purchases bigint, "
        "revenue decimal(18,2), view_to_purchase_rate double",
        [(1, TS.date(), 10, 2, 1, D("5.00"), 0.1), (1, datetime(2025, 3, 2).date(), 0, 0, 1, D("5.00"), None)],
        [(1, TS.date(), 10, 2, 1, D("5.00"), 0.1), (1, TS.date(), -1, 0, 0, D("0.00"), -0.5)],
        {
            ("expect_compound_columns_to_be_unique", "product_id+activity_date"),
            ("expect_column_values_to_be_between", "views"),
            ("expect_column_values_to_be_between", "view_to_purchase_rate"),
        },
    ),
}


@pytest.mark.parametrize("table", list(GOLD))
def test_gold_suites(spark: Any, settings: Any, gx_dir: Path, table: str) -> None:
    ddl, good, bad, broken = GOLD[table]
    extra: dict[str, Any] = {}
    if table == "customer_360":
        silver_customers = frame(spark, "customer_id bigint", [(1,), (2,)])
        extra = {"references": {"customer_id": silver_customers}, "covers": {"customer_id": silver_customers}}
    assert check(spark, settings, gx_dir, "gold", table, frame(spark, ddl, good), extra=extra).passed
    assert failed_rules(spark, settings, gx_dir, "gold", table, frame(spark, ddl, bad), extra=extra) == broken


def test_gold_mart_under_construction_is_judged_on_what_it_has(spark: Any, settings: Any, gx_dir: Path) -> None:
    bare = frame(spark, "customer_id bigint, email string", [(1, "a@b.io"), (2, None)])
    result = check(spark, settings, gx_dir, "gold", "customer_360", bare)
    assert result.passed and result.evaluated == 3  # columns present, grain, key not null
