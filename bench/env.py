"""Where the cases run: isolated databases, a temporary lake, subprocess commands.

A case never touches the shared data: it gets its own ecom_db / ecom_dwh pair (created with
`ecom db init`'s own code, dropped afterwards), its own lake and its own GX folder, and no
webhook. Commands run as subprocesses see the same through `ECOM_*` variables.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from core.settings import Settings, get_settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@contextmanager
def isolated(purpose: str, *, init: bool = True) -> Iterator[Settings]:
    """Settings pointing at fresh databases `ecom_bench_<hex>[_dwh]`, a temporary lake and GX root.

    `init=False` leaves creating the databases to the command under test (`ecom demo`).
    Everything is dropped on exit, whatever happened.
    """
    from core import console, dbinit

    tag = uuid.uuid4().hex[:8]
    tmp = Path(tempfile.mkdtemp(prefix=f"ecom-bench-{purpose}-"))
    settings = get_settings().model_copy(
        update={
            "source_db": f"ecom_bench_{tag}",
            "warehouse_db": f"ecom_bench_{tag}_dwh",
            "lake_root": str(tmp / "lake"),
            "gx_root": str(tmp / "gx"),
            "webhook_url": None,
        }
    )
    try:
        if init:
            dbinit.init(settings, echo=lambda _: None)
        yield settings
    finally:
        try:
            forget_catalog()
        except Exception as exc:  # a stopped run's JVM may be gone: still drop the rest
            console.warn(f"bench: could not forget the lake's catalog entries: {type(exc).__name__}")
        try:
            drop_databases(settings)
        except Exception as exc:  # never hide the case's own error behind a cleanup one
            console.warn(f"bench: could not drop {settings.source_db} / {settings.warehouse_db}: {exc}")
        shutil.rmtree(tmp, ignore_errors=True)


def drop_databases(settings: Settings) -> None:
    import sqlalchemy as sa

    from core import db

    db.dispose_engines()  # pooled connections would hold the databases open
    server = "postgres" if settings.dialect == "postgresql" else "master"
    with db.engine(settings, "admin", server).connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for name in (settings.source_db, settings.warehouse_db):
            if settings.dialect == "postgresql":
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            elif conn.scalar(sa.text("SELECT DB_ID(:d)"), {"d": name}) is not None:
                conn.exec_driver_sql(f"ALTER DATABASE [{name}] SET SINGLE_USER WITH ROLLBACK IMMEDIATE")
                conn.exec_driver_sql(f"DROP DATABASE [{name}]")


def command_env(settings: Settings) -> dict[str, str]:
    """The `ECOM_*` variables that make a subprocess use these settings' databases and lake."""
    return {
        "ECOM_SOURCE_DB": settings.source_db,
        "ECOM_WAREHOUSE_DB": settings.warehouse_db,
        "ECOM_LAKE_ROOT": settings.lake_root,
        "ECOM_GX_ROOT": settings.gx_root or "",
        "ECOM_WEBHOOK_URL": "",
    }


def bench_spark(settings: Settings) -> SparkSession:
    """The bench process's one Spark session (the layers' `get_spark` returns the same one)."""
    from core.spark import get_spark

    return get_spark(settings, "ecom-bench", register=False)


def forget_catalog() -> None:
    """Drop the lake databases from the session's in-memory catalog (their tables point into
    a temporary lake that is about to go); the files are left to the caller."""
    from core import spark as core_spark
    from core.lake import DATABASES

    session = core_spark._SESSION
    if session is None or session._jsc is None:
        return
    for database in DATABASES:
        for table in session.catalog.listTables(database) if session.catalog.databaseExists(database) else []:
            session.sql(f"DROP TABLE IF EXISTS {database}.`{table.name}`")


def ecom(*args: str) -> list[str]:
    return [sys.executable, "-m", "core.cli", *args]


def run_command(args: list[str], env: dict[str, str] | None = None) -> tuple[float, int, list[float]]:
    """Run a command; return (seconds, peak RSS in MiB of its whole process tree, the seconds of
    each Spark session it started: `core.spark.get_spark` times its own start).

    The tree (the Python process and the Spark JVM it starts) is sampled every half second:
    the JVM is not waited for by its parent, so `getrusage(RUSAGE_CHILDREN)` would miss it.
    """
    with tempfile.NamedTemporaryFile("w+", suffix=".starts") as starts, tempfile.TemporaryFile("w+") as output:
        full_env = {**os.environ, **(env or {}), "ECOM_SPARK_STARTS_FILE": starts.name}
        t0 = time.perf_counter()
        proc = subprocess.Popen(args, env=full_env, stdout=output, stderr=subprocess.STDOUT, text=True)
        peak_kib = 0
        try:
            while proc.poll() is None:
                peak_kib = max(peak_kib, tree_rss_kib(proc.pid))
                time.sleep(0.5)
        except BaseException:  # a stopped bench stops its command too, before the lake is removed
            proc.terminate()
            proc.wait(timeout=60)
            raise
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            output.seek(0)
            raise RuntimeError(f"{' '.join(args)} failed (exit {proc.returncode}): {output.read()[-1500:]}")
        started = [float(line.split()[-1]) for line in Path(starts.name).read_text().splitlines()]
    return seconds, peak_kib // 1024, started


def tree_rss_kib(root: int) -> int:
    """Σ resident memory (KiB) of a process and all its descendants, from Linux `/proc`."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            status = (entry / "status").read_text()
        except (OSError, IndexError, ValueError):  # the process ended meanwhile
            continue
        pid = int(entry.name)
        children.setdefault(ppid, []).append(pid)
        rss[pid] = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total
