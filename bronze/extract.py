"""The source adapter: every dialect-specific SQL string of bronze, as pure builders.

Extraction is windowed on `_change_version` (see `core.schema`): PostgreSQL keeps the
64-bit id of the writing transaction (`xid8`), SQL Server a `ROWVERSION`. A window is
half-open, `[lower, upper)`, where `upper` is the *safe horizon* taken before the read:

- PostgreSQL: `pg_snapshot_xmin(pg_current_snapshot())`, the oldest transaction still
  running. Every transaction below it has committed or aborted, so no row with a version
  below the horizon can appear later.
- SQL Server: `MIN_ACTIVE_ROWVERSION()`, the lowest rowversion of an open transaction
  (or the next one when none is open): the same guarantee.

So a long transaction that commits after a younger one is read in a later window, never
skipped, and the next window starts exactly where this one ended: no overlap is re-read
and nothing at the boundary is dropped (all rows of a transaction share one version).
That is why `extract_overlap_s` — a lookback needed by timestamp extractors, whose clock
is taken before commit — plays no part here.

Spark's JDBC reader has no `xid8` type, so the version is cast to BIGINT in the select
list; the window bounds are rendered as integer literals (validated), never interpolated
from text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Dialect = Literal["postgresql", "mssql"]
DIALECTS: tuple[Dialect, ...] = ("postgresql", "mssql")
VERSION_COLUMN = "_change_version"
MAX_VERSION = 2**63 - 1  # both xid8 (in practice) and ROWVERSION fit a signed BIGINT


@dataclass(frozen=True)
class Window:
    """Source versions `lower <= v < upper`; `upper` is the safe horizon of this extraction."""

    lower: int
    upper: int

    def __post_init__(self) -> None:
        for name in ("lower", "upper"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_VERSION:
                raise ValueError(f"window {name} must be an integer in [0, 2^63), got {value!r}")

    @property
    def is_empty(self) -> bool:
        return self.upper <= self.lower


@dataclass(frozen=True)
class PartitionPlan:
    """How Spark splits one window read: `numPartitions` strides over `column` in [lower, upper]."""

    partitions: int
    column: str | None = None
    lower: int = 0
    upper: int = 0


def _check(dialect: str) -> str:
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}: expected one of {', '.join(DIALECTS)}")
    return dialect


def quote(dialect: str, name: str) -> str:
    """Quote one identifier: `"name"` on PostgreSQL, `[name]` on SQL Server."""
    if _check(dialect) == "postgresql":
        return '"' + name.replace('"', '""') + '"'
    return "[" + name.replace("]", "]]") + "]"


def qualified(dialect: str, schema: str, table: str) -> str:
    return f"{quote(dialect, schema)}.{quote(dialect, table)}"


def source_name(dialect: str, database: str, schema: str, table: str) -> str:
    """The `_source` of a bronze row, e.g. `postgresql:ecom_db.shop.orders`."""
    return f"{_check(dialect)}:{database}.{schema}.{table}"


def horizon_sql(dialect: str) -> str:
    """One row, one BIGINT column `horizon`: the safe upper bound of the next window."""
    if _check(dialect) == "postgresql":
        return "SELECT (pg_snapshot_xmin(pg_current_snapshot())::text)::bigint AS horizon"
    return "SELECT CAST(MIN_ACTIVE_ROWVERSION() AS BIGINT) AS horizon"


def version_literal(dialect: str, value: int) -> str:
    """A version constant comparable with `_change_version` (and able to use an index)."""
    Window(value, value)  # validates the integer
    if _check(dialect) == "postgresql":
        return f"'{value}'::xid8"
    # ROWVERSION is BINARY(8), big-endian: the same order as a non-negative BIGINT.
    return f"CONVERT(BINARY(8), CAST({value} AS BIGINT))"


def window_predicate(dialect: str, window: Window) -> str:
    col = quote(dialect, VERSION_COLUMN)
    return f"{col} >= {version_literal(dialect, window.lower)} AND {col} < {version_literal(dialect, window.upper)}"


def select_item(dialect: str, column: str) -> str:
    """A column of the select list; the version becomes a BIGINT Spark can read."""
    col = quote(dialect, column)
    if column != VERSION_COLUMN:
        return col
    if _check(dialect) == "postgresql":
        return f"({col}::text)::bigint AS {col}"
    return f"CAST({col} AS BIGINT) AS {col}"


def window_select_sql(dialect: str, schema: str, table: str, columns: Sequence[str], window: Window) -> str:
    """Every live column of the rows in the window (the body of the JDBC `dbtable`)."""
    if not columns:
        raise ValueError(f"no columns to select from {schema}.{table}")
    items = ", ".join(select_item(dialect, c) for c in columns)
    return f"SELECT {items} FROM {qualified(dialect, schema, table)} WHERE {window_predicate(dialect, window)}"


def jdbc_dbtable(dialect: str, schema: str, table: str, columns: Sequence[str], window: Window) -> str:
    """The window query as a derived table, so Spark can add its partition predicates."""
    return f"({window_select_sql(dialect, schema, table, columns, window)}) AS src"


def window_stats_sql(dialect: str, schema: str, table: str, key: str | None, window: Window) -> str:
    """`row_count, min_key, max_key` of the window: the bounds of the partitioned read."""
    count = "COUNT(*)" if _check(dialect) == "postgresql" else "COUNT_BIG(*)"
    if key is None:
        bounds = "NULL AS min_key, NULL AS max_key"
    else:
        k = quote(dialect, key)
        bounds = f"MIN({k}) AS min_key, MAX({k}) AS max_key"
    return (
        f"SELECT {count} AS row_count, {bounds} "
        f"FROM {qualified(dialect, schema, table)} WHERE {window_predicate(dialect, window)}"
    )


def partition_plan(
    row_count: int,
    key: str | None,
    min_key: int | None,
    max_key: int | None,
    *,
    max_partitions: int,
    min_rows_per_partition: int = 50_000,
) -> PartitionPlan:
    """Split a window across at most `max_partitions` JDBC reads, each worth its overhead.

    Bounds are the window's own min/max key, so increments (new keys at the top, updates
    scattered below) are split evenly rather than by the whole table's key range.
    """
    if key is None or min_key is None or max_key is None or max_key <= min_key:
        return PartitionPlan(1)
    wanted = math.ceil(row_count / max(1, min_rows_per_partition))
    n = max(1, min(max_partitions, wanted, max_key - min_key + 1))
    if n == 1:
        return PartitionPlan(1)
    return PartitionPlan(n, key, min_key, max_key + 1)
