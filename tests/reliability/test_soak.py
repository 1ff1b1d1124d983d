"""Soak (`make soak`): the generator streams with defects while full cycles run; nothing is lost.

`ecom generate --stream` writes a batch every few seconds into a database of its own while
`ecom run all` runs `ECOM_SOAK_CYCLES` times (default 20) against a temporary lake. Then the
stream stops, one last cycle runs, and per table:

- source = bronze: every current source row version (key, change version) is in bronze;
- silver + quarantine + held = the source's business keys, exactly (no key lost, none
  invented), silver has each key once; the duplicates silver dropped are counted;
- the warehouse holds what gold holds (publish's own checksum).

A reconciliation table is printed. Marker `soak`: not part of `make test`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from core.schema import SOURCE_SCHEMA, SOURCE_TABLES
from tests.reliability.conftest import OUTCOMES, Outcome
from tests.support import command_env, fresh_source

pytestmark = pytest.mark.soak

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DB, WAREHOUSE_DB = "ecom_db_soak", "ecom_dwh_soak"
CYCLES = int(os.environ.get("ECOM_SOAK_CYCLES", "20"))
STREAM = [
    "generate", "--stream", "--interval", "5", "--customers", "20", "--products", "5",
    "--orders", "60", "--events", "600", "--defect-rate", "0.05",
]  # fmt: skip


def test_soak_streaming_while_cycles_run_loses_nothing(spark: Any, pg_settings: Any, tmp_path: Path) -> None:
    from pyspark.sql import functions as F

    from core import db
    from core.lake import table_path
    from core.settings import load_settings
    from silver.contracts import TABLES

    settings = load_settings(source_db=SOURCE_DB, warehouse_db=WAREHOUSE_DB)
    fresh_source(settings)
    settings = settings.model_copy(update={"lake_root": str(tmp_path / "lake"), "gx_root": str(tmp_path / "gx")})
    env = command_env(settings)

    def cycle(n: int) -> float:
        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "core.cli", "run", "all"], env=env, cwd=ROOT, capture_output=True, text=True
        )
        assert proc.returncode == 0, f"cycle {n}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}"
        return time.monotonic() - t0

    stream = subprocess.Popen(
        [sys.executable, "-m", "core.cli", *STREAM],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    seconds = []
    try:
        for n in range(1, CYCLES + 1):
            seconds.append(cycle(n))
            print(f"cycle {n}/{CYCLES}: {seconds[-1]:.0f}s", flush=True)
            assert stream.poll() is None, f"the stream died: {stream.stderr.read().decode()[-2000:]}"  # type: ignore[union-attr]
    finally:
        stream.send_signal(signal.SIGINT)  # finishes its running batch, then stops
        stream.wait(120)
    time.sleep(2)  # the horizon passes the last batch's transaction
    cycle(CYCLES + 1)

    rows: list[tuple[Any, ...]] = []
    lost = 0
    with db.connect(settings, "admin", settings.source_db) as conn:
        for name, st in SOURCE_TABLES.items():
            pk = st.table.primary_key.columns.keys()[0]
            source = conn.exec_driver_sql(
                f"SELECT {pk}, _change_version::text::bigint, {st.key} FROM {SOURCE_SCHEMA}.{name}"
            ).all()
            bronze = spark.read.format("delta").load(table_path(settings, "bronze", name))
            versions = {(int(r[0]), int(r[1])) for r in bronze.select(pk, "_change_version").collect()}
            missing_in_bronze = sum(1 for r in source if (int(r[0]), int(r[1])) not in versions)

            key = TABLES[name].key
            source_keys = {str(r[2]) for r in source}

            def keys(path: str, key: str = key) -> set[str]:
                from delta.tables import DeltaTable

                if not DeltaTable.isDeltaTable(spark, path):
                    return set()
                return {str(r[0]) for r in spark.read.format("delta").load(path).select(key).distinct().collect()}

            silver_df = spark.read.format("delta").load(table_path(settings, "silver", name))
            dupes = silver_df.groupBy(key).count().where(F.col("count") > 1).count()
            silver = keys(table_path(settings, "silver", name))
            quarantine = keys(table_path(settings, "quarantine", name)) - silver
            held = keys(table_path(settings, "silver", f"_held_{name}")) - silver - quarantine
            accounted = silver | quarantine | held
            dropped = len(source) - len(source_keys)  # rows sharing a business key (planted duplicates)
            lost_here = missing_in_bronze + len(source_keys - accounted) + len(accounted - source_keys) + dupes
            lost += lost_here
            rows.append(
                (name, len(source), missing_in_bronze, len(silver), len(quarantine), len(held), dropped, lost_here)
            )

    header = f"{'table':<20} {'source':>7} {'¬bronze':>8} {'silver':>7} {'quarant.':>8} {'held':>5} {'dup rows':>8} {'lost':>5}"
    print("\n" + header)
    for r in rows:
        print(f"{r[0]:<20} {r[1]:>7} {r[2]:>8} {r[3]:>7} {r[4]:>8} {r[5]:>5} {r[6]:>8} {r[7]:>5}")
    print(f"{CYCLES + 1} cycles, median {sorted(seconds)[len(seconds) // 2]:.0f}s each while streaming")
    OUTCOMES.append(Outcome(f"soak: {CYCLES + 1} cycles while streaming", CYCLES + 1, 0, lost))
    assert lost == 0, rows
