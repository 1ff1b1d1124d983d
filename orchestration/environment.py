"""The Airflow environment of this project, as `orchestration/airflow.sh env` prints it.

`airflow.sh` is the one place that configures Airflow (home, DAGs folder, executor, ports).
Python code that imports Airflow outside that script — tests, a notebook — applies this
environment first, so it sees the same configuration:

    os.environ.update(airflow_environment())   # before `import airflow`
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping
from pathlib import Path

SCRIPT = Path(__file__).resolve().with_name("airflow.sh")


def airflow_environment(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """`AIRFLOW_HOME` and the `AIRFLOW__*` settings that `airflow.sh` exports (with `overrides`
    applied to the script's own environment first, e.g. `ECOM_AIRFLOW_HOME`)."""
    env = {**os.environ, **(overrides or {})}
    out = subprocess.run([str(SCRIPT), "env"], env=env, capture_output=True, text=True, check=True).stdout
    result: dict[str, str] = {}
    for line in out.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            key, _, value = words[1].partition("=")
            result[key] = value
    return result
