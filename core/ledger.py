"""The run ledger `ops.runs`: one row per layer × table × run, appended by every layer.

Layers call `RunRecorder` (or `record`) at the end of each table; `ecom status` reads it.
Appends take the `ops.runs` writer lock, so concurrent commands never race on the log.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from core import console
from core.errors import EcomError
from core.lake import register_table, table_path
from core.locks import writer_lock
from core.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.types import StructType


def new_run_id(layer: str) -> str:
    """Sortable and unique: `<layer>-YYYYmmddTHHMMSS-<8 hex>`."""
    return f"{layer}-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


@dataclass
class RunRecord:
    """One row of `ops.runs`. Grain: layer × table × run."""

    run_id: str
    layer: str
    table_name: str
    status: str = "running"  # succeeded | failed | skipped
    rows_in: int = 0
    rows_out: int = 0
    rows_quarantined: int = 0
    delta_version: int | None = None
    watermark_from: str | None = None
    watermark_to: str | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC).replace(tzinfo=None))
    ended_at: datetime | None = None
    seconds: float | None = None
    checkpoint: str | None = None  # passed | failed | None (not run)
    message: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    _t0: float = field(default_factory=time.monotonic, repr=False)

    def finish(self, status: str, message: str | None = None) -> RunRecord:
        self.status = status
        self.message = message if message is None else message[:2000]
        self.ended_at = datetime.now(UTC).replace(tzinfo=None)
        self.seconds = round(time.monotonic() - self._t0, 3)
        return self

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Add the seconds a phase of this table's run took to `details.timings[name]`."""
        t0 = time.monotonic()
        try:
            yield
        finally:
            timings = self.details.setdefault("timings", {})
            timings[name] = round(timings.get(name, 0.0) + time.monotonic() - t0, 2)

    def row(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("_t0")
        d["details"] = json.dumps(self.details, default=str, sort_keys=True)
        return d

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> RunRecord:
        """The record of a `row()` (as `ops.runs` and `ecom run --summary-json` hold it);
        times stay as the row gives them."""
        return cls(**{**row, "details": json.loads(row.get("details") or "{}")})


def runs_schema() -> StructType:
    from pyspark.sql import types as T

    return T.StructType(
        [
            T.StructField("run_id", T.StringType(), False),
            T.StructField("layer", T.StringType(), False),
            T.StructField("table_name", T.StringType(), False),
            T.StructField("status", T.StringType(), False),
            T.StructField("rows_in", T.LongType(), True),
            T.StructField("rows_out", T.LongType(), True),
            T.StructField("rows_quarantined", T.LongType(), True),
            T.StructField("delta_version", T.LongType(), True),
            T.StructField("watermark_from", T.StringType(), True),
            T.StructField("watermark_to", T.StringType(), True),
            T.StructField("started_at", T.TimestampType(), True),
            T.StructField("ended_at", T.TimestampType(), True),
            T.StructField("seconds", T.DoubleType(), True),
            T.StructField("checkpoint", T.StringType(), True),
            T.StructField("message", T.StringType(), True),
            T.StructField("details", T.StringType(), True),
        ]
    )


def record(spark: SparkSession, settings: Settings, *records: RunRecord) -> None:
    """Append finished records to `ops.runs` (one Delta commit)."""
    if not records:
        return
    df = spark.createDataFrame([r.row() for r in records], schema=runs_schema())
    with writer_lock(settings, "ops.runs", wait_s=120):  # appends are short: queue behind another command
        df.write.format("delta").mode("append").save(table_path(settings, "ops", "runs"))
    register_table(spark, settings, "ops", "runs")


def latest_runs(spark: SparkSession, settings: Settings, limit: int = 40) -> list[dict[str, Any]]:
    from delta.tables import DeltaTable
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    path = table_path(settings, "ops", "runs")
    if not DeltaTable.isDeltaTable(spark, path):
        return []
    w = Window.partitionBy("layer", "table_name").orderBy(F.col("started_at").desc())
    df = (
        spark.read.format("delta")
        .load(path)
        .withColumn("_rank", F.row_number().over(w))
        .where("_rank = 1")
        .orderBy(F.col("started_at").desc())
        .limit(limit)
    )
    return [r.asDict() for r in df.collect()]


def print_status(settings: Settings, limit: int = 40) -> None:
    from core import console
    from core.spark import get_spark

    spark = get_spark(settings, "ecom-status", register=False)
    rows = latest_runs(spark, settings, limit)
    if not rows:
        console.warn("no runs recorded yet in ops.runs: run `ecom run all` (or `ecom demo`)")
        return
    now = datetime.now(UTC).replace(tzinfo=None)
    console.table(
        "Latest run per layer and table (ops.runs)",
        [
            "layer",
            "table",
            "status",
            "in",
            "out",
            "quarantined",
            "delta v",
            "checkpoint",
            "ended",
            "age",
            "s",
        ],
        [
            (
                r["layer"],
                r["table_name"],
                r["status"],
                r["rows_in"],
                r["rows_out"],
                r["rows_quarantined"],
                r["delta_version"],
                r["checkpoint"] or "-",
                f"{r['ended_at']:%Y-%m-%d %H:%M:%S}" if r["ended_at"] else "-",
                _age(now, r["ended_at"]),
                r["seconds"],
            )
            for r in rows
        ],
    )


def _age(now: datetime, then: datetime | None) -> str:
    if then is None:
        return "-"
    s = int((now - then).total_seconds())
    return f"{s}s" if s < 120 else f"{s // 60}m" if s < 7200 else f"{s // 3600}h"


class LayerRun:
    """The per-table records of one layer run, appended to `ops.runs` when it ends.

    A table failing with an expected error (`EcomError`: gate, lock, drift…) is recorded and
    the other tables go on; `raise_failures` then raises, so later layers do not run. Any
    other exception is recorded and propagates at once. The records are written whatever
    happens (`with LayerRun(...) as layer_run:`).
    """

    def __init__(self, spark: SparkSession, settings: Settings, layer: str, run_id: str) -> None:
        self.spark, self.settings, self.layer, self.run_id = spark, settings, layer, run_id
        self.records: list[RunRecord] = []
        self.failures: list[tuple[str, EcomError]] = []

    def __enter__(self) -> LayerRun:
        return self

    def __exit__(self, *exc: object) -> None:
        from core.spark import release_materialized

        record(self.spark, self.settings, *self.records)
        release_materialized()  # the layer's materialised frames: nobody reads them any more

    @contextmanager
    def table(self, name: str) -> Iterator[RunRecord]:
        rec = RunRecord(run_id=self.run_id, layer=self.layer, table_name=name)
        self.records.append(rec)
        try:
            yield rec
        except EcomError as exc:
            rec.finish("failed", str(exc))
            console.error(f"{self.layer}.{name}: {exc}")
            self.failures.append((name, exc))
        except BaseException as exc:
            rec.finish("failed", f"{type(exc).__name__}: {exc}")
            raise

    def raise_failures(self) -> list[RunRecord]:
        """Raise the failure (one) or a roll-up naming every failed table; else the records."""
        if self.failures:
            first = self.failures[0][1]
            if len(self.failures) == 1:
                raise first
            message = "; ".join(f"{t}: {e}" for t, e in self.failures)
            raise type(first)(f"{self.layer} failed for {len(self.failures)} tables — {message}") from first
        return self.records
