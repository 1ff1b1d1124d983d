"""`ecom_gold`: when silver has landed, refresh the marts incrementally."""

from __future__ import annotations

from airflow.sdk import DAG

from orchestration.operators import EcomCommandOperator
from orchestration.pipeline import DEFAULT_ARGS, POOLS, layer_assets, run_command, run_params, start

with DAG(
    dag_id="ecom_gold",
    description="Silver → gold marts (customer 360, sessions, daily sales, product performance)",
    schedule=layer_assets("silver"),
    start_date=start(12, 40),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params=run_params("gold"),
    tags=["ecom", "gold", "layer"],
    doc_md="""
### ecom_gold
Runs `ecom run gold` once every silver table Asset has a new event: the marts
`gold.customer_360`, `gold.sessions`, `gold.daily_sales` and `gold.product_performance`
are refreshed for the keys touched since the last run, gated by the gold checkpoint.
Updates one Asset per mart (figures from `ops.runs` in the event extra); those schedule
**ecom_publish**.

* **One writer** — pool `ecom_gold` (1 slot), `max_active_runs=1`, and the table locks.
* **Re-run alone** — trigger this DAG (params `full_refresh`, `tables`) or `ecom run gold`.
""",
) as dag:
    EcomCommandOperator(
        task_id="run_gold",
        command=run_command("gold"),
        layer="gold",
        pool=POOLS["gold"],
        outlets=layer_assets("gold"),
    )
