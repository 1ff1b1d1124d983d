"""Every T-SQL statement the platform can send to SQL Server is rendered here and parsed.

No SQL Server runs on our machines; this keeps the path honest by construction: the DDL
comes from the same schema as PostgreSQL's, and the security script from the same grants.
"""

from __future__ import annotations

import re

import sqlglot
import sqlglot.expressions as exp
from sqlglot.errors import ErrorLevel

from core import dbinit
from core.settings import load_settings

# sqlglot parses tables, triggers' bodies and queries, but falls back to an opaque `Command` for
# security statements. Those are checked against the documented T-SQL forms we emit instead.
_IDENT = r"\[[A-Za-z_][A-Za-z0-9_]*\]"
_PRIVS = r"(SELECT|INSERT|UPDATE|DELETE|ALTER|EXECUTE)(, (SELECT|INSERT|UPDATE|DELETE|ALTER|EXECUTE))*"
_SECURITY_FORMS = [
    rf"GRANT {_PRIVS} ON SCHEMA::[a-z_]+ TO {_IDENT}",
    rf"GRANT CREATE TABLE TO {_IDENT}",
    rf"IF SUSER_ID\(N'[A-Za-z_]+'\) IS NULL CREATE LOGIN {_IDENT} WITH PASSWORD = N'(?:[^']|'')*', CHECK_POLICY = ON",
    rf"IF USER_ID\(N'[A-Za-z_]+'\) IS NULL CREATE USER {_IDENT} FOR LOGIN {_IDENT}",
]


def assert_tsql(stmt: str) -> None:
    """Fully parsed by sqlglot's tsql dialect, or exactly one of the documented security forms."""
    tree = sqlglot.parse_one(stmt, read="tsql", error_level=ErrorLevel.RAISE)
    if isinstance(tree, exp.Command) or tree.find(exp.Command):
        assert any(re.fullmatch(form, stmt) for form in _SECURITY_FORMS), f"unrecognised T-SQL: {stmt}"


def test_the_security_checker_can_fail() -> None:
    import pytest

    for bad in ("GRANT SELEC ON SCHEMA::shop TO [x]", "GRANT SELECT ON SCHEMA::shop TO", "CREAT TABLE x (a int)"):
        with pytest.raises((AssertionError, sqlglot.errors.ParseError)):
            assert_tsql(bad)


def test_source_ddl_uses_sql_server_types_and_parses() -> None:
    statements = dbinit.ddl("mssql", "ecom_db")
    ddl = "\n".join(statements)
    for needle in (
        "NVARCHAR(",
        "DATETIME2(6)",
        "NUMERIC(12, 2)",
        "BIT",
        "IDENTITY(1,1)",
        "ROWVERSION",
        "SYSUTCDATETIME()",
    ):
        assert needle in ddl, needle
    assert "xid8" not in ddl and "pg_current_xact_id" not in ddl
    tables = [s for s in statements if s.startswith("CREATE TABLE")]
    assert len(tables) == 7  # 5 source tables + sim.batches + sim.defects
    for stmt in tables:
        tree = sqlglot.parse_one(stmt, read="tsql", error_level=ErrorLevel.RAISE)
        assert isinstance(tree, exp.Create) and not tree.find(exp.Command), stmt


def test_postgresql_ddl_keeps_its_own_types() -> None:
    ddl = "\n".join(dbinit.ddl("postgresql", "ecom_db"))
    assert "xid8" in ddl and "TIMESTAMP(6) WITHOUT TIME ZONE" in ddl and "NVARCHAR" not in ddl


def test_update_triggers_parse_as_tsql() -> None:
    from core.schema import trigger_ddl

    triggers = trigger_ddl("mssql")
    assert len(triggers) == 4  # the mutable tables; events are insert-only
    for stmt in triggers:
        assert "SYSUTCDATETIME()" in stmt and "JOIN inserted" in stmt
        body = stmt.split(" AS BEGIN ", 1)[1].removesuffix(" END")
        for part in body.split("; "):
            if part.startswith("UPDATE"):
                assert isinstance(sqlglot.parse_one(part, read="tsql", error_level=ErrorLevel.RAISE), exp.Update)


def test_security_script_grants_least_privilege_and_parses() -> None:
    s = load_settings(dialect="mssql")
    stmts = dbinit.security_statements(s, "mssql", lambda r: f"N'<{r}>'")
    flat = [x for body in stmts.values() for x in body]
    joined = "\n".join(flat)
    assert " sa" not in joined.lower().replace("sam", "")
    assert "GRANT SELECT ON SCHEMA::shop TO [ecom_extractor]" in joined
    assert "ecom_publisher" not in "\n".join(stmts["ecom_db"])  # the publisher gets nothing in ecom_db
    assert "ecom_extractor" not in "\n".join(stmts["ecom_dwh"])
    for stmt in flat:
        assert_tsql(stmt)
    script = dbinit.print_security(s)
    assert "<GENERATOR_PASSWORD>" in script and "GO" in script
