"""The silver contract: each table's grain, business key, version order and columns.

Silver keeps the source's column names and gives each an explicit type (money is
`DECIMAL(12,2)`, never a float). Three lineage columns follow the business columns:
`_change_version` (the source row version), `_ingested_at` (when bronze received it) and
`_run_id` (the silver run that wrote it). `quarantine.<table>` has the same columns plus
`_reasons` (the names of every rule the row broke) and `_quarantined_at` (the run's logical
time); `silver._held_<table>` holds rows waiting for a parent, with `_reasons` and
`_held_since`.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import types as T

MONEY = T.DecimalType(12, 2)
LINE_AMOUNT = T.DecimalType(18, 2)  # quantity × unit price − discount, exact

LINEAGE_FIELDS: tuple[T.StructField, ...] = (
    T.StructField("_change_version", T.LongType()),
    T.StructField("_ingested_at", T.TimestampType(), True),
    T.StructField("_run_id", T.StringType(), False),
)
QUARANTINE_FIELDS: tuple[T.StructField, ...] = (
    T.StructField("_reasons", T.ArrayType(T.StringType()), False),
    T.StructField("_quarantined_at", T.TimestampType(), False),
)
HELD_FIELDS: tuple[T.StructField, ...] = (
    T.StructField("_reasons", T.ArrayType(T.StringType()), False),
    T.StructField("_held_since", T.TimestampType(), False),
)


@dataclass(frozen=True)
class SilverTable:
    """One silver table: `grain` is its one-line contract; rows are ordered by `clock`."""

    name: str
    key: str
    clock: str  # the source's database clock: updated_at (mutable rows) / ingested_at (events)
    grain: str
    fields: tuple[T.StructField, ...]

    @property
    def columns(self) -> list[str]:
        """The business columns, in contract order (lineage excluded)."""
        return [f.name for f in self.fields]

    @property
    def schema(self) -> T.StructType:
        return T.StructType([*self.fields, *LINEAGE_FIELDS])

    @property
    def quarantine_schema(self) -> T.StructType:
        """Rejected rows may lack anything, even their key."""
        return T.StructType([*_nullable(self.fields), *_nullable(LINEAGE_FIELDS), *QUARANTINE_FIELDS])

    @property
    def held_schema(self) -> T.StructType:
        return T.StructType([*_nullable(self.fields), *_nullable(LINEAGE_FIELDS), *HELD_FIELDS])


def _nullable(fields: tuple[T.StructField, ...]) -> list[T.StructField]:
    return [T.StructField(f.name, f.dataType, True) for f in fields]


def _f(name: str, data_type: T.DataType, nullable: bool = True) -> T.StructField:
    return T.StructField(name, data_type, nullable)


CUSTOMERS = SilverTable(
    "customers",
    key="customer_id",
    clock="updated_at",
    grain="one row per customer: its latest valid version",
    fields=(
        _f("customer_id", T.LongType(), False),
        _f("visitor_id", T.StringType()),
        _f("email", T.StringType()),  # trimmed, lower case
        _f("first_name", T.StringType()),
        _f("last_name", T.StringType()),
        _f("phone", T.StringType()),  # E.164 when the country is known: + and digits
        _f("country_code", T.StringType()),  # ISO 3166-1 alpha-2, upper case
        _f("city", T.StringType()),
        _f("signup_at", T.TimestampType()),
        _f("updated_at", T.TimestampType()),
    ),
)

PRODUCTS = SilverTable(
    "products",
    key="product_id",
    clock="updated_at",
    grain="one row per product: its latest valid version",
    fields=(
        _f("product_id", T.LongType(), False),
        _f("sku", T.StringType()),
        _f("name", T.StringType()),
        _f("category", T.StringType()),
        _f("unit_price", MONEY),
        _f("is_active", T.BooleanType()),
        _f("created_at", T.TimestampType()),
        _f("updated_at", T.TimestampType()),
    ),
)

ORDERS = SilverTable(
    "orders",
    key="order_id",
    clock="updated_at",
    grain="one row per order: its latest valid version, whose total matches its lines",
    fields=(
        _f("order_id", T.LongType(), False),
        _f("customer_id", T.LongType()),
        _f("status", T.StringType()),
        _f("order_ts", T.TimestampType()),
        _f("total_amount", MONEY),
        _f("currency", T.StringType()),  # ISO 4217, upper case
        _f("payment_method", T.StringType()),
        _f("visitor_id", T.StringType()),
        _f("updated_at", T.TimestampType()),
    ),
)

ORDER_ITEMS = SilverTable(
    "order_items",
    key="order_item_id",
    clock="updated_at",
    grain="one row per order line: its latest valid version, whose order and product are in silver",
    fields=(
        _f("order_item_id", T.LongType(), False),
        _f("order_id", T.LongType()),
        _f("product_id", T.LongType()),
        _f("quantity", T.IntegerType()),
        _f("unit_price", MONEY),
        _f("discount_amount", MONEY),
        _f("line_amount", LINE_AMOUNT),  # quantity × unit_price − discount_amount
        _f("updated_at", T.TimestampType()),
    ),
)

CLICKSTREAM_EVENTS = SilverTable(
    "clickstream_events",
    key="event_id",
    clock="ingested_at",
    grain="one row per event_id (first delivery kept), with its visitor's session",
    fields=(
        _f("event_id", T.StringType(), False),
        _f("event_seq", T.LongType()),  # the source's surrogate of the delivery kept
        _f("visitor_id", T.StringType()),
        _f("customer_id", T.LongType()),  # kept even when the customer is unknown (anonymous visitor)
        _f("event_type", T.StringType()),
        _f("page_url", T.StringType()),
        _f("product_id", T.LongType()),
        _f("event_ts", T.TimestampType()),
        _f("device", T.StringType()),
        _f("channel", T.StringType()),
        _f("referrer", T.StringType()),
        _f("ingested_at", T.TimestampType()),
        _f("session_id", T.StringType()),  # sha2(visitor_id | first event's microseconds), 64 hex
    ),
)

TABLES: dict[str, SilverTable] = {t.name: t for t in (CUSTOMERS, PRODUCTS, ORDERS, ORDER_ITEMS, CLICKSTREAM_EVENTS)}
# Parents before children; orders before their lines (lines need the orders' outcome).
PROCESSING_ORDER: tuple[str, ...] = ("customers", "products", "orders", "order_items", "clickstream_events")
