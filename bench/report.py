"""Figures, goals and the report: Markdown on stdout, JSON under bench/results/, a PNG plot."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Figure:
    """One measured figure beside its same-run baseline, judged against a goal."""

    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str | None = None
    goal: str | None = None  # human-readable, e.g. "≥ 50,000 rows/s"
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0):
            return None
        return self.value / self.baseline


@dataclass
class Report:
    profile: str
    figures: list[Figure] = field(default_factory=list)
    curves: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (figure, why it is not measured)
    started: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    run_time_goal_min: float | None = None  # the profile's whole run, when it has a goal
    case_seconds: dict[str, float] = field(default_factory=dict)  # wall time of each case run
    machine: dict[str, Any] = field(default_factory=lambda: machine_info())  # taken at the start

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        print(f"  measured: {self.row(figure)}", flush=True)  # the whole row: a stopped run keeps it
        return figure

    def skip(self, name: str, why: str) -> None:
        """A figure this profile does not measure; the report says so and why."""
        self.skipped.append((name, why))
        print(f"  not measured: {name} — {why}", flush=True)

    def markdown(self) -> str:
        lines = [
            f"# ecom lakehouse benchmarks — profile `{self.profile}`",
            "",
            machine_header(self.machine),
            "",
            "| figure | value | baseline (same run) | ratio | goal | met |",
            "|---|---:|---:|---:|---|---|",
        ]
        lines += [self.row(f) for f in self.figures]
        if self.case_seconds:
            total = sum(self.case_seconds.values())
            each = ", ".join(f"{name} {s / 60:.1f}" for name, s in self.case_seconds.items())
            goal = self.run_time_goal_min
            judged = "" if goal is None else f"; goal < {goal} min: {'met' if total < goal * 60 else '**not met**'}"
            lines += ["", f"Run time: {total / 60:.1f} min{judged} (per case, min: {each})"]
        notes = [f"- {f.name}: {f.note}" for f in self.figures if f.note]
        notes += [f"- {name}: not measured in this profile — {why}" for name, why in self.skipped]
        return "\n".join(lines + (["", *notes] if notes else []))

    @staticmethod
    def row(f: Figure) -> str:
        base = "" if f.baseline is None else f"{f.baseline:,.2f} {f.unit} ({f.baseline_name})"
        ratio = "" if f.ratio is None else f"{f.ratio:.2f}×"
        met = "" if f.met is None else ("met" if f.met else "**not met**")
        return f"| {f.name} | {f.value:,.2f} {f.unit} | {base} | {ratio} | {f.goal or ''} | {met} |"

    def save(self) -> Path:
        RESULTS.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        path = RESULTS / f"bench-{self.profile}-{stamp}.json"
        body = {
            "profile": self.profile,
            "started": self.started,
            "machine": self.machine,
            "figures": [asdict(f) | {"ratio": f.ratio} for f in self.figures],
            "case_seconds": self.case_seconds,
            "curves": self.curves,
            "skipped": [{"name": n, "why": w} for n, w in self.skipped],
        }
        path.write_text(json.dumps(body, indent=2))
        if self.curves:
            self.plot(path.with_suffix(".png"))
        return path

    def plot(self, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.5))
        for label, points in self.curves.items():
            xs, ys = zip(*sorted(points), strict=True)
            ax.plot(xs, ys, marker="o", label=label)
        ax.set_xlabel("rows (history size)")
        ax.set_ylabel("seconds")
        ax.set_xscale("log")
        ax.set_title(f"ecom lakehouse scaling — {self.profile}")
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)


def machine_info() -> dict[str, Any]:
    import pyspark

    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    java = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False).stderr.splitlines()
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "pyspark": pyspark.__version__,
        "java": java[0] if java else "?",
        "os": platform.platform(),
        "load_average": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }


def machine_header(m: dict[str, Any]) -> str:
    return (
        f"Machine: {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}; Python {m['python']}, "
        f"PySpark {m['pyspark']}, {m['java']}; load average at start {m['load_average']}"
    )


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def median_of(n: int, fn: Callable[[], float]) -> float:
    """Median of n runs of fn (each returns its own measured seconds)."""
    return statistics.median(fn() for _ in range(n))
