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


CASES: list[Callable[[Report, dict[str, Any]], None]] = [spark_session_start]
