"""The pipeline as a user drives it: `ecom generate`, `ecom run <layer>`, `ecom sql`.

The acceptance of the bronze and silver issues, through the real commands (each its own
process and Spark session) on databases of its own and a temporary lake:

- after one batch and `ecom run bronze`, `ecom sql` counts in bronze equal the source's;
- a second batch plus `ecom run bronze` adds exactly the new and changed rows; a third
  `ecom run bronze` with no new data adds none;
- `ecom run silver` twice: the second run writes nothing and the content is identical;
  `ecom sql` finds no duplicate key in silver.

(Gold and publish through the commands: the Airflow chain test, whose tasks run them.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from core.schema import SOURCE_SCHEMA, SOURCE_TABLES
from tests.support import command_env, fresh_source

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DB, WAREHOUSE_DB = "ecom_db_cli_e2e", "ecom_dwh_cli_e2e"
TABLES = list(SOURCE_TABLES)
BATCH = ["--customers", "40", "--products", "15", "--orders", "120", "--events", "800", "--defect-rate", "0.05"]


def ecom(env: dict[str, str], *args: str) -> str:
    """Run `ecom <args>`; its stdout. A failure shows the command's output."""
    proc = subprocess.run(
        [sys.executable, "-m", "core.cli", *args], env=env, cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, (
        f"ecom {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc.stdout


def lake_counts(env: dict[str, str], database: str, tables: list[str]) -> dict[str, int]:
    """Row counts through `ecom sql` (the real spark-sql shell)."""
    query = "SELECT " + ", ".join(f"(SELECT count(*) FROM {database}.{t})" for t in tables)
    out = ecom(env, "sql", "-e", query).strip().splitlines()[-1]
    return dict(zip(tables, (int(v) for v in out.split()), strict=True))


def delta_counts(spark: Any, settings: Any, database: str, tables: list[str]) -> dict[str, int]:
    """Row counts read from the Delta tables directly (one `ecom sql` is proof enough; each
    costs a JVM)."""
    from core.lake import table_path

    return {t: spark.read.format("delta").load(table_path(settings, database, t)).count() for t in tables}


def source_versions(settings: Any) -> dict[str, dict[int, str]]:
    """{table: {primary key: change version}} of the source, read as admin."""
    from core import db

    out: dict[str, dict[int, str]] = {}
    with db.connect(settings, "admin", settings.source_db) as conn:
        for name, st in SOURCE_TABLES.items():
            pk = st.table.primary_key.columns.keys()[0]
            rows = conn.exec_driver_sql(f"SELECT {pk}, _change_version::text FROM {SOURCE_SCHEMA}.{name}").all()
            out[name] = {int(k): str(v) for k, v in rows}
    return out


@pytest.fixture(scope="module")
def pipeline(pg_settings: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, str]]:
    """Databases of its own (emptied), a temporary lake, and the environment the commands get."""
    from core.settings import load_settings

    settings = load_settings(source_db=SOURCE_DB, warehouse_db=WAREHOUSE_DB)
    fresh_source(settings)
    tmp = tmp_path_factory.mktemp("cli-pipeline")
    settings = settings.model_copy(update={"lake_root": str(tmp / "lake"), "gx_root": str(tmp / "gx")})
    env = command_env(settings)
    return settings, env


def test_bronze_counts_follow_the_source_exactly(spark: Any, pipeline: tuple[Any, dict[str, str]]) -> None:
    settings, env = pipeline
    ecom(env, "generate", *BATCH, "--seed", "11")
    ecom(env, "run", "bronze")
    first = source_versions(settings)
    assert lake_counts(env, "bronze", TABLES) == {t: len(rows) for t, rows in first.items()}

    ecom(env, "generate", *BATCH, "--seed", "12")  # new rows, and updates of earlier ones
    second = source_versions(settings)
    changed = {t: sum(1 for k, v in rows.items() if first[t].get(k) != v) for t, rows in second.items()}
    assert changed["orders"] > 120  # the new orders, and status changes of earlier ones
    ecom(env, "run", "bronze")
    after_second = delta_counts(spark, settings, "bronze", TABLES)
    assert after_second == {t: len(first[t]) + changed[t] for t in TABLES}

    ecom(env, "run", "bronze")  # nothing new at the source: nothing appended
    assert delta_counts(spark, settings, "bronze", TABLES) == after_second


def test_silver_twice_writes_nothing_the_second_time_and_keys_are_unique(  # type: ignore[no-untyped-def]
    spark, pipeline: tuple[Any, dict[str, str]]
) -> None:
    from core.lake import table_path

    settings, env = pipeline

    def content() -> dict[str, list[str]]:
        out = {}
        for t in TABLES:
            df = spark.read.format("delta").load(table_path(settings, "silver", t))
            out[t] = sorted(repr(tuple(r)) for r in df.collect())
        return out

    ecom(env, "run", "silver")
    before = content()
    ecom(env, "run", "silver")
    runs = spark.read.format("delta").load(table_path(settings, "ops", "runs")).where("layer = 'silver'")
    last_run = runs.orderBy("started_at", ascending=False).first().run_id  # type: ignore[union-attr]
    second = {r.table_name: r.rows_out for r in runs.where(runs.run_id == last_run).collect()}
    assert second == dict.fromkeys(TABLES, 0)
    assert content() == before
    dupes = ecom(env, "sql", "-e", "SELECT order_id, count(*) FROM silver.orders GROUP BY 1 HAVING count(*) > 1")
    assert dupes.strip() == ""
