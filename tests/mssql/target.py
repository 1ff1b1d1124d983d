"""Which SQL Server the live suite runs against: `ECOM_TEST_MSSQL_*`, mapped onto the `ECOM_*` settings.

The suite never touches a server nobody named. Required:

    ECOM_TEST_MSSQL_HOST             → ECOM_DB_HOST
    ECOM_TEST_MSSQL_ADMIN_USER       → ECOM_ADMIN_USER     a login that may create databases and logins
    ECOM_TEST_MSSQL_ADMIN_PASSWORD   → ECOM_ADMIN_PASSWORD

Optional: `_PORT` (→ `ECOM_DB_PORT`), `_ODBC_DRIVER`, `_ENCRYPT`, `_TRUST_SERVER_CERTIFICATE`,
`_TRUST_STORE`, `_TRUST_STORE_PASSWORD`, `_HOST_NAME_IN_CERTIFICATE` (→ `ECOM_MSSQL_*`),
`_CONNECT_TIMEOUT_S`; `_SOURCE_DB` / `_WAREHOUSE_DB` and `_<ROLE>_USER` + `_<ROLE>_PASSWORD` to
use existing databases or logins instead of the throwaway ones; `_KEEP=true` to leave what the
suite created for inspection.

By default the suite creates its own databases (`ecom_db_t<id>`, `ecom_dwh_t<id>`) and logins
(`ecomt<id>_generator`, …, with random passwords full of characters that need escaping), and
drops them afterwards: it never changes a user's `ecom_db`.
"""

from __future__ import annotations

import functools
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

PREFIX = "ECOM_TEST_MSSQL_"
REQUIRED = ("HOST", "ADMIN_USER", "ADMIN_PASSWORD")
# ECOM_TEST_MSSQL_<name> → settings field (ECOM_<FIELD>)
FIELDS: dict[str, str] = {
    "HOST": "db_host",
    "PORT": "db_port",
    "ADMIN_USER": "admin_user",
    "ADMIN_PASSWORD": "admin_password",  # pragma: allowlist secret
    "ODBC_DRIVER": "mssql_odbc_driver",
    "ENCRYPT": "mssql_encrypt",
    "TRUST_SERVER_CERTIFICATE": "mssql_trust_server_certificate",
    "TRUST_STORE": "mssql_trust_store",
    "TRUST_STORE_PASSWORD": "mssql_trust_store_password",  # pragma: allowlist secret
    "HOST_NAME_IN_CERTIFICATE": "mssql_host_name_in_certificate",
    "CONNECT_TIMEOUT_S": "connect_timeout_s",
    "SOURCE_DB": "source_db",
    "WAREHOUSE_DB": "warehouse_db",
    **{
        f"{r}_{k}": f"{r.lower()}_{k.lower()}"
        for r in ("GENERATOR", "EXTRACTOR", "PUBLISHER")
        for k in ("USER", "PASSWORD")
    },
}
FLAGS = ("KEEP",)
ROLES = ("generator", "extractor", "publisher")


def skip_reason(missing: list[str]) -> str:
    return (
        f"live SQL Server suite: set {', '.join(PREFIX + n for n in missing)} to run it "
        f"(the admin login must be allowed to create databases and logins); optional: {PREFIX}PORT, "
        f"{PREFIX}ODBC_DRIVER, {PREFIX}TRUST_SERVER_CERTIFICATE, … — see tests/mssql/target.py"
    )


@dataclass(frozen=True)
class Target:
    """The settings of the run, and what the suite owns (creates and drops)."""

    overrides: dict[str, Any]
    own_databases: tuple[str, ...] = ()
    own_logins: tuple[str, ...] = ()
    keep: bool = False

    def settings(self, **more: Any) -> Any:
        from core.settings import load_settings

        return load_settings(**{**self.overrides, **more})


def _default(name: str) -> Any:
    from core.settings import Settings

    return Settings.model_fields[name].default


def random_password() -> str:
    """Meets SQL Server's CHECK_POLICY and carries every character ODBC/T-SQL must escape."""
    return f"Ec0m;{secrets.token_urlsafe(12)}{{x}}'y=z@"


def from_env(environ: Mapping[str, str] | None = None, run_id: str | None = None) -> Target | str:
    """The target named by the environment, or the skip reason saying what to set."""
    env = os.environ if environ is None else environ
    given = {k.removeprefix(PREFIX): v for k, v in env.items() if k.startswith(PREFIX) and v != ""}
    unknown = sorted(set(given) - set(FIELDS) - set(FLAGS))
    if unknown:
        known = ", ".join(PREFIX + n for n in [*FIELDS, *FLAGS])
        raise ValueError(f"unknown setting(s) {', '.join(PREFIX + n for n in unknown)}: expected some of {known}")
    missing = [n for n in REQUIRED if n not in given]
    if missing:
        return skip_reason(missing)
    rid = run_id or secrets.token_hex(3)
    overrides: dict[str, Any] = {FIELDS[k]: v for k, v in given.items() if k in FIELDS}
    # Only ECOM_TEST_MSSQL_* name the server: nothing comes from a `.env` written for another one.
    overrides.update(dialect="mssql", webhook_url=None)
    overrides.setdefault("db_port", 1433)
    for name in ("ODBC_DRIVER", "ENCRYPT", "TRUST_SERVER_CERTIFICATE", "TRUST_STORE", "HOST_NAME_IN_CERTIFICATE"):
        overrides.setdefault(FIELDS[name], _default(FIELDS[name]))
    own_dbs: list[str] = []
    for key, default in (("source_db", f"ecom_db_t{rid}"), ("warehouse_db", f"ecom_dwh_t{rid}")):
        if key not in overrides:
            overrides[key] = default
            own_dbs.append(default)
    own_logins: list[str] = []
    for role in ROLES:
        if f"{role}_password" in overrides:
            continue  # an existing login: used as given, never dropped
        if f"{role}_user" in overrides:
            raise ValueError(f"{PREFIX}{role.upper()}_USER is set without {PREFIX}{role.upper()}_PASSWORD")
        overrides[f"{role}_user"] = f"ecomt{rid}_{role}"
        overrides[f"{role}_password"] = random_password()
        own_logins.append(overrides[f"{role}_user"])
    keep = given.get("KEEP", "").strip().lower() in ("1", "true", "yes")
    return Target(overrides, tuple(own_dbs), tuple(own_logins), keep)


@functools.lru_cache(maxsize=1)
def current() -> Target | str:
    """This run's target (one run id, so one set of throwaway names), or why it is skipped."""
    return from_env()


def live_marks() -> list[pytest.MarkDecorator]:
    """`mssql`, and skipped with the reason saying what to set when no server is named."""
    target = current()
    reason = target if isinstance(target, str) else "a SQL Server is named"
    return [pytest.mark.mssql, pytest.mark.skipif(isinstance(target, str), reason=reason)]
