"""The names the DAGs share: time zone, tables per layer, their Assets, pools and task defaults.

Assets use stable logical URIs (`ecom://lake/bronze/orders`, `ecom://ecom_dwh/gold/sales…`):
the real location is a setting (`ECOM_LAKE_ROOT`, any Spark URI) that a DAG file must not
read at parse time. The Asset *name* is the catalog name a person types in `ecom sql`.
Everything here is constant: importing this module does no I/O.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Asset, Param

from orchestration.alerts import alert_on_failure

TIMEZONE = "Asia/Kolkata"
OWNER = "data-eng"

# The table names are contracts of DESIGN.md; tests/unit/test_dags.py checks them against core.
SOURCE_TABLES: tuple[str, ...] = ("customers", "products", "orders", "order_items", "clickstream_events")
GOLD_TABLES: tuple[str, ...] = ("customer_360", "sessions", "daily_sales", "product_performance")

# layer → (catalog database, tables it writes); `publish` writes the warehouse `ecom_dwh.gold`.
LAYER_TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "bronze": ("bronze", SOURCE_TABLES),
    "silver": ("silver", SOURCE_TABLES),
    "gold": ("gold", GOLD_TABLES),
    "publish": ("ecom_dwh.gold", GOLD_TABLES),
}

# One writer per layer: each pool has one slot (orchestration/pools.json, created by
# `orchestration/airflow.sh init|start`). The table locks of `core.locks` guard the CLI too.
POOLS: dict[str, str] = {
    "generate": "ecom_generate",
    "bronze": "ecom_bronze",
    "silver": "ecom_silver",
    "gold": "ecom_gold",
    "publish": "ecom_publish",
    "maintain": "ecom_maintain",
}

ASSET_GROUP = "ecom"


def start(hour: int, minute: int) -> pendulum.DateTime:
    """A start date on 2025-09-08 in the project's time zone (the seed's first day)."""
    return pendulum.datetime(2025, 9, 8, hour, minute, tz=TIMEZONE)


def table_asset(layer: str, table: str) -> Asset:
    """The Asset of one table a layer writes, named as `ecom sql` knows it."""
    database, _ = LAYER_TABLES[layer]
    if layer == "publish":
        return Asset(name=f"{database}.{table}", uri=f"ecom://ecom_dwh/gold/{table}", group=ASSET_GROUP)
    return Asset(name=f"{database}.{table}", uri=f"ecom://lake/{database}/{table}", group=ASSET_GROUP)


def layer_assets(layer: str) -> list[Asset]:
    """Every Asset a layer produces, in table order."""
    return [table_asset(layer, t) for t in LAYER_TABLES[layer][1]]


def table_of(asset: Asset) -> str:
    """The table behind an Asset of this module (`bronze.orders` → `orders`)."""
    return asset.name.rsplit(".", 1)[-1]


# Retries back off exponentially: 30 s, 60 s, (120 s) … capped at 10 min. A failure that a
# retry cannot fix (bad setting, layer not built) fails at once: see EcomCommandOperator.
DEFAULT_ARGS: dict[str, Any] = {
    "owner": OWNER,
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=10),
    "execution_timeout": timedelta(minutes=45),
    "on_failure_callback": alert_on_failure,
}


def run_params(layer: str) -> dict[str, Param]:
    """Trigger-time options of a layer DAG: the same flags as `ecom run <layer>`."""
    names = ", ".join(LAYER_TABLES[layer][1])
    return {
        "full_refresh": Param(False, type="boolean", description=f"`ecom run {layer} --full-refresh`"),
        "tables": Param(
            "",
            type="string",
            pattern=r"^[a-z0-9_]*(,[a-z0-9_]+)*$",
            description=f"`--tables`: comma-separated subset of {names}; empty = all",
        ),
    }


def run_command(layer: str) -> str:
    """The `ecom run` arguments as a Jinja template, rendered from the run's params at run time."""
    return (
        f"run {layer}"
        "{% if params.full_refresh %} --full-refresh{% endif %}"
        "{% if params.tables %} --tables {{ params.tables }}{% endif %}"
    )
