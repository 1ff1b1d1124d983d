"""How `ECOM_TEST_MSSQL_*` maps onto the settings (pure: runs everywhere, no server needed)."""

from __future__ import annotations

import pytest

from core import db
from tests.mssql.target import PREFIX, REQUIRED, Target, from_env, random_password

MINIMAL = {
    f"{PREFIX}HOST": "sql1.internal",
    f"{PREFIX}ADMIN_USER": "dba",
    f"{PREFIX}ADMIN_PASSWORD": "Adm;n}1",  # pragma: allowlist secret (a test value)
}


def test_without_settings_the_reason_names_every_variable_to_set() -> None:
    reason = from_env({})
    assert isinstance(reason, str)
    for name in REQUIRED:
        assert f"{PREFIX}{name}" in reason
    partial = from_env({f"{PREFIX}HOST": "x"})
    assert isinstance(partial, str) and f"set {PREFIX}ADMIN_USER, {PREFIX}ADMIN_PASSWORD " in partial


def test_a_typo_is_an_error_not_a_silent_skip() -> None:
    with pytest.raises(ValueError, match=f"{PREFIX}HOSTNAME"):
        from_env({**MINIMAL, f"{PREFIX}HOSTNAME": "x"})
    with pytest.raises(ValueError, match="GENERATOR_USER is set without"):
        from_env({**MINIMAL, f"{PREFIX}GENERATOR_USER": "gen"})


def test_settings_map_onto_ecom_settings_with_throwaway_databases_and_logins() -> None:
    target = from_env(
        {
            **MINIMAL,
            f"{PREFIX}PORT": "14330",
            f"{PREFIX}ODBC_DRIVER": "FreeTDS",
            f"{PREFIX}TRUST_SERVER_CERTIFICATE": "true",
        },
        run_id="ab12cd",
    )
    assert isinstance(target, Target)
    s = target.settings(lake_root="/tmp/x")
    assert (s.dialect, s.db_host, s.port, s.admin_user) == ("mssql", "sql1.internal", 14330, "dba")
    assert s.admin_password.get_secret_value() == "Adm;n}1"
    assert s.mssql_odbc_driver == "FreeTDS" and s.mssql_trust_server_certificate and s.mssql_encrypt
    assert (s.source_db, s.warehouse_db) == ("ecom_db_tab12cd", "ecom_dwh_tab12cd")
    assert target.own_databases == ("ecom_db_tab12cd", "ecom_dwh_tab12cd")
    assert target.own_logins == ("ecomtab12cd_generator", "ecomtab12cd_extractor", "ecomtab12cd_publisher")
    assert s.generator_user == "ecomtab12cd_generator" and s.webhook_url is None
    # the throwaway passwords exercise escaping, and survive the ODBC string intact
    pw = s.credentials("generator").password
    assert set(";{}'=") <= set(pw)
    assert f"PWD={{{pw.replace('}', '}}')}}}" in db.odbc_connection_string(s, "generator")


def test_given_databases_and_logins_are_used_and_never_dropped() -> None:
    target = from_env(
        {
            **MINIMAL,
            f"{PREFIX}SOURCE_DB": "shop_src",
            f"{PREFIX}GENERATOR_USER": "gen",
            f"{PREFIX}GENERATOR_PASSWORD": "Gen;pw}",  # pragma: allowlist secret
            f"{PREFIX}KEEP": "true",
        },
        run_id="000001",
    )
    assert isinstance(target, Target)
    s = target.settings()
    assert s.source_db == "shop_src" and s.generator_user == "gen"
    assert target.own_databases == ("ecom_dwh_t000001",) and "gen" not in target.own_logins
    assert target.keep


def test_random_passwords_meet_the_sql_server_policy() -> None:
    for _ in range(20):
        pw = random_password()
        kinds = [any(c.isupper() for c in pw), any(c.islower() for c in pw), any(c.isdigit() for c in pw)]
        assert len(pw) >= 8 and all(kinds) and not pw.isalnum()
