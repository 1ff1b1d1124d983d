"""`EcomCommandOperator`: run one `ecom` command — the one a person types — as an Airflow task.

Why an operator and not a BashOperator: the task builds the command's environment at run
time from an Airflow Connection (credentials never enter a DAG file, a rendered template
or the log), kills the command's whole process tree (the Spark JVM included) on timeout or
when the task is stopped, fails without retrying when a retry cannot help (exit 2: a bad
setting; exit 3: the step is not built yet), and turns the layer's run summary
(`ecom run <layer> --summary-json FILE`: one row per table, as recorded in `ops.runs`) into
the extras of its Asset events (rows written, Delta version, checkpoint).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

PROJECT_DIR = Path(__file__).resolve().parents[1]

# `ecom` exit codes that no retry can fix (core.errors): SettingsError, NotBuiltYetError.
NO_RETRY_EXIT_CODES = {2: "a setting is missing or wrong", 3: "this step is not built yet"}

DIALECTS = {"postgres": "postgresql", "postgresql": "postgresql", "mssql": "mssql"}
ROLES = ("admin", "generator", "extractor", "publisher")


def ecom_argv(python: str = sys.executable) -> list[str]:
    """The `ecom` console script of this environment (else `python -m core.cli`)."""
    script = Path(python).with_name("ecom")
    return [str(script)] if script.exists() else [python, "-m", "core.cli"]


def connection_env(
    role: str,
    *,
    conn_type: str | None,
    host: str | None,
    port: int | None,
    schema: str | None,
    login: str | None,
    password: str | None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Map an Airflow Connection onto the `ECOM_*` settings of the role that uses it.

    `ecom_db` (generator, extractor) and `ecom_dwh` (publisher): host, port and database
    become ECOM_DB_HOST / ECOM_DB_PORT / ECOM_SOURCE_DB (ECOM_WAREHOUSE_DB for the
    publisher), login and password the role's user and password; the connection type picks
    ECOM_DIALECT. Extra keys named `ecom_*` pass through (e.g. `ecom_pg_sslmode`).
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: expected one of {', '.join(ROLES)}")
    env: dict[str, str] = {}
    if conn_type and conn_type.lower() in DIALECTS:
        env["ECOM_DIALECT"] = DIALECTS[conn_type.lower()]
    if host:
        env["ECOM_DB_HOST"] = host
    if port:
        env["ECOM_DB_PORT"] = str(port)
    if schema:
        env["ECOM_WAREHOUSE_DB" if role == "publisher" else "ECOM_SOURCE_DB"] = schema
    if login:
        env[f"ECOM_{role.upper()}_USER"] = login
    if password:
        env[f"ECOM_{role.upper()}_PASSWORD"] = password
    for key, value in (extra or {}).items():
        if key.lower().startswith("ecom_") and value is not None:
            env[key.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


def task_env(base: Mapping[str, str], overrides: Mapping[str, str]) -> dict[str, str]:
    """The command's environment: the worker's, plain console output, then the overrides."""
    env = dict(base)
    env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    env.update({"GX_ANALYTICS_ENABLED": "false", "NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "160"})
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


def kill_tree(pid: int, timeout: float = 10.0) -> None:
    """Terminate a process and all its descendants (the Spark JVM too); kill what lingers."""
    import psutil

    try:
        parent = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    procs = [*parent.children(recursive=True), parent]
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=timeout)


class EcomCommandOperator(BaseOperator):
    """Run `ecom <command>` (a Jinja template, split like a shell would) in the project.

    :param command: the arguments after `ecom`, e.g. ``"run bronze"``; rendered at run time.
    :param layer: the layer whose `ops.runs` rows annotate this task's Asset events.
    :param connection_id: Airflow Connection mapped onto the settings of `role` (optional:
        without it, or when it does not exist, the `ECOM_*` environment and `.env` apply).
    :param role: the database role the command acts as (generator, extractor, publisher).
    """

    template_fields: Sequence[str] = ("command",)
    ui_color = "#e3f1e6"

    def __init__(
        self,
        *,
        command: str,
        layer: str | None = None,
        connection_id: str | None = None,
        role: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if connection_id and not role:
            raise ValueError(f"{kwargs.get('task_id')}: connection_id {connection_id!r} needs the role it logs in as")
        self.command = command
        self.layer = layer
        self.connection_id = connection_id
        self.role = role
        self._pid: int | None = None

    # -- run time -----------------------------------------------------------------------------
    def execute(self, context: Context) -> dict[str, Any]:
        args = shlex.split(self.command)
        env = task_env(os.environ, self._connection_overrides())
        with tempfile.TemporaryDirectory(prefix="ecom-task-") as scratch:
            summary = Path(scratch) / "summary.json" if self._annotates() else None
            argv = [*args, "--summary-json", str(summary)] if summary else args
            self.log.info("$ ecom %s", shlex.join(argv))
            code, tail = self._run([*ecom_argv(), *argv], env)
            if code != 0:
                self._fail(code, args, tail)
            rows = self._summary_rows(summary)
        extras = self._annotate(context, rows)
        return {"command": f"ecom {shlex.join(args)}", "exit_code": code, "events": extras}

    def on_kill(self) -> None:
        if self._pid is not None:
            self.log.info("stopping `ecom` (pid %s) and its children", self._pid)
            kill_tree(self._pid)

    def _run(self, argv: list[str], env: dict[str, str]) -> tuple[int, list[str]]:
        tail: deque[str] = deque(maxlen=30)
        proc = subprocess.Popen(
            argv,
            cwd=PROJECT_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
        )
        self._pid = proc.pid
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                line = line.rstrip()
                self.log.info("%s", line)
                tail.append(line)
            return proc.wait(), list(tail)
        finally:  # timeout, SIGTERM, any exception: leave no process behind
            if proc.poll() is None:
                kill_tree(proc.pid)
            self._pid = None

    def _fail(self, code: int, args: list[str], tail: list[str]) -> None:
        from airflow.sdk.exceptions import AirflowException, AirflowFailException

        last = next((line for line in reversed(tail) if line.strip()), "")
        message = f"`ecom {shlex.join(args)}` exited with {code}: {last}"
        if code in NO_RETRY_EXIT_CODES:
            raise AirflowFailException(f"{message} ({NO_RETRY_EXIT_CODES[code]}; not retried)")
        raise AirflowException(message)

    def _connection_overrides(self) -> dict[str, str]:
        if not self.connection_id or not self.role:
            return {}
        from airflow.sdk import Connection
        from airflow.sdk.exceptions import AirflowNotFoundException
        from airflow.sdk.log import mask_secret

        try:
            conn = Connection.get(self.connection_id)
        except AirflowNotFoundException:
            self.log.info("no Connection %r: the ECOM_* environment and .env apply", self.connection_id)
            return {}
        if conn.password:
            mask_secret(conn.password)
        values = connection_env(
            self.role,
            conn_type=conn.conn_type,
            host=conn.host,
            port=conn.port,
            schema=conn.schema,
            login=conn.login,
            password=conn.password,
            extra=conn.extra_dejson,
        )
        self.log.info("Connection %r → %s", self.connection_id, ", ".join(sorted(values)))
        return values

    def _annotates(self) -> bool:
        """Does this task turn a run summary into Asset event extras? (`ecom run` with outlets)"""
        return bool(self.layer and self.outlets and self.command.split()[:1] == ["run"])

    def _summary_rows(self, summary: Path | None) -> list[dict[str, Any]]:
        if summary is None:
            return []
        try:
            return list(json.loads(summary.read_text())["tables"])
        except (OSError, ValueError, KeyError, TypeError) as exc:  # figures are a bonus; the exit code decides
            self.log.warning("no run summary from `ecom run` (%s): Asset events carry no figures", exc)
            return []

    def _annotate(self, context: Context, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Put each table's figures on the extra of its outlet Asset event."""
        if not self._annotates():
            return {}
        from orchestration.pipeline import table_of

        extras: dict[str, dict[str, Any]] = {}
        for asset in self.outlets:
            extra = event_extra(str(self.layer), table_of(asset), rows)
            context["outlet_events"][asset].extra = extra
            extras[asset.name] = extra
            self.log.info("asset %s: %s", asset.name, extra)
        return extras


def event_extra(layer: str, table: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The extra of one Asset event: that table's row of the run summary (`ops.runs` columns)."""
    mine = [r for r in rows if r.get("table_name") == table and r.get("layer", layer) == layer]
    if not mine:
        return {"layer": layer, "table": table, "status": "not run", "rows_written": None, "delta_version": None}
    row = mine[-1]
    return {
        "layer": layer,
        "table": table,
        "ecom_run_id": row.get("run_id"),
        "status": row.get("status"),
        "rows_in": row.get("rows_in"),
        "rows_written": row.get("rows_out"),
        "rows_quarantined": row.get("rows_quarantined"),
        "delta_version": row.get("delta_version"),
        "checkpoint": row.get("checkpoint"),
        "seconds": row.get("seconds"),
    }
