"""The generator against the real local PostgreSQL: volumes, manifest, atomicity, signals, webhook.

The database is shared with other tests, so every assertion is about this test's own batches:
their ids, and the key ranges `sim.batches` records for them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import sqlalchemy as sa

from core.db import connect
from core.errors import SchemaNotInitialisedError
from core.settings import Settings
from generator import defects as dfx
from generator import sinks
from generator.simulate import PK, TABLES, Spec
from generator.stream import BatchFailedError, BatchResult, run_batch

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
EMAIL_OK = r"^[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}$"


def unique(prefix: str) -> str:
    return f"it-{prefix}-{uuid.uuid4().hex[:10]}"


def in_range(record: sinks.BatchRecord, table: str, alias: str = "t") -> str:
    first, last = record.keys[table] or (0, -1)
    return f"{alias}.{PK[table]} BETWEEN {first} AND {last}"


def count_in_range(conn: sa.Connection, record: sinks.BatchRecord, table: str) -> int:
    return conn.execute(sa.text(f"SELECT count(*) FROM shop.{table} t WHERE {in_range(record, table)}")).scalar_one()


@pytest.fixture(scope="module")
def batch(pg_settings: Settings) -> BatchResult:
    spec = Spec(customers=200, products=40, orders=300, events=5_000, seed=20_240_601, defect_rate=0.1)
    return run_batch(pg_settings, spec, unique("batch"))


def test_batch_lands_with_the_requested_volumes(pg_settings: Settings, batch: BatchResult) -> None:
    record = batch.record
    assert record.inserted["customers"] == 200
    assert record.inserted["products"] == 40
    assert record.inserted["orders"] == 300
    assert record.inserted["clickstream_events"] == 5_000 + record.defects.get("duplicate_event", 0)
    with connect(pg_settings, "generator") as conn:
        for table in TABLES:
            assert count_in_range(conn, record, table) == record.inserted[table], table
        [stored] = sinks.read_batches(conn, [record.batch_id])
        clocks = conn.execute(
            sa.text(f"SELECT min(updated_at) FROM shop.customers t WHERE {in_range(record, 'customers')}")
        ).scalar_one()
    assert stored == record
    assert stored.started_at <= clocks  # the database clock stamped the rows, after the batch began
    assert stored.window[1] == stored.started_at


DETECT = {
    "null_email": ("customers", "t.email IS NULL"),
    "malformed_email": ("customers", f"t.email IS NOT NULL AND lower(btrim(t.email, E' \\t')) !~ '{EMAIL_OK}'"),
    "email_noise": (
        "customers",
        f"lower(btrim(t.email, E' \\t')) ~ '{EMAIL_OK}' AND t.email <> lower(btrim(t.email, E' \\t'))",
    ),
    "country_code_noise": ("customers", "t.country_code <> upper(btrim(t.country_code))"),
    "non_positive_price": ("products", "t.unit_price <= 0"),
    "total_mismatch": (
        "orders",
        "t.total_amount <> coalesce((SELECT s.total FROM line_totals s WHERE s.order_id = t.order_id), 0)",
    ),
    "zero_quantity": ("order_items", "t.quantity = 0"),
    "negative_quantity": ("order_items", "t.quantity < 0"),
    "orphan_order": ("order_items", "NOT EXISTS (SELECT 1 FROM shop.orders o WHERE o.order_id = t.order_id)"),
    "orphan_product": (
        "order_items",
        "NOT EXISTS (SELECT 1 FROM shop.products p WHERE p.product_id = t.product_id)",
    ),
    "duplicate_event": (
        "clickstream_events",
        "(SELECT count(*) FROM shop.clickstream_events d WHERE d.event_id = t.event_id) > 1",
    ),
    "future_timestamp": ("clickstream_events", "t.event_ts > :started_at"),
    "late_event": ("clickstream_events", "t.event_ts < :window_start"),
}


def test_manifest_matches_the_database_kind_by_kind(pg_settings: Settings, batch: BatchResult) -> None:
    record = batch.record
    with connect(pg_settings, "generator") as conn:
        manifest = sinks.read_manifest(conn, [record.batch_id])
        for kind, (table, condition) in DETECT.items():
            key = "event_id" if table == "clickstream_events" else PK[table]
            # The valid lines of the batch's orders (quantity > 0, product exists), summed per order.
            line_totals = (
                "WITH line_totals AS (SELECT i.order_id, sum(i.quantity * i.unit_price - i.discount_amount) AS total "
                "FROM shop.order_items i JOIN shop.products p ON p.product_id = i.product_id "
                f"WHERE {in_range(record, 'order_items', 'i')} AND i.quantity > 0 GROUP BY i.order_id) "
            )
            found = {
                str(k)
                for (k,) in conn.execute(
                    sa.text(
                        f"{line_totals}SELECT t.{key} FROM shop.{table} t "
                        f"WHERE {in_range(record, table)} AND {condition}"
                    ),
                    {"started_at": record.started_at, "window_start": record.window[0]},
                )
            }
            recorded = set(manifest.loc[manifest["kind"] == kind, "record_key"])
            assert found == recorded, kind
            assert (manifest.loc[manifest["kind"] == kind, "table_name"] == table).all()
    assert set(DETECT) == set(dfx.DEFECT_KINDS)
    assert manifest["kind"].value_counts().to_dict() == record.defects
    assert set(manifest["handling"]) <= {"reject", "fix", "keep"}
    assert len(set(manifest["kind"])) >= 10  # a 10% rate plants (nearly) every kind


def test_next_run_gets_a_new_id_and_updates_earlier_rows(pg_settings: Settings, batch: BatchResult) -> None:
    second = run_batch(pg_settings, Spec(customers=5, products=2, orders=20, events=300, seed=2), unique("next"))
    assert second.record.batch_id != batch.record.batch_id
    assert second.record.updated["orders"] > 0
    first_orders = batch.record.keys["orders"]
    assert first_orders is not None
    with connect(pg_settings, "generator") as conn:
        moved = conn.execute(
            sa.text(
                "SELECT count(*) FROM shop.orders WHERE order_id BETWEEN :a AND :b "
                "AND status <> 'placed' AND updated_at >= :t"
            ),
            {"a": first_orders[0], "b": first_orders[1], "t": second.record.started_at},
        ).scalar_one()
        for table in TABLES:  # the new rows continue after the first batch's keys
            if second.record.keys[table] and batch.record.keys[table]:
                assert second.record.keys[table][0] > batch.record.keys[table][1]  # type: ignore[index]
    assert moved > 0


def test_a_committed_batch_id_is_never_written_twice(pg_settings: Settings, batch: BatchResult) -> None:
    again = run_batch(pg_settings, Spec(customers=3, orders=0, events=0, seed=1), batch.record.batch_id)
    assert again.already_committed and again.record == batch.record


def test_a_failing_batch_leaves_nothing(pg_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    batch_id = unique("fail")

    def boom(*args: object, **kwargs: object) -> None:
        with connect(pg_settings, "generator") as probe:  # another session: the COPY is not visible
            assert probe.execute(sa.text("SELECT 1")).scalar_one() == 1
        raise sa.exc.DBAPIError("UPDATE", {}, RuntimeError("simulated failure after the inserts"))

    with connect(pg_settings, "generator") as conn:
        before = sinks.next_ids(conn)
    monkeypatch.setattr(sinks, "apply_updates", boom)
    with pytest.raises(BatchFailedError, match="rolled back, nothing written"):
        run_batch(pg_settings, Spec(customers=30, products=5, orders=40, events=600, seed=3), batch_id)
    with connect(pg_settings, "generator") as conn:
        assert not sinks.batch_exists(conn, batch_id)
        assert sinks.read_manifest(conn, [batch_id]).empty
        for table in ("customers", "clickstream_events"):
            stray = conn.execute(
                sa.text(f"SELECT count(*) FROM shop.{table} WHERE {PK[table]} >= :k AND {PK[table]} < :k + 20"),
                {"k": before[table]},
            ).scalar_one()
            assert stray == 0, table


def test_uninitialised_database_says_run_db_init(pg_settings: Settings) -> None:
    elsewhere = pg_settings.model_copy(update={"source_db": "postgres"})  # reachable, but no shop tables
    with pytest.raises(SchemaNotInitialisedError, match="run `ecom db init`"):
        run_batch(elsewhere, Spec(customers=1, orders=0, events=0, seed=1), unique("uninit"))


# --- webhook, end to end ------------------------------------------------------------------------------
class Hook:
    def __init__(self, status: int) -> None:
        self.bodies: list[dict[str, object]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                hook.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.usefixtures("no_proxy")
def test_webhook_reports_each_committed_batch(pg_settings: Settings) -> None:
    hook = Hook(200)
    try:
        settings = pg_settings.model_copy(update={"webhook_url": hook.url, "webhook_retries": 0})
        result = run_batch(settings, Spec(customers=4, products=2, orders=5, events=80, seed=5), unique("hook"))
    finally:
        hook.close()
    assert result.delivery is not None and result.delivery.ok
    [body] = hook.bodies
    assert body["batch_id"] == result.record.batch_id
    assert body["rows"] == result.record.inserted and body["defects"] == result.record.defects
    assert set(body) >= {"batch_id", "started_at", "ended_at", "rows", "defects"}


@pytest.mark.usefixtures("no_proxy")
def test_failing_webhook_never_loses_the_batch(pg_settings: Settings) -> None:
    hook = Hook(500)
    try:
        settings = pg_settings.model_copy(
            update={"webhook_url": hook.url, "webhook_retries": 1, "webhook_timeout_s": 1.0}
        )
        result = run_batch(settings, Spec(customers=4, products=2, orders=5, events=80, seed=6), unique("hook500"))
    finally:
        hook.close()
    assert result.delivery is not None and not result.delivery.ok and len(hook.bodies) == 2
    with connect(pg_settings, "generator") as conn:
        assert sinks.batch_exists(conn, result.record.batch_id)


# --- stopping a stream ----------------------------------------------------------------------------------
def start_stream(prefix: str, events: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "ECOM_WEBHOOK_URL": ""}
    return subprocess.Popen(
        [sys.executable, "-m", "core.cli", "generate", "--stream", "--interval", "0", "--batch-id", prefix,
         "--customers", "20", "--products", "5", "--orders", "100", "--events", str(events), "--seed", "9"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def committed(settings: Settings, prefix: str) -> list[sinks.BatchRecord]:
    with connect(settings, "generator") as conn:
        ids = conn.execute(
            sa.text("SELECT batch_id FROM sim.batches WHERE batch_id LIKE :p"), {"p": f"{prefix}-%"}
        ).scalars()
        return sinks.read_batches(conn, list(ids))


def wait_until_copying(settings: Settings, proc: subprocess.Popen[str], deadline: float) -> None:
    """Until the stream's session is inside a COPY (mid-batch)."""
    with connect(settings, "generator") as conn:
        while time.monotonic() < deadline and proc.poll() is None:
            busy = conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ecom-generator' "
                    "AND state = 'active' AND query LIKE 'COPY shop.clickstream_events%'"
                )
            ).scalar_one()
            if busy:
                return
            conn.execute(sa.text("SELECT pg_stat_clear_snapshot()"))  # see fresh activity next time
            time.sleep(0.02)
    raise AssertionError("the stream never got to a COPY")


def assert_whole(settings: Settings, records: list[sinks.BatchRecord]) -> None:
    with connect(settings, "generator") as conn:
        for record in records:
            for table in TABLES:
                assert count_in_range(conn, record, table) == record.inserted[table], (record.batch_id, table)
            manifest = sinks.read_manifest(conn, [record.batch_id])
            assert manifest["kind"].value_counts().to_dict() == record.defects


def test_sigterm_mid_stream_ends_after_a_whole_batch(pg_settings: Settings) -> None:
    prefix = unique("term")
    proc = start_stream(prefix, events=20_000)
    try:
        wait_until_copying(pg_settings, proc, time.monotonic() + 60)
        in_flight = len(committed(pg_settings, prefix)) + 1
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "stopped by SIGTERM" in out
    records = committed(pg_settings, prefix)
    assert len(records) == in_flight  # the batch being written was finished, no new one began
    assert_whole(pg_settings, records)


def test_second_signal_aborts_the_batch_and_rolls_it_back(pg_settings: Settings) -> None:
    prefix = unique("abort")
    with connect(pg_settings, "generator") as conn:
        before = sinks.next_ids(conn)["clickstream_events"]
    proc = start_stream(prefix, events=60_000)  # a COPY long enough to be interrupted
    try:
        wait_until_copying(pg_settings, proc, time.monotonic() + 60)
        proc.send_signal(signal.SIGTERM)
        assert proc.stderr is not None
        seen = []  # wait until the first signal was handled: two pending ones would merge into one
        while not seen or "finishing the running batch" not in seen[-1]:
            seen.append(proc.stderr.readline())
            assert seen[-1], seen  # EOF: the process ended without acknowledging the signal
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    records = committed(pg_settings, prefix)
    assert proc.returncode == 130 and "interrupted" in err, (proc.returncode, err)
    assert_whole(pg_settings, records)
    covered = [r.keys["clickstream_events"] for r in records if r.keys["clickstream_events"]]
    with connect(pg_settings, "generator") as conn:
        ours = conn.execute(
            sa.text("SELECT event_seq FROM shop.clickstream_events WHERE event_seq >= :k"), {"k": before}
        ).scalars()
        others = [r.keys["clickstream_events"] for r in sinks.read_batches(conn) if r.keys["clickstream_events"]]
        stray = [k for k in ours if not any(a <= k <= b for a, b in [*covered, *others])]  # type: ignore[misc]
    assert stray == []  # no event of the aborted batch remains
