"""Pure silver transforms: DataFrame → DataFrame (or Column → Column), chained with `transform`.

In the order a batch meets them:

1. conform — `conform(table)`: the contract's columns with explicit types (money as
   `DECIMAL(12,2)`), whitespace trimmed (blank → NULL), e-mails lower case, country and
   currency codes upper case, phones as `+<digits>`;
2. versions — `with_version_rank`: the latest version per key is rank 1 (the first delivery,
   for events); `with_current_flag`: the version silver already holds is not written again;
3. cross-table facts — `with_order_lines` (an order's countable lines and their sum),
   `with_parent_state` (is a line's order / product in silver, rejected, or missing);
4. rules — `with_reasons`: `_reasons`, the names of every rule the row breaks;
5. outcome — `with_outcome`: superseded, duplicate, current, valid, held or quarantined;
6. sessions — `with_sessions`: 30-minute inactivity sessions per visitor.

Nothing here reads the clock or storage: the run's logical time comes in a `RuleContext`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from core.errors import SchemaDriftError
from silver.contracts import LINE_AMOUNT, MONEY, TABLES, SilverTable
from silver.rules import Rule, RuleContext

# Outcomes of a candidate row, one per row (see `with_outcome`).
SUPERSEDED = "superseded"  # an older version of a key that has a newer one in the batch
DUPLICATE = "duplicate"  # another delivery of an event already kept
CURRENT = "current"  # silver already holds this version (or a newer one): nothing to write
VALID = "valid"  # upserted into silver
HELD = "held"  # waits for a parent; re-evaluated on the next run
QUARANTINED = "quarantined"  # appended to quarantine with its reasons
OUTCOMES: tuple[str, ...] = (SUPERSEDED, DUPLICATE, CURRENT, VALID, HELD, QUARANTINED)

# Where a candidate row comes from.
FROM_BRONZE = "bronze"
FROM_HELD = "held"

# Country calling codes for phone numbers written in national format.
CALLING_CODES: dict[str, str] = {
    "US": "1", "CA": "1", "GB": "44", "IE": "353", "DE": "49", "AT": "43", "CH": "41", "FR": "33",
    "BE": "32", "NL": "31", "LU": "352", "ES": "34", "PT": "351", "IT": "39", "PL": "48", "CZ": "420",
    "SE": "46", "NO": "47", "DK": "45", "FI": "358", "AU": "61", "NZ": "64", "BR": "55", "MX": "52",
    "AR": "54", "IN": "91", "JP": "81", "CN": "86", "ZA": "27",
}  # fmt: skip
# Countries whose national numbers keep their leading 0 after the country code.
KEEPS_TRUNK_ZERO = frozenset({"IT"})


# --- column standardisers ---------------------------------------------------------------------------
def clean_text(col: Column) -> Column:
    """Trim every kind of whitespace (tabs, newlines, no-break spaces); blank becomes NULL."""
    trimmed = F.regexp_replace(col, r"^[\s\u00a0]+|[\s\u00a0]+$", "")
    return F.when(trimmed == "", F.lit(None).cast(T.StringType())).otherwise(trimmed)


def standardise_email(col: Column) -> Column:
    return F.lower(clean_text(col))


def standardise_code(col: Column) -> Column:
    """Country / currency codes: trimmed, upper case."""
    return F.upper(clean_text(col))


def standardise_label(col: Column) -> Column:
    """Enumerations (status, event type, device, …): trimmed, lower case."""
    return F.lower(clean_text(col))


def money(col: Column) -> Column:
    return col.cast(MONEY)


def normalise_phone(phone: Column, country_code: Column) -> Column:
    """`+<country code><number>` (E.164) when the number is international or its country known.

    An extension (`x123`, `ext. 12`) and a trunk zero written `(0)` are dropped; a leading
    `00` is the international prefix. A national number keeps its leading 0 only where the
    country dials it (Italy). A national number of an unknown country keeps its digits
    without `+`. No digits at all → NULL.
    """
    text = F.regexp_replace(clean_text(phone), r"(?i)\s*(x|ext\.?)\s*\d+$", "")
    text = F.regexp_replace(text, r"\(0\)", "")
    digits = F.regexp_replace(text, r"[^0-9]", "")
    code = standardise_code(country_code)
    calling = F.try_element_at(F.create_map(*[F.lit(x) for kv in CALLING_CODES.items() for x in kv]), code)
    national = F.when(code.isin(*KEEPS_TRUNK_ZERO), digits).otherwise(F.regexp_replace(digits, r"^0", ""))
    nanp_with_one = (calling == "1") & (F.length(digits) == 11) & digits.startswith("1")
    return (
        F.when(digits.isNull() | (digits == ""), F.lit(None).cast(T.StringType()))
        .when(text.startswith("+"), F.concat(F.lit("+"), digits))
        .when(text.startswith("00"), F.concat(F.lit("+"), F.regexp_replace(digits, r"^00", "")))
        .when(nanp_with_one, F.concat(F.lit("+"), digits))
        .when(calling.isNotNull(), F.concat(F.lit("+"), calling, national))
        .otherwise(digits)
    )


# --- 1. conform ------------------------------------------------------------------------------------------
def require_columns(df: DataFrame, table: str, columns: Sequence[str]) -> None:
    """Fail with both column sets when bronze lacks a column the silver contract needs."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SchemaDriftError(
            f"bronze.{table} lacks column(s) {', '.join(missing)} that silver.{table} needs; "
            f"expected {', '.join(columns)}; found {', '.join(df.columns)}"
        )


def _text(name: str) -> Column:
    return clean_text(F.col(name))


def _lineage() -> list[Column]:
    return [F.col("_change_version").cast(T.LongType()), F.col("_ingested_at").cast(T.TimestampType())]


def _ts(name: str) -> Column:
    return F.col(name).cast(T.TimestampType()).alias(name)


def conform_customers(df: DataFrame) -> DataFrame:
    return df.select(
        F.col("customer_id").cast(T.LongType()).alias("customer_id"),
        _text("visitor_id").alias("visitor_id"),
        standardise_email(F.col("email")).alias("email"),
        _text("first_name").alias("first_name"),
        _text("last_name").alias("last_name"),
        normalise_phone(F.col("phone"), F.col("country_code")).alias("phone"),
        standardise_code(F.col("country_code")).alias("country_code"),
        _text("city").alias("city"),
        _ts("signup_at"),
        _ts("updated_at"),
        *_lineage(),
    )


def conform_products(df: DataFrame) -> DataFrame:
    return df.select(
        F.col("product_id").cast(T.LongType()).alias("product_id"),
        _text("sku").alias("sku"),
        _text("name").alias("name"),
        standardise_label(F.col("category")).alias("category"),
        money(F.col("unit_price")).alias("unit_price"),
        F.col("is_active").cast(T.BooleanType()).alias("is_active"),
        _ts("created_at"),
        _ts("updated_at"),
        *_lineage(),
    )


def conform_orders(df: DataFrame) -> DataFrame:
    return df.select(
        F.col("order_id").cast(T.LongType()).alias("order_id"),
        F.col("customer_id").cast(T.LongType()).alias("customer_id"),
        standardise_label(F.col("status")).alias("status"),
        _ts("order_ts"),
        money(F.col("total_amount")).alias("total_amount"),
        standardise_code(F.col("currency")).alias("currency"),
        standardise_label(F.col("payment_method")).alias("payment_method"),
        _text("visitor_id").alias("visitor_id"),
        _ts("updated_at"),
        *_lineage(),
    )


def line_amount(quantity: Column, unit_price: Column, discount: Column) -> Column:
    """quantity × unit_price − discount, in exact decimals (NULL discount counts as 0)."""
    gross = quantity.cast(T.DecimalType(10, 0)) * money(unit_price)
    return (gross - F.coalesce(money(discount), F.lit(0).cast(MONEY))).cast(LINE_AMOUNT)


def conform_order_items(df: DataFrame) -> DataFrame:
    return df.select(
        F.col("order_item_id").cast(T.LongType()).alias("order_item_id"),
        F.col("order_id").cast(T.LongType()).alias("order_id"),
        F.col("product_id").cast(T.LongType()).alias("product_id"),
        F.col("quantity").cast(T.IntegerType()).alias("quantity"),
        money(F.col("unit_price")).alias("unit_price"),
        money(F.col("discount_amount")).alias("discount_amount"),
        line_amount(F.col("quantity"), F.col("unit_price"), F.col("discount_amount")).alias("line_amount"),
        _ts("updated_at"),
        *_lineage(),
    )


def conform_clickstream_events(df: DataFrame) -> DataFrame:
    return df.select(
        _text("event_id").alias("event_id"),
        F.col("event_seq").cast(T.LongType()).alias("event_seq"),
        _text("visitor_id").alias("visitor_id"),
        F.col("customer_id").cast(T.LongType()).alias("customer_id"),
        standardise_label(F.col("event_type")).alias("event_type"),
        _text("page_url").alias("page_url"),
        F.col("product_id").cast(T.LongType()).alias("product_id"),
        _ts("event_ts"),
        standardise_label(F.col("device")).alias("device"),
        standardise_label(F.col("channel")).alias("channel"),
        _text("referrer").alias("referrer"),
        _ts("ingested_at"),
        F.lit(None).cast(T.StringType()).alias("session_id"),
        *_lineage(),
    )


CONFORMERS: dict[str, Callable[[DataFrame], DataFrame]] = {
    "customers": conform_customers,
    "products": conform_products,
    "orders": conform_orders,
    "order_items": conform_order_items,
    "clickstream_events": conform_clickstream_events,
}
SOURCE_COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": ("customer_id", "visitor_id", "email", "first_name", "last_name", "phone", "country_code",
                  "city", "signup_at", "updated_at"),
    "products": ("product_id", "sku", "name", "category", "unit_price", "is_active", "created_at", "updated_at"),
    "orders": ("order_id", "customer_id", "status", "order_ts", "total_amount", "currency", "payment_method",
               "visitor_id", "updated_at"),
    "order_items": ("order_item_id", "order_id", "product_id", "quantity", "unit_price", "discount_amount",
                    "updated_at"),
    "clickstream_events": ("event_seq", "event_id", "visitor_id", "customer_id", "event_type", "page_url",
                           "product_id", "event_ts", "device", "channel", "referrer", "ingested_at"),
}  # fmt: skip
BRONZE_LINEAGE: tuple[str, ...] = ("_change_version", "_ingested_at")


def conform(table: str) -> Callable[[DataFrame], DataFrame]:
    """The conform step of `table`: bronze columns → the silver contract (plus lineage)."""

    def step(df: DataFrame) -> DataFrame:
        require_columns(df, table, [*SOURCE_COLUMNS[table], *BRONZE_LINEAGE])
        return CONFORMERS[table](df)

    return step


# --- 2. versions -----------------------------------------------------------------------------------------
def with_version_rank(table: SilverTable) -> Callable[[DataFrame], DataFrame]:
    """`_version_rank` 1 = the version to keep per key.

    Mutable rows: the latest by source clock, then `_change_version`, then bronze arrival.
    Events: the first delivery (earliest `ingested_at`, then `event_seq`): an event never
    changes, and keeping the first makes a late duplicate a no-op. A NULL key is no key: each
    such row stands alone (its `_not_null` rule rejects it).
    """

    def step(df: DataFrame) -> DataFrame:
        if table.name == "clickstream_events":
            order = [F.col("ingested_at").asc_nulls_last(), F.col("event_seq").asc_nulls_last()]
        else:
            order = [
                F.col(table.clock).desc_nulls_last(),
                F.col("_change_version").desc_nulls_last(),
                F.col("_ingested_at").desc_nulls_last(),
            ]
        w = Window.partitionBy(table.key).orderBy(*order)
        rank = F.when(F.col(table.key).isNull(), F.lit(1)).otherwise(F.row_number().over(w))
        return df.withColumn("_version_rank", rank)

    return step


def is_newer(table: SilverTable, new: str = "s", old: str = "t") -> str:
    """SQL: version `new` is later than version `old` (the MERGE's update condition)."""
    c, v = table.clock, "_change_version"
    return f"({new}.{c} > {old}.{c} OR ({new}.{c} = {old}.{c} AND {new}.{v} > {old}.{v}))"


def with_current_flag(table: SilverTable, current_df: DataFrame) -> Callable[[DataFrame], DataFrame]:
    """`_is_current`: silver already holds this version of the key, or a newer one.

    For events, `_is_duplicate` too: a later delivery in the batch (`_version_rank` > 1), or
    the event_id is already kept (in silver or quarantine) from another delivery. `current_df` has the key, the clock and `_change_version` (and
    `event_seq` for events) of what is stored.
    """

    def step(df: DataFrame) -> DataFrame:
        key = table.key
        if table.name == "clickstream_events":
            stored = current_df.select(F.col(key).alias("_s_key"), F.col("event_seq").alias("_s_seq")).dropDuplicates(
                ["_s_key"]
            )
            joined = df.join(stored, df[key] == stored["_s_key"], "left")
            seen = F.col("_s_key").isNotNull()
            same = F.col("_s_seq").eqNullSafe(F.col("event_seq"))
            later_delivery = F.col("_version_rank") > 1
            return (
                joined.withColumn("_is_current", seen & same)
                .withColumn("_is_duplicate", (seen & ~same) | later_delivery)
                .drop("_s_key", "_s_seq")
            )
        stored = current_df.select(
            F.col(key).alias("_s_key"),
            F.col(table.clock).alias("_s_clock"),
            F.col("_change_version").alias("_s_version"),
        )
        joined = df.join(stored, df[key] == stored["_s_key"], "left")
        newer = (F.col(table.clock) > F.col("_s_clock")) | (
            (F.col(table.clock) == F.col("_s_clock")) & (F.col("_change_version") > F.col("_s_version"))
        )
        is_current = F.col("_s_key").isNotNull() & ~F.coalesce(newer, F.lit(False))
        return (
            joined.withColumn("_is_current", is_current)
            .withColumn("_is_duplicate", F.lit(False))
            .drop("_s_key", "_s_clock", "_s_version")
        )

    return step


# --- 3. cross-table facts --------------------------------------------------------------------------------
ACCEPTED, REJECTED, MISSING = "accepted", "rejected", "missing"


def with_parent_state(
    column: str, state_column: str, accepted_ids: DataFrame, rejected_ids: DataFrame
) -> Callable[[DataFrame], DataFrame]:
    """`state_column`: accepted (the parent `column` names is in silver), rejected (only in
    quarantine), or missing (nowhere yet). `*_ids` have one column, `id`."""

    def step(df: DataFrame) -> DataFrame:
        acc = accepted_ids.select(F.col("id").alias("_acc_id")).distinct()
        rej = rejected_ids.select(F.col("id").alias("_rej_id")).distinct()
        joined = df.join(acc, df[column] == acc["_acc_id"], "left").join(rej, df[column] == rej["_rej_id"], "left")
        state = (
            F.when(F.col("_acc_id").isNotNull(), F.lit(ACCEPTED))
            .when(F.col("_rej_id").isNotNull(), F.lit(REJECTED))
            .otherwise(F.lit(MISSING))
        )
        return joined.withColumn(state_column, state).drop("_acc_id", "_rej_id")

    return step


def countable_lines(lines_df: DataFrame, known_product_ids: DataFrame, ctx: RuleContext) -> DataFrame:
    """The latest version of each order line, with `_is_countable`: it passes the line rules
    and its product exists in the source. Only countable lines make up an order's total."""
    from silver.rules import order_item_row_rules

    latest = lines_df.transform(with_version_rank(TABLES["order_items"])).where(F.col("_version_rank") == 1)
    products = known_product_ids.select(F.col("id").alias("_product")).distinct()
    row_ok = F.lit(True)
    for rule in order_item_row_rules(ctx):
        row_ok = row_ok & F.coalesce(rule.check, F.lit(False))
    return (
        latest.join(products, latest["product_id"] == products["_product"], "left")
        .withColumn("_is_countable", row_ok & F.col("_product").isNotNull())
        .select("order_id", "order_item_id", "line_amount", "_is_countable")
    )


def with_order_lines(lines_df: DataFrame) -> Callable[[DataFrame], DataFrame]:
    """`_lines_count` (lines known in the lake) and `_lines_amount` (sum of countable lines)
    per order, from `countable_lines` output."""

    def step(df: DataFrame) -> DataFrame:
        per_order = lines_df.groupBy(F.col("order_id").alias("_l_order")).agg(
            F.count(F.lit(1)).alias("_lines_count"),
            F.sum(F.when(F.col("_is_countable"), F.col("line_amount"))).cast(LINE_AMOUNT).alias("_lines_amount"),
        )
        return (
            df.join(per_order, df["order_id"] == per_order["_l_order"], "left")
            .withColumn("_lines_count", F.coalesce(F.col("_lines_count"), F.lit(0).cast(T.LongType())))
            .withColumn("_lines_amount", F.coalesce(F.col("_lines_amount"), F.lit(0).cast(LINE_AMOUNT)))
            .drop("_l_order")
        )

    return step


# --- 4. rules --------------------------------------------------------------------------------------------
def with_reasons(rules: Sequence[Rule]) -> Callable[[DataFrame], DataFrame]:
    """`_reasons`: names of every broken rule (a NULL verdict counts as broken), in rule order;
    `_is_waiting`: at least one broken rule, and all broken rules wait for another table."""

    def step(df: DataFrame) -> DataFrame:
        broken = [F.when(~F.coalesce(r.check, F.lit(False)), F.lit(r.name)) for r in rules]
        waiting = {r.name for r in rules if r.waits}
        reasons = F.filter(F.array(*broken), lambda x: x.isNotNull()) if broken else F.array()
        reasons = reasons.cast(T.ArrayType(T.StringType()))
        only_waiting = F.forall(F.col("_reasons"), lambda x: x.isin(*waiting)) if waiting else F.lit(False)
        return df.withColumn("_reasons", reasons).withColumn(
            "_is_waiting", (F.size(F.col("_reasons")) > 0) & only_waiting
        )

    return step


# --- 5. outcome ------------------------------------------------------------------------------------------
def with_outcome(ctx: RuleContext, grace: timedelta) -> Callable[[DataFrame], DataFrame]:
    """`_outcome` of each candidate: the first that applies of superseded, duplicate, current,
    valid, held (only waiting rules broken and bronze received it less than `grace` ago),
    quarantined."""

    def step(df: DataFrame) -> DataFrame:
        deadline = F.col("_ingested_at") + F.expr(f"INTERVAL {int(grace.total_seconds())} SECONDS")
        within_grace = F.coalesce(deadline > F.lit(ctx.as_of).cast(T.TimestampType()), F.lit(False))
        outcome = (
            F.when(F.col("_is_duplicate"), F.lit(DUPLICATE))
            .when(F.col("_version_rank") > 1, F.lit(SUPERSEDED))
            .when(F.col("_is_current"), F.lit(CURRENT))
            .when(F.size(F.col("_reasons")) == 0, F.lit(VALID))
            .when(F.col("_is_waiting") & within_grace, F.lit(HELD))
            .otherwise(F.lit(QUARANTINED))
        )
        return df.withColumn("_outcome", outcome)

    return step


# --- 6. sessions -----------------------------------------------------------------------------------------
def session_id(visitor_id: Column, first_event_ts: Column) -> Column:
    """Deterministic: sha2-256 of `visitor_id|microseconds of the session's first event`."""
    return F.sha2(F.concat_ws("|", visitor_id, F.unix_micros(first_event_ts).cast(T.StringType())), 256)


def with_sessions(gap_minutes: int) -> Callable[[DataFrame], DataFrame]:
    """`session_id` per event: a visitor's new session starts after more than `gap_minutes`
    without an event. Needs ALL of a visitor's events: a visitor's sessions depend on every
    one of them (a late event can join two sessions into one)."""

    def step(df: DataFrame) -> DataFrame:
        by_time = Window.partitionBy("visitor_id").orderBy(F.col("event_ts").asc(), F.col("event_id").asc())
        gap_us = F.unix_micros("event_ts") - F.lag(F.unix_micros("event_ts")).over(by_time)
        starts = F.when(gap_us.isNull() | (gap_us > gap_minutes * 60 * 1_000_000), F.lit(1)).otherwise(F.lit(0))
        numbered = df.withColumn("_starts", starts).withColumn(
            "_session_no", F.sum("_starts").over(by_time.rowsBetween(Window.unboundedPreceding, Window.currentRow))
        )
        by_session = Window.partitionBy("visitor_id", "_session_no")
        return numbered.withColumn(
            "session_id", session_id(F.col("visitor_id"), F.min("event_ts").over(by_session))
        ).drop("_starts", "_session_no")

    return step
