"""`orchestration/airflow.sh`: the configuration it gives Airflow, without starting anything."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from orchestration.environment import SCRIPT, airflow_environment

ROOT = Path(__file__).resolve().parents[2]


def test_the_configuration_fits_two_cores_and_one_port() -> None:
    env = airflow_environment({"ECOM_AIRFLOW_HOME": "", "ECOM_AIRFLOW_PORT": "", "ECOM_AIRFLOW_PARALLELISM": ""})
    home = ROOT / "orchestration" / "airflow_home"
    assert env["AIRFLOW_HOME"] == str(home)
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(ROOT / "orchestration" / "dags")
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert 2 <= int(env["AIRFLOW__CORE__PARALLELISM"]) <= 4
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{home}/airflow.db"
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1" and env["AIRFLOW__API__PORT"] == "8085"
    assert env["AIRFLOW__API__BASE_URL"] == "http://127.0.0.1:8085"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8085/execution/"
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"].startswith(str(home))


def test_home_and_port_move_together(tmp_path: Path) -> None:
    env = airflow_environment({"ECOM_AIRFLOW_HOME": str(tmp_path), "ECOM_AIRFLOW_PORT": "8095"})
    assert env["AIRFLOW_HOME"] == str(tmp_path)
    assert env["AIRFLOW__API__BASE_URL"] == "http://127.0.0.1:8095"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8095/execution/"


def test_help_and_a_wrong_component() -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "ECOM_AIRFLOW_HOME": "/nonexistent/airflow-home"}
        return subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60, check=False)

    helped = run("--help")
    assert helped.returncode == 0
    for verb in ("init", "start", "stop", "status", "logs", "dags list"):
        assert verb in helped.stdout
    wrong = run("logs", "webserver")
    assert wrong.returncode != 0 and "unknown component 'webserver'" in wrong.stderr
