"""DAG integrity: every file in orchestration/dags imports, and the DAGs say what DESIGN.md says.

Parsing needs no database: the DagBag only imports the files. The configuration is the one
`orchestration/airflow.sh` exports, applied before Airflow is imported.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any

import pytest

from orchestration.environment import airflow_environment

os.environ.update(airflow_environment())

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "orchestration" / "dags"
TZ = "Asia/Kolkata"
DAG_IDS = {"synth_stream_5min", "ecom_bronze", "ecom_silver", "ecom_gold", "ecom_publish", "ecom_housekeeping"}
LAYER_DAGS = ("ecom_bronze", "ecom_silver", "ecom_gold", "ecom_publish")


@pytest.fixture(scope="module")
def dagbag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


@pytest.fixture(scope="module")
def dags(dagbag: Any) -> dict[str, Any]:
    assert not dagbag.import_errors, f"DAG files failed to import: {dagbag.import_errors}"
    return dict(dagbag.dags)


def test_every_dag_file_imports_without_error(dagbag: Any) -> None:
    assert dagbag.import_errors == {}
    assert len(list(DAGS.glob("*.py"))) == len(DAG_IDS), "one DAG per file"


def test_the_six_dag_ids_of_the_design(dags: dict[str, Any]) -> None:
    assert set(dags) == DAG_IDS


@pytest.mark.parametrize(
    ("dag_id", "cron", "start"),
    [
        ("synth_stream_5min", "*/5 * * * *", (12, 35)),
        ("ecom_bronze", "*/10 * * * *", (12, 40)),
        ("ecom_housekeeping", "7 * * * *", (13, 7)),
    ],
)
def test_time_schedules_and_start_dates_in_kolkata(
    dags: dict[str, Any], dag_id: str, cron: str, start: tuple[int, int]
) -> None:
    from airflow.sdk import CronTriggerTimetable

    dag = dags[dag_id]
    assert isinstance(dag.timetable, CronTriggerTimetable)
    assert dag.timetable.expression == cron
    assert dag.timetable.timezone == TZ
    local = dag.start_date.in_timezone(TZ)
    assert (local.year, local.month, local.day, local.hour, local.minute) == (2025, 9, 8, *start)


def test_every_dag_runs_in_kolkata_without_catchup_one_run_at_a_time(dags: dict[str, Any]) -> None:
    for dag in dags.values():
        assert str(dag.timezone.name) == TZ, dag.dag_id
        assert dag.catchup is False, dag.dag_id
        assert dag.max_active_runs == 1, dag.dag_id
        assert dag.start_date.in_timezone(TZ).date().isoformat() == "2025-09-08", dag.dag_id


def test_tags_and_docs_on_every_dag(dags: dict[str, Any]) -> None:
    for dag in dags.values():
        assert "ecom" in dag.tags, dag.dag_id
        assert len(dag.tags) >= 2, dag.dag_id
        assert dag.doc_md and dag.dag_id in dag.doc_md, dag.dag_id


def _asset_names(condition: Any) -> set[str]:
    """Names of the Assets in a schedule condition (Asset, AssetAll/AssetAny, nested)."""
    from airflow.sdk import Asset

    if condition is None:
        return set()
    if isinstance(condition, Asset):
        return {condition.name}
    return set().union(*(_asset_names(c) for c in condition.objects))


def test_layers_chain_by_assets_bronze_silver_gold_publish(dags: dict[str, Any]) -> None:
    produced = {d.dag_id: {a.name for t in d.tasks for a in t.outlets} for d in dags.values()}
    consumed = {d.dag_id: _asset_names(d.timetable.asset_condition) for d in dags.values()}
    tables = ["customers", "products", "orders", "order_items", "clickstream_events"]
    marts = ["customer_360", "sessions", "daily_sales", "product_performance"]
    assert produced["ecom_bronze"] == {f"bronze.{t}" for t in tables}
    assert produced["ecom_silver"] == {f"silver.{t}" for t in tables}
    assert produced["ecom_gold"] == {f"gold.{t}" for t in marts}
    assert produced["ecom_publish"] == {f"ecom_dwh.gold.{t}" for t in marts}
    assert consumed["ecom_silver"] == produced["ecom_bronze"]
    assert consumed["ecom_gold"] == produced["ecom_silver"]
    assert consumed["ecom_publish"] == produced["ecom_gold"]

    edges = {
        consumer: {producer for producer, out in produced.items() if out & needs}
        for consumer, needs in consumed.items()
    }
    assert {k: v for k, v in edges.items() if v} == {
        "ecom_silver": {"ecom_bronze"},
        "ecom_gold": {"ecom_silver"},
        "ecom_publish": {"ecom_gold"},
    }
    try:
        order = list(TopologicalSorter(edges).static_order())
    except CycleError as exc:  # pragma: no cover - the assertion message is the point
        pytest.fail(f"the Asset graph has a cycle: {exc}")
    assert [d for d in order if d in LAYER_DAGS] == list(LAYER_DAGS)


def test_asset_table_names_match_the_schema() -> None:
    from core.schema import SOURCE_TABLES
    from orchestration.pipeline import SOURCE_TABLES as DAG_TABLES

    assert list(DAG_TABLES) == list(SOURCE_TABLES)


def test_retries_back_off_and_failures_alert(dags: dict[str, Any]) -> None:
    from orchestration.alerts import alert_on_failure

    for dag in dags.values():
        for task in dag.tasks:
            where = f"{dag.dag_id}.{task.task_id}"
            assert task.retries >= 1, where
            assert task.retry_exponential_backoff >= 2, where
            assert task.max_retry_delay is not None, where
            callbacks = task.on_failure_callback
            callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
            assert alert_on_failure in callbacks, where


def test_one_writer_per_layer_pools_of_one_slot(dags: dict[str, Any]) -> None:
    pools = json.loads((ROOT / "orchestration" / "pools.json").read_text())
    assert all(spec["slots"] == 1 for spec in pools.values())
    expected = {
        "synth_stream_5min": "ecom_generate",
        "ecom_bronze": "ecom_bronze",
        "ecom_silver": "ecom_silver",
        "ecom_gold": "ecom_gold",
        "ecom_publish": "ecom_publish",
    }
    for dag_id, pool in expected.items():
        assert {t.pool for t in dags[dag_id].tasks} == {pool}, dag_id
    assert dags["ecom_housekeeping"].get_task("maintain").pool == "ecom_maintain"
    used = {t.pool for d in dags.values() for t in d.tasks} - {"default_pool"}
    assert used <= set(pools), f"pools missing from pools.json: {used - set(pools)}"


def test_tasks_run_ecom_commands_with_the_right_credentials(dags: dict[str, Any]) -> None:
    from orchestration.operators import EcomCommandOperator

    ops = {t.task_id: t for d in dags.values() for t in d.tasks if isinstance(t, EcomCommandOperator)}
    assert ops["generate_batch"].command.startswith("generate ")
    assert (ops["generate_batch"].connection_id, ops["generate_batch"].role) == ("ecom_db", "generator")
    assert (ops["run_bronze"].connection_id, ops["run_bronze"].role) == ("ecom_db", "extractor")
    assert (ops["run_publish"].connection_id, ops["run_publish"].role) == ("ecom_dwh", "publisher")
    assert ops["run_silver"].connection_id is None and ops["run_gold"].connection_id is None
    for layer in ("bronze", "silver", "gold", "publish"):
        assert ops[f"run_{layer}"].command.startswith(f"run {layer}")
        assert ops[f"run_{layer}"].layer == layer
    assert ops["maintain"].command == "maintain"


def test_no_secret_in_a_dag_file() -> None:
    literal_secret = re.compile(r"(password|passwd|secret|token)\w*\s*[=:]\s*['\"][^'\"]+['\"]", re.IGNORECASE)
    url_with_credentials = re.compile(r"\w+://[^/\s:@'\"]+:[^/\s@'\"]+@")
    for path in [*DAGS.glob("*.py"), *(ROOT / "orchestration").glob("*.py")]:
        text = path.read_text()
        assert not literal_secret.search(text), f"{path.name}: {literal_secret.search(text)}"
        assert not url_with_credentials.search(text), f"{path.name}: {url_with_credentials.search(text)}"


# Run in a fresh interpreter: settings, DB and network are all made unusable, and an audit
# hook records any attempt to reach them while the DAG files are parsed.
NO_IO_PROBE = textwrap.dedent(
    """
    import os, sys, json
    from airflow.dag_processing.dagbag import DagBag  # Airflow's own imports happen first

    events = []
    WATCHED = {"socket.connect", "socket.getaddrinfo", "subprocess.Popen", "os.system", "sqlite3.connect"}
    project = os.environ["PROBE_PROJECT"]

    def hook(event, args):
        if event in WATCHED:
            events.append(f"{event} {args[:2]!r}")
        elif event == "open" and isinstance(args[0], str):
            path = os.path.abspath(args[0])
            if path.startswith(project) and not path.endswith((".py", ".pyc")) and "__pycache__" not in path:
                events.append(f"open {path}")

    sys.addaudithook(hook)
    bag = DagBag(dag_folder=sys.argv[1])
    heavy = sorted(m for m in ("core.settings", "core.db", "pyspark", "psycopg", "pyodbc", "pymssql") if m in sys.modules)
    print(json.dumps({"dags": sorted(bag.dags), "errors": bag.import_errors, "events": events, "heavy": heavy}))
    """
)


def test_parsing_does_no_io(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PROBE_PROJECT": str(ROOT),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path}/missing/dir/airflow.db",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://203.0.113.1:9/execution/",
        "ECOM_DB_HOST": "203.0.113.1",  # TEST-NET: unroutable
        "ECOM_LAKE_ROOT": str(tmp_path / "no-lake"),
        "ECOM_HOME": str(tmp_path / "no-home"),
    }
    probe = tmp_path / "probe.py"
    probe.write_text(NO_IO_PROBE)
    out = subprocess.run(
        [sys.executable, str(probe), str(DAGS)], env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["errors"] == {}
    assert set(result["dags"]) == DAG_IDS
    assert result["events"] == [], "DAG parsing touched the outside world"
    assert result["heavy"] == [], "DAG parsing imported settings/Spark/DB drivers"
