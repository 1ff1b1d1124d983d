"""The pieces the DAGs are made of: command templates, Connection mapping, alerts, ledger reading."""

from __future__ import annotations

import http.server
import json
import os
import shlex
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from orchestration.environment import airflow_environment

os.environ.update(airflow_environment())  # the project's Airflow configuration, before Airflow loads

from orchestration import alerts
from orchestration.operators import NO_RETRY_EXIT_CODES, connection_env, ecom_argv, task_env
from orchestration.pipeline import GOLD_TABLES, SOURCE_TABLES, layer_assets, run_command, table_of


# --- command templates -----------------------------------------------------------------------
class FakeVariables:
    """`var.value` in a template: `get(key, default)` from a dict."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)


def render(template: str, **context: Any) -> list[str]:
    import jinja2

    return shlex.split(jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(template).render(**context))


def test_run_command_passes_the_params_as_ecom_run_flags() -> None:
    assert render(run_command("silver"), params={"full_refresh": False, "tables": ""}) == ["run", "silver"]
    assert render(run_command("bronze"), params={"full_refresh": True, "tables": "orders,customers"}) == [
        "run",
        "bronze",
        "--full-refresh",
        "--tables",
        "orders,customers",
    ]


def test_generate_volumes_come_from_variables_with_defaults() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "synth", Path(__file__).resolve().parents[2] / "orchestration/dags/synth_stream_5min.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    defaults = render(module.GENERATE, var={"value": FakeVariables({})})
    assert defaults == ["generate", "--customers", "20", "--products", "5", "--orders", "100", "--events", "1000"]
    chosen = render(
        module.GENERATE,
        var={"value": FakeVariables({"ecom_generate_orders": "7", "ecom_generate_args": "--seed 42"})},
    )
    assert chosen[chosen.index("--orders") + 1] == "7"
    assert chosen[-2:] == ["--seed", "42"]


def test_assets_are_named_like_the_catalog() -> None:
    assert [a.name for a in layer_assets("bronze")] == [f"bronze.{t}" for t in SOURCE_TABLES]
    assert [a.uri for a in layer_assets("gold")] == [f"ecom://lake/gold/{t}" for t in GOLD_TABLES]
    assert [a.name for a in layer_assets("publish")] == [f"ecom_dwh.gold.{t}" for t in GOLD_TABLES]
    assert [table_of(a) for a in layer_assets("publish")] == list(GOLD_TABLES)


# --- the command's environment ---------------------------------------------------------------
def test_connection_maps_onto_the_settings_of_its_role() -> None:
    env = connection_env(
        "extractor",
        conn_type="postgres",
        host="db.internal",
        port=5433,
        schema="shop_db",
        login="extract_bot",
        password="s3cr3t",  # pragma: allowlist secret
        extra={"ecom_pg_sslmode": "require", "ignored": "x", "ECOM_MSSQL_ENCRYPT": True},
    )
    assert env == {
        "ECOM_DIALECT": "postgresql",
        "ECOM_DB_HOST": "db.internal",
        "ECOM_DB_PORT": "5433",
        "ECOM_SOURCE_DB": "shop_db",
        "ECOM_EXTRACTOR_USER": "extract_bot",
        "ECOM_EXTRACTOR_PASSWORD": "s3cr3t",  # pragma: allowlist secret
        "ECOM_PG_SSLMODE": "require",
        "ECOM_MSSQL_ENCRYPT": "true",
    }


def test_the_publisher_connection_names_the_warehouse() -> None:
    env = connection_env(
        "publisher", conn_type="mssql", host="sql1", port=None, schema="dwh", login="pub", password=None
    )
    assert env == {
        "ECOM_DIALECT": "mssql",
        "ECOM_DB_HOST": "sql1",
        "ECOM_WAREHOUSE_DB": "dwh",
        "ECOM_PUBLISHER_USER": "pub",
    }


def test_an_unknown_role_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown role 'sa'"):
        connection_env("sa", conn_type=None, host=None, port=None, schema=None, login=None, password=None)


def test_task_env_keeps_the_worker_env_and_lets_overrides_win() -> None:
    env = task_env({"PATH": "/bin", "ECOM_DB_HOST": "old"}, {"ECOM_DB_HOST": "new"})
    assert env["PATH"] == "/bin"
    assert env["ECOM_DB_HOST"] == "new"
    assert env["NO_COLOR"] == "1" and env["GX_ANALYTICS_ENABLED"] == "false"


def test_ecom_is_the_console_script_of_this_environment(tmp_path: Path) -> None:
    python = tmp_path / "bin" / "python"
    python.parent.mkdir()
    assert ecom_argv(str(python)) == [str(python), "-m", "core.cli"]
    (tmp_path / "bin" / "ecom").touch()
    assert ecom_argv(str(python)) == [str(tmp_path / "bin" / "ecom")]


def test_exit_codes_that_a_retry_cannot_fix_match_core_errors() -> None:
    from core.errors import NotBuiltYetError, SettingsError

    assert set(NO_RETRY_EXIT_CODES) == {SettingsError.exit_code, NotBuiltYetError.exit_code}


# --- alerts ----------------------------------------------------------------------------------
def test_webhook_url_prefers_the_variable_and_refuses_other_schemes() -> None:
    env = {"ECOM_WEBHOOK_URL": "https://env.example/hook"}
    assert alerts.webhook_url("http://var.example/hook", env) == "http://var.example/hook"
    assert alerts.webhook_url(None, env) == "https://env.example/hook"
    assert alerts.webhook_url("", {}) is None
    assert alerts.webhook_url("file:///etc/passwd", env) is None


def _context(exc: BaseException) -> dict[str, Any]:
    ti = SimpleNamespace(dag_id="ecom_silver", task_id="run_silver", run_id="r1", try_number=3, max_tries=2)
    return {"ti": ti, "exception": exc, "logical_date": None}


def test_failure_payload_names_the_task_and_the_error() -> None:
    payload = alerts.failure_payload(_context(RuntimeError("checkpoint silver failed")))
    assert payload["dag_id"] == "ecom_silver" and payload["task_id"] == "run_silver"
    assert payload["try_number"] == 3
    assert payload["error"] == "RuntimeError: checkpoint silver failed"
    json.dumps(payload)


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local HTTP endpoint that records the JSON bodies posted to it."""
    received: list[dict[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/alerts", received
    server.shutdown()
    server.server_close()


def test_the_failure_callback_posts_the_alert(
    receiver: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, received = receiver
    monkeypatch.setattr(alerts, "_variable_url", lambda: None)
    monkeypatch.setenv("ECOM_WEBHOOK_URL", url)
    alerts.alert_on_failure(_context(ValueError("boom")))
    assert len(received) == 1
    assert received[0]["event"] == "task_failed" and received[0]["error"] == "ValueError: boom"


def test_the_failure_callback_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alerts, "_variable_url", lambda: "http://127.0.0.1:9/unreachable")
    alerts.alert_on_failure(_context(ValueError("boom")))  # connection refused: logged, not raised

    def explode(*_: Any, **__: Any) -> None:
        raise RuntimeError("poster crashed")

    monkeypatch.setattr(alerts, "post_alert", explode)
    alerts.alert_on_failure({})  # even with an empty context


def test_the_alert_timeout_is_capped_at_ten_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def poster(url: str, payload: dict[str, Any], *, timeout: float = 5.0, retries: int = 3) -> bool:
        seen.update(timeout=timeout, retries=retries)
        return True

    monkeypatch.setattr("core.webhook.post_json", poster)
    alerts.post_alert("https://x.example/h", {"a": 1}, timeout=60)
    assert seen == {"timeout": 10.0, "retries": 0}


# --- the run summary becomes Asset event extras ---------------------------------------------
FAKE_ECOM = """#!/bin/sh
# Stands in for `ecom run bronze --summary-json FILE`: writes the summary the runner writes.
echo "$@" > "$(dirname "$0")/argv"
while [ "$#" -gt 0 ]; do
  if [ "$1" = "--summary-json" ]; then cat "$(dirname "$0")/summary.json" > "$2"; fi
  shift
done
echo "› bronze run bronze-1"
"""


class OutletEvents(dict):  # type: ignore[type-arg]
    """`context["outlet_events"]`: an accessor per Asset with a settable `extra`."""

    def __missing__(self, asset: Any) -> SimpleNamespace:
        self[asset] = SimpleNamespace(extra=None)
        return self[asset]


def test_the_run_summary_becomes_the_extra_of_each_asset_event(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestration import operators
    from orchestration.operators import EcomCommandOperator

    rows = [
        {"run_id": "bronze-1", "layer": "bronze", "table_name": "orders", "status": "succeeded", "rows_in": 5,
         "rows_out": 5, "rows_quarantined": 0, "delta_version": 3, "checkpoint": "passed", "seconds": 1.5},
        {"run_id": "bronze-1", "layer": "bronze", "table_name": "customers", "status": "skipped", "rows_in": 0,
         "rows_out": 0, "rows_quarantined": 0, "delta_version": None, "checkpoint": None, "seconds": 0.2},
    ]  # fmt: skip
    (tmp_path / "summary.json").write_text(json.dumps({"ok": True, "error": None, "tables": rows}))
    fake = tmp_path / "ecom"
    fake.write_text(FAKE_ECOM)
    fake.chmod(0o755)
    monkeypatch.setattr(operators, "ecom_argv", lambda: [str(fake)])

    op = EcomCommandOperator(task_id="run_bronze", command="run bronze", layer="bronze", outlets=layer_assets("bronze"))
    events = OutletEvents()
    result = op.execute({"outlet_events": events})  # type: ignore[arg-type]

    argv = (tmp_path / "argv").read_text().split()
    assert argv[:3] == ["run", "bronze", "--summary-json"]
    extras = {asset.name: accessor.extra for asset, accessor in events.items()}
    assert set(extras) == {a.name for a in layer_assets("bronze")}
    assert extras["bronze.orders"] == {
        "layer": "bronze",
        "table": "orders",
        "ecom_run_id": "bronze-1",
        "status": "succeeded",
        "rows_in": 5,
        "rows_written": 5,
        "rows_quarantined": 0,
        "delta_version": 3,
        "checkpoint": "passed",
        "seconds": 1.5,
    }
    assert extras["bronze.customers"]["status"] == "skipped"
    assert extras["bronze.products"]["status"] == "not run"  # e.g. `--tables orders,customers`
    assert result["events"] == extras and result["exit_code"] == 0
    json.dumps(extras)


def test_commands_other_than_run_get_no_summary_flag() -> None:
    from orchestration.operators import EcomCommandOperator

    assert not EcomCommandOperator(task_id="m", command="maintain")._annotates()
    assert not EcomCommandOperator(task_id="g", command="generate --orders 5", layer="bronze")._annotates()


# --- process hygiene -------------------------------------------------------------------------
class Interrupted(BaseException):
    """Stands in for AirflowTaskTimeout / AirflowTaskTerminated (both BaseException)."""


class InterruptingLog:
    """A task logger that raises when the command prints `ready`, like a timeout would."""

    def info(self, msg: str, *args: Any) -> None:
        if args and args[0] == "ready":
            raise Interrupted

    warning = info


def test_a_timed_out_command_leaves_no_process_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import psutil

    from orchestration.operators import EcomCommandOperator

    monkeypatch.setattr(EcomCommandOperator, "log", property(lambda _self: InterruptingLog()))
    op = EcomCommandOperator(task_id="probe", command="unused")
    pids = tmp_path / "pids"
    script = f"sleep 120 & echo $! > {pids}; sh -c 'sleep 120' & echo $! >> {pids}; echo ready; wait"
    with pytest.raises(Interrupted):
        op._run(["sh", "-c", script], dict(os.environ))
    for pid in map(int, pids.read_text().split()):
        alive = psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        assert not alive, f"pid {pid} survived"


@pytest.mark.parametrize(("code", "retried"), [(1, True), (2, False), (3, False), (137, True)])
def test_a_failed_command_fails_the_task_retried_only_when_it_may_help(code: int, retried: bool) -> None:
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    from orchestration.operators import EcomCommandOperator

    op = EcomCommandOperator(task_id="probe", command="run silver")
    with pytest.raises(AirflowException) as raised:
        op._fail(code, ["run", "silver"], ["› silver run", "error: silver: checkpoint silver failed", ""])
    assert isinstance(raised.value, AirflowFailException) is not retried
    assert f"`ecom run silver` exited with {code}: error: silver: checkpoint silver failed" in str(raised.value)
