"""Helpers for silver's integration tests: bronze-format Delta tables written by hand.

Bronze's contract (see `bronze.job`): every source column of `core.schema` under its own
name and type, plus `_run_id`, `_ingested_at`, `_source`, `_extract_horizon`, `_ingest_date`,
appended as one Delta commit per extraction. No tests here.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from pyspark.sql import types as T

from core.lake import table_path

T0 = datetime(2024, 6, 1, 12, 0, 0)
_versions = itertools.count(1_000)

MONEY = T.DecimalType(12, 2)
SOURCE_FIELDS: dict[str, list[T.StructField]] = {
    "customers": [
        T.StructField("customer_id", T.LongType()),
        T.StructField("visitor_id", T.StringType()),
        T.StructField("email", T.StringType()),
        T.StructField("first_name", T.StringType()),
        T.StructField("last_name", T.StringType()),
        T.StructField("phone", T.StringType()),
        T.StructField("country_code", T.StringType()),
        T.StructField("city", T.StringType()),
        T.StructField("signup_at", T.TimestampType()),
        T.StructField("updated_at", T.TimestampType()),
    ],
    "products": [
        T.StructField("product_id", T.LongType()),
        T.StructField("sku", T.StringType()),
        T.StructField("name", T.StringType()),
        T.StructField("category", T.StringType()),
        T.StructField("unit_price", MONEY),
        T.StructField("is_active", T.BooleanType()),
        T.StructField("created_at", T.TimestampType()),
        T.StructField("updated_at", T.TimestampType()),
    ],
    "orders": [
        T.StructField("order_id", T.LongType()),
        T.StructField("customer_id", T.LongType()),
        T.StructField("status", T.StringType()),
        T.StructField("order_ts", T.TimestampType()),
        T.StructField("total_amount", MONEY),
        T.StructField("currency", T.StringType()),
        T.StructField("payment_method", T.StringType()),
        T.StructField("visitor_id", T.StringType()),
        T.StructField("updated_at", T.TimestampType()),
    ],
    "order_items": [
        T.StructField("order_item_id", T.LongType()),
        T.StructField("order_id", T.LongType()),
        T.StructField("product_id", T.LongType()),
        T.StructField("quantity", T.IntegerType()),
        T.StructField("unit_price", MONEY),
        T.StructField("discount_amount", MONEY),
        T.StructField("updated_at", T.TimestampType()),
    ],
    "clickstream_events": [
        T.StructField("event_seq", T.LongType()),
        T.StructField("event_id", T.StringType()),
        T.StructField("visitor_id", T.StringType()),
        T.StructField("customer_id", T.LongType()),
        T.StructField("event_type", T.StringType()),
        T.StructField("page_url", T.StringType()),
        T.StructField("product_id", T.LongType()),
        T.StructField("event_ts", T.TimestampType()),
        T.StructField("device", T.StringType()),
        T.StructField("channel", T.StringType()),
        T.StructField("referrer", T.StringType()),
        T.StructField("ingested_at", T.TimestampType()),
    ],
}
METADATA_FIELDS = [
    T.StructField("_change_version", T.LongType()),
    T.StructField("_run_id", T.StringType()),
    T.StructField("_ingested_at", T.TimestampType()),
    T.StructField("_source", T.StringType()),
    T.StructField("_extract_horizon", T.LongType()),
    T.StructField("_ingest_date", T.DateType()),
]


def bronze_schema(table: str) -> T.StructType:
    return T.StructType([*SOURCE_FIELDS[table], *METADATA_FIELDS])


def customer(customer_id: int, **kw: Any) -> dict[str, Any]:
    row = {
        "customer_id": customer_id,
        "visitor_id": f"v-{customer_id}",
        "email": f"user{customer_id}@example.com",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "phone": "+44 20 7946 0000",
        "country_code": "GB",
        "city": "London",
        "signup_at": T0 - timedelta(days=1),
        "updated_at": T0,
    }
    return {**row, **kw}


def product(product_id: int, **kw: Any) -> dict[str, Any]:
    row = {
        "product_id": product_id,
        "sku": f"ELE-{product_id:08d}",
        "name": "Classic Lamp",
        "category": "home",
        "unit_price": Decimal("10.00"),
        "is_active": True,
        "created_at": T0,
        "updated_at": T0,
    }
    return {**row, **kw}


def order(order_id: int, total: str, **kw: Any) -> dict[str, Any]:
    row = {
        "order_id": order_id,
        "customer_id": 1,
        "status": "placed",
        "order_ts": T0,
        "total_amount": Decimal(total),
        "currency": "USD",
        "payment_method": "card",
        "visitor_id": "v-1",
        "updated_at": T0,
    }
    return {**row, **kw}


def item(item_id: int, order_id: int, product_id: int = 1, quantity: int = 1, price: str = "10.00", **kw: Any):  # type: ignore[no-untyped-def]
    row = {
        "order_item_id": item_id,
        "order_id": order_id,
        "product_id": product_id,
        "quantity": quantity,
        "unit_price": Decimal(price),
        "discount_amount": Decimal("0.00"),
        "updated_at": T0,
    }
    return {**row, **kw}


def event(seq: int, event_id: str, visitor: str, ts: datetime, **kw: Any) -> dict[str, Any]:
    row = {
        "event_seq": seq,
        "event_id": event_id,
        "visitor_id": visitor,
        "customer_id": None,
        "event_type": "page_view",
        "page_url": "/",
        "product_id": None,
        "event_ts": ts,
        "device": "mobile",
        "channel": "direct",
        "referrer": None,
        "ingested_at": ts + timedelta(seconds=1),
    }
    return {**row, **kw}


def append_bronze(
    spark: Any,
    settings: Any,
    table: str,
    rows: list[dict[str, Any]],
    *,
    run_id: str,
    ingested_at: datetime = T0 + timedelta(minutes=5),
) -> None:
    """Append `rows` to `bronze.<table>` as one extraction (one Delta commit), like bronze does."""
    horizon = next(_versions)
    full = []
    for r in rows:
        full.append(
            {
                **r,
                "_change_version": r.get("_change_version", horizon),
                "_run_id": run_id,
                "_ingested_at": ingested_at,
                "_source": f"postgresql:ecom_db.shop.{table}",
                "_extract_horizon": horizon,
                "_ingest_date": ingested_at.date(),
            }
        )
    schema = bronze_schema(table)
    data = [tuple(r.get(f.name) for f in schema.fields) for r in full]
    df = spark.createDataFrame(data, schema)
    df.write.format("delta").mode("append").partitionBy("_ingest_date").save(table_path(settings, "bronze", table))
