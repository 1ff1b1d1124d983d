"""The T-SQL DDL compiled from the one source schema: SQL Server types, identities, and valid T-SQL."""

from __future__ import annotations

import pytest
import sqlglot
from sqlglot import exp

from core import dbinit
from core.schema import SOURCE_TABLES
from generator.simulate import DB_OWNED, write_columns


@pytest.fixture(scope="module")
def tsql() -> list[str]:
    return dbinit.ddl("mssql", "ecom_db")


def test_uses_sql_server_types(tsql: list[str]) -> None:
    text = "\n".join(tsql).upper()
    for word in ("NVARCHAR", "DATETIME2", "BIT", "IDENTITY", "ROWVERSION"):
        assert word in text, word
    assert "DECIMAL" in text or "NUMERIC" in text
    assert "SYSUTCDATETIME()" in text  # the database clock owns updated_at / ingested_at


def test_parses_as_tsql(tsql: list[str]) -> None:
    creates: dict[str, exp.Create] = {}
    for statement in tsql:
        [tree] = [t for t in sqlglot.parse(statement, read="tsql") if t is not None][:1]
        if isinstance(tree, exp.Create) and tree.kind == "TABLE":
            creates[tree.this.this.name] = tree
        else:  # CREATE SCHEMA / INDEX, and triggers (which sqlglot keeps as commands)
            assert isinstance(tree, exp.Create | exp.Command), statement
    assert set(SOURCE_TABLES) <= set(creates)
    types: set[exp.DataType.Type] = set()
    identities = 0
    for create in creates.values():
        for column in create.find_all(exp.ColumnDef):
            kind = column.args.get("kind")
            if kind is not None:
                types.add(kind.this)
            identities += any(isinstance(c.kind, exp.GeneratedAsIdentityColumnConstraint) for c in column.constraints)
    assert {exp.DataType.Type.NVARCHAR, exp.DataType.Type.DATETIME2, exp.DataType.Type.BIT} <= types
    assert types & {exp.DataType.Type.DECIMAL}
    assert identities >= len(SOURCE_TABLES)


def test_generator_never_sends_database_owned_columns() -> None:
    for table in SOURCE_TABLES:
        sent = set(write_columns(table))
        assert not sent & DB_OWNED
        assert SOURCE_TABLES[table].table.primary_key.columns.keys()[0] in sent  # explicit, reserved keys


def test_sql_server_write_statements_parse_as_tsql() -> None:
    from generator.sinks import MSSQL_LOCK, mssql_insert_sql, mssql_update_sql, table_name

    for table in SOURCE_TABLES:
        cols = write_columns(table)
        insert = sqlglot.parse_one(mssql_insert_sql(table_name(table), cols), read="tsql")
        assert isinstance(insert, exp.Insert) and len(list(insert.find_all(exp.Placeholder))) == len(cols)
        update = sqlglot.parse_one(mssql_update_sql(table_name(table), cols[0], cols[1:]), read="tsql")
        assert isinstance(update, exp.Update) and len(list(update.find_all(exp.Placeholder))) == len(cols)
    statements = sqlglot.parse(MSSQL_LOCK, read="tsql")
    assert [type(s).__name__ for s in statements if s is not None] == ["Declare", "Execute", "IfBlock"]
