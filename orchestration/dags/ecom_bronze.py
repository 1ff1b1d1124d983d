"""`ecom_bronze`: every 10 minutes, changed source rows → append-only bronze (one Asset per table)."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, CronTriggerTimetable

from orchestration.operators import EcomCommandOperator
from orchestration.pipeline import DEFAULT_ARGS, POOLS, TIMEZONE, layer_assets, run_command, run_params, start

with DAG(
    dag_id="ecom_bronze",
    description="Incremental JDBC extraction from ecom_db into bronze Delta tables",
    schedule=CronTriggerTimetable("*/10 * * * *", timezone=TIMEZONE, interval=timedelta(minutes=10)),
    start_date=start(12, 40),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params=run_params("bronze"),
    tags=["ecom", "bronze", "layer"],
    doc_md="""
### ecom_bronze
Runs `ecom run bronze` every 10 minutes: rows changed since each table's watermark are
appended to `bronze.<table>`, gated by the bronze checkpoint. On success it updates one
Asset per bronze table (`bronze.customers` … `bronze.clickstream_events`); each event's
extra carries the table's figures from `ops.runs` (`rows_written`, `delta_version`,
`checkpoint`, `ecom_run_id`). Those events schedule **ecom_silver**.

* **One writer** — pool `ecom_bronze` (1 slot), `max_active_runs=1`, and the table locks.
* **Credentials** — Connection `ecom_db` (login = the extractor role), else `ECOM_*` / `.env`.
* **Params** — `full_refresh` (re-extract everything), `tables` (comma-separated subset).
* **Backfill** — bronze is watermark-driven: a backfill re-runs extraction per interval
  (idempotent); to rebuild history trigger with `{"full_refresh": true}`.
""",
) as dag:
    EcomCommandOperator(
        task_id="run_bronze",
        command=run_command("bronze"),
        layer="bronze",
        connection_id="ecom_db",
        role="extractor",
        pool=POOLS["bronze"],
        outlets=layer_assets("bronze"),
    )
