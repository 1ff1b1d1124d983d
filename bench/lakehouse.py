"""A whole pipeline on isolated databases and a temporary lake, grown in history steps.

The pipeline cases of one run share it (`shared(profile)`), so the history is generated and
loaded once: the incremental cycle needs it at 1× and 10×, gold and DuckDB read its silver,
the checkpoint shares come from the records of its runs. The cycles run in this process's
one Spark session, through the same `job.run` functions `core.runner` calls, and so do the
history loads but one: the profile's `fresh_load` (10×) runs in fresh processes and JVMs, as
production runs a backfill (in the bench's long JVM it ran out of memory after the 1× runs),
and the commands' peak memory, Spark sessions and Spark start are measured there — each layer
as `ecom run <layer>`, or all of them in one `ecom run all` (the profile's `fresh_command`).
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.env import bench_spark, command_env, ecom, isolated, run_command
from core.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from core.ledger import RunRecord

CHANGE_SHARE = 0.01  # an incremental cycle's new rows: 1% of the 1× history's volumes
CHANGE_WINDOW = timedelta(hours=1)  # simulated time of a cycle's batch (status moves scale with it)
# A history step spans weeks and is then aged: a few near-empty batches over a week each move
# its orders along their flow (placed → paid → shipped → delivered), as a shop's history is
# mostly settled orders. Unaged, every order of a one-day history is still open, and an hour's
# status moves alone would touch ~5% of all orders, not the 1% change the cycle stands for.
HISTORY_WINDOW = timedelta(days=60)
AGING_BATCHES, AGING_WINDOW = 3, timedelta(days=7)
VOLUMES = ("customers", "products", "orders", "events")


@dataclass
class LayerRunTime:
    """One layer run: its wall time and its per-table records."""

    layer: str
    seconds: float  # the layer's job (a fresh process: without its Spark start)
    records: list[RunRecord]
    command_seconds: float | None = None  # a fresh process's whole wall time, Spark start included
    peak_mib: int | None = None  # a fresh process's peak RSS (Python and its Spark JVM)
    spark_starts: list[float] | None = None  # a fresh process: the seconds of each Spark session it started
    command: str | None = None  # the fresh process's command (`ecom run gold`, `ecom run all`); None: this JVM


@dataclass
class Cycle:
    """One timed generator batch → bronze → silver → gold → publish."""

    seconds: float
    rows: int  # source rows the batch wrote (inserted + updated)
    steps: dict[str, float]
    history: int  # the history multiple it ran on
    layers: dict[str, LayerRunTime]  # its layer runs (gold's is the incremental gold figure)


@dataclass
class Lakehouse:
    settings: Settings
    base: dict[str, int]  # the 1× history's volumes
    fresh_load: int  # the history multiple whose load runs as fresh `ecom run` commands
    fresh_command: str = "layer"  # that load: "layer", an `ecom run <layer>` per layer; "all", one `ecom run all`
    history: int = 0  # 1× steps loaded so far
    history_rows: int = 0  # source rows written so far (history and cycles)
    runs: dict[str, list[LayerRunTime]] = field(default_factory=dict)  # phase → layer runs
    cycles: list[Cycle] = field(default_factory=list)  # every timed cycle, in order
    loads: dict[int, dict[str, LayerRunTime]] = field(default_factory=dict)  # history multiple → its load's runs
    load_rows: dict[int, int] = field(default_factory=dict)  # history multiple → source rows its load wrote

    @property
    def spark(self) -> SparkSession:
        return bench_spark(self.settings)

    def generate(self, scale: float, window: timedelta | None = None) -> int:
        """One generator batch of `scale` × the 1× volumes (0: no new rows, only the status,
        price and profile changes of its window); the source rows it wrote."""
        from generator.simulate import Spec
        from generator.stream import run_batch

        n = {k: max(1, math.ceil(v * scale)) if scale else 0 for k, v in self.base.items()}
        spec = Spec(customers=n["customers"], products=n["products"], orders=n["orders"], events=n["events"])
        if window is not None:
            spec = replace(spec, window=window)
        rows = run_batch(self.settings, spec).rows
        self.history_rows += rows
        return rows

    def run_layer(self, layer: str, phase: str, *, full_refresh: bool = False) -> LayerRunTime:
        """Run one layer as `ecom run <layer>` does (its `job.run`), recorded under `phase`."""
        from core import runner
        from core.ledger import new_run_id

        module = runner.job_module(layer)
        spark = self.spark
        t0 = time.perf_counter()
        records = module.run(spark, self.settings, run_id=new_run_id(layer), full_refresh=full_refresh)
        timing = LayerRunTime(layer, time.perf_counter() - t0, records)
        self.runs.setdefault(phase, []).append(timing)
        return timing

    def run_fresh(self, layer: str, phase: str, *options: str) -> dict[str, LayerRunTime]:
        """Run `ecom run <layer|all> [options]` in a fresh process (its own Spark JVM); each
        layer it ran, recorded under `phase` from the run's summary (the command's wall time,
        peak memory and Spark starts are those of every layer it ran)."""
        from core.ledger import RunRecord

        with tempfile.TemporaryDirectory(prefix="ecom-bench-summary-") as scratch:
            path = Path(scratch) / "summary.json"
            command = ecom("run", layer, *options, "--summary-json", str(path))
            wall, peak_mib, starts = run_command(command, command_env(self.settings))
            summary = json.loads(path.read_text())
        out = {}
        for name, seconds in summary["seconds"].items():
            records = [RunRecord.from_row(row) for row in summary["tables"] if row["layer"] == name]
            out[name] = LayerRunTime(name, float(seconds), records, wall, peak_mib, starts, f"ecom run {layer}")
            self.runs.setdefault(phase, []).append(out[name])
        return out

    def run_command_layer(self, layer: str, phase: str, *options: str) -> LayerRunTime:
        """Run `ecom run <layer> [options]` in a fresh process, recorded under `phase`."""
        return self.run_fresh(layer, phase, *options)[layer]

    def run_pipeline(self, phase: str, *, fresh: bool = False) -> dict[str, LayerRunTime]:
        """Every layer in order: in this process's Spark session, or `fresh`, in fresh
        processes (`fresh_command`: each layer as `ecom run <layer>`, or one `ecom run all`)."""
        from core.runner import ORDER

        if fresh and self.fresh_command == "all":
            return self.run_fresh("all", phase)
        run = self.run_command_layer if fresh else self.run_layer
        return {layer: run(layer, phase) for layer in ORDER}

    def grow_to(self, multiple: int) -> None:
        """Bring the history to `multiple` × the base volumes: one batch, then one pipeline run
        (at `fresh_load`, of fresh `ecom run` processes)."""
        from core import console

        if self.history >= multiple:
            return
        console.step(f"bench: loading history from {self.history}× to {multiple}× the base volumes")
        rows = self.generate(multiple - self.history, HISTORY_WINDOW)
        rows += sum(self.generate(0, AGING_WINDOW) for _ in range(AGING_BATCHES))
        self.load_rows[multiple] = rows
        self.loads[multiple] = self.run_pipeline("history", fresh=multiple == self.fresh_load)
        self.history = multiple

    def change_to(self, layer: str, phase: str) -> None:
        """A 1% batch, then every layer before `layer` (in this process)."""
        from core.runner import ORDER

        self.generate(CHANGE_SHARE, CHANGE_WINDOW)
        for before in ORDER[: ORDER.index(layer)]:
            self.run_layer(before, phase)

    def cycle(self) -> Cycle:
        """Time one incremental cycle: a 1% batch, then every layer."""
        t0 = time.perf_counter()
        rows = self.generate(CHANGE_SHARE, CHANGE_WINDOW)
        generated = time.perf_counter() - t0
        layers = self.run_pipeline("cycle")
        steps = {"generator": generated, **{layer: run.seconds for layer, run in layers.items()}}
        self.cycles.append(Cycle(time.perf_counter() - t0, rows, steps, self.history, layers))
        return self.cycles[-1]

    def layer_runs(self, phase: str, layer: str) -> list[LayerRunTime]:
        return [r for r in self.runs.get(phase, []) if r.layer == layer]


_SHARED: dict[str, Lakehouse] = {}
_STACK = ExitStack()


def shared(profile: dict[str, Any]) -> Lakehouse:
    """The run's lakehouse for this profile (created on first use, closed by `close_shared`)."""
    name = profile["name"]
    if name not in _SHARED:
        settings = _STACK.enter_context(isolated("pipeline"))
        _SHARED[name] = Lakehouse(
            settings,
            {k: int(profile["history"][k]) for k in VOLUMES},
            fresh_load=int(profile["fresh_load"]),
            fresh_command=str(profile["fresh_command"]),
        )
    return _SHARED[name]


def close_shared() -> None:
    """Drop every shared lakehouse's databases and lake."""
    _SHARED.clear()
    _STACK.close()
