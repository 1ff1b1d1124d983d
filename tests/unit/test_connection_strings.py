"""Connection builders: encryption on by default, special characters escaped, no password leaks."""

from __future__ import annotations

import pyodbc  # noqa: F401 - the driver manager binding must import here
import pytest

from core import db
from core.settings import load_settings

NASTY = "p;a'ss@w}o{rd="


@pytest.fixture
def mssql():  # type: ignore[no-untyped-def]
    return load_settings(dialect="mssql", db_host="sql.example.internal", generator_password=NASTY)


def _parse_odbc(conn_str: str) -> dict[str, str]:
    """A minimal ODBC connection-string parser honouring {braced} values with doubled }}."""
    out: dict[str, str] = {}
    i = 0
    while i < len(conn_str):
        eq = conn_str.index("=", i)
        key = conn_str[i:eq]
        j = eq + 1
        if conn_str[j] == "{":
            j += 1
            val = []
            while True:
                if conn_str[j] == "}":
                    if j + 1 < len(conn_str) and conn_str[j + 1] == "}":
                        val.append("}")
                        j += 2
                        continue
                    j += 1
                    break
                val.append(conn_str[j])
                j += 1
            value = "".join(val)
        else:
            end = conn_str.find(";", j)
            end = len(conn_str) if end == -1 else end
            value = conn_str[j:end]
            j = end
        out[key] = value
        i = j + 1
    return out


def test_odbc_encrypts_by_default_and_escapes_the_password(mssql) -> None:  # type: ignore[no-untyped-def]
    parsed = _parse_odbc(db.odbc_connection_string(mssql, "generator"))
    assert parsed["PWD"] == NASTY
    assert parsed["Encrypt"] == "yes"
    assert parsed["TrustServerCertificate"] == "no"
    assert parsed["SERVER"] == "sql.example.internal,1433"
    assert parsed["DATABASE"] == "ecom_db"


def test_odbc_trusts_the_certificate_only_when_set() -> None:
    s = load_settings(dialect="mssql", generator_password="x", mssql_trust_server_certificate=True)
    assert _parse_odbc(db.odbc_connection_string(s, "generator"))["TrustServerCertificate"] == "yes"


def test_freetds_gets_a_tds_version_and_no_fast_executemany() -> None:
    s = load_settings(dialect="mssql", generator_password="x", mssql_odbc_driver="FreeTDS")
    assert _parse_odbc(db.odbc_connection_string(s, "generator"))["TDS_Version"] == "7.4"
    assert db.is_freetds(s.mssql_odbc_driver)


def test_jdbc_mssql_encrypts_and_bulk_copies_by_default(mssql) -> None:  # type: ignore[no-untyped-def]
    opts = db.jdbc_options(mssql, "generator")
    assert opts["url"] == "jdbc:sqlserver://sql.example.internal:1433;databaseName=ecom_db"
    assert opts["encrypt"] == "true"
    assert opts["trustServerCertificate"] == "false"
    assert opts["useBulkCopyForBatchInsert"] == "true"
    assert opts["password"] == NASTY  # in the properties, never in the URL
    assert NASTY not in opts["url"]


def test_jdbc_trust_store_is_passed_through() -> None:
    s = load_settings(dialect="mssql", publisher_password="x", mssql_trust_store="/etc/ssl/dwh.jks")
    opts = db.jdbc_options(s, "publisher")
    assert opts["trustStore"] == "/etc/ssl/dwh.jks"
    assert opts["url"].endswith("databaseName=ecom_dwh")


def test_postgresql_url_and_jdbc() -> None:
    s = load_settings(extractor_password=NASTY)
    url = db.sqlalchemy_url(s, "extractor")
    assert url.password == NASTY and url.database == "ecom_db"
    opts = db.jdbc_options(s, "extractor")
    assert opts["url"] == f"jdbc:postgresql://127.0.0.1:{s.port}/ecom_db"
    assert opts["reWriteBatchedInserts"] == "true"


def test_errors_scrub_passwords() -> None:
    s = load_settings(extractor_password=NASTY)
    err = db.unavailable(s, "extractor", "ecom_db", RuntimeError(f"login failed PWD={{{NASTY}}} for x"))
    assert NASTY not in str(err)
    assert "127.0.0.1" in str(err) and "ecom_db" in str(err) and "ECOM_EXTRACTOR_PASSWORD" in str(err)
