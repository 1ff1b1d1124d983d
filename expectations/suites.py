"""The expectation suites, as code: one per table per layer, named `<layer>.<table>`.

A suite is declared as a `Contract` (grain, key, columns, value rules, cross-table rules)
and turned into a GX `ExpectationSuite` for the frame being judged by `build_suite`. The
contract is the promise each layer makes to the next:

- bronze: every source column and the ingestion columns are present; the key and
  `_run_id`, `_ingested_at` are never NULL (bronze is append-only: keys repeat by design);
- silver: the key is unique (the grain); formats, sets and ranges hold; lines reference
  existing orders and products; the row count reconciles with what the job says it wrote;
- gold: the grain is unique (compound keys too); money ≥ 0; RFM scores in 1–5; rates in
  [0, 1]; every silver customer is in `customer_360`. Gold columns beyond the key are
  judged only when the frame has them, so a mart under construction is not blocked.

Cross-table rules need a second frame. `gate(extra=...)` takes them from the caller
(`references`, `covers`, `expected_rows`: see `Facts`); `ecom validate` loads the current
lake tables itself. GX reports no failing row indices on Spark, and quarantining rows is
silver's business: a suite judges a whole batch, it never sorts rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.schema import EVENT_TYPES, ORDER_STATUSES, SOURCE_TABLES

if TYPE_CHECKING:
    from great_expectations import ExpectationSuite
    from great_expectations.expectations import Expectation

LAYERS: tuple[str, ...] = ("bronze", "silver", "gold")

# Formats of conformed silver values (silver lower-cases e-mails, upper-cases codes).
EMAIL_REGEX = r"^[a-z0-9._%+-]+@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}$"
COUNTRY_CODE_REGEX = r"^[A-Z]{2}$"
CURRENCY_REGEX = r"^[A-Z]{3}$"
SESSION_ID_REGEX = r"^[0-9a-f]{64}$"
RFM_SEGMENTS: tuple[str, ...] = ("Prospect", "Champions", "Loyal", "New", "Promising", "At risk", "Hibernating")

INGESTION_COLUMNS: tuple[str, ...] = ("_run_id", "_ingested_at")
NOT_NEGATIVE = (0, None)
SCORE = (1, 5)
RATE = (0, 1)


@dataclass(frozen=True)
class Ref:
    """A frame of another table whose column `column` a rule joins with."""

    layer: str
    table: str
    column: str

    @property
    def name(self) -> str:
        return f"{self.layer}.{self.table}"


@dataclass(frozen=True)
class Contract:
    """What one table promises. `required`: columns that must be present; the value rules
    apply to the columns the frame has (a missing required column fails `required`)."""

    layer: str
    table: str
    grain: str
    key: tuple[str, ...]
    required: tuple[str, ...] = ()
    unique_key: bool = True
    not_null: tuple[str, ...] = ()
    in_set: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    between: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)
    regex: Mapping[str, str] = field(default_factory=dict)
    # column → the table whose column it must reference (non-NULL values only)
    references: Mapping[str, Ref] = field(default_factory=dict)
    # column → the table all of whose values must appear in this column
    covers: Mapping[str, Ref] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.layer}.{self.table}"


@dataclass(frozen=True)
class Facts:
    """Run-time facts a gate judges besides the frame itself, from `gate(extra=...)`.

    - `expected_rows`: the row count the job reconciled (e.g. from `ops.runs`): the frame
      must have exactly that many rows;
    - `references`: {column: frame} — every non-NULL value of the column is in the frame's
      column of the same name (referential integrity);
    - `covers`: {column: frame} — every value of the frame's column is in this column
      (completeness, e.g. every silver customer in gold.customer_360).
    """

    expected_rows: int | None = None
    references: Mapping[str, Any] = field(default_factory=dict)
    covers: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, extra: Mapping[str, Any] | None) -> Facts:
        extra = dict(extra or {})
        unknown = set(extra) - {"expected_rows", "references", "covers"}
        if unknown:
            raise ValueError(f"unknown gate facts {sorted(unknown)}: use expected_rows, references, covers")
        expected = extra.get("expected_rows")
        return cls(
            expected_rows=None if expected is None else int(expected),
            references=dict(extra.get("references") or {}),
            covers=dict(extra.get("covers") or {}),
        )


def _source_columns(table: str) -> tuple[str, ...]:
    """The source table's columns (core.schema), minus the extraction version."""
    return tuple(c.name for c in SOURCE_TABLES[table].table.columns if c.name != "_change_version")


def _bronze(table: str) -> Contract:
    key = SOURCE_TABLES[table].key
    return Contract(
        "bronze",
        table,
        grain=f"one row per extracted version of a source {table} row (append-only: {key} repeats)",
        key=(key,),
        required=(*_source_columns(table), *INGESTION_COLUMNS),
        unique_key=False,
        not_null=(key, *INGESTION_COLUMNS),
    )


def _silver(table: str, extra_columns: tuple[str, ...] = (), **rules: Any) -> Contract:
    key = SOURCE_TABLES[table].key
    return Contract(
        "silver",
        table,
        grain=f"one row per {key}: its latest valid version",
        key=(key,),
        required=(*_source_columns(table), *extra_columns, "_run_id"),
        **{"not_null": (key, "_run_id"), **rules},
    )


def _money(*columns: str) -> dict[str, tuple[float | None, float | None]]:
    return dict.fromkeys(columns, NOT_NEGATIVE)


CONTRACTS: dict[str, Contract] = {
    c.name: c
    for c in (
        *(_bronze(t) for t in SOURCE_TABLES),
        _silver(
            "customers",
            not_null=("customer_id", "email", "_run_id"),
            regex={"email": EMAIL_REGEX, "country_code": COUNTRY_CODE_REGEX},
        ),
        _silver(
            "products",
            not_null=("product_id", "sku", "unit_price", "_run_id"),
            between=_money("unit_price"),
        ),
        _silver(
            "orders",
            not_null=("order_id", "status", "order_ts", "total_amount", "currency", "_run_id"),
            in_set={"status": ORDER_STATUSES},
            between=_money("total_amount"),
            regex={"currency": CURRENCY_REGEX},
        ),
        _silver(
            "order_items",
            ("line_amount",),
            not_null=("order_item_id", "order_id", "product_id", "quantity", "unit_price", "_run_id"),
            between={"quantity": (1, None), **_money("unit_price", "discount_amount", "line_amount")},
            references={
                "order_id": Ref("silver", "orders", "order_id"),
                "product_id": Ref("silver", "products", "product_id"),
            },
        ),
        _silver(
            "clickstream_events",
            ("session_id",),
            not_null=("event_id", "visitor_id", "event_type", "event_ts", "session_id", "_run_id"),
            in_set={"event_type": EVENT_TYPES},
            regex={"session_id": SESSION_ID_REGEX},
        ),
        Contract(
            "gold",
            "customer_360",
            grain="one row per customer in silver.customers",
            key=("customer_id",),
            required=("customer_id",),
            not_null=("customer_id", "orders_count", "revenue", "rfm_segment"),
            in_set={"rfm_segment": RFM_SEGMENTS},
            between={
                **dict.fromkeys(
                    (
                        "orders_count",
                        "net_orders_count",
                        "cancelled_orders_count",
                        "returned_orders_count",
                        "sessions_count",
                        "avg_session_duration_seconds",
                        "days_since_last_order",
                    ),
                    NOT_NEGATIVE,
                ),
                **_money("revenue", "avg_order_value", "clv_estimate"),
                **dict.fromkeys(("r_score", "f_score", "m_score"), SCORE),
                **dict.fromkeys(("conversion_rate", "cart_abandonment_rate"), RATE),
            },
            references={"customer_id": Ref("silver", "customers", "customer_id")},
            covers={"customer_id": Ref("silver", "customers", "customer_id")},
        ),
        Contract(
            "gold",
            "sessions",
            grain="one row per clickstream session",
            key=("session_id",),
            required=("session_id",),
            not_null=("session_id", "visitor_id", "session_start"),
            regex={"session_id": SESSION_ID_REGEX},
            between={
                **dict.fromkeys(("duration_seconds", "events_count"), NOT_NEGATIVE),
                **_money("cart_value"),
            },
            covers={"session_id": Ref("silver", "clickstream_events", "session_id")},
        ),
        Contract(
            "gold",
            "daily_sales",
            grain="one row per sales_date and category",
            key=("sales_date", "category"),
            required=("sales_date", "category"),
            not_null=("sales_date", "category"),
            between={
                **dict.fromkeys(
                    (
                        "orders",
                        "orders_count",
                        "units",
                        "new_customers",
                        "returning_customers",
                        "cancelled_orders",
                        "returned_orders",
                    ),
                    NOT_NEGATIVE,
                ),
                **_money("revenue", "avg_order_value"),
            },
        ),
        Contract(
            "gold",
            "product_performance",
            grain="one row per product_id and activity_date",
            key=("product_id", "activity_date"),
            required=("product_id", "activity_date"),
            not_null=("product_id", "activity_date"),
            between={
                # per-day purchase rates can exceed 1 (buyers who skip the product page or the
                # cart that day): only ≥ 0, unlike the per-session rates of customer_360
                **dict.fromkeys(("views", "unique_viewers", "add_to_carts", "purchases", "units_sold"), NOT_NEGATIVE),
                **dict.fromkeys(("view_to_purchase_rate", "cart_to_purchase_rate"), NOT_NEGATIVE),
                **_money("revenue"),
            },
        ),
    )
}


def layer_tables(layer: str) -> list[str]:
    """The tables a layer promises, in contract order."""
    if layer not in LAYERS:
        raise ValueError(f"unknown layer {layer!r}: one of {', '.join(LAYERS)}")
    return [c.table for c in CONTRACTS.values() if c.layer == layer]


def contract(layer: str, table: str) -> Contract:
    try:
        return CONTRACTS[f"{layer}.{table}"]
    except KeyError:
        known = ", ".join(layer_tables(layer)) if layer in LAYERS else ""
        raise ValueError(f"no expectation suite for {layer}.{table}; {layer} has: {known}") from None


def view_name(c: Contract, kind: str, column: str) -> str:
    """The temporary view a cross-table rule joins with (stable, so the suite is too)."""
    return f"_gx_{c.layer}_{c.table}_{kind}_{column}"


def _q(column: str) -> str:
    return f"`{column}`"


def reference_query(c: Contract, column: str, ref_column: str) -> str:
    """Rows of the batch whose non-NULL `column` is missing from the referenced frame."""
    view = view_name(c, "ref", column)
    col, ref = _q(column), _q(ref_column)
    return f"SELECT b.{col} FROM {{batch}} b LEFT ANTI JOIN {view} r ON b.{col} = r.{ref} WHERE b.{col} IS NOT NULL"


def covers_query(c: Contract, column: str, ref_column: str) -> str:
    """Distinct values of the other frame that the batch's `column` lacks."""
    view = view_name(c, "covers", column)
    col, ref = _q(column), _q(ref_column)
    return (
        f"SELECT r.{ref} FROM (SELECT DISTINCT {ref} FROM {view} WHERE {ref} IS NOT NULL) r "
        f"LEFT ANTI JOIN {{batch}} b ON r.{ref} = b.{col}"
    )


def build_suite(c: Contract, columns: Iterable[str], facts: Facts | None = None) -> ExpectationSuite:
    """The GX suite judging a frame with `columns` against contract `c` and the run's facts."""
    import great_expectations as gx

    facts = facts or Facts()
    present = set(columns)
    return gx.ExpectationSuite(
        name=c.name,
        expectations=list(_expectations(c, present, facts)),
        meta={"notes": {"format": "markdown", "content": [f"**Grain**: {c.grain}. Key: {', '.join(c.key)}."]}},
    )


def _expectations(c: Contract, present: set[str], facts: Facts) -> Iterable[Expectation]:
    import great_expectations.expectations as gxe

    def has(column: str) -> bool:
        return column in present

    if c.required:
        yield gxe.ExpectTableColumnsToMatchSet(
            column_set=sorted(c.required),
            exact_match=False,
            description=f"the columns of the {c.name} contract are present",
        )
    if c.unique_key and all(has(k) for k in c.key):
        grain = f"grain: one row per {' + '.join(c.key)}"
        if len(c.key) == 1:
            yield gxe.ExpectColumnValuesToBeUnique(column=c.key[0], description=grain)
        else:
            yield gxe.ExpectCompoundColumnsToBeUnique(column_list=list(c.key), description=grain)
    for column in _ordered(c.not_null, has):
        yield gxe.ExpectColumnValuesToNotBeNull(column=column)
    for column, values in c.in_set.items():
        if has(column):
            yield gxe.ExpectColumnValuesToBeInSet(column=column, value_set=list(values))
    for column, (low, high) in c.between.items():
        if has(column):
            yield gxe.ExpectColumnValuesToBeBetween(column=column, min_value=low, max_value=high)
    for column, pattern in c.regex.items():
        if has(column):
            yield gxe.ExpectColumnValuesToMatchRegex(column=column, regex=pattern)
    for column, ref in c.references.items():
        if has(column) and column in facts.references:
            yield gxe.UnexpectedRowsExpectation(
                unexpected_rows_query=reference_query(c, column, ref.column),
                description=f"every {column} is in {ref.name}.{ref.column}",
            )
    for column, ref in c.covers.items():
        if has(column) and column in facts.covers:
            yield gxe.UnexpectedRowsExpectation(
                unexpected_rows_query=covers_query(c, column, ref.column),
                description=f"every {ref.name}.{ref.column} is in {c.name}.{column}",
            )
    if facts.expected_rows is not None:
        yield gxe.ExpectTableRowCountToEqual(value={"$PARAMETER": "expected_rows"})


def _ordered(columns: Sequence[str], has: Any) -> list[str]:
    seen: dict[str, None] = {}
    for column in columns:
        if has(column):
            seen.setdefault(column, None)
    return list(seen)


def unknown_fact_columns(c: Contract, facts: Facts) -> list[str]:
    """Fact columns the contract has no rule for (a caller's typo must not pass silently)."""
    bad = [f"references[{k!r}]" for k in facts.references if k not in c.references]
    bad += [f"covers[{k!r}]" for k in facts.covers if k not in c.covers]
    return bad
