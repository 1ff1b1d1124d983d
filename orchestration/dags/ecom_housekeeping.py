"""`ecom_housekeeping`: hourly, prune task logs (newest 5 runs per DAG); daily, `ecom maintain`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, CronTriggerTimetable, Param, task

from orchestration.operators import EcomCommandOperator
from orchestration.pipeline import DEFAULT_ARGS, POOLS, TIMEZONE, start

KEEP_RUNS = 5
MAINTAIN_HOUR = 2  # local hour (Asia/Kolkata) of the daily OPTIMIZE/VACUUM: a quiet time


@task
def prune_task_logs(keep: int = KEEP_RUNS) -> dict[str, Any]:
    """Delete task-log run folders beyond the newest `keep` per DAG."""
    from pathlib import Path

    from airflow.sdk import conf

    from orchestration.housekeeping import prune_task_logs as prune

    report = prune(Path(conf.get("logging", "base_log_folder")), keep=keep)
    return {"removed": len(report.removed), "mb_freed": round(report.bytes_freed / 1e6, 2), "kept": report.kept}


@task.short_circuit
def is_maintenance_hour(**context: Any) -> bool:
    """True once a day (the run at MAINTAIN_HOUR local time) or when triggered with maintain=true."""
    import pendulum

    if context["params"].get("maintain"):
        return True
    run_after = pendulum.instance(context["dag_run"].run_after).in_timezone(TIMEZONE)
    return run_after.hour == MAINTAIN_HOUR


with DAG(
    dag_id="ecom_housekeeping",
    description="Hourly task-log pruning; daily Delta OPTIMIZE + VACUUM (ecom maintain)",
    schedule=CronTriggerTimetable("7 * * * *", timezone=TIMEZONE),
    start_date=start(13, 7),
    catchup=False,
    max_active_runs=1,
    default_args={**DEFAULT_ARGS, "retries": 1},
    params={"maintain": Param(False, type="boolean", description="run `ecom maintain` now, whatever the hour")},
    tags=["ecom", "housekeeping", "maintenance"],
    doc_md=f"""
### ecom_housekeeping
* **Hourly** (minute 7): `prune_task_logs` keeps the newest {KEEP_RUNS} runs of task logs
  per DAG under Airflow's log folder (same as
  `.venv/bin/python -m orchestration.housekeeping --keep {KEEP_RUNS}`).
* **Daily** ({MAINTAIN_HOUR:02d}:07 {TIMEZONE}): `ecom maintain` — Delta OPTIMIZE, then VACUUM
  with a retention of at least 7 days (168 h), table by table under each table's writer
  lock (a table being written is skipped until the next day). Trigger with
  `{{"maintain": true}}` to run it now.
""",
) as dag:
    prune_task_logs()
    is_maintenance_hour() >> EcomCommandOperator(
        task_id="maintain",
        command="maintain",
        pool=POOLS["maintain"],
        execution_timeout=timedelta(hours=2),
    )
