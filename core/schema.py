"""The one schema definition of the OLTP source database `ecom_db` (SQLAlchemy Core).

Compiled to PostgreSQL and to T-SQL by `ecom db ddl`; created by `ecom db init`.
Columns the database owns (never the generator's clock):

- `updated_at` (mutable tables) / `ingested_at` (events): set by the database clock on
  insert and on every update (DEFAULT + trigger).
- `_change_version`: the extraction version. PostgreSQL: the 64-bit id of the writing
  transaction (`xid8`, `pg_current_xact_id()`, kept by the same trigger); SQL Server:
  `ROWVERSION`. Bronze extracts `[previous horizon, safe horizon)` where the safe horizon is
  the oldest still-running transaction (`pg_snapshot_xmin(pg_current_snapshot())` /
  `MIN_ACTIVE_ROWVERSION()`), so a long transaction that commits late is never skipped.

There are deliberately no foreign keys: the simulator injects orphans (an item whose order
or product is missing) and silver must catch them, as it would from a sloppy real source.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import mssql, postgresql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.types import UserDefinedType

SOURCE_SCHEMA = "shop"
WAREHOUSE_SCHEMA = "gold"


class ChangeVersion(UserDefinedType[int]):
    """Monotonic row version: `xid8` on PostgreSQL, `ROWVERSION` on SQL Server."""

    cache_ok = True

    def get_col_spec(self, **kw: object) -> str:
        return "xid8"


@compiles(ChangeVersion, "mssql")
def _rowversion(type_: ChangeVersion, compiler: object, **kw: object) -> str:
    return "ROWVERSION"


def Timestamp() -> sa.types.TypeEngine:
    """Microsecond UTC timestamp: `DATETIME2(6)` / `timestamp(6) without time zone`."""
    return (
        sa.DateTime()
        .with_variant(mssql.DATETIME2(precision=6), "mssql")
        .with_variant(postgresql.TIMESTAMP(precision=6), "postgresql")
    )


def Money() -> sa.Numeric:
    return sa.Numeric(12, 2)


class utc_now(sa.sql.functions.FunctionElement[object]):
    """The database's UTC clock, at microsecond precision."""

    type = Timestamp()
    inherit_cache = True


@compiles(utc_now, "postgresql")
def _utc_now_pg(element: utc_now, compiler: object, **kw: object) -> str:
    return "(clock_timestamp() AT TIME ZONE 'UTC')"


@compiles(utc_now, "mssql")
def _utc_now_mssql(element: utc_now, compiler: object, **kw: object) -> str:
    return "SYSUTCDATETIME()"


@compiles(utc_now)
def _utc_now_default(element: utc_now, compiler: object, **kw: object) -> str:
    return "CURRENT_TIMESTAMP"


def _updated_at() -> sa.Column:
    # The server default covers inserts on both dialects; triggers cover updates.
    return sa.Column("updated_at", Timestamp(), nullable=False, server_default=utc_now())


def _change_version() -> sa.Column:
    # No DEFAULT: ROWVERSION fills itself; on PostgreSQL the BEFORE trigger sets it
    # (NOT NULL is checked after BEFORE triggers run).
    return sa.Column("_change_version", ChangeVersion(), nullable=False)


source_metadata = sa.MetaData(schema=SOURCE_SCHEMA)

customers = sa.Table(
    "customers",
    source_metadata,
    sa.Column("customer_id", sa.BigInteger, sa.Identity(start=1), primary_key=True),
    sa.Column(
        "visitor_id",
        sa.Unicode(36),
        nullable=True,
        comment="anonymous visitor this customer was before sign-up",
    ),
    sa.Column("email", sa.Unicode(320), nullable=True),
    sa.Column("first_name", sa.Unicode(100), nullable=True),
    sa.Column("last_name", sa.Unicode(100), nullable=True),
    sa.Column("phone", sa.Unicode(40), nullable=True),
    sa.Column("country_code", sa.Unicode(8), nullable=True),
    sa.Column("city", sa.Unicode(100), nullable=True),
    sa.Column("signup_at", Timestamp(), nullable=False),
    _updated_at(),
    _change_version(),
    comment="One row per registered customer.",
)

products = sa.Table(
    "products",
    source_metadata,
    sa.Column("product_id", sa.BigInteger, sa.Identity(start=1), primary_key=True),
    sa.Column("sku", sa.Unicode(32), nullable=False, unique=True),
    sa.Column("name", sa.Unicode(200), nullable=False),
    sa.Column("category", sa.Unicode(50), nullable=False),
    sa.Column("unit_price", Money(), nullable=True),
    sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_at", Timestamp(), nullable=False, server_default=utc_now()),
    _updated_at(),
    _change_version(),
    comment="One row per catalogue product.",
)

orders = sa.Table(
    "orders",
    source_metadata,
    sa.Column("order_id", sa.BigInteger, sa.Identity(start=1), primary_key=True),
    sa.Column("customer_id", sa.BigInteger, nullable=True),
    sa.Column("status", sa.Unicode(16), nullable=False),
    sa.Column("order_ts", Timestamp(), nullable=False),
    sa.Column("total_amount", Money(), nullable=True),
    sa.Column("currency", sa.Unicode(3), nullable=False),
    sa.Column("payment_method", sa.Unicode(20), nullable=True),
    sa.Column("visitor_id", sa.Unicode(36), nullable=True, comment="browsing visitor that placed it"),
    _updated_at(),
    _change_version(),
    comment="One row per order; status moves placed → paid → shipped → delivered (or cancelled/returned).",
)

order_items = sa.Table(
    "order_items",
    source_metadata,
    sa.Column("order_item_id", sa.BigInteger, sa.Identity(start=1), primary_key=True),
    sa.Column("order_id", sa.BigInteger, nullable=False),
    sa.Column("product_id", sa.BigInteger, nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("unit_price", Money(), nullable=False),
    sa.Column("discount_amount", Money(), nullable=False, server_default=sa.text("0")),
    _updated_at(),
    _change_version(),
    comment="One row per order line.",
)

clickstream_events = sa.Table(
    "clickstream_events",
    source_metadata,
    # The collector delivers at least once: the same event_id can arrive twice, so the
    # physical key is a surrogate and `event_id` (the business key) is only indexed.
    sa.Column("event_seq", sa.BigInteger, sa.Identity(start=1), primary_key=True),
    sa.Column("event_id", sa.Unicode(36), nullable=False, index=True),
    sa.Column("visitor_id", sa.Unicode(36), nullable=False),
    sa.Column("customer_id", sa.BigInteger, nullable=True),
    sa.Column("event_type", sa.Unicode(24), nullable=False),
    sa.Column("page_url", sa.Unicode(400), nullable=True),
    sa.Column("product_id", sa.BigInteger, nullable=True),
    sa.Column("event_ts", Timestamp(), nullable=False),
    sa.Column("device", sa.Unicode(16), nullable=True),
    sa.Column("channel", sa.Unicode(24), nullable=True),
    sa.Column("referrer", sa.Unicode(400), nullable=True),
    sa.Column("ingested_at", Timestamp(), nullable=False, server_default=utc_now()),
    _change_version(),
    comment="One row per received clickstream event (duplicates possible).",
)


@dataclass(frozen=True)
class SourceTable:
    """What the layers need to know of a source table: its name, business key and clock."""

    name: str
    key: str
    clock: str  # database-clock column: updated_at / ingested_at

    @property
    def table(self) -> sa.Table:
        return source_metadata.tables[f"{SOURCE_SCHEMA}.{self.name}"]


SOURCE_TABLES: dict[str, SourceTable] = {
    t.name: t
    for t in (
        SourceTable("customers", "customer_id", "updated_at"),
        SourceTable("products", "product_id", "updated_at"),
        SourceTable("orders", "order_id", "updated_at"),
        SourceTable("order_items", "order_item_id", "updated_at"),
        SourceTable("clickstream_events", "event_id", "ingested_at"),
    )
}

ORDER_STATUSES = ("placed", "paid", "shipped", "delivered", "cancelled", "returned")
EVENT_TYPES = (
    "page_view",
    "search",
    "product_view",
    "add_to_cart",
    "remove_from_cart",
    "checkout_start",
    "purchase",
)


# --- database-clock triggers (one statement per dialect; the columns come from the metadata)
def _pg_touch_function() -> sa.DDL:
    return sa.DDL(
        f"""
CREATE OR REPLACE FUNCTION {SOURCE_SCHEMA}.touch_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_ARGV[0] = 'updated_at' THEN
        NEW.updated_at := clock_timestamp() AT TIME ZONE 'UTC';
    ELSIF TG_OP = 'INSERT' THEN
        NEW.ingested_at := clock_timestamp() AT TIME ZONE 'UTC';
    END IF;
    NEW._change_version := pg_current_xact_id();
    RETURN NEW;
END $$"""
    )


def trigger_ddl(dialect: str) -> list[str]:
    """Statements that make the database clock own `updated_at` / `ingested_at`."""
    out: list[str] = []
    if dialect == "postgresql":
        out.append(str(_pg_touch_function().statement).strip())
        for st in SOURCE_TABLES.values():
            name = f"{SOURCE_SCHEMA}.{st.name}"
            out.append(
                f"CREATE OR REPLACE TRIGGER touch_{st.name} BEFORE INSERT OR UPDATE ON {name} "
                f"FOR EACH ROW EXECUTE FUNCTION {SOURCE_SCHEMA}.touch_row('{st.clock}')"
            )
    elif dialect == "mssql":
        for st in SOURCE_TABLES.values():
            if st.clock != "updated_at":
                continue  # events are insert-only: the DEFAULT is the clock
            pk = st.table.primary_key.columns.keys()[0]
            out.append(
                f"CREATE OR ALTER TRIGGER {SOURCE_SCHEMA}.touch_{st.name} ON {SOURCE_SCHEMA}.{st.name} "
                f"AFTER UPDATE AS BEGIN SET NOCOUNT ON; "
                f"IF TRIGGER_NESTLEVEL() > 1 RETURN; "
                f"UPDATE t SET updated_at = SYSUTCDATETIME() FROM {SOURCE_SCHEMA}.{st.name} AS t "
                f"JOIN inserted AS i ON i.{pk} = t.{pk}; END"
            )
    return out


# --- the simulator's own bookkeeping: schema `sim`, which the extractor cannot read -------
# The generator records every batch and every defect it injects here, in the same
# transaction as the batch, so tests can compare silver's quarantine with the truth.
simulation_metadata = sa.MetaData(schema="sim")

sim_batches = sa.Table(
    "batches",
    simulation_metadata,
    sa.Column("batch_id", sa.Unicode(40), primary_key=True),
    sa.Column("seed", sa.BigInteger, nullable=True),
    sa.Column("started_at", Timestamp(), nullable=False),
    sa.Column("ended_at", Timestamp(), nullable=False),
    sa.Column("rows_json", sa.UnicodeText, nullable=False),
    sa.Column("defects_json", sa.UnicodeText, nullable=False),
    comment="One row per committed generator batch.",
)

sim_defects = sa.Table(
    "defects",
    simulation_metadata,
    sa.Column("defect_id", sa.BigInteger, sa.Identity(start=1), primary_key=True),
    sa.Column("batch_id", sa.Unicode(40), nullable=False, index=True),
    sa.Column("table_name", sa.Unicode(40), nullable=False),
    sa.Column("record_key", sa.Unicode(64), nullable=False, comment="business key of the defective row"),
    sa.Column("kind", sa.Unicode(40), nullable=False),
    comment="One row per injected defect (the manifest).",
)
