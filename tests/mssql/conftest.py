"""The live SQL Server: its settings, `ecom db init` once per run, and cleanup afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.mssql.target import Target, current


def _target() -> Target:
    target = current()
    if isinstance(target, str):
        pytest.skip(target)
    return target


@pytest.fixture(scope="session")
def mssql(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Settings for the named server, its databases and logins initialised by `ecom db init`."""
    from core import db, dbinit

    target = _target()
    lake = tmp_path_factory.mktemp("mssql-lake")
    settings = target.settings(
        lake_root=str(lake / "lake"),
        gx_root=str(lake / "gx"),
        spark_shuffle_partitions=2,
        jdbc_partitions=2,
    )
    try:
        dbinit.init(settings, echo=lambda _msg: None)
        yield settings
    finally:
        db.dispose_engines()
        if not target.keep:
            drop_owned(settings, target)


def drop_owned(settings: Any, target: Target) -> None:
    """Drop the databases and logins this run created (never anything it was given)."""
    import sqlalchemy as sa

    from core import db

    eng = db.engine(settings, "admin", "master")
    with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for name in target.own_databases:
            conn.exec_driver_sql(
                f"IF DB_ID(N'{name}') IS NOT NULL BEGIN "
                f"ALTER DATABASE [{name}] SET SINGLE_USER WITH ROLLBACK IMMEDIATE; DROP DATABASE [{name}]; END"
            )
        for login in target.own_logins:
            for (spid,) in conn.execute(
                sa.text("SELECT session_id FROM sys.dm_exec_sessions WHERE login_name = :l"), {"l": login}
            ).all():
                conn.exec_driver_sql(f"KILL {int(spid)}")
            conn.exec_driver_sql(f"IF SUSER_ID(N'{login}') IS NOT NULL DROP LOGIN [{login}]")
    db.dispose_engines()
