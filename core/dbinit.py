"""`ecom db init`: databases, schemas, tables and least-privilege roles, idempotently.

The grants are data (`GRANTS`), rendered per dialect: PostgreSQL statements run live;
the same grants rendered as T-SQL are what `ecom db init --print-security` prints and
what runs on SQL Server. No role is a superuser; each may do only its step:

- generator: read/write the shop tables of ecom_db, write the `sim` manifest;
- extractor: read the shop tables of ecom_db, nothing else;
- publisher: own ecom_dwh's `gold` schema (create staging tables, swap), nothing in ecom_db.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.schema import CreateSchema, CreateTable

from core import db
from core.errors import EcomError
from core.schema import (
    SOURCE_SCHEMA,
    WAREHOUSE_SCHEMA,
    simulation_metadata,
    source_metadata,
    trigger_ddl,
)
from core.settings import Role, Settings

SIM_SCHEMA = "sim"


def warehouse_metadata() -> sa.MetaData:
    """ecom_dwh's tables, owned by the gold layer's publish step (empty until it lands)."""
    try:
        from gold.warehouse import warehouse_metadata as wm  # the composition root may import layers
    except ImportError:
        return sa.MetaData(schema=WAREHOUSE_SCHEMA)
    return wm


@dataclass(frozen=True)
class Grant:
    role: Role
    database: str  # "source" | "warehouse"
    schema: str
    privileges: tuple[str, ...]


GRANTS: tuple[Grant, ...] = (
    Grant("generator", "source", SOURCE_SCHEMA, ("SELECT", "INSERT", "UPDATE", "DELETE")),
    Grant("generator", "source", SIM_SCHEMA, ("SELECT", "INSERT", "UPDATE", "DELETE")),
    Grant("extractor", "source", SOURCE_SCHEMA, ("SELECT",)),
)
LOGIN_ROLES: tuple[Role, ...] = ("generator", "extractor", "publisher")


def ddl(dialect_name: str, database: str) -> list[str]:
    """The DDL of one database compiled from the schema definition, as statements."""
    dialect = _dialect(dialect_name)
    out: list[str] = []
    if database == "ecom_db":
        for schema, md in ((SOURCE_SCHEMA, source_metadata), (SIM_SCHEMA, simulation_metadata)):
            out.append(str(CreateSchema(schema).compile(dialect=dialect)))
            for table in md.sorted_tables:
                out.append(str(CreateTable(table).compile(dialect=dialect)).strip())
                for index in table.indexes:
                    out.append(str(sa.schema.CreateIndex(index).compile(dialect=dialect)))
        out += trigger_ddl(dialect_name)
    elif database == "ecom_dwh":
        out.append(str(CreateSchema(WAREHOUSE_SCHEMA).compile(dialect=dialect)))
        for table in warehouse_metadata().sorted_tables:
            out.append(str(CreateTable(table).compile(dialect=dialect)).strip())
    else:
        raise EcomError(f"unknown database {database!r}: expected ecom_db or ecom_dwh")
    return out


def _dialect(name: str) -> sa.engine.Dialect:
    from sqlalchemy.dialects import mssql, postgresql

    ms = mssql.dialect()
    ms.server_version_info = (16, 0)  # type: ignore[assignment]  # compile for SQL Server 2022 (DATE, NVARCHAR(max)), as it runs
    ms._setup_version_attributes()  # the public way is a live connection
    dialects = {"postgresql": postgresql.dialect(), "mssql": ms}
    if name not in dialects:
        raise EcomError(f"unknown dialect {name!r}: expected postgresql or mssql")
    return dialects[name]


# --- security, rendered per dialect -------------------------------------------------------------
def security_statements(settings: Settings, dialect: str, password: Callable[[Role], str]) -> dict[str, list[str]]:
    """Statements per database key ('server', 'ecom_db', 'ecom_dwh'); `password` renders a literal."""
    users: dict[str, str] = {r: getattr(settings, f"{r}_user") for r in LOGIN_ROLES}
    src, dwh = settings.source_db, settings.warehouse_db
    out: dict[str, list[str]] = {"server": [], "ecom_db": [], "ecom_dwh": []}
    if dialect == "postgresql":
        for role in LOGIN_ROLES:
            u = users[role]
            out["server"].append(
                f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{u}') THEN "
                f'CREATE ROLE "{u}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION; END IF; END $$'
            )
            out["server"].append(f'ALTER ROLE "{u}" WITH LOGIN PASSWORD {password(role)}')
        for database, allowed in ((src, ("generator", "extractor")), (dwh, ("publisher",))):
            out["server"].append(f'REVOKE ALL ON DATABASE "{database}" FROM PUBLIC')
            for name in allowed:
                out["server"].append(f'GRANT CONNECT ON DATABASE "{database}" TO "{users[name]}"')
        for g in GRANTS:
            key = "ecom_db" if g.database == "source" else "ecom_dwh"
            u = users[g.role]
            out[key].append(f'GRANT USAGE ON SCHEMA {g.schema} TO "{u}"')
            out[key].append(f'GRANT {", ".join(g.privileges)} ON ALL TABLES IN SCHEMA {g.schema} TO "{u}"')
            if "INSERT" in g.privileges:
                out[key].append(f'GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {g.schema} TO "{u}"')
        out["ecom_db"].append("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        out["ecom_dwh"].append("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        out["ecom_dwh"].append(f'ALTER SCHEMA {WAREHOUSE_SCHEMA} OWNER TO "{users["publisher"]}"')
    elif dialect == "mssql":
        for role in LOGIN_ROLES:
            u = users[role]
            out["server"].append(
                f"IF SUSER_ID(N'{u}') IS NULL CREATE LOGIN [{u}] WITH PASSWORD = {password(role)}, CHECK_POLICY = ON"
            )
        for key, allowed in (("ecom_db", ("generator", "extractor")), ("ecom_dwh", ("publisher",))):
            for name in allowed:
                u = users[name]
                out[key].append(f"IF USER_ID(N'{u}') IS NULL CREATE USER [{u}] FOR LOGIN [{u}]")
        for g in GRANTS:
            key = "ecom_db" if g.database == "source" else "ecom_dwh"
            out[key].append(f"GRANT {', '.join(g.privileges)} ON SCHEMA::{g.schema} TO [{users[g.role]}]")
        # SET IDENTITY_INSERT needs ALTER on the table: the generator writes its own keys.
        out["ecom_db"].append(f"GRANT ALTER ON SCHEMA::{SOURCE_SCHEMA} TO [{users['generator']}]")
        pub = users["publisher"]
        out["ecom_dwh"].append(f"GRANT CREATE TABLE TO [{pub}]")
        out["ecom_dwh"].append(f"GRANT ALTER, SELECT, INSERT, UPDATE, DELETE ON SCHEMA::{WAREHOUSE_SCHEMA} TO [{pub}]")
    return out


def print_security(settings: Settings) -> str:
    """The security script with password placeholders (what `--print-security` shows)."""
    placeholder = {
        "postgresql": lambda r: f"'<{r.upper()}_PASSWORD>'",
        "mssql": lambda r: f"N'<{r.upper()}_PASSWORD>'",
    }
    stmts = security_statements(settings, settings.dialect, placeholder[settings.dialect])
    lines: list[str] = []
    for key, body in stmts.items():
        if not body:
            continue
        if settings.dialect == "mssql":
            lines.append(f"-- {key}\nUSE [{'master' if key == 'server' else _dbname(settings, key)}];\nGO")
            lines += [s + ";\nGO" for s in body]
        else:
            target = "postgres" if key == "server" else _dbname(settings, key)
            lines.append(f"\\connect {target}")
            lines += [s + ";" for s in body]
    return "\n".join(lines)


def _dbname(settings: Settings, key: str) -> str:
    return settings.source_db if key == "ecom_db" else settings.warehouse_db


# --- applying it ------------------------------------------------------------------------------
def init(settings: Settings, echo: Callable[[str], None] = print) -> None:
    """Create everything that is missing; re-running changes nothing."""
    if settings.dialect == "postgresql":
        _init_postgresql(settings, echo)
    else:
        _init_mssql(settings, echo)


def _admin_autocommit(settings: Settings, database: str) -> sa.engine.Connection:
    eng = db.engine(settings, "admin", database)
    try:
        return eng.connect().execution_options(isolation_level="AUTOCOMMIT")
    except sa.exc.DBAPIError as exc:
        raise db.unavailable(settings, "admin", database, exc) from None


def _pg_literal(conn: sa.engine.Connection, value: str) -> str:
    from psycopg import sql

    raw = conn.connection.driver_connection
    return sql.Literal(value).as_string(raw)


def _init_postgresql(settings: Settings, echo: Callable[[str], None]) -> None:
    with _admin_autocommit(settings, "postgres") as conn:
        for database in (settings.source_db, settings.warehouse_db):
            exists = conn.scalar(sa.text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": database})
            if not exists:
                conn.exec_driver_sql(f"CREATE DATABASE \"{database}\" ENCODING 'UTF8' TEMPLATE template0")
                echo(f"created database {database}")
        stmts = security_statements(
            settings, "postgresql", lambda r: _pg_literal(conn, settings.credentials(r).password)
        )
        for s in stmts["server"]:
            conn.exec_driver_sql(s)
    echo(f"roles {', '.join(getattr(settings, f'{r}_user') for r in LOGIN_ROLES)}: present, least privilege")
    with _admin_autocommit(settings, settings.source_db) as conn:
        for schema in (SOURCE_SCHEMA, SIM_SCHEMA):
            conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        source_metadata.create_all(conn, checkfirst=True)
        simulation_metadata.create_all(conn, checkfirst=True)
        for s in trigger_ddl("postgresql"):
            conn.exec_driver_sql(s)
        for s in stmts["ecom_db"]:
            conn.exec_driver_sql(s)
    echo(f"{settings.source_db}: schemas {SOURCE_SCHEMA}, {SIM_SCHEMA}; {len(source_metadata.tables)} source tables")
    with _admin_autocommit(settings, settings.warehouse_db) as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {WAREHOUSE_SCHEMA}")
        for s in stmts["ecom_dwh"]:
            conn.exec_driver_sql(s)
        wm = warehouse_metadata()
        if wm.tables:
            # Tables are owned by the publisher so that it can swap them atomically.
            conn.exec_driver_sql(f'SET ROLE "{settings.publisher_user}"')
            wm.create_all(conn, checkfirst=True)
            conn.exec_driver_sql("RESET ROLE")
    echo(f"{settings.warehouse_db}: schema {WAREHOUSE_SCHEMA}; {len(warehouse_metadata().tables)} warehouse tables")


def _init_mssql(settings: Settings, echo: Callable[[str], None]) -> None:
    with _admin_autocommit(settings, "master") as conn:
        for database in (settings.source_db, settings.warehouse_db):
            if conn.scalar(sa.text("SELECT DB_ID(:d)"), {"d": database}) is None:
                try:
                    conn.exec_driver_sql(f"CREATE DATABASE [{database}]")
                    echo(f"created database {database}")
                except sa.exc.DBAPIError as exc:
                    raise EcomError(
                        f"database {database} does not exist and the admin login may not create it "
                        f"({db.scrub(str(exc.orig), settings)}): ask your DBA to create it"
                    ) from None
        stmts = security_statements(
            settings, "mssql", lambda r: "N'" + settings.credentials(r).password.replace("'", "''") + "'"
        )
        for s in stmts["server"]:
            conn.exec_driver_sql(s)
    with _admin_autocommit(settings, settings.source_db) as conn:
        for schema in (SOURCE_SCHEMA, SIM_SCHEMA):
            conn.exec_driver_sql(f"IF SCHEMA_ID(N'{schema}') IS NULL EXEC(N'CREATE SCHEMA {schema}')")
        source_metadata.create_all(conn, checkfirst=True)
        simulation_metadata.create_all(conn, checkfirst=True)
        for s in trigger_ddl("mssql"):
            conn.exec_driver_sql(s)
        for s in stmts["ecom_db"]:
            conn.exec_driver_sql(s)
    with _admin_autocommit(settings, settings.warehouse_db) as conn:
        conn.exec_driver_sql(f"IF SCHEMA_ID(N'{WAREHOUSE_SCHEMA}') IS NULL EXEC(N'CREATE SCHEMA {WAREHOUSE_SCHEMA}')")
        warehouse_metadata().create_all(conn, checkfirst=True)
        for s in stmts["ecom_dwh"]:
            conn.exec_driver_sql(s)
    echo(f"{settings.source_db}, {settings.warehouse_db}: schemas, tables and logins present")
