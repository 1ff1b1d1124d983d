"""`dag.test()` of the DAGs against real components: PostgreSQL, Spark, Delta.

Each DAG runs in this process, on the project's Airflow metadata DB (prepared by
`orchestration/airflow.sh init`), its task running the real `ecom` command. The data path
is isolated: its own databases on the local cluster (`ecom_db_airflow_test`,
`ecom_dwh_airflow_test`) and a temporary lake, so the tests never read the shared ecom_db.

The chain test runs the whole path generator → bronze → silver → gold → publish, one
`dag.test()` per DAG in the order their Assets chain them, and checks each layer's Asset
events and their figures. A layer whose job is missing fails its DAG (`ecom` exits 3, not
retried), so the test fails; it never skips.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestration.environment import SCRIPT, airflow_environment

os.environ.update(airflow_environment())

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DB, WAREHOUSE_DB = "ecom_db_airflow_test", "ecom_dwh_airflow_test"
TINY_BATCH = {"customers": "8", "products": "4", "orders": "12", "events": "150"}
LAYER_DAGS = {"bronze": "ecom_bronze", "silver": "ecom_silver", "gold": "ecom_gold", "publish": "ecom_publish"}


def _live_components(home: Path) -> list[str]:
    alive = []
    for pidfile in (home / "run").glob("*.pid"):
        try:
            os.kill(int(pidfile.read_text().strip()), 0)
        except (ValueError, OSError):
            continue
        alive.append(pidfile.stem)
    return alive


@pytest.fixture(scope="module")
def airflow_db() -> Path:
    """The project's metadata DB, migrated; no live scheduler on it (it would run our TIs too)."""
    home = Path(os.environ["AIRFLOW_HOME"])
    live = _live_components(home)
    if live:
        pytest.fail(f"Airflow is running from {home} ({', '.join(live)}): stop it first (make airflow-down)")
    if not (home / "airflow.db").exists():
        subprocess.run([str(SCRIPT), "init"], check=True, timeout=600)
    return home


@pytest.fixture(scope="module")
def pipeline_env(pg_settings: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Own source and warehouse databases, a fresh lake, tiny generator volumes."""
    from core import dbinit
    from core.settings import load_settings

    settings = load_settings(source_db=SOURCE_DB, warehouse_db=WAREHOUSE_DB)
    dbinit.init(settings, echo=lambda _msg: None)
    lake = tmp_path_factory.mktemp("airflow-lake") / "lake"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ECOM_SOURCE_DB", SOURCE_DB)
        mp.setenv("ECOM_WAREHOUSE_DB", WAREHOUSE_DB)
        mp.setenv("ECOM_LAKE_ROOT", str(lake))
        mp.setenv("ECOM_GX_ROOT", str(lake.parent / "gx"))  # checkpoint results stay out of expectations/
        mp.setenv("ECOM_SPARK_SHUFFLE_PARTITIONS", "2")
        mp.delenv("ECOM_WEBHOOK_URL", raising=False)
        for name, value in TINY_BATCH.items():
            mp.setenv(f"AIRFLOW_VAR_ECOM_GENERATE_{name.upper()}", value)
        mp.setenv("AIRFLOW_VAR_ECOM_GENERATE_ARGS", "--seed 9")
        yield load_settings(lake_root=str(lake))


@pytest.fixture(scope="module")
def dagbag(airflow_db: Path) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "orchestration" / "dags"))
    assert not bag.import_errors
    return bag


def run_dag(dagbag: Any, dag_id: str) -> tuple[Any, float]:
    """`dag.test()` one DAG; the finished DagRun and how long it took."""
    t0 = time.monotonic()
    dag_run = dagbag.get_dag(dag_id).test()
    return dag_run, time.monotonic() - t0


def task_states(dag_run: Any) -> dict[str, tuple[str, int]]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id).all()
        return {ti.task_id: (str(ti.state), ti.try_number) for ti in tis}


def asset_events(dag_run: Any) -> dict[str, dict[str, Any]]:
    """The Asset events a run emitted: {asset name: extra}."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(AssetModel.name, AssetEvent.extra)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .filter(AssetEvent.source_dag_id == dag_run.dag_id, AssetEvent.source_run_id == dag_run.run_id)
            .all()
        )
    return {name: dict(extra or {}) for name, extra in rows}


def source_count(settings: Any, table: str) -> int:
    import sqlalchemy as sa

    from core import db

    with db.connect(settings, "admin", SOURCE_DB) as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM shop.{table}")).scalar_one())


def test_synth_stream_writes_a_tiny_batch(dagbag: Any, pipeline_env: Any) -> None:
    before = source_count(pipeline_env, "orders")
    dag_run, seconds = run_dag(dagbag, "synth_stream_5min")
    print(f"synth_stream_5min: {dag_run.state} in {seconds:.0f}s")
    assert str(dag_run.state) == "success", task_states(dag_run)
    assert source_count(pipeline_env, "orders") > before


def test_chain_generator_bronze_silver_gold_publish(dagbag: Any, pipeline_env: Any) -> None:
    """Each DAG in the order its Assets chain them; a missing layer fails here (exit 3)."""
    from orchestration.pipeline import layer_assets

    dag_run, seconds = run_dag(dagbag, "synth_stream_5min")
    print(f"synth_stream_5min: {dag_run.state} in {seconds:.0f}s")
    assert str(dag_run.state) == "success", task_states(dag_run)
    for layer, dag_id in LAYER_DAGS.items():
        dag_run, seconds = run_dag(dagbag, dag_id)
        print(f"{dag_id}: {dag_run.state} in {seconds:.0f}s")
        assert str(dag_run.state) == "success", f"{dag_id}: {task_states(dag_run)}"
        events = asset_events(dag_run)
        assert set(events) == {a.name for a in layer_assets(layer)}, dag_id
        for name, extra in events.items():
            assert extra["layer"] == layer and extra["status"] in ("succeeded", "skipped"), (name, extra)
            assert isinstance(extra["rows_written"], int), (name, extra)
        if layer == "bronze":
            written = {name: extra["rows_written"] for name, extra in events.items()}
            assert written["bronze.orders"] >= 1, written
            assert events["bronze.orders"]["delta_version"] is not None
