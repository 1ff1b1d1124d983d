"""Helpers for tests that drive the real `ecom` commands on databases and a lake of their own."""

from __future__ import annotations

import os
from typing import Any

from core.schema import SOURCE_SCHEMA, SOURCE_TABLES


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
