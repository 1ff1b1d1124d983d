"""`ecom_publish`: when the marts have landed, load them into the warehouse ecom_dwh."""

from __future__ import annotations

from airflow.sdk import DAG

from orchestration.operators import EcomCommandOperator
from orchestration.pipeline import DEFAULT_ARGS, POOLS, layer_assets, run_command, run_params, start

with DAG(
    dag_id="ecom_publish",
    description="Gold marts → ecom_dwh.gold, atomically, with reconciliation",
    schedule=layer_assets("gold"),
    start_date=start(12, 40),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params=run_params("publish"),
    tags=["ecom", "publish", "warehouse"],
    doc_md="""
### ecom_publish
Runs `ecom run publish` once every gold mart Asset has a new event: each mart is loaded
into `ecom_dwh.gold.<table>` atomically (readers never see a half-loaded table) and
reconciled (row count, checksum). Updates one Asset per warehouse table.

* **One writer** — pool `ecom_publish` (1 slot), `max_active_runs=1`.
* **Credentials** — Connection `ecom_dwh` (login = the publisher role), else `ECOM_*` / `.env`.
* **Re-run alone** — trigger this DAG or `ecom run publish`.
""",
) as dag:
    EcomCommandOperator(
        task_id="run_publish",
        command=run_command("publish"),
        layer="publish",
        connection_id="ecom_dwh",
        role="publisher",
        pool=POOLS["publish"],
        outlets=layer_assets("publish"),
    )
