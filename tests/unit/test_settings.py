"""Settings: typed, from the environment; a bad value names its variable, without a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from core.errors import SettingsError
from core.settings import load_settings


def test_defaults_are_the_local_postgresql() -> None:
    s = load_settings()
    assert s.dialect == "postgresql"
    assert s.port == s.local_pg_port
    assert os.path.isabs(s.lake_root)


@pytest.mark.parametrize(
    ("var", "value", "needle"),
    [
        ("ECOM_DB_PORT", "abc", "ECOM_DB_PORT"),
        ("ECOM_DB_PORT", "70000", "ECOM_DB_PORT"),
        ("ECOM_DIALECT", "oracle", "ECOM_DIALECT"),
        ("ECOM_WEBHOOK_URL", "ftp://example.invalid/x", "ECOM_WEBHOOK_URL"),
        ("ECOM_WEBHOOK_TIMEOUT_S", "30", "ECOM_WEBHOOK_TIMEOUT_S"),
        ("ECOM_MSSQL_ENCRYPT", "maybe", "ECOM_MSSQL_ENCRYPT"),
    ],
)
def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, var: str, value: str, needle: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError, match=needle):
        load_settings()


def test_missing_password_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings(extractor_password="")
    with pytest.raises(SettingsError, match="ECOM_EXTRACTOR_PASSWORD"):
        s.credentials("extractor")


def test_credentials_never_print_the_password() -> None:
    creds = load_settings(publisher_password="s3cr;'@}t").credentials("publisher")
    assert "s3cr" not in repr(creds)


def test_cli_reports_a_bad_setting_in_one_line() -> None:
    env = {**os.environ, "ECOM_DB_PORT": "not-a-port"}
    proc = subprocess.run(
        [sys.executable, "-m", "core.cli", "db", "status"], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    assert "ECOM_DB_PORT" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert len(proc.stderr.strip().splitlines()) <= 2
