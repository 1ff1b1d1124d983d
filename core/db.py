"""Dialects & connections: SQLAlchemy engines, ODBC strings and JDBC options per role.

Every connection to a database goes through here, so every failure to connect reads the
same way: which dialect, host, port, database and role, and which setting to fix.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine

from core.errors import DatabaseUnavailableError
from core.settings import ENV_PREFIX, Role, Settings


# --- ODBC (SQL Server, Python side) -------------------------------------------------------
def odbc_quote(value: str) -> str:
    """Quote an ODBC connection-string value: braces, with `}` doubled (handles ; = { } ')."""
    return "{" + value.replace("}", "}}") + "}"


def is_freetds(driver: str) -> bool:
    return "freetds" in driver.lower() or driver.lower() == "tds"


def odbc_connection_string(settings: Settings, role: Role, database: str | None = None) -> str:
    creds = settings.credentials(role)
    db = database or settings.database_for(role)
    parts = {
        "DRIVER": odbc_quote(settings.mssql_odbc_driver),
        "SERVER": f"{settings.db_host},{settings.port}",
        "DATABASE": odbc_quote(db),
        "UID": odbc_quote(creds.user),
        "PWD": odbc_quote(creds.password),
        "Encrypt": "yes" if settings.mssql_encrypt else "no",
        "TrustServerCertificate": "yes" if settings.mssql_trust_server_certificate else "no",
        "Connection Timeout": str(settings.connect_timeout_s),
        "APP": "ecom-lakehouse",
    }
    if is_freetds(settings.mssql_odbc_driver):
        parts["TDS_Version"] = "7.4"
    if settings.mssql_host_name_in_certificate:
        parts["HostNameInCertificate"] = settings.mssql_host_name_in_certificate
    return ";".join(f"{k}={v}" for k, v in parts.items())


# --- SQLAlchemy -----------------------------------------------------------------------------
def sqlalchemy_url(settings: Settings, role: Role, database: str | None = None) -> URL:
    creds = settings.credentials(role)
    db = database or settings.database_for(role)
    if settings.dialect == "postgresql":
        query: dict[str, str] = {
            "sslmode": settings.pg_sslmode,
            "connect_timeout": str(settings.connect_timeout_s),
            "application_name": f"ecom-{role}",
        }
        if settings.pg_sslrootcert:
            query["sslrootcert"] = settings.pg_sslrootcert
        return URL.create(
            "postgresql+psycopg",
            username=creds.user,
            password=creds.password,
            host=settings.db_host,
            port=settings.port,
            database=db,
            query=query,
        )
    return URL.create("mssql+pyodbc", query={"odbc_connect": odbc_connection_string(settings, role, db)})


_ENGINES: dict[tuple[Any, ...], Engine] = {}


def engine(settings: Settings, role: Role, database: str | None = None) -> Engine:
    """A pooled engine per connection target (URL with credentials, and options); `fast_executemany`
    on MS ODBC 18.

    Keyed by what the engine connects to, never by the settings object's `id()`: Python
    reuses the id of a collected object, so a new Settings naming another database could
    otherwise be handed an engine for the old one (seen: a batch written to the wrong database).
    """
    url = sqlalchemy_url(settings, role, database)
    kwargs: dict[str, Any] = {"pool_pre_ping": True, "future": True}
    if settings.dialect == "mssql":
        # fast_executemany crashes the client with FreeTDS: plain batched executemany there.
        kwargs["fast_executemany"] = not is_freetds(settings.mssql_odbc_driver)
    key = (url.render_as_string(hide_password=False), tuple(sorted(kwargs.items())))
    if key not in _ENGINES:
        _ENGINES[key] = sa.create_engine(url, **kwargs)
    return _ENGINES[key]


def dispose_engines() -> None:
    for eng in _ENGINES.values():
        eng.dispose()
    _ENGINES.clear()


def scrub(text: str, settings: Settings) -> str:
    """Remove every configured password from a message (drivers sometimes echo them)."""
    for role in ("admin", "generator", "extractor", "publisher"):
        secret = getattr(settings, f"{role}_password").get_secret_value()
        if secret:  # as given, and as escaped in an ODBC string (`}` doubled)
            text = text.replace(odbc_quote(secret), "***").replace(secret, "***")
    return re.sub(r"(?i)(pwd|password)=(\{(?:[^}]|\}\})*\}|[^;\s]*)", r"\1=***", text)


def unavailable(settings: Settings, role: Role, database: str, exc: BaseException) -> DatabaseUnavailableError:
    """The one message for a failed connection: where, as whom, why, and what to fix."""
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    reason = scrub(reason, settings)
    user = getattr(settings, f"{role}_user")
    hint = (
        f"check {ENV_PREFIX}DB_HOST / {ENV_PREFIX}DB_PORT and {ENV_PREFIX}{role.upper()}_USER / "
        f"{ENV_PREFIX}{role.upper()}_PASSWORD"
    )
    if settings.dialect == "postgresql" and settings.db_host in ("127.0.0.1", "localhost"):
        hint += "; for the local cluster run `ecom db up` (and `ecom db init`)"
    return DatabaseUnavailableError(
        f"cannot connect to {settings.dialect} at {settings.db_host}:{settings.port}, "
        f"database {database!r}, as {user!r}: {reason} — {hint}"
    )


@contextmanager
def connect(settings: Settings, role: Role, database: str | None = None) -> Iterator[Connection]:
    """A connection in a transaction (committed on success), with a clear error on failure."""
    db = database or settings.database_for(role)
    try:
        conn = engine(settings, role, database).connect()
    except (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DBAPIError, OSError) as exc:
        raise unavailable(settings, role, db, exc) from None
    try:
        with conn.begin():
            yield conn
    finally:
        conn.close()


# --- JDBC (Spark side) ----------------------------------------------------------------------
def jdbc_url(settings: Settings, role: Role, database: str | None = None) -> str:
    db = database or settings.database_for(role)
    if settings.dialect == "postgresql":
        return f"jdbc:postgresql://{settings.db_host}:{settings.port}/{db}"
    return f"jdbc:sqlserver://{settings.db_host}:{settings.port};databaseName={db}"


def jdbc_options(settings: Settings, role: Role, database: str | None = None) -> dict[str, str]:
    """Options for `spark.read/write.format('jdbc')`; credentials go here, not in the URL."""
    creds = settings.credentials(role)
    opts = {"url": jdbc_url(settings, role, database), "user": creds.user, "password": creds.password}
    if settings.dialect == "postgresql":
        opts.update(
            driver="org.postgresql.Driver",
            sslmode=settings.pg_sslmode,
            connectTimeout=str(settings.connect_timeout_s),
            ApplicationName=f"ecom-{role}",
            reWriteBatchedInserts="true",
        )
        if settings.pg_sslrootcert:
            opts["sslrootcert"] = settings.pg_sslrootcert
    else:
        opts.update(
            driver="com.microsoft.sqlserver.jdbc.SQLServerDriver",
            encrypt="true" if settings.mssql_encrypt else "false",
            trustServerCertificate="true" if settings.mssql_trust_server_certificate else "false",
            loginTimeout=str(settings.connect_timeout_s),
            useBulkCopyForBatchInsert="true",
            applicationName=f"ecom-{role}",
        )
        if settings.mssql_trust_store:
            opts["trustStore"] = settings.mssql_trust_store
            opts["trustStorePassword"] = settings.mssql_trust_store_password.get_secret_value()
        if settings.mssql_host_name_in_certificate:
            opts["hostNameInCertificate"] = settings.mssql_host_name_in_certificate
    return opts


def check_source_initialised(conn: Connection, table: str = "customers") -> None:
    """Raise a clear error when `ecom db init` has not run (the tables are missing)."""
    from core.errors import SchemaNotInitialisedError
    from core.schema import SOURCE_SCHEMA

    if not sa.inspect(conn).has_table(table, schema=SOURCE_SCHEMA):
        raise SchemaNotInitialisedError(
            f"table {SOURCE_SCHEMA}.{table} does not exist in the source database: run `ecom db init`"
        )
