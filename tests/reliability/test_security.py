"""Security, in one place: no secret in the repository, no superuser, least privilege per role,
and no password in any error message.

The webhook's limits (http(s) URLs only, no redirect followed, a timeout of at most 10 s) are
proven against a real HTTP server on 127.0.0.1 in tests/unit/test_webhook.py and not repeated.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from core import db
from core.errors import DatabaseUnavailableError
from tests.reliability.conftest import OUTCOMES, Outcome

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).resolve().parents[2]


# --- no secret in the repository ------------------------------------------------------------------
def secret_scan(paths: list[str], baseline: Path) -> subprocess.CompletedProcess[str]:
    """The scan `make lint` runs: detect-secrets-hook with the repository's baseline (a copy, so
    that a finding never rewrites the real one)."""
    hook = Path(sys.executable).with_name("detect-secrets-hook")
    return subprocess.run(
        [str(hook), "--baseline", str(baseline), *paths],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def baseline(tmp_path: Path) -> Path:
    copy = tmp_path / "secrets.baseline"
    shutil.copyfile(ROOT / ".secrets.baseline", copy)
    return copy


def test_no_secret_in_any_tracked_file(baseline: Path) -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    tracked = [p for p in tracked if p and (ROOT / p).is_file()]  # a file deleted but not yet committed
    assert len(tracked) > 50, tracked
    scan = secret_scan(tracked, baseline)
    assert scan.returncode == 0, scan.stdout + scan.stderr
    OUTCOMES.append(Outcome(f"secret scan: {len(tracked)} tracked files, none found", 1, 0, 0))


def test_the_secret_scan_fails_on_a_planted_key_and_password(baseline: Path, tmp_path: Path) -> None:
    """The same scan over a file with a (fake) AWS access key and a password assignment."""
    key = "AKIA" + "J5Q2XW7T3RZ8LM4N"  # pragma: allowlist secret
    planted = tmp_path / "settings.py"
    planted.write_text(
        f'AWS_ACCESS_KEY_ID = "{key}"\ndb_password = "Tr0ub4dor&3-correct-horse"\n'  # pragma: allowlist secret
    )
    scan = secret_scan([str(planted)], baseline)
    out = scan.stdout + scan.stderr
    assert scan.returncode != 0, out
    assert "AWS Access Key" in out and "Secret Keyword" in out, out
    assert "settings.py:1" in out.replace(" ", "") or "Line Number: 1" in out, out
    OUTCOMES.append(Outcome("secret scan: a planted AWS key and password are caught", 1, 0, 0))


# --- least privilege ------------------------------------------------------------------------------
def test_no_project_role_is_superuser_or_holds_another_role(pg_settings: Any) -> None:
    """The pipeline's logins exist and have no cluster-wide power: not superuser, cannot create
    roles or databases, replicate or bypass row security, and are members of no role (such as
    pg_read_all_data or pg_write_all_data)."""
    from core.dbinit import LOGIN_ROLES

    users = sorted(getattr(pg_settings, f"{role}_user") for role in LOGIN_ROLES)
    with db.connect(pg_settings, "admin", "postgres") as conn:
        powers = conn.execute(
            sa.text(
                "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls "
                "FROM pg_roles WHERE rolname = ANY(:users) ORDER BY rolname"
            ),
            {"users": users},
        ).all()
        memberships = conn.execute(
            sa.text(
                "SELECT m.rolname, g.rolname FROM pg_auth_members a "
                "JOIN pg_roles m ON m.oid = a.member JOIN pg_roles g ON g.oid = a.roleid "
                "WHERE m.rolname = ANY(:users)"
            ),
            {"users": users},
        ).all()
    assert [r.rolname for r in powers] == users
    assert [tuple(r) for r in powers if any(r[1:])] == []
    assert memberships == []
    OUTCOMES.append(Outcome("roles: none superuser or member of another role", 1, 0, 0))


def test_roles_are_refused_what_they_must_not_do(pg_settings: Any) -> None:
    with (
        pytest.raises(sa.exc.ProgrammingError, match="permission denied"),
        db.connect(pg_settings, "extractor") as conn,
    ):
        conn.exec_driver_sql("INSERT INTO shop.products (sku, name, category) VALUES ('x', 'x', 'x')")
    with (
        pytest.raises(sa.exc.ProgrammingError, match="permission denied"),
        db.connect(pg_settings, "extractor") as conn,
    ):
        conn.exec_driver_sql("SELECT * FROM sim.defects")
    # The publisher may not even connect to ecom_db; the generator may not connect to ecom_dwh.
    with pytest.raises(DatabaseUnavailableError, match="ecom_db"), db.connect(pg_settings, "publisher", "ecom_db"):
        pass
    with pytest.raises(DatabaseUnavailableError, match="ecom_dwh"), db.connect(pg_settings, "generator", "ecom_dwh"):
        pass
    with (
        pytest.raises(sa.exc.ProgrammingError, match="permission denied"),
        db.connect(pg_settings, "generator") as conn,
    ):
        conn.exec_driver_sql("CREATE TABLE shop.not_allowed (x int)")
    OUTCOMES.append(Outcome("roles: each refused what it must not do", 5, 0, 0))


# --- no password in an error message --------------------------------------------------------------
@dataclass(frozen=True)
class Probe:
    """A throwaway login with a password full of connection-string metacharacters; `token`, a
    random run of letters and digits inside it, survives any quoting or URL encoding, so a
    leak in any form shows as the token."""

    user: str
    password: str
    token: str


@pytest.fixture(scope="module")
def probe(pg_settings: Any) -> Iterator[Probe]:
    from psycopg import sql

    token = uuid.uuid4().hex
    made = Probe(f"ecom_probe_{uuid.uuid4().hex[:8]}", f"p;w'd@{token}}}x", token)
    with db.connect(pg_settings, "admin", "postgres") as conn:  # no privilege on any database
        raw = conn.connection.driver_connection
        create = sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(made.user), sql.Literal(made.password)
        )
        conn.exec_driver_sql(create.as_string(raw))
    try:
        yield made
    finally:
        db.dispose_engines()  # the probe's pooled connections, if any
        with db.connect(pg_settings, "admin", "postgres") as conn:
            conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{made.user}"')


def shown(exc: BaseException) -> str:
    """Everything a user could see of an exception: message, repr, the printed traceback, and
    for one raised by Spark the JVM's stack trace and causes (what a task log shows)."""
    jvm = [str(getattr(exc, attr, None) or "") for attr in ("_stackTrace", "_cause")]
    return "\n".join([str(exc), repr(exc), "".join(traceback.format_exception(exc)), *jvm])


def test_a_failed_connection_never_shows_the_password(pg_settings: Any, probe: Probe) -> None:
    """Real failures after, and at, authentication: a database that does not exist, one the login
    may not connect to, and a wrong password (itself full of metacharacters)."""
    from pydantic import SecretStr

    def as_probe(password: str) -> Any:
        return pg_settings.model_copy(update={"generator_user": probe.user, "generator_password": SecretStr(password)})

    wrong_token = uuid.uuid4().hex
    cases = [
        (as_probe(probe.password), f"no_such_db_{probe.token[:6]}", "does not exist", probe.token),
        (as_probe(probe.password), pg_settings.source_db, "permission denied", probe.token),
        (as_probe(f"}}'@;{wrong_token}"), pg_settings.source_db, "password authentication failed", wrong_token),
    ]
    for settings, database, reason, secret in cases:
        with pytest.raises(DatabaseUnavailableError) as caught, db.connect(settings, "generator", database):
            pass
        text = shown(caught.value)
        assert reason in text and database in text and probe.user in text, text
        assert secret not in text, f"the password shows in: {text}"
    OUTCOMES.append(Outcome("no password in errors: core.db (3 failed logins)", len(cases), 0, 0))


def test_the_cli_and_spark_never_show_the_password(spark: Any, pg_settings: Any, probe: Probe) -> None:
    """`ecom db status` with the probe as generator and extractor on a database that does not
    exist, and a Spark JDBC read (bronze's path) as the probe: the password shows nowhere."""
    from pydantic import SecretStr

    missing = f"no_such_db_{probe.token[:6]}"
    env = {
        **os.environ,
        "ECOM_SOURCE_DB": missing,
        "ECOM_GENERATOR_USER": probe.user,
        "ECOM_GENERATOR_PASSWORD": probe.password,
        "ECOM_EXTRACTOR_USER": probe.user,
        "ECOM_EXTRACTOR_PASSWORD": probe.password,
    }
    status = subprocess.run(
        [sys.executable, "-m", "core.cli", "db", "status"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = status.stdout + status.stderr
    assert status.returncode != 0 and "does not exist" in out, out
    assert probe.token not in out, f"the password shows in `ecom db status`: {out}"

    settings = pg_settings.model_copy(
        update={"extractor_user": probe.user, "extractor_password": SecretStr(probe.password)}
    )
    with pytest.raises(Exception) as caught:  # whatever Spark raises, it must not show the password
        spark.read.format("jdbc").options(
            **db.jdbc_options(settings, "extractor", missing), dbtable="shop.orders"
        ).load()
    text = shown(caught.value)
    assert f'database "{missing}" does not exist' in text, text[-3000:]
    assert probe.token not in text, f"the password shows in Spark's error: {text[-3000:]}"
    OUTCOMES.append(Outcome("no password in errors: ecom db status, Spark JDBC", 2, 0, 0))
