"""Running batches: one (`run_batch`) or a stream of them until told to stop (`run_stream`).

A batch is one transaction: lock, load the state, simulate, write, record, commit. Only
after the commit is the webhook called, so a notification never reports a batch that could
still roll back, and a failing webhook never loses one.

Stopping: the first SIGINT/SIGTERM lets the running batch finish and commit, then ends the
stream (a sleeping stream ends at once); a second signal aborts the running batch, which
the database rolls back. Either way every batch is committed whole or not at all.
"""

from __future__ import annotations

import logging
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any, Protocol

import sqlalchemy as sa

from core import webhook
from core.db import connect
from core.errors import EcomError
from core.settings import Settings
from generator import sinks
from generator.simulate import Spec, simulate

log = logging.getLogger("ecom.generator")
BATCH_ID_MAX = 40


class BatchFailedError(EcomError):
    """A batch could not be written; its transaction was rolled back, nothing of it remains."""


class Reporter(Protocol):
    """Where a batch reports its progress (the CLI draws a progress bar; tests ignore it)."""

    def begin(self, batch_id: str, total_rows: int) -> None: ...
    def advance(self, rows: int) -> None: ...
    def end(self) -> None: ...


class SilentReporter:
    def begin(self, batch_id: str, total_rows: int) -> None:
        return None

    def advance(self, rows: int) -> None:
        return None

    def end(self) -> None:
        return None


@dataclass(frozen=True)
class BatchResult:
    """A committed batch (or one found already committed) and how fast it went."""

    record: sinks.BatchRecord
    seconds: float
    generate_seconds: float = 0.0
    already_committed: bool = False
    delivery: webhook.Delivery | None = None

    @property
    def rows(self) -> int:
        return sum(self.record.inserted.values()) + sum(self.record.updated.values())

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def new_batch_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S}Z-{secrets.token_hex(4)}"


def payload(result: BatchResult) -> dict[str, Any]:
    """The webhook document: {batch_id, started_at, ended_at, rows, defects} (+ updated)."""
    r = result.record
    return {
        "batch_id": r.batch_id,
        "started_at": r.started_at.isoformat() + "Z",
        "ended_at": r.ended_at.isoformat() + "Z",
        "rows": dict(r.inserted),
        "updated": dict(r.updated),
        "defects": dict(r.defects),
    }


def _is_database_error(exc: BaseException) -> bool:
    """SQLAlchemy's wrapped errors, and the drivers' own (raised by COPY / raw executemany)."""
    if isinstance(exc, sa.exc.DBAPIError):
        return True
    for module in ("psycopg", "pyodbc"):
        driver = sys.modules.get(module)  # only a driver that is loaded can have raised
        if driver is not None and isinstance(exc, driver.Error):
            return True
    return False


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def run_batch(
    settings: Settings,
    spec: Spec,
    batch_id: str | None = None,
    reporter: Reporter | None = None,
    now: datetime | None = None,
) -> BatchResult:
    """Write one batch in one transaction, then notify the webhook (if one is configured)."""
    reporter = reporter or SilentReporter()
    spec = spec.resolved()
    started = time.perf_counter()
    now = now or datetime.now(UTC)
    if now.tzinfo is not None:
        now = now.astimezone(UTC).replace(tzinfo=None)  # naive UTC, as the database stores it
    batch_id = batch_id or new_batch_id()
    generated = 0.0
    try:
        with connect(settings, "generator") as conn:
            sinks.check_initialised(conn)
            sinks.lock(conn)
            if sinks.batch_exists(conn, batch_id):
                [record] = sinks.read_batches(conn, [batch_id])
                return BatchResult(record, time.perf_counter() - started, already_committed=True)
            state = sinks.load_state(conn)
            t0 = time.perf_counter()
            batch = simulate(state, spec, now=now)
            generated = time.perf_counter() - t0
            reporter.begin(batch_id, batch.total_rows)
            record = sinks.write_batch(conn, batch, batch_id, state.next_ids, reporter.advance)
    except EcomError:
        raise
    except Exception as exc:
        if not _is_database_error(exc):
            raise
        if "permission denied" in str(exc).lower():
            raise BatchFailedError(
                f"batch {batch_id} rolled back, nothing written: {_first_line(exc)} — run `ecom db init` "
                "to (re)grant the generator role"
            ) from None
        raise BatchFailedError(f"batch {batch_id} rolled back, nothing written: {_first_line(exc)}") from None
    finally:
        reporter.end()
    result = BatchResult(record, time.perf_counter() - started, generate_seconds=generated)
    if settings.webhook_url:
        delivery = webhook.post_json(
            settings.webhook_url,
            payload(result),
            timeout=settings.webhook_timeout_s,
            retries=settings.webhook_retries,
        )
        result = replace(result, delivery=delivery)
    return result


# --- stopping cleanly ----------------------------------------------------------------------------
@dataclass
class StopSignal:
    """Set by the first SIGINT/SIGTERM; a second one interrupts the running batch."""

    event: threading.Event = field(default_factory=threading.Event)
    signal_name: str | None = None

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    def wait(self, seconds: float) -> bool:
        return self.event.wait(max(0.0, seconds))


@contextmanager
def stop_on_signals(stop: StopSignal, on_first: Callable[[str], None] = lambda name: None) -> Iterator[StopSignal]:
    """Install the two-step SIGINT/SIGTERM handlers for the duration of the block (main thread only).

    `on_first(signal name)` is called when the first signal arrives (to say what happens next).
    """
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.requested:
            raise KeyboardInterrupt  # second signal: abort the running batch (rolled back)
        stop.signal_name = signal.Signals(signum).name
        stop.event.set()
        on_first(stop.signal_name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def stream_batch_ids(prefix: str | None) -> Iterator[str]:
    """`<prefix>-00001`, `<prefix>-00002`, … or a fresh id per batch without a prefix."""
    n = 0
    while True:
        n += 1
        yield f"{prefix}-{n:05d}" if prefix else new_batch_id()


def run_stream(
    settings: Settings,
    spec: Spec,
    interval_s: float,
    stop: StopSignal,
    batch_prefix: str | None = None,
    max_batches: int | None = None,
    reporter: Reporter | None = None,
    on_batch: Callable[[BatchResult], None] = lambda _: None,
) -> list[BatchResult]:
    """Write batches every `interval_s` seconds (start to start) until stopped or `max_batches`."""
    results: list[BatchResult] = []
    ids = stream_batch_ids(batch_prefix)
    base_seed = spec.seed
    for n in range(max_batches or 2**62):
        if stop.requested:
            break
        began = time.monotonic()
        seed = None if base_seed is None else (base_seed + n) % 2**63
        result = run_batch(settings, replace(spec, seed=seed), next(ids), reporter)
        results.append(result)
        on_batch(result)
        if max_batches is not None and n + 1 >= max_batches:
            break
        if stop.wait(interval_s - (time.monotonic() - began)):
            break
    return results


def stream_window(interval_s: float) -> timedelta:
    """Simulated time a stream batch covers: its interval, at least an hour."""
    return max(timedelta(seconds=interval_s), timedelta(hours=1))


@dataclass(frozen=True)
class Throughput:
    """One batch timed two ways: the generator end to end, and a raw COPY of the same rows."""

    rows: int  # source rows written by the batch (inserted + updated)
    batch_s: float  # lock, state, simulate, COPY, updates, manifest, commit
    generate_s: float  # the simulation alone
    raw_copy_s: float  # COPY of the same frames, nothing else (rolled back)
    raw_rows: int

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.batch_s

    @property
    def raw_rows_per_s(self) -> float:
        return self.raw_rows / self.raw_copy_s

    @property
    def ratio(self) -> float:
        """Generator rate as a share of the raw COPY rate (1.0 = as fast as COPY alone)."""
        return self.rows_per_s / self.raw_rows_per_s


def measure_throughput(settings: Settings, spec: Spec, batch_id: str | None = None) -> Throughput:
    """Time a raw COPY of a batch's rows (then rolled back), then write the same batch for real.

    For `make bench`. The raw COPY uses the very frames the batch will write (same seed, same
    state, same clock), so the ratio isolates what simulation and bookkeeping cost.
    """
    spec = spec.resolved()
    now = datetime.now(UTC).replace(tzinfo=None)
    with connect(settings, "generator") as conn:
        sinks.check_initialised(conn)
        sinks.lock(conn)
        batch = simulate(sinks.load_state(conn), spec, now=now)
        began = time.perf_counter()
        written = sinks.copy_frames(conn, batch.inserts)
        raw_s = time.perf_counter() - began
        conn.rollback()
    result = run_batch(settings, spec, batch_id, now=now)
    return Throughput(
        rows=result.rows,
        batch_s=result.seconds,
        generate_s=result.generate_seconds,
        raw_copy_s=raw_s,
        raw_rows=sum(written.values()),
    )
