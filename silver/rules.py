"""The named validity rules of silver: one readable list per table.

A rule is a name and a Column predicate that is True when the row is VALID. Each predicate
says what it does with a NULL: a rule about a value's format is not broken by a missing
value (the `_not_null` rule is), so a row breaks exactly the rules that describe its defect.
A predicate that still evaluates to NULL counts as broken (see `silver.transforms.with_reasons`).

Rules compare timestamps with the run's logical time (`RuleContext.as_of`) and with the
source's own receive clock (`updated_at` / `ingested_at`), never with the wall clock, so a
rerun or a full refresh judges a row the same way.

A rule marked `waits` depends on another table (a parent that may still arrive): a row that
breaks only such rules is held back and re-evaluated on later runs, and quarantined once it
has waited `orphan_grace_hours` since bronze received it.

How the generator's `reject` defect kinds (`generator.defects`) map onto rules is declared in
`REJECT_KIND_RULES`; the acceptance test checks precision and recall per kind through it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from pyspark.sql import Column
from pyspark.sql import functions as F

from core.schema import EVENT_TYPES, ORDER_STATUSES

# Lower-case address: a local part of letters, digits and . _ % + -, one @, a dotted domain
# whose last label (the TLD) has two or more letters. Applied after trim and lower-case.
EMAIL_PATTERN = r"^[a-z0-9._%+-]+@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}$"
COUNTRY_CODE_PATTERN = r"^[A-Z]{2}$"  # ISO 3166-1 alpha-2, after trim and upper-case
CURRENCY_PATTERN = r"^[A-Z]{3}$"  # ISO 4217, after trim and upper-case
# How far a source timestamp may run ahead of the clock that stamped its arrival
# (application servers and the database do not share a clock).
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class RuleContext:
    """What rules may depend on besides the row: the run's logical time and the settings."""

    as_of: datetime  # naive UTC
    total_tolerance: Decimal = Decimal("0.01")


@dataclass(frozen=True)
class Rule:
    name: str
    check: Column  # True when the row is valid
    waits: bool = False  # depends on another table: hold back, reject after the grace period


def _ts(value: datetime) -> Column:
    return F.lit(value).cast("timestamp")


def not_after(ts: str, received: str, ctx: RuleContext) -> Column:
    """`ts` is not later than when the row was received, nor than the run's logical time.

    NULL `ts` passes (its `_not_null` rule catches it); a NULL receive time is bounded by
    `as_of` alone.
    """
    bound = F.least(F.coalesce(F.col(received), _ts(ctx.as_of)), _ts(ctx.as_of)) + F.expr(
        f"INTERVAL {int(CLOCK_SKEW.total_seconds())} SECONDS"
    )
    return F.col(ts).isNull() | (F.col(ts) <= bound)


def _matches(column: str, pattern: str) -> Column:
    """NULL passes: a missing value is the `_not_null` rule's business."""
    return F.col(column).isNull() | F.col(column).rlike(pattern)


def _at_least(column: str, bound: int | Decimal, strict: bool = False) -> Column:
    value = F.lit(bound)
    return F.col(column).isNull() | ((F.col(column) > value) if strict else (F.col(column) >= value))


def _not_null(column: str) -> Rule:
    return Rule(f"{column}_not_null", F.col(column).isNotNull())


# --- one list per table ---------------------------------------------------------------------------
def customers(ctx: RuleContext) -> list[Rule]:
    return [
        _not_null("customer_id"),
        _not_null("email"),
        Rule("email_format", _matches("email", EMAIL_PATTERN)),
        Rule("country_code_iso", _matches("country_code", COUNTRY_CODE_PATTERN)),
        Rule("signup_at_not_future", not_after("signup_at", "updated_at", ctx)),
    ]


def products(ctx: RuleContext) -> list[Rule]:
    return [
        _not_null("product_id"),
        _not_null("unit_price"),
        Rule("price_positive", _at_least("unit_price", 0, strict=True)),
    ]


def orders(ctx: RuleContext) -> list[Rule]:
    """Needs `_lines_count` and `_lines_amount` (see `transforms.with_order_lines`)."""
    tolerance = F.lit(ctx.total_tolerance).cast("decimal(12,2)")
    return [
        _not_null("order_id"),
        _not_null("order_ts"),
        _not_null("total_amount"),
        Rule("status_known", F.col("status").isNotNull() & F.col("status").isin(*ORDER_STATUSES)),
        Rule("total_non_negative", _at_least("total_amount", 0)),
        Rule("currency_iso", F.col("currency").isNotNull() & F.col("currency").rlike(CURRENCY_PATTERN)),
        Rule("order_ts_not_future", not_after("order_ts", "updated_at", ctx)),
        # Cross-table: the order's lines are in the lake (they may arrive in a later batch) ...
        Rule("has_items", F.coalesce(F.col("_lines_count"), F.lit(0)) > 0, waits=True),
        # ... and the total equals the sum of its countable lines, to the tolerance.
        Rule(
            "total_matches_items",
            (F.coalesce(F.col("_lines_count"), F.lit(0)) == 0)  # not judged before the lines are known
            | F.col("total_amount").isNull()
            | (F.abs(F.col("total_amount") - F.coalesce(F.col("_lines_amount"), F.lit(0))) <= tolerance),
        ),
    ]


def order_item_row_rules(ctx: RuleContext) -> list[Rule]:
    """The rules of a line on its own; a line that passes them counts in its order's total."""
    return [
        _not_null("order_item_id"),
        _not_null("order_id"),
        _not_null("product_id"),
        _not_null("quantity"),
        _not_null("unit_price"),
        Rule("quantity_not_zero", F.col("quantity").isNull() | (F.col("quantity") != 0)),
        Rule("quantity_not_negative", _at_least("quantity", 0)),
        Rule("unit_price_positive", _at_least("unit_price", 0, strict=True)),
        Rule("discount_non_negative", _at_least("discount_amount", 0)),
        # Judged only on an otherwise sane line: a bad quantity is its own rule's business.
        Rule(
            "discount_within_price",
            F.col("discount_amount").isNull()
            | F.col("quantity").isNull()
            | F.col("unit_price").isNull()
            | (F.col("quantity") <= 0)
            | (F.col("discount_amount") <= F.col("quantity").cast("decimal(10,0)") * F.col("unit_price")),
        ),
    ]


def order_items(ctx: RuleContext) -> list[Rule]:
    """Needs `_order_state` and `_product_state`: accepted (the parent is in silver), rejected
    (it is only in quarantine) or missing (see `transforms.with_parent_state`)."""
    return [
        *order_item_row_rules(ctx),
        Rule("order_exists", _parent_is_not("_order_state", "missing"), waits=True),
        Rule("order_valid", _parent_is_not("_order_state", "rejected"), waits=True),
        Rule("product_exists", _parent_is_not("_product_state", "missing"), waits=True),
        Rule("product_valid", _parent_is_not("_product_state", "rejected"), waits=True),
    ]


def _parent_is_not(state_column: str, state: str) -> Column:
    return F.coalesce(F.col(state_column), F.lit("missing")) != state


def clickstream_events(ctx: RuleContext) -> list[Rule]:
    """No rule on `customer_id`: an event of an unknown customer stays, as an anonymous visitor's."""
    return [
        _not_null("event_id"),
        _not_null("visitor_id"),
        _not_null("event_ts"),
        Rule("event_type_known", F.col("event_type").isNotNull() & F.col("event_type").isin(*EVENT_TYPES)),
        Rule("event_ts_not_future", not_after("event_ts", "ingested_at", ctx)),
    ]


RULES: dict[str, Callable[[RuleContext], list[Rule]]] = {
    "customers": customers,
    "products": products,
    "orders": orders,
    "order_items": order_items,
    "clickstream_events": clickstream_events,
}

# The generator's `reject` defect kinds and the rule that must catch each (and nothing else).
REJECT_KIND_RULES: dict[str, tuple[str, str]] = {
    "null_email": ("customers", "email_not_null"),
    "malformed_email": ("customers", "email_format"),
    "non_positive_price": ("products", "price_positive"),
    "total_mismatch": ("orders", "total_matches_items"),
    "zero_quantity": ("order_items", "quantity_not_zero"),
    "negative_quantity": ("order_items", "quantity_not_negative"),
    "orphan_order": ("order_items", "order_exists"),
    "orphan_product": ("order_items", "product_exists"),
    "future_timestamp": ("clickstream_events", "event_ts_not_future"),
}


def rule_names(table: str) -> list[str]:
    """The rule names of a table (for docs, tests and the quarantine's reasons)."""
    ctx = RuleContext(as_of=datetime(2000, 1, 1))
    return [r.name for r in RULES[table](ctx)]
