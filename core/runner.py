"""`ecom run <layer>|all`: one Spark application runs the requested layers in order.

Each layer exposes `run(spark, settings, *, run_id, full_refresh, tables) -> list[RunRecord]`
in its `job` module: it reads, transforms, validates (its checkpoint) and writes, and
records its tables in `ops.runs`. A layer that fails raises `EcomError`; later layers do
not run (their gate is closed).
"""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path
from types import ModuleType

from core import console
from core.errors import EcomError, NotBuiltYetError
from core.ledger import RunRecord, new_run_id
from core.settings import Settings

ORDER = ("bronze", "silver", "gold", "publish")
JOB_MODULES = {
    "bronze": "bronze.job",
    "silver": "silver.job",
    "gold": "gold.job",
    "publish": "gold.publish",
}


def job_module(layer: str) -> ModuleType:
    try:
        return importlib.import_module(JOB_MODULES[layer])
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in JOB_MODULES[layer]:
            raise NotBuiltYetError(f"layer {layer!r} is not built yet ({JOB_MODULES[layer]} is missing)") from None
        raise


def built_layers() -> list[str]:
    """The layers whose job module exists (the demo runs what exists so far)."""
    out = []
    for name in ORDER:
        try:
            job_module(name)
        except NotBuiltYetError:
            break
        out.append(name)
    return out


def run(
    settings: Settings,
    layer: str,
    *,
    full_refresh: bool = False,
    tables: list[str] | None = None,
    summary_json: str | None = None,
) -> bool:
    """Run one layer or all; print a one-screen summary. Returns True when all succeeded."""
    layers = list(ORDER) if layer == "all" else [layer]
    return run_layers(settings, layers, full_refresh=full_refresh, tables=tables, summary_json=summary_json)


def run_layers(
    settings: Settings,
    layers: list[str],
    *,
    full_refresh: bool = False,
    tables: list[str] | None = None,
    summary_json: str | None = None,
) -> bool:
    layer = "all" if len(layers) > 1 else layers[0]
    modules = {name: job_module(name) for name in layers}  # fail fast, before Spark starts
    from core.spark import get_spark

    t0 = time.monotonic()
    spark = get_spark(settings, f"ecom-run-{layer}")
    console.step(f"Spark ready in {time.monotonic() - t0:.1f}s ({settings.spark_master}); lake {settings.lake_root}")
    records: list[RunRecord] = []
    failed: str | None = None
    seconds: dict[str, float] = {}  # each layer's run, Spark's start excluded
    for name in layers:
        run_id = new_run_id(name)
        console.step(f"[bold]{name}[/] run {run_id}")
        started = time.monotonic()
        try:
            records += modules[name].run(spark, settings, run_id=run_id, full_refresh=full_refresh, tables=tables)
        except EcomError as exc:
            failed = f"{name}: {exc}"
            break
        finally:
            seconds[name] = round(time.monotonic() - started, 3)
    _summary(records, time.monotonic() - t0)
    if summary_json:
        write_summary(summary_json, records, failed, seconds)
    if failed:
        raise EcomError(failed)
    return all(r.status in ("succeeded", "skipped") for r in records)


def write_summary(path: str, records: list[RunRecord], failed: str | None, seconds: dict[str, float]) -> None:
    """Machine-readable summary (Airflow turns it into Asset event metadata; the bench reads
    each layer's `seconds`)."""
    body = {"ok": failed is None, "error": failed, "seconds": seconds, "tables": [r.row() for r in records]}
    Path(path).write_text(json.dumps(body, default=str, indent=2))


def _summary(records: list[RunRecord], seconds: float) -> None:
    if records:
        console.table(
            f"Summary ({seconds:.1f}s)",
            ["layer", "table", "status", "in", "out", "quarantined", "delta v", "checkpoint", "s"],
            [
                (
                    r.layer,
                    r.table_name,
                    r.status,
                    r.rows_in,
                    r.rows_out,
                    r.rows_quarantined,
                    r.delta_version,
                    r.checkpoint or "-",
                    r.seconds,
                )
                for r in records
            ],
        )
