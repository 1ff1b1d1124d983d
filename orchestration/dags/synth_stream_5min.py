"""`synth_stream_5min`: every 5 minutes the shop simulator writes one batch into ecom_db."""

from __future__ import annotations

from airflow.sdk import DAG, CronTriggerTimetable

from orchestration.operators import EcomCommandOperator
from orchestration.pipeline import DEFAULT_ARGS, POOLS, TIMEZONE, start

# Volumes per batch: Airflow Variables read when the task runs (never at parse time).
GENERATE = (
    "generate"
    " --customers {{ var.value.get('ecom_generate_customers', '20') }}"
    " --products {{ var.value.get('ecom_generate_products', '5') }}"
    " --orders {{ var.value.get('ecom_generate_orders', '100') }}"
    " --events {{ var.value.get('ecom_generate_events', '1000') }}"
    " {{ var.value.get('ecom_generate_args', '') }}"
)

with DAG(
    dag_id="synth_stream_5min",
    description="Simulated shop activity: one batch into ecom_db every 5 minutes",
    schedule=CronTriggerTimetable("*/5 * * * *", timezone=TIMEZONE),
    start_date=start(12, 35),
    catchup=False,
    max_active_runs=1,
    default_args={**DEFAULT_ARGS, "retries": 1},
    tags=["ecom", "generator", "source"],
    doc_md="""
### synth_stream_5min
Runs `ecom generate` (the shop simulator) once every 5 minutes: one committed batch of
customers, products, orders, order items and clickstream events into **ecom_db**, plus the
generator's webhook notification.

* **Volumes** — Airflow Variables, read at run time: `ecom_generate_customers` (20),
  `ecom_generate_products` (5), `ecom_generate_orders` (100), `ecom_generate_events` (1000),
  and `ecom_generate_args` for any other flag (e.g. `--seed 7`).
* **Credentials** — Connection `ecom_db` (login = the generator role), else `ECOM_*` / `.env`.
* **Same as** `ecom generate --customers 20 --products 5 --orders 100 --events 1000`.
""",
) as dag:
    EcomCommandOperator(
        task_id="generate_batch",
        command=GENERATE,
        connection_id="ecom_db",
        role="generator",
        pool=POOLS["generate"],
    )
