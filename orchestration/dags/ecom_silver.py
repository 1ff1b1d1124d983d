"""`ecom_silver`: when bronze has landed, dedupe, conform, validate and MERGE into silver."""

from __future__ import annotations

from airflow.sdk import DAG

from orchestration.operators import EcomCommandOperator
from orchestration.pipeline import DEFAULT_ARGS, POOLS, layer_assets, run_command, run_params, start

with DAG(
    dag_id="ecom_silver",
    description="Bronze → silver (latest valid version per key) and quarantine",
    schedule=layer_assets("bronze"),
    start_date=start(12, 40),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params=run_params("silver"),
    tags=["ecom", "silver", "layer"],
    doc_md="""
### ecom_silver
Runs `ecom run silver` once every bronze table Asset has a new event (each `ecom_bronze`
run updates all five). Rows that break a rule go to `quarantine.<table>`; the rest are
MERGEd into `silver.<table>`; a failed silver checkpoint fails the task (nothing promoted).
Updates one Asset per silver table, with `rows_written`, `rows_quarantined`,
`delta_version` in the event extra; those schedule **ecom_gold**.

* **One writer** — pool `ecom_silver` (1 slot), `max_active_runs=1`, and the table locks.
* **Re-run alone** — trigger this DAG (params `full_refresh`, `tables`) or `ecom run silver`.
""",
) as dag:
    EcomCommandOperator(
        task_id="run_silver",
        command=run_command("silver"),
        layer="silver",
        pool=POOLS["silver"],
        outlets=layer_assets("silver"),
    )
