"""The benchmark cases. Each measures a figure and its baseline in the same run."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.report import Figure, Report

ROOT = Path(__file__).resolve().parents[1]

PROFILES: dict[str, dict[str, Any]] = {
    "quick": {"customers": 2000, "products": 300, "orders": 10_000, "events": 100_000, "repeats": 3},
    "full": {"customers": 100_000, "products": 5_000, "orders": 1_000_000, "events": 10_000_000, "repeats": 3},
}


def run_command(args: list[str], env: dict[str, str] | None = None) -> tuple[float, int, int]:
    """Run a command; return (seconds, peak RSS in MiB of its largest process, Spark sessions started)."""
    with tempfile.NamedTemporaryFile("w+", suffix=".starts") as starts:
        wrapper = (
            "import resource, subprocess, sys; "
            "rc = subprocess.run(sys.argv[1:]).returncode; "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(rc)"
        )
        full_env = {**os.environ, **(env or {}), "ECOM_SPARK_STARTS_FILE": starts.name}
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", wrapper, *args], env=full_env, capture_output=True, text=True, check=False
        )
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {proc.stderr[-1500:]}")
        peak_kib = int(proc.stderr.strip().splitlines()[-1])
        sessions = len(Path(starts.name).read_text().splitlines())
    return seconds, peak_kib // 1024, sessions


def ecom(*args: str) -> list[str]:
    return [sys.executable, "-m", "core.cli", *args]


def spark_session_start(report: Report, profile: dict[str, Any]) -> None:
    """Spark session start time (median of repeats): the fixed cost of every command."""
    code = (
        "import time; t=time.perf_counter(); from core.settings import get_settings; from core.spark import get_spark; "
        "get_spark(get_settings(), 'bench-start'); print(time.perf_counter()-t)"
    )

    def once() -> float:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        return float(out.stdout.strip().splitlines()[-1])

    samples = sorted(once() for _ in range(profile["repeats"]))
    report.add(Figure("Spark session start (median)", samples[len(samples) // 2], "s", note=f"samples {samples}"))


def generator_rate(report: Report, profile: dict[str, Any]) -> None:
    """Generator rows/s into PostgreSQL vs a raw COPY of the same rows (same run)."""
    from core.settings import get_settings
    from generator.simulate import Spec
    from generator.stream import measure_throughput

    spec = Spec(
        customers=profile["customers"], products=profile["products"], orders=profile["orders"], events=profile["events"]
    )
    tp = measure_throughput(get_settings(), spec)
    report.add(
        Figure(
            "generator rows/s into PostgreSQL",
            tp.rows_per_s,
            "rows/s",
            baseline=tp.raw_rows_per_s,
            baseline_name="raw COPY",
            goal="≥ 50,000 rows/s",
            met=tp.rows_per_s >= 50_000,
            note=f"{tp.rows:,} rows in {tp.batch_s:.2f}s (simulation {tp.generate_s:.2f}s)",
        )
    )


def publish_rate(report: Report, profile: dict[str, Any]) -> None:
    """Publish rows/s into PostgreSQL (stage + atomic apply + reconcile) vs a bare Spark JDBC write."""
    from pyspark.sql import functions as F

    from core import db
    from core.lake import table_path
    from core.ledger import RunRecord, new_run_id
    from core.settings import get_settings
    from core.spark import get_spark
    from gold import publish
    from gold.marts.registry import MARTS

    rows = profile["orders"] * 10 if profile["orders"] < 100_000 else profile["orders"]
    mart = MARTS["daily_sales"]
    with tempfile.TemporaryDirectory() as lake:
        settings = get_settings().model_copy(update={"lake_root": lake})
        spark = get_spark(settings, "bench")
        df = mart.conform(
            spark.range(rows).select(
                F.date_add(F.lit("2020-01-01").cast("date"), (F.col("id") % 3000).cast("int")).alias("sales_date"),
                F.concat(F.lit("cat"), (F.col("id") / 3000).cast("long").cast("string")).alias("category"),
                *[F.col("id").alias(c.name) for c in mart.columns if c.name in ("orders", "units")],
                (F.col("id") % 1000 / 100).cast("decimal(18,2)").alias("revenue"),
                F.lit(1.5).cast("decimal(18,2)").alias("avg_order_value"),
                *[
                    F.lit(None).alias(c.name)
                    for c in mart.columns
                    if c.name not in ("sales_date", "category", "orders", "units", "revenue", "avg_order_value")
                ],
            )
        )
        df.write.format("delta").mode("overwrite").save(table_path(settings, "gold", mart.name))
        rec = RunRecord(new_run_id("bench"), "publish", mart.name)
        t0 = time.perf_counter()
        publish.publish_table(spark, settings, mart, rec, full_refresh=True)
        ours = time.perf_counter() - t0
        bare = spark.read.format("delta").load(table_path(settings, "gold", mart.name))
        t0 = time.perf_counter()
        bare.write.format("jdbc").options(
            **db.jdbc_options(settings, "publisher"), dbtable="gold.bench_bare_write"
        ).option("batchsize", str(settings.jdbc_batchsize)).mode("overwrite").save()
        raw = time.perf_counter() - t0
        with db.connect(settings, "publisher") as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS gold.bench_bare_write")
    report.add(
        Figure(
            "publish rows/s into PostgreSQL",
            rows / ours,
            "rows/s",
            baseline=rows / raw,
            baseline_name="bare Spark JDBC write",
            goal="≥ 45,000 rows/s",
            met=rows / ours >= 45_000,
            note=f"{rows:,} rows: publish {ours:.1f}s (stage, apply, reconcile), bare write {raw:.1f}s",
        )
    )


CASES: list[Callable[[Report, dict[str, Any]], None]] = [spark_session_start, generator_rate, publish_rate]
