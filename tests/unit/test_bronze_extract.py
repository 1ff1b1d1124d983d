"""The bronze source adapter: pure SQL builders for both dialects (parsed with sqlglot)."""

from __future__ import annotations

import pytest
import sqlglot
from sqlglot import exp

from bronze.extract import (
    PartitionPlan,
    Window,
    horizon_sql,
    jdbc_dbtable,
    partition_plan,
    quote,
    select_item,
    source_name,
    version_literal,
    window_select_sql,
    window_stats_sql,
)
from core.errors import EcomError

READ = {"postgresql": "postgres", "mssql": "tsql"}
COLUMNS = ["order_id", "status", "total_amount", "_change_version"]


def parse(dialect: str, sql: str) -> exp.Expression:
    return sqlglot.parse_one(sql, read=READ[dialect])


@pytest.mark.parametrize("dialect", ["postgresql", "mssql"])
def test_window_select_parses_and_keeps_every_column(dialect: str) -> None:
    sql = window_select_sql(dialect, "shop", "orders", COLUMNS, Window(100, 250))
    tree = parse(dialect, sql)
    assert isinstance(tree, exp.Select)
    assert [e.alias_or_name for e in tree.expressions] == COLUMNS
    table = tree.find(exp.Table)
    assert (table.db, table.name) == ("shop", "orders")
    # The version is read as a BIGINT (Spark has no xid8 / rowversion type).
    version = tree.expressions[-1]
    assert isinstance(version, exp.Alias)
    assert version.this.to.this == exp.DataType.Type.BIGINT


@pytest.mark.parametrize("dialect", ["postgresql", "mssql"])
def test_window_is_half_open_on_the_version_column(dialect: str) -> None:
    tree = parse(dialect, window_select_sql(dialect, "shop", "orders", COLUMNS, Window(100, 250)))
    where = tree.args["where"].this
    assert isinstance(where, exp.And)
    lower, upper = where.this, where.expression
    assert isinstance(lower, exp.GTE) and isinstance(upper, exp.LT)
    assert lower.this.name == upper.this.name == "_change_version"
    assert "100" in lower.expression.sql() and "250" in upper.expression.sql()


def test_postgresql_compares_xid8_and_casts_through_text() -> None:
    sql = window_select_sql("postgresql", "shop", "orders", COLUMNS, Window(7, 9))
    assert """"_change_version" >= '7'::xid8 AND "_change_version" < '9'::xid8""" in sql
    assert select_item("postgresql", "_change_version") == '("_change_version"::text)::bigint AS "_change_version"'


def test_tsql_compares_rowversion_as_binary8() -> None:
    sql = window_select_sql("mssql", "shop", "orders", COLUMNS, Window(7, 9))
    assert "[_change_version] >= CONVERT(BINARY(8), CAST(7 AS BIGINT))" in sql
    assert "[_change_version] < CONVERT(BINARY(8), CAST(9 AS BIGINT))" in sql
    assert select_item("mssql", "_change_version") == "CAST([_change_version] AS BIGINT) AS [_change_version]"


@pytest.mark.parametrize(
    ("dialect", "function"), [("postgresql", "pg_snapshot_xmin"), ("mssql", "MIN_ACTIVE_ROWVERSION")]
)
def test_horizon_query(dialect: str, function: str) -> None:
    sql = horizon_sql(dialect)
    tree = parse(dialect, sql)
    assert tree.expressions[0].alias == "horizon"
    assert function in sql
    assert tree.find(exp.Cast).to.this in (exp.DataType.Type.BIGINT,)


@pytest.mark.parametrize("dialect", ["postgresql", "mssql"])
def test_jdbc_dbtable_is_a_derived_table_spark_can_wrap(dialect: str) -> None:
    # Spark issues `SELECT cols FROM <dbtable> WHERE <partition predicate>`.
    dbtable = jdbc_dbtable(dialect, "shop", "clickstream_events", ["event_seq", "_change_version"], Window(0, 5))
    tree = parse(dialect, f"SELECT event_seq FROM {dbtable} WHERE event_seq >= 10 AND event_seq < 20")
    sub = tree.find(exp.Subquery)
    assert sub is not None and sub.alias == "src"


@pytest.mark.parametrize(("dialect", "count"), [("postgresql", "COUNT(*)"), ("mssql", "COUNT_BIG(*)")])
def test_window_stats(dialect: str, count: str) -> None:
    sql = window_stats_sql(dialect, "shop", "orders", "order_id", Window(3, 4))
    tree = parse(dialect, sql)
    assert [e.alias for e in tree.expressions] == ["row_count", "min_key", "max_key"]
    assert count in sql
    no_key = window_stats_sql(dialect, "shop", "orders", None, Window(3, 4))
    assert "NULL AS min_key" in no_key
    parse(dialect, no_key)


def test_identifiers_are_quoted_per_dialect() -> None:
    assert quote("postgresql", 'we"ird') == '"we""ird"'
    assert quote("mssql", "we]ird") == "[we]]ird]"
    sql = window_select_sql("mssql", "shop", "orders", ["a]b", "_change_version"], Window(0, 1))
    assert parse("mssql", sql).expressions[0].name == "a]b"


@pytest.mark.parametrize("bad", [-1, 2**63, "5", "1; DROP TABLE x", 1.5, True, None])
def test_window_bounds_must_be_integers(bad: object) -> None:
    with pytest.raises(ValueError, match="window"):
        Window(bad, 10)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        version_literal("postgresql", bad)  # type: ignore[arg-type]


def test_window_emptiness() -> None:
    assert Window(5, 5).is_empty
    assert not Window(5, 6).is_empty


def test_unknown_dialect_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown dialect 'oracle'"):
        horizon_sql("oracle")


def test_source_name() -> None:
    assert source_name("postgresql", "ecom_db", "shop", "orders") == "postgresql:ecom_db.shop.orders"


@pytest.mark.parametrize(
    ("rows", "key", "lo", "hi", "expected"),
    [
        (0, "id", None, None, PartitionPlan(1)),  # empty window
        (10, None, 1, 10, PartitionPlan(1)),  # no integer key
        (10, "id", 5, 5, PartitionPlan(1)),  # one key value
        (10, "id", 1, 10, PartitionPlan(1)),  # too small to be worth a second connection
        (1_000_000, "id", 1, 1_000_000, PartitionPlan(4, "id", 1, 1_000_001)),
        (120_000, "id", 100, 900, PartitionPlan(3, "id", 100, 901)),  # bounds are the window's
        (1_000_000, "id", 1, 2, PartitionPlan(2, "id", 1, 3)),  # never more partitions than keys
    ],
)
def test_partition_plan(rows: int, key: str | None, lo: int | None, hi: int | None, expected: PartitionPlan) -> None:
    assert partition_plan(rows, key, lo, hi, max_partitions=4, min_rows_per_partition=40_000) == expected


def test_select_tables() -> None:
    from bronze.job import select_tables

    assert select_tables(None)[0] == "customers"
    assert select_tables(["orders", "orders", "products"]) == ["orders", "products"]
    with pytest.raises(EcomError, match="unknown source table\\(s\\) nope"):
        select_tables(["orders", "nope"])
