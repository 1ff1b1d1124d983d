"""Airflow orchestration: thin DAGs that run the same `ecom` commands a person types.

`orchestration.pipeline` names the DAGs, Assets, pools and defaults; `orchestration.operators`
runs one `ecom` command; `orchestration.alerts` posts failure alerts; `orchestration.housekeeping`
prunes task logs; `orchestration.service` and `orchestration.environment` serve `airflow.sh`.
Nothing here does I/O at import time: DAG files import these modules.
"""
