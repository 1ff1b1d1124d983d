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


def test_the_escaped_odbc_string_survives_sqlalchemy_and_reaches_pyodbc_unchanged(mssql) -> None:  # type: ignore[no-untyped-def]
    # SQLAlchemy carries the ODBC string URL-encoded in `odbc_connect`; its pyodbc dialect must hand
    # pyodbc exactly what we built, braces and all.
    from sqlalchemy.dialects.mssql.pyodbc import dialect

    url = db.sqlalchemy_url(mssql, "generator")
    rendered = url.render_as_string(hide_password=False)
    assert NASTY not in rendered  # encoded, not pasted
    args, _ = dialect().create_connect_args(url)
    assert list(args) == [db.odbc_connection_string(mssql, "generator")]
    assert _parse_odbc(args[0])["PWD"] == NASTY


@pytest.mark.parametrize("odd", ["ecom}user", "we;ird=db", "{braced}"])
def test_every_odbc_value_that_may_hold_special_characters_is_braced(odd: str) -> None:
    s = load_settings(
        dialect="mssql", generator_user=odd, source_db=odd, mssql_odbc_driver=f"Driver {odd}", generator_password="x"
    )
    parsed = _parse_odbc(db.odbc_connection_string(s, "generator"))
    assert parsed["UID"] == parsed["DATABASE"] == odd and parsed["DRIVER"] == f"Driver {odd}"
    assert parsed["Encrypt"] == "yes"  # nothing an odd value holds can override a later key


def test_encryption_is_off_only_when_set_and_the_certificate_name_is_passed() -> None:
    s = load_settings(
        dialect="mssql", generator_password="x", mssql_encrypt=False, mssql_host_name_in_certificate="*.corp.internal"
    )
    odbc = _parse_odbc(db.odbc_connection_string(s, "generator"))
    assert odbc["Encrypt"] == "no" and odbc["HostNameInCertificate"] == "*.corp.internal"
    opts = db.jdbc_options(s, "generator")
    assert opts["encrypt"] == "false" and opts["hostNameInCertificate"] == "*.corp.internal"
    assert opts["trustServerCertificate"] == "false"


def test_jdbc_trust_store_password_stays_out_of_the_url() -> None:
    s = load_settings(
        dialect="mssql", extractor_password="x", mssql_trust_store="/etc/ssl/s.jks", mssql_trust_store_password=NASTY
    )
    opts = db.jdbc_options(s, "extractor")
    assert opts["trustStorePassword"] == NASTY and NASTY not in opts["url"]
    assert opts["driver"] == "com.microsoft.sqlserver.jdbc.SQLServerDriver"


@pytest.mark.parametrize(("driver", "fast"), [("ODBC Driver 18 for SQL Server", True), ("FreeTDS", False)])
def test_fast_executemany_only_with_microsofts_driver(driver: str, fast: bool) -> None:
    s = load_settings(dialect="mssql", generator_password="x", mssql_odbc_driver=driver)
    try:
        assert db.engine(s, "generator").dialect.fast_executemany is fast  # type: ignore[attr-defined]
    finally:
        db.dispose_engines()


def test_errors_scrub_a_password_as_escaped_in_an_odbc_string(mssql) -> None:  # type: ignore[no-untyped-def]
    conn_str = db.odbc_connection_string(mssql, "generator")
    scrubbed = db.scrub(f"[08001] login failed ({conn_str})", mssql)
    assert "a'ss" not in scrubbed and "o{rd" not in scrubbed and "PWD=***;Encrypt=yes" in scrubbed
    # a password the settings do not know (another role's, a driver echo) is masked by its form
    other = load_settings(dialect="mssql", generator_password="x")
    assert db.scrub(f"PWD={{{NASTY.replace('}', '}}')}}};UID=u", other) == "PWD=***;UID=u"


def test_each_settings_gets_an_engine_for_its_own_database() -> None:
    """Engines are cached by what they connect to: a new Settings object that Python places at
    a collected one's id (it reuses them at once) still gets its own database, not the old one's."""
    for n in range(20):
        eng = db.engine(load_settings(source_db=f"ecom_db_engine_{n}"), "generator")  # nothing else holds it
        assert eng.url.database == f"ecom_db_engine_{n}"
    same = load_settings(source_db="ecom_db_engine_3")
    assert db.engine(same, "generator") is db.engine(load_settings(source_db="ecom_db_engine_3"), "generator")
