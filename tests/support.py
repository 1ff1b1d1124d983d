"""Helpers for tests that drive the real `ecom` commands on databases and a lake of their own."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from core.schema import SOURCE_SCHEMA, SOURCE_TABLES

HORIZON_WAIT_S = 120


def fresh_source(settings: Any) -> None:
    """Create the settings' databases if missing (idempotent), then empty the source tables and
    the generator's manifest, so counts start from zero."""
    from core import db, dbinit

    dbinit.init(settings, echo=lambda _msg: None)
    with db.connect(settings, "admin", settings.source_db) as conn:
        tables = ", ".join(f"{SOURCE_SCHEMA}.{t}" for t in SOURCE_TABLES)
        conn.exec_driver_sql(f"TRUNCATE {tables}, sim.defects, sim.batches CASCADE")


def command_env(settings: Any, **extra: str) -> dict[str, str]:
    """This process's environment without any ECOM_ setting, pointed at the settings'
    databases, lake and GX root (for `python -m core.cli …` subprocesses)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECOM_")}
    env.update(
        ECOM_SOURCE_DB=settings.source_db,
        ECOM_WAREHOUSE_DB=settings.warehouse_db,
        ECOM_LAKE_ROOT=settings.lake_root,
        ECOM_GX_ROOT=str(settings.gx_root),
        **extra,
    )
    return env


def wait_for_horizon(settings: Any, xid: int | None = None) -> None:
    """Wait until the source's safe horizon has passed transaction `xid` (default: every
    transaction begun so far), so that bronze's next window holds its rows. Another session's
    long transaction holds the horizon: the test fails after `HORIZON_WAIT_S`."""
    from bronze.job import current_horizon
    from core import db

    if xid is None:
        with db.connect(settings, "admin", settings.source_db) as conn:
            xid = int(conn.exec_driver_sql("SELECT pg_current_xact_id()::text::bigint").scalar_one())
    t0 = time.monotonic()
    while (h := current_horizon(settings)) <= xid:
        if time.monotonic() > t0 + HORIZON_WAIT_S:
            pytest.fail(f"the source horizon stayed at {h} <= {xid} for {HORIZON_WAIT_S}s: a long transaction is open")
        time.sleep(0.2)
    if time.monotonic() - t0 > 1:
        print(f"waited {time.monotonic() - t0:.1f}s for another session's transaction to end")
