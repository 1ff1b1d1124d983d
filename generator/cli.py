"""`ecom generate`: write one batch of simulated shop activity, or a stream of them.

Volumes come from the flags, else from `ECOM_GEN_*` environment variables (what an Airflow
task sets from its Variables), else the defaults. Wrong input fails before anything is
written, on one line; a batch in progress is committed whole or rolled back whole.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import click
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.text import Text

from core import console, webhook
from core.errors import SettingsError
from core.settings import get_settings
from generator import stream
from generator.simulate import Spec

BATCH_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+-]*$")  # Airflow run ids fit
ENV = "ECOM_GEN_"
FC = TypeVar("FC", bound=Callable[..., object])


class _RowsPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} rows/s" if speed else "… rows/s", style="progress.data.speed")


class ProgressReporter:
    """A transient rich progress bar per batch: rows written of the batch's total, rows/s."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._task: int | None = None

    def begin(self, batch_id: str, total_rows: int) -> None:
        self._progress = Progress(
            TextColumn("[bold cyan]›[/] {task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,.0f}/{task.total:,.0f} rows"),
            _RowsPerSecond(),
            TimeElapsedColumn(),
            console=console.console,
            transient=True,
            disable=not console.console.is_terminal,  # task logs get the summary line only
        )
        self._progress.start()
        self._task = self._progress.add_task(f"batch {batch_id}", total=max(total_rows, 1))

    def advance(self, rows: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, rows)  # type: ignore[arg-type]

    def end(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        self._progress, self._task = None, None


def summary(result: stream.BatchResult) -> str:
    """One line per batch: what landed, the defects planted, and the speed."""
    r = result.record
    if result.already_committed:
        return f"batch {r.batch_id} was already committed ({r.started_at:%Y-%m-%d %H:%M:%S}Z): nothing to do"
    parts = []
    for table, n in r.inserted.items():
        updated = r.updated.get(table, 0)
        parts.append(f"{n:,} {table}" + (f" (+{updated:,} updated)" if updated else ""))
    defects = sum(r.defects.values())
    return (
        f"batch {r.batch_id}: {', '.join(parts)}; {defects:,} defect{'' if defects == 1 else 's'} · "
        f"{result.rows:,} rows in {result.seconds:.2f} s = {result.rows_per_s:,.0f} rows/s"
    )


def _ok(message: str) -> None:
    # soft_wrap: one line per batch even in a narrow terminal or an 80-column task log
    console.console.print(f"[green]✔[/] {message}", soft_wrap=True, markup=True, highlight=False)


def _report(result: stream.BatchResult) -> None:
    _ok(summary(result))
    d = result.delivery
    if d is not None and not d.ok:
        console.warn(f"webhook not delivered after {d.attempts} attempt(s): {d.error} — the batch is committed")


class _Count(click.ParamType):
    """A whole number ≥ 0, with an error that says which of the two it is not."""

    name = "count"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            n = value
        else:
            try:
                n = int(str(value).strip(), 10)
            except ValueError:
                self.fail(f"{value!r} is not a whole number", param, ctx)
        if n < 0:
            self.fail(f"{n} is negative, a volume is a count ≥ 0", param, ctx)
        return n


def _volume(name: str, default: int, what: str) -> Callable[[FC], FC]:
    return click.option(
        f"--{name}",
        type=_Count(),
        default=default,
        show_default=True,
        envvar=f"{ENV}{name.upper()}",
        show_envvar=True,
        metavar="N",
        help=what,
    )


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--stream", "is_stream", is_flag=True, help="Repeat batches until SIGINT/SIGTERM (or --max-batches).")
@click.option(
    "--interval",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    envvar=f"{ENV}INTERVAL",
    show_envvar=True,
    metavar="S",
    help="Seconds from the start of one streamed batch to the next.",
)
@_volume("customers", 100, "New customers per batch.")
@_volume("products", 20, "New products per batch.")
@_volume("orders", 500, "New orders per batch (each one a purchasing session).")
@_volume("events", 5_000, "Clickstream events per batch, purchase funnels included (plus planted duplicates).")
@click.option(
    "--seed",
    type=click.IntRange(0, 2**63 - 1),
    default=None,
    envvar=f"{ENV}SEED",
    show_envvar=True,
    metavar="S",
    help="Seed: the same seed on the same database state gives the same rows. Streams use S, S+1, …",
)
@click.option(
    "--defect-rate",
    type=click.FloatRange(0, 0.5),
    default=0.02,
    show_default=True,
    envvar=f"{ENV}DEFECT_RATE",
    show_envvar=True,
    metavar="R",
    help="Share of rows per table given a known defect (recorded in sim.defects).",
)
@click.option(
    "--batch-id",
    default=None,
    metavar="ID",
    help="Batch id (a stream's prefix). Re-running a committed id does nothing: safe for task retries.",
)
@click.option(
    "--window-hours",
    type=click.FloatRange(min=1),
    default=None,
    metavar="H",
    help="Simulated hours a batch spans, ending now. Default: 24; streams: the interval, at least 1.",
)
@click.option("--max-batches", type=click.IntRange(min=1), default=None, metavar="N", help="Stop a stream after N.")
def generate(
    is_stream: bool,
    interval: float,
    customers: int,
    products: int,
    orders: int,
    events: int,
    seed: int | None,
    defect_rate: float,
    batch_id: str | None,
    window_hours: float | None,
    max_batches: int | None,
) -> None:
    """Write a batch (or, with --stream, batches) of simulated shop activity into ecom_db."""
    settings = get_settings()
    if settings.webhook_url:
        webhook.validate_url(settings.webhook_url)
    limit = stream.BATCH_ID_MAX - (6 if is_stream else 0)
    if batch_id is not None and (not BATCH_ID_RE.match(batch_id) or len(batch_id) > limit):
        raise SettingsError(
            f"--batch-id must be 1-{limit} letters, digits or . _ : + - (starting with a letter or digit), "
            f"got {batch_id!r}"
        )
    if window_hours is not None:
        window = timedelta(hours=window_hours)
    else:
        window = stream.stream_window(interval) if is_stream else timedelta(hours=24)
    spec = Spec(
        customers=customers,
        products=products,
        orders=orders,
        events=events,
        seed=seed,
        defect_rate=defect_rate,
        window=window,
    )
    reporter = ProgressReporter()

    def stopping(name: str) -> None:
        console.warn(f"{name}: finishing the running batch, then stopping (send it again to abort that batch)")

    with stream.stop_on_signals(stream.StopSignal(), on_first=stopping) as stop:
        if not is_stream:
            _report(stream.run_batch(settings, spec, batch_id, reporter))
            return
        results = stream.run_stream(settings, spec, interval, stop, batch_id, max_batches, reporter, on_batch=_report)
    rows = sum(r.rows for r in results)
    why = f"stopped by {stop.signal_name}" if stop.signal_name else "stream done"
    _ok(f"{why} after {len(results)} batch(es), {rows:,} rows; every batch committed whole")
