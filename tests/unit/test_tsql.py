"""Every T-SQL statement the platform can send to SQL Server is rendered here and parsed.

No SQL Server runs on our machines; this keeps the path honest by construction: the DDL
comes from the same schema as PostgreSQL's, the security script from the same grants, and
the code paths that only run on SQL Server (`ecom db init`, the generator's inserts and
updates, bronze's watermark queries, publish's upsert) run here for real against a fake
SQL Server under pyodbc — the only thing replaced — which records every statement they send.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pyodbc
import pytest
import sqlglot
import sqlglot.expressions as exp
from sqlglot.errors import ErrorLevel

from core import db, dbinit
from core.errors import EcomError
from core.settings import Settings, load_settings

# --- the checker ------------------------------------------------------------------------------
# sqlglot parses tables, queries and DML, but keeps some T-SQL as an opaque `Command` (security
# statements, SET IDENTITY_INSERT, triggers) or misreads it (IF … EXEC). Those must be exactly
# one of the documented T-SQL forms we emit; where a form embeds SQL, that part is parsed too.
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_IDENT = rf"\[{_NAME}\]"
_PRIVS = r"(SELECT|INSERT|UPDATE|DELETE|ALTER|EXECUTE)(, (SELECT|INSERT|UPDATE|DELETE|ALTER|EXECUTE))*"
_SECURITY_FORMS = [
    rf"GRANT {_PRIVS} ON SCHEMA::[a-z_]+ TO {_IDENT}",
    rf"GRANT CREATE TABLE TO {_IDENT}",
    rf"IF SUSER_ID\(N'{_NAME}'\) IS NULL CREATE LOGIN {_IDENT} WITH PASSWORD = N'(?:[^']|'')*', CHECK_POLICY = ON",
    rf"IF USER_ID\(N'{_NAME}'\) IS NULL CREATE USER {_IDENT} FOR LOGIN {_IDENT}",
]
# form → the groups that hold SQL to parse on its own
_EMBEDDING_FORMS: list[tuple[str, Callable[[re.Match[str]], list[str]]]] = [
    (r"SET IDENTITY_INSERT shop\.[a-z_]+ (ON|OFF)", lambda m: []),
    (r"IF SCHEMA_ID\(N'([a-z_]+)'\) IS NULL EXEC\(N'(CREATE SCHEMA ([a-z_]+))'\)", lambda m: [m.group(2)]),
    (
        r"CREATE OR ALTER TRIGGER shop\.touch_([a-z_]+) ON shop\.([a-z_]+) AFTER UPDATE AS BEGIN (.*); END",
        lambda m: m.group(3).split("; "),
    ),
]
_LOCK_BATCH = (
    r"DECLARE @r int; EXEC @r = sp_getapplock @Resource = N'[a-z.]+', @LockMode = 'Exclusive', "
    r"@LockOwner = 'Transaction', @LockTimeout = \d+; IF @r < 0 RAISERROR\('[^']*', 16, 1, @r\);"
)
_PARSES_AS = {  # forms sqlglot accepts but reshapes: checked by what they are
    r"IF SCHEMA_ID\(N'[a-z_]+'\) IS NULL EXEC\(N'CREATE SCHEMA [a-z_]+'\)",
    r"IF OBJECT_ID\(N'[a-z_]+\.[a-z0-9_]+', N'U'\) IS NOT NULL DROP TABLE [a-z_]+\.\[[a-z0-9_]+\]",
}


def assert_tsql(stmt: str) -> None:
    """Fully parsed by sqlglot's tsql dialect, or exactly one of the documented forms."""
    for form, parts in _EMBEDDING_FORMS:
        m = re.fullmatch(form, stmt, flags=re.S)
        if m:
            for part in parts(m):
                if part.strip() in ("SET NOCOUNT ON", "IF TRIGGER_NESTLEVEL() > 1 RETURN"):
                    continue
                assert_tsql(part)
            return
    trees = sqlglot.parse(stmt, read="tsql", error_level=ErrorLevel.RAISE)
    assert all(t is not None for t in trees), f"empty statement in: {stmt}"
    if any(re.fullmatch(form, stmt) for form in _SECURITY_FORMS):
        return
    if len(trees) > 1:  # a batch: only the generator's lock is sent as one
        assert re.fullmatch(_LOCK_BATCH, stmt), f"unrecognised batch: {stmt}"
        assert [type(t).__name__ for t in trees] == ["Declare", "Execute", "IfBlock"], stmt
        return
    tree = trees[0]
    assert tree is not None
    assert not (isinstance(tree, exp.Command) or tree.find(exp.Command)), f"unrecognised T-SQL: {stmt}"
    if isinstance(tree, exp.Set):  # sqlglot accepts any SET <words>: only ours pass
        assert re.fullmatch(r"SET TRANSACTION ISOLATION LEVEL (SERIALIZABLE|READ COMMITTED)", stmt), stmt
    if isinstance(tree, exp.IfBlock):
        assert any(re.fullmatch(form, stmt) for form in _PARSES_AS), f"unrecognised IF statement: {stmt}"
    assert not tree.find(exp.Merge) and "MERGE" not in stmt.upper().split(), f"T-SQL MERGE is not used: {stmt}"


def test_the_checker_can_fail() -> None:
    bad = (
        "GRANT SELEC ON SCHEMA::shop TO [x]",
        "GRANT SELECT ON SCHEMA::shop TO",
        "CREAT TABLE x (a int)",
        "SET IDENTITY_INSERT shop.x MAYBE",
        "IF OBJECT_ID(N'x') IS NULL DROP DATABASE y",
        "MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN UPDATE SET b = s.b;",
        "SELECT 1; SELECT 2",
    )
    for stmt in bad:
        with pytest.raises((AssertionError, sqlglot.errors.ParseError)):
            assert_tsql(stmt)


# --- a fake SQL Server under pyodbc ---------------------------------------------------------------
@dataclass
class Sent:
    sql: str
    params: tuple[Any, ...]
    connection: int
    autocommit: bool
    tx: int  # the connection's transaction: +1 at every commit or rollback
    many: int | None = None  # executemany: number of rows
    fast_executemany: bool | None = None


# SQLAlchemy's own probes when it first connects (server version, default schema, isolation level…)
_SQLALCHEMY_PROBES = re.compile(
    r"SERVERPROPERTY\('ProductVersion'\)|^SELECT schema_name\(\)$|sys\.system_views|TRANSACTION_ISOLATION_LEVEL"
    r"|'test max support'|fn_listextendedproperty|^SET TRANSACTION ISOLATION LEVEL READ COMMITTED$"
    r"|^SELECT 1$",  # and pool_pre_ping's ping
    re.S,
)
Rule = tuple[str, Callable[[str, tuple[Any, ...]], tuple[list[str], list[tuple[Any, ...]]]]]


@dataclass
class FakeSqlServer:
    """Answers what SQLAlchemy asks on connect, `rules` for our queries, empty results otherwise."""

    tables_exist: bool = False
    databases_exist: bool = False
    rules: list[Rule] = field(default_factory=list)
    fail: dict[str, Exception] = field(default_factory=dict)  # regex → error raised by execute
    sent: list[Sent] = field(default_factory=list)
    events: dict[tuple[int, int], str] = field(default_factory=dict)  # (connection, tx) → commit|rollback
    connect_strings: list[str] = field(default_factory=list)

    def connect(self, connection_string: str, **_: Any) -> _FakeConnection:
        self.connect_strings.append(connection_string)
        return _FakeConnection(self, len(self.connect_strings))

    def answer(self, sql: str, params: tuple[Any, ...]) -> tuple[list[str], list[tuple[Any, ...]]] | None:
        for pattern, error in self.fail.items():
            if re.search(pattern, sql):
                raise error
        builtin: list[Rule] = [
            (r"SERVERPROPERTY\('ProductVersion'\)", lambda s, p: (["v"], [("16.0.1000.6",)])),
            (r"^SELECT schema_name\(\)$", lambda s, p: (["s"], [("dbo",)])),
            (r"FROM sys\.system_views", lambda s, p: (["name"], [("dm_exec_sessions",)])),
            (r"AS TRANSACTION_ISOLATION_LEVEL", lambda s, p: (["l"], [("READ COMMITTED",)])),
            (r"FROM sys\.objects JOIN sys\.schemas", lambda s, p: (["name"], self._tables(p))),
            (r"^SELECT DB_ID\(\?\)$", lambda s, p: (["id"], [(5 if self.databases_exist else None,)])),
        ]
        for pattern, respond in [*builtin, *self.rules]:
            if re.search(pattern, sql, flags=re.S):
                return respond(sql, params)
        return None

    def _tables(self, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        # (schema, 'U', 'V', name, …): every named table exists, or none
        return [(name,) for name in params[3:]] if self.tables_exist else []

    def ours(self) -> list[Sent]:
        """What our code sent (SQLAlchemy's connection probes left out)."""
        return [s for s in self.sent if not _SQLALCHEMY_PROBES.search(s.sql.strip())]

    def transactions(self) -> list[tuple[list[str], str | None]]:
        """Our statements grouped by transaction, in order, each with how it ended."""
        out: dict[tuple[int, int], list[str]] = {}
        for s in self.ours():
            out.setdefault((s.connection, s.tx), []).append(s.sql)
        return [(stmts, self.events.get(key)) for key, stmts in out.items()]


class _FakeCursor:
    def __init__(self, conn: _FakeConnection) -> None:
        self.conn, self.description, self.rowcount = conn, None, -1
        self.fast_executemany = False
        self._rows: list[tuple[Any, ...]] = []

    def _log(self, sql: str, params: tuple[Any, ...], many: int | None = None) -> None:
        c = self.conn
        fast = self.fast_executemany if many is not None else None
        c.server.sent.append(Sent(sql, params, c.number, c.autocommit, c.tx, many, fast))

    def execute(self, sql: str, *params: Any) -> _FakeCursor:
        if len(params) == 1 and isinstance(params[0], tuple | list):
            params = tuple(params[0])
        self._log(sql, tuple(params))
        got = self.conn.server.answer(sql.strip(), tuple(params))
        if got is None and re.match(r"\s*SELECT\b", sql, flags=re.I):
            got = (["c0"], [])
        if got is None:
            self.description, self._rows = None, []
        else:
            columns, rows = got
            self.description = [(c, str, None, None, None, None, True) for c in columns]
            self._rows = list(rows)
        return self

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        rows = list(rows)
        self._log(sql, tuple(tuple(r) for r in rows), many=len(rows))
        self.description = None

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows.pop(0) if self._rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows, self._rows = self._rows, []
        return rows

    def fetchmany(self, size: int = 1) -> list[tuple[Any, ...]]:
        rows, self._rows = self._rows[:size], self._rows[size:]
        return rows

    def nextset(self) -> bool:
        return False

    def setinputsizes(self, *_: Any) -> None:
        return None

    def close(self) -> None:
        return None


class _FakeConnection:
    def __init__(self, server: FakeSqlServer, number: int) -> None:
        self.server, self.number, self.autocommit, self.tx = server, number, False, 0

    def cursor(self) -> _FakeCursor:
        return _FakeCursor(self)

    def commit(self) -> None:
        self._end("commit")

    def rollback(self) -> None:
        self._end("rollback")

    def _end(self, how: str) -> None:
        self.server.events.setdefault((self.number, self.tx), how)
        self.tx += 1

    def close(self) -> None:
        return None

    def getinfo(self, _: int) -> str:
        return "16.00.1000"

    def add_output_converter(self, *_: Any) -> None:
        return None


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSqlServer]:
    fake = FakeSqlServer()
    db.dispose_engines()  # engines are cached per settings object: none may outlive the fake
    monkeypatch.setattr(pyodbc, "connect", fake.connect)
    yield fake
    db.dispose_engines()


PASSWORDS = {"admin": "Adm1n;{x}'y=", "generator": "G3n'}}er;", "extractor": "Ex}tr{act", "publisher": "P'ub;lish}"}


def mssql_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {f"{role}_password": pw for role, pw in PASSWORDS.items()}
    values.update(dialect="mssql", db_host="sql.example.internal", webhook_url=None, **overrides)
    return load_settings(**values)


def assert_all_tsql(sent: Sequence[Sent]) -> None:
    for s in sent:
        assert_tsql(s.sql.strip())


# --- DDL ----------------------------------------------------------------------------------------------
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
    for stmt in statements:
        assert_tsql(stmt)


def test_every_mutable_source_table_has_a_rowversion() -> None:
    from core.schema import SOURCE_TABLES

    creates = {
        s.split("(", 1)[0].split()[-1]: s for s in dbinit.ddl("mssql", "ecom_db") if s.startswith("CREATE TABLE")
    }
    for name in SOURCE_TABLES:
        assert re.search(r"_change_version ROWVERSION NOT NULL", creates[f"shop.{name}"]), name


def test_warehouse_ddl_uses_sql_server_types_and_parses() -> None:
    from gold.marts.registry import MARTS

    statements = dbinit.ddl("mssql", "ecom_dwh")
    assert statements[0] == "CREATE SCHEMA gold"
    creates = {}
    for stmt in statements:
        assert_tsql(stmt)
        tree = sqlglot.parse_one(stmt, read="tsql")
        if isinstance(tree, exp.Create) and tree.kind == "TABLE":
            creates[tree.this.this.name] = stmt
    assert set(creates) == set(MARTS)
    c360 = creates["customer_360"]
    assert "top_categories NVARCHAR(max) NULL" in c360  # arrays arrive as JSON text
    assert "DATETIME2(6)" in c360 and "NUMERIC(" in c360 and "timestamp" not in c360.lower().replace("datetime2", "")
    for name, mart in MARTS.items():
        assert f"CONSTRAINT pk_{name} PRIMARY KEY ({', '.join(mart.key)})" in creates[name]
        for key in mart.key:  # SQL Server indexes keys up to 900 bytes
            assert not re.search(rf"\b{key} NVARCHAR\((max|[5-9]\d\d|\d{{4,}})\)", creates[name]), key


def test_postgresql_ddl_keeps_its_own_types() -> None:
    ddl = "\n".join(dbinit.ddl("postgresql", "ecom_db"))
    assert "xid8" in ddl and "TIMESTAMP(6) WITHOUT TIME ZONE" in ddl and "NVARCHAR" not in ddl


def test_update_triggers_parse_as_tsql() -> None:
    from core.schema import trigger_ddl

    triggers = trigger_ddl("mssql")
    assert len(triggers) == 4  # the mutable tables; events are insert-only
    for stmt in triggers:
        assert "SYSUTCDATETIME()" in stmt and "JOIN inserted" in stmt
        assert_tsql(stmt)
        body = stmt.split(" AS BEGIN ", 1)[1].removesuffix(" END")
        updates = [p for p in body.split("; ") if p.startswith("UPDATE")]
        assert len(updates) == 1
        assert isinstance(sqlglot.parse_one(updates[0], read="tsql", error_level=ErrorLevel.RAISE), exp.Update)


# --- security ---------------------------------------------------------------------------------------
def test_security_script_grants_least_privilege_and_parses() -> None:
    s = load_settings(dialect="mssql")
    stmts = dbinit.security_statements(s, "mssql", lambda r: f"N'<{r}>'")
    flat = [x for body in stmts.values() for x in body]
    joined = "\n".join(flat)
    assert not re.search(r"\[sa\]|N'sa'", joined)
    assert "GRANT SELECT ON SCHEMA::shop TO [ecom_extractor]" in joined
    assert "ecom_publisher" not in "\n".join(stmts["ecom_db"])  # the publisher gets nothing in ecom_db
    assert "ecom_extractor" not in "\n".join(stmts["ecom_dwh"])
    extractor = [x for x in flat if "[ecom_extractor]" in x and x.startswith("GRANT")]
    assert extractor == ["GRANT SELECT ON SCHEMA::shop TO [ecom_extractor]"]  # read the shop, nothing else
    assert not any("CONTROL" in x or "db_owner" in x or "sysadmin" in x for x in flat)
    for stmt in flat:
        assert_tsql(stmt)
    script = dbinit.print_security(s)
    assert "<GENERATOR_PASSWORD>" in script and "GO" in script


def _batches(script: str) -> list[str]:
    """sqlcmd batches: the text between `GO` lines, each without its trailing `;`."""
    return [b.strip().rstrip(";") for b in re.split(r"^GO$", script, flags=re.M) if b.strip()]


def test_cli_prints_parsable_tsql(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from core.cli import cli
    from core.settings import get_settings

    runner = CliRunner()
    for database in ("ecom_db", "ecom_dwh"):
        out = runner.invoke(cli, ["db", "ddl", "--dialect", "mssql", "--database", database])
        assert out.exit_code == 0, out.output
        batches = _batches(out.output)
        assert len(batches) == len(dbinit.ddl("mssql", database))
        for batch in batches:
            assert_tsql(batch)

    monkeypatch.setenv("ECOM_DIALECT", "mssql")
    get_settings.cache_clear()
    try:
        out = runner.invoke(cli, ["db", "init", "--print-security"])
    finally:
        get_settings.cache_clear()
    assert out.exit_code == 0, out.output
    uses = 0
    for batch in _batches(out.output):
        lines = [ln for ln in batch.splitlines() if not ln.startswith("--")]
        for line in lines:
            if line.startswith("USE "):
                assert re.fullmatch(r"USE \[(master|ecom_db|ecom_dwh)\];?", line), line
                uses += 1
            else:
                assert_tsql(line.rstrip(";"))
    assert uses == 3  # server logins in master, users and grants in each database


# --- ecom db init on SQL Server ------------------------------------------------------------------------
def test_db_init_sends_only_parsable_tsql(server: FakeSqlServer) -> None:
    s = mssql_settings()
    messages: list[str] = []
    dbinit.init(s, echo=messages.append)
    sent = server.ours()
    assert_all_tsql(sent)
    sql = [x.sql.strip() for x in sent]
    # CREATE DATABASE cannot run inside a transaction: the admin connection is in autocommit
    creates = [x for x in sent if x.sql.startswith("CREATE DATABASE")]
    assert [x.sql for x in creates] == ["CREATE DATABASE [ecom_db]", "CREATE DATABASE [ecom_dwh]"]
    assert all(x.autocommit for x in sent)
    # every table of both databases, the triggers, then the users and grants
    assert sum(x.startswith("CREATE TABLE") for x in sql) == 7 + 4
    assert sum(x.startswith("CREATE OR ALTER TRIGGER") for x in sql) == 4
    assert any(x == "GRANT SELECT ON SCHEMA::shop TO [ecom_extractor]" for x in sql)
    # passwords are T-SQL literals with quotes doubled, and never sent anywhere else
    assert f"N'{PASSWORDS['generator'].replace(chr(39), chr(39) * 2)}'" in "\n".join(sql)
    # the admin logs in over an encrypted connection, with its password escaped for ODBC
    for cs in server.connect_strings:
        assert "Encrypt=yes" in cs and "TrustServerCertificate=no" in cs
        assert "PWD={Adm1n;{x}}'y=}" in cs and "UID={ecom_admin}" in cs
    assert {re.search(r"DATABASE=\{(\w+)\}", cs).group(1) for cs in server.connect_strings} == {  # type: ignore[union-attr]
        "master",
        "ecom_db",
        "ecom_dwh",
    }
    assert messages[-1].startswith("ecom_db, ecom_dwh:")


def test_db_init_twice_changes_nothing(server: FakeSqlServer) -> None:
    server.tables_exist = server.databases_exist = True
    dbinit.init(mssql_settings(), echo=lambda _: None)
    sent = server.ours()
    assert_all_tsql(sent)
    created = [x.sql for x in sent if re.match(r"\s*CREATE (DATABASE|TABLE|INDEX)|\s*execute sp_addext", x.sql)]
    assert created == []
    # what re-runs is guarded (IF … IS NULL), CREATE OR ALTER, or a GRANT (idempotent in T-SQL)
    for x in sent:
        if not x.sql.startswith(("SELECT", "IF ", "CREATE OR ALTER TRIGGER", "GRANT ")):
            pytest.fail(f"not idempotent: {x.sql}")


def test_db_init_says_when_the_login_may_not_create_databases(server: FakeSqlServer) -> None:
    server.fail[r"^CREATE DATABASE"] = pyodbc.ProgrammingError(
        "42000", f"CREATE DATABASE permission denied in database 'master'. PWD={{{PASSWORDS['admin']}}}"
    )
    with pytest.raises(EcomError, match=r"may not create it .* ask your DBA") as err:
        dbinit.init(mssql_settings(), echo=lambda _: None)
    assert PASSWORDS["admin"] not in str(err.value)


# --- bronze: the watermark queries ------------------------------------------------------------------------
def test_rowversion_literals_order_like_bigints() -> None:
    # CONVERT(BINARY(8), CAST(v AS BIGINT)) is v big-endian: byte order = numeric order for v ≥ 0
    values = [0, 1, 255, 256, 2**31 - 1, 2**31, 2**32, 2**40 + 7, 2**62, 2**63 - 2, 2**63 - 1]
    assert sorted(values, key=lambda v: struct.pack(">q", v)) == sorted(values)


def test_bronze_takes_the_horizon_then_plans_the_window(server: FakeSqlServer) -> None:
    from bronze.job import LiveTable, current_horizon, plan_window

    server.rules.append((r"MIN_ACTIVE_ROWVERSION", lambda s, p: (["horizon"], [(5000,)])))
    server.rules.append(
        (r"COUNT_BIG\(\*\) AS row_count", lambda s, p: (["row_count", "min_key", "max_key"], [(3, 7, 9)]))
    )
    s = mssql_settings()
    assert current_horizon(s) == 5000
    live = LiveTable("orders", ("order_id", "status", "_change_version"), "order_id")
    window, stats = plan_window(s, live, 4000)
    assert (window.lower, window.upper, stats.row_count, stats.min_key, stats.max_key) == (4000, 5000, 3, 7, 9)
    sent = server.ours()
    assert_all_tsql(sent)
    assert [x.sql for x in sent] == [
        "SELECT CAST(MIN_ACTIVE_ROWVERSION() AS BIGINT) AS horizon",
        "SELECT CAST(MIN_ACTIVE_ROWVERSION() AS BIGINT) AS horizon",  # taken before the window is read
        "SELECT COUNT_BIG(*) AS row_count, MIN([order_id]) AS min_key, MAX([order_id]) AS max_key FROM [shop].[orders] "
        "WHERE [_change_version] >= CONVERT(BINARY(8), CAST(4000 AS BIGINT)) "
        "AND [_change_version] < CONVERT(BINARY(8), CAST(5000 AS BIGINT))",
    ]
    assert all("UID={ecom_extractor}" in cs and "DATABASE={ecom_db}" in cs for cs in server.connect_strings)
    with pytest.raises(EcomError, match="--full-refresh"):
        plan_window(s, live, 6000)  # a restored source: its horizon is behind the watermark


# --- publish --------------------------------------------------------------------------------------------
def test_publish_statements_parse_for_every_mart() -> None:
    from gold.marts.registry import MARTS
    from gold.publish import Dialect, money_columns

    d = Dialect("mssql")
    for name, mart in MARTS.items():
        keys, cols = list(mart.key), mart.column_names
        stage, deleted = f"{name}__stage", f"{name}__deleted"
        statements = [
            *d.create_stage(name, stage),
            *d.create_stage(name, deleted, keys),
            d.drop(stage),
            *d.begin(),
            *d.replace_all(name, stage, cols),
            *d.upsert(name, stage, cols, keys),
            *d.delete_keys(name, deleted, keys),
            d.checksum(name, keys, money_columns(mart)),
        ]
        for stmt in statements:
            assert_tsql(stmt)
        update, insert = d.upsert(name, stage, cols, keys)
        u = sqlglot.parse_one(update, read="tsql")
        assert isinstance(u, exp.Update) and " FROM " in update and "JOIN" in update
        assert "WITH (UPDLOCK, HOLDLOCK)" in update
        i = sqlglot.parse_one(insert, read="tsql")
        assert isinstance(i, exp.Insert) and i.find(exp.Exists) is not None and "NOT EXISTS" in insert
        assert all(f"[{c}]" in insert for c in cols)
        assert d.begin() == ["SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"]
        checksum = sqlglot.parse_one(d.checksum(name, keys, money_columns(mart)), read="tsql")
        assert len(checksum.expressions) == 2 + len(money_columns(mart))


def _expected(mart_name: str) -> Any:
    from gold.marts.registry import MARTS
    from gold.publish import Checksum, money_columns

    return Checksum(10, 12345, tuple(Decimal("1.50") for _ in money_columns(MARTS[mart_name])))


def test_publish_upserts_in_one_serializable_transaction(server: FakeSqlServer) -> None:
    from gold.marts.registry import MARTS
    from gold.publish import Dialect, _apply

    mart = MARTS["daily_sales"]
    expected = _expected(mart.name)
    server.rules.append(
        (
            r"^SELECT COUNT\(\*\), SUM\(CONVERT\(BIGINT",
            lambda s, p: (["n", "h", "r", "a"], [(10, 12345, Decimal("1.5"), Decimal("1.50"))]),
        )
    )
    _apply(
        mssql_settings(), Dialect("mssql"), mart, "incremental", "daily_sales__stage", "daily_sales__deleted", expected
    )
    sent = server.ours()
    assert_all_tsql(sent)
    assert not any(x.autocommit for x in sent)
    (apply, ended), (drops, _) = server.transactions()
    assert [x.split(" ", 1)[0] for x in apply] == ["SET", "UPDATE", "INSERT", "DELETE", "SELECT"]
    assert ended == "commit"  # isolation first, then upsert, delete, reconcile: one transaction
    assert all("UID={ecom_publisher}" in cs and "DATABASE={ecom_dwh}" in cs for cs in server.connect_strings)
    assert drops == [
        "IF OBJECT_ID(N'gold.daily_sales__stage', N'U') IS NOT NULL DROP TABLE gold.[daily_sales__stage]",
        "IF OBJECT_ID(N'gold.daily_sales__deleted', N'U') IS NOT NULL DROP TABLE gold.[daily_sales__deleted]",
    ]


def test_publish_rolls_back_when_the_warehouse_disagrees(server: FakeSqlServer) -> None:
    from gold.marts.registry import MARTS
    from gold.publish import Dialect, ReconciliationError, _apply

    mart = MARTS["daily_sales"]
    server.rules.append(
        (
            r"^SELECT COUNT\(\*\), SUM\(CONVERT\(BIGINT",
            lambda s, p: (["n", "h", "r", "a"], [(9, 12345, Decimal("1.5"), Decimal("1.5"))]),
        )
    )
    with pytest.raises(ReconciliationError, match="rolled back"):
        _apply(mssql_settings(), Dialect("mssql"), mart, "full", "daily_sales__stage", None, _expected(mart.name))
    sent = server.ours()
    assert_all_tsql(sent)
    (apply, ended), (drops, _) = server.transactions()
    assert [x.split(" ", 1)[0] for x in apply] == ["SET", "DELETE", "INSERT", "SELECT"]
    assert ended == "rollback"
    assert drops == [  # the stage is dropped anyway
        "IF OBJECT_ID(N'gold.daily_sales__stage', N'U') IS NOT NULL DROP TABLE gold.[daily_sales__stage]"
    ]


def test_warehouse_counts_parse(server: FakeSqlServer) -> None:
    from gold.marts.registry import MARTS
    from gold.publish import warehouse_counts

    server.rules.append((r"^SELECT COUNT\(\*\) FROM gold\.", lambda s, p: (["n"], [(3,)])))
    assert warehouse_counts(mssql_settings()) == dict.fromkeys(MARTS, 3)
    assert_all_tsql(server.ours())


# --- the generator ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("driver", "fast"), [("ODBC Driver 18 for SQL Server", True), ("FreeTDS", False)])
def test_generator_batch_on_sql_server(server: FakeSqlServer, driver: str, fast: bool) -> None:
    from generator import stream
    from generator.simulate import PK, Spec

    server.tables_exist = True  # `ecom db init` ran
    s = mssql_settings(mssql_odbc_driver=driver)
    spec = Spec(customers=20, products=5, orders=30, events=200, seed=11, defect_rate=0.05)
    result = stream.run_batch(s, spec, batch_id="tsql-test")
    sent = server.ours()
    assert_all_tsql(sent)
    # one transaction on one connection: the lock first, one commit at the end, as the generator
    [(statements, ended)] = server.transactions()
    assert ended == "commit" and len(statements) == len(sent)
    assert not any(x.autocommit for x in sent)
    first = next(x for x in sent if not x.sql.startswith("SELECT sys.objects.name"))
    assert first.sql.startswith("DECLARE @r int; EXEC @r = sp_getapplock")
    assert "UID={ecom_generator}" in server.connect_strings[0] and "DATABASE={ecom_db}" in server.connect_strings[0]
    # inserts: explicit keys under IDENTITY_INSERT, fast_executemany only with Microsoft's driver
    inserted: dict[str, int] = {}
    for i, x in enumerate(sent):
        if x.many is not None and x.sql.startswith("INSERT INTO shop."):
            table = x.sql.split()[2].split(".")[1]
            assert sent[i - 1].sql == f"SET IDENTITY_INSERT shop.{table} ON" or sent[i - 1].many is not None
            assert x.fast_executemany is fast, (table, driver)
            assert PK[table] in x.sql.split("(", 1)[1].split(")", 1)[0].split(", ")
            inserted[table] = inserted.get(table, 0) + x.many
    assert inserted == {t: n for t, n in result.record.inserted.items() if n}
    ons = [x.sql for x in sent if x.sql.startswith("SET IDENTITY_INSERT") and x.sql.endswith(" ON")]
    offs = [x.sql for x in sent if x.sql.startswith("SET IDENTITY_INSERT") and x.sql.endswith(" OFF")]
    assert len(ons) == len(offs) == len(inserted)
    # the manifest goes in the same transaction
    assert any(x.sql.startswith("INSERT INTO sim.batches") for x in sent)


@pytest.mark.parametrize(("driver", "fast"), [("ODBC Driver 18 for SQL Server", True), ("FreeTDS", False)])
def test_generator_updates_on_sql_server(server: FakeSqlServer, driver: str, fast: bool) -> None:
    import pandas as pd

    from generator import sinks

    frame = pd.DataFrame({"product_id": [3, 4], "unit_price": [9.5, 10.25], "is_active": [True, False]})
    with db.connect(mssql_settings(mssql_odbc_driver=driver), "generator") as conn:
        done = sinks.apply_updates(conn, {"products": frame})
    assert done == {"products": 2}
    [update] = [x for x in server.ours() if x.many is not None]
    assert update.sql == "UPDATE shop.products SET unit_price = ?, is_active = ? WHERE product_id = ?"
    assert update.params == ((Decimal("9.50"), True, 3), (Decimal("10.25"), False, 4))
    assert update.fast_executemany is fast
    assert_tsql(update.sql)
