"""Crashes: `ecom run <layer>` killed with SIGKILL at several points, then run again.

A reference lake is built first by clean runs over the same source. Then, in two more
lakes, every layer in turn is started as its own process (`ecom run <layer>`, its own JVM)
and killed with SIGKILL the moment a chosen point is observed from outside:

- lake A, "during the write": the first data file of the layer appears (Delta has not
  committed), and for publish, the first staging table is created (its load follows);
- lake B, "after a commit": a table's commit lands (bronze's watermark, silver's progress,
  the other tables are not written yet), and for publish, the first table is applied and
  committed and the next one's stage is created.

The layer is then run again (in this process), and must give what the clean run gave:
same rows (order-independent fingerprint of every business column), no duplicate key,
Delta tables that load, and a warehouse whose live tables are never partial.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from core.schema import SOURCE_TABLES
from tests.reliability.conftest import OUTCOMES, Outcome
from tests.support import command_env, fresh_source, wait_for_horizon

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DB, WAREHOUSE_DB = "ecom_db_reliability", "ecom_dwh_reliability"
LAYERS = ("bronze", "silver", "gold", "publish")
KEYS = {
    "bronze": {t: None for t in SOURCE_TABLES},  # append-only: versions repeat keys by design
    "silver": {
        "customers": "customer_id",
        "products": "product_id",
        "orders": "order_id",
        "order_items": "order_item_id",
        "clickstream_events": "event_id",
    },
}
KILL_WAIT_S = 300


# --- the world ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(pg_settings: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Its own source and warehouse databases with one generated batch (defects included)."""
    from core.settings import load_settings
    from generator.simulate import Spec
    from generator.stream import run_batch

    settings = load_settings(source_db=SOURCE_DB, warehouse_db=WAREHOUSE_DB, spark_shuffle_partitions=2)
    fresh_source(settings)
    run_batch(settings, Spec(customers=60, products=20, orders=200, events=2500, seed=21, defect_rate=0.05))
    run_batch(settings, Spec(customers=20, products=5, orders=150, events=1500, seed=22, defect_rate=0.05))
    wait_for_horizon(settings)  # bronze's first window holds both batches
    yield {"settings": settings, "tmp": tmp_path_factory.mktemp("reliability")}


def lake(world: dict[str, Any], name: str) -> Any:
    root = world["tmp"] / name
    return world["settings"].model_copy(update={"lake_root": str(root / "lake"), "gx_root": str(root / "gx")})


def run_in_process(spark: Any, settings: Any, layer: str) -> list[Any]:
    from core.ledger import new_run_id
    from core.runner import job_module

    return job_module(layer).run(spark, settings, run_id=new_run_id(layer))  # type: ignore[no-any-return]


def env_for(settings: Any) -> dict[str, str]:
    return command_env(settings, ECOM_SPARK_SHUFFLE_PARTITIONS="2")


# --- observing a run from outside ----------------------------------------------------------------
def files(root: Path, pattern: str) -> set[str]:
    return {str(p) for p in root.glob(pattern)} if root.exists() else set()


def new_file(root: Path, pattern: str) -> Callable[[], bool]:
    """True once a file matching `pattern` under `root` exists that did not when asked."""
    before = files(root, pattern)
    return lambda: bool(files(root, pattern) - before)


def warehouse_table_exists(settings: Any, table: str) -> Callable[[], bool]:
    """True once `table` exists in the warehouse (publish creates a stage right before loading it)."""
    import psycopg

    from core import db

    url = db.sqlalchemy_url(settings, "admin")
    conn = psycopg.connect(
        host=url.host,
        port=url.port,
        dbname=settings.warehouse_db,
        user=url.username,
        password=url.password,
        autocommit=True,
    )
    return lambda: conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]  # type: ignore[index,no-any-return]


def kill_when(settings: Any, layer: str, point: Callable[[], bool], log: Path) -> float:
    """Start `ecom run <layer>`, SIGKILL its process group when `point()` holds; seconds it ran."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "core.cli", "run", layer],
            env=env_for(settings),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the JVM too
        )
    t0 = time.monotonic()
    try:
        while not point():
            if proc.poll() is not None:
                pytest.fail(
                    f"`ecom run {layer}` ended (exit {proc.returncode}) before the kill point:\n{log.read_text()}"
                )
            if time.monotonic() - t0 > KILL_WAIT_S:
                pytest.fail(f"the kill point of `ecom run {layer}` was not reached in {KILL_WAIT_S}s")
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(60)
    assert proc.returncode == -signal.SIGKILL
    return time.monotonic() - t0


# --- comparing lakes --------------------------------------------------------------------------
def fingerprint(spark: Any, path: str) -> tuple[int, int]:
    """(rows, Σ xxhash64 of the business columns): order-independent, blind to run metadata."""
    from pyspark.sql import functions as F

    df = spark.read.format("delta").load(path)
    cols = [c for c in df.columns if not c.startswith("_") or c in ("_change_version", "_reasons")]
    row = df.agg(F.count(F.lit(1)), F.sum(F.xxhash64(*cols).cast("decimal(38,0)"))).first()
    return int(row[0]), int(row[1] or 0)


def layer_tables(layer: str) -> dict[str, list[str]]:
    """{lake database: tables} a layer writes."""
    from gold.marts.registry import MARTS
    from silver.contracts import TABLES

    if layer == "bronze":
        return {"bronze": list(SOURCE_TABLES)}
    if layer == "silver":
        return {"silver": list(TABLES)}
    return {"gold": list(MARTS)}


def compare(spark: Any, got: Any, ref: Any, layer: str) -> int:
    """Rows lost or doubled against the reference; asserts equality and unique keys."""
    from pyspark.sql import functions as F

    from core.lake import table_path

    off = 0
    for database, tables in layer_tables(layer).items():
        for t in tables:
            mine, theirs = table_path(got, database, t), table_path(ref, database, t)
            a, b = fingerprint(spark, mine), fingerprint(spark, theirs)
            off += abs(a[0] - b[0])
            assert a == b, f"{database}.{t}: {a} after the crash and rerun, {b} in the clean run"
            key = KEYS.get(layer, {}).get(t)
            if key:
                dup = spark.read.format("delta").load(mine).groupBy(key).count().where(F.col("count") > 1).count()
                assert dup == 0, f"{database}.{t}: {dup} duplicate {key}"
    return off


def warehouse_state(settings: Any) -> dict[str, tuple[Any, ...]]:
    """Count and checksum of every live warehouse table (the publisher's own reconciliation query)."""
    from core import db
    from gold import publish
    from gold.marts.registry import MARTS

    dialect = publish.Dialect(settings.dialect)
    with db.connect(settings, "publisher") as conn:
        return {
            n: tuple(conn.exec_driver_sql(dialect.checksum(n, list(m.key), publish.money_columns(m))).one())
            for n, m in MARTS.items()
        }


# --- the scenarios ------------------------------------------------------------------------------
def test_clean_reference_run(spark: Any, world: dict[str, Any]) -> None:  # runs first: the others compare to it
    ref = lake(world, "reference")
    for layer in LAYERS:
        records = run_in_process(spark, ref, layer)
        assert all(r.status in ("succeeded", "skipped") for r in records), [(r.table_name, r.message) for r in records]

    def contents() -> dict[str, Any]:
        from core.lake import table_path

        lake_tables = {
            f"{database}.{t}": fingerprint(spark, table_path(ref, database, t))
            for layer in ("bronze", "silver", "gold")
            for database, tables in layer_tables(layer).items()
            for t in tables
        }
        return {**lake_tables, **{f"warehouse {n}": v for n, v in warehouse_state(ref).items()}}

    before = contents()
    again = {layer: run_in_process(spark, ref, layer) for layer in LAYERS}  # a rerun: nothing new
    assert sum(r.rows_out for r in again["bronze"]) == 0  # bronze appends nothing
    assert sum(r.rows_out for r in again["silver"]) == 0
    after = contents()
    changed = {t: (before[t], after[t]) for t in before if before[t] != after[t]}
    assert not changed, f"a rerun changed table content: {changed}"
    world["reference"] = ref
    OUTCOMES.append(
        Outcome(f"clean run, then every layer again ({len(before)} tables identical)", 2 * len(LAYERS), 0, 0)
    )


POINTS: dict[str, dict[str, Callable[[Any], Callable[[], bool]]]] = {
    "during the write": {
        "bronze": lambda s: new_file(Path(s.lake_root) / "bronze", "**/*.parquet"),
        "silver": lambda s: new_file(Path(s.lake_root) / "silver", "**/*.parquet"),
        "gold": lambda s: new_file(Path(s.lake_root) / "gold", "**/*.parquet"),
        "publish": lambda s: warehouse_table_exists(s, "gold.customer_360__stage"),
    },
    "after a commit": {
        "bronze": lambda s: new_file(Path(s.lake_root) / "bronze" / "orders" / "_delta_log", "*.json"),
        "silver": lambda s: new_file(Path(s.lake_root) / "silver" / "orders" / "_delta_log", "*.json"),
        "gold": lambda s: new_file(Path(s.lake_root) / "gold" / "sessions" / "_delta_log", "*.json"),
        # customer_360 applied and committed, the next table's stage being loaded
        "publish": lambda s: warehouse_table_exists(s, "gold.sessions__stage"),
    },
}


@pytest.mark.parametrize("point", list(POINTS))
def test_kill_9_then_rerun_equals_the_clean_run(spark: Any, world: dict[str, Any], point: str) -> None:
    ref = world.get("reference")
    if ref is None:
        pytest.fail("the clean reference run did not complete: see test_clean_reference_run")
    crashed = lake(world, point.replace(" ", "-"))
    logs = Path(crashed.lake_root).parent
    logs.mkdir(parents=True, exist_ok=True)
    lost = 0
    for layer in LAYERS:
        before = warehouse_state(crashed) if layer == "publish" else None
        seconds = kill_when(crashed, layer, POINTS[point][layer](crashed), logs / f"{layer}.log")
        if before is not None:  # the live tables: whole, as before the killed publish
            assert warehouse_state(crashed) == before
        print(f"{layer}: killed {point} after {seconds:.1f}s; running it again")
        records = run_in_process(spark, crashed, layer)
        assert all(r.status in ("succeeded", "skipped") for r in records), [(r.table_name, r.message) for r in records]
        if layer == "publish":
            from gold import publish
            from gold.marts.registry import MARTS

            for name, mart in MARTS.items():
                gold_df = spark.read.format("delta").load(f"{crashed.lake_root}/gold/{name}")
                expected = publish.spark_checksum(gold_df, mart)
                got = warehouse_state(crashed)[name]
                lost += abs(expected.rows - int(got[0]))
                assert int(got[0]) == expected.rows and int(got[1] or 0) == expected.key_hash, name
        else:
            lost += compare(spark, crashed, ref, layer)
    OUTCOMES.append(Outcome(f"kill -9 {point}, each layer, then rerun", 2 * len(LAYERS), 0, lost))
    assert lost == 0


def test_two_runs_of_a_layer_at_once_are_refused_or_serialised(spark: Any, world: dict[str, Any]) -> None:
    """Two `ecom run gold --full-refresh` at once on one lake: a mart one holds is refused to
    the other with a message naming the holder; the tables load and hold what they held."""
    ref = world.get("reference")
    if ref is None:
        pytest.fail("the clean reference run did not complete: see test_clean_reference_run")
    before = {t: fingerprint(spark, f"{ref.lake_root}/gold/{t}") for t in layer_tables("gold")["gold"]}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "core.cli", "run", "gold", "--full-refresh"],
            env=env_for(ref),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    codes = [p.returncode for p in procs]
    # A mart held by one run is refused to the other (which goes on with the next mart), so
    # both may exit non-zero: every refusal must name the holder, and nothing be corrupted.
    for code, out in zip(codes, outputs, strict=True):
        if code != 0:
            assert "being written by" in out, out[-3000:]
    after = {t: fingerprint(spark, f"{ref.lake_root}/gold/{t}") for t in before}
    assert after == before
    OUTCOMES.append(Outcome("two gold runs at once (one refused or both serialised)", 2, 0, 0))


def test_the_pipeline_runs_unchanged_on_separate_executor_jvms(spark: Any, world: dict[str, Any]) -> None:
    """`ecom run all` on Spark master `local-cluster[2,1,1024]` (two executor JVMs, as on a real
    cluster) gives the clean run's lake: no step depends on driver-local state."""
    ref = world.get("reference")
    if ref is None:
        pytest.fail("the clean reference run did not complete: see test_clean_reference_run")
    cluster = lake(world, "local-cluster")
    env = {**env_for(cluster), "ECOM_SPARK_MASTER": "local-cluster[2,1,1024]"}
    proc = subprocess.run(
        [sys.executable, "-m", "core.cli", "run", "all"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lost = sum(compare(spark, cluster, ref, layer) for layer in ("bronze", "silver", "gold"))
    OUTCOMES.append(Outcome("the whole pipeline on local-cluster[2,1,1024]", 1, 0, lost))
