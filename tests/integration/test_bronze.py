"""Bronze against the real local PostgreSQL: loss-free windows, idempotency, drift, locking.

ecom_db is shared with other tests running at the same time, so these tests never truncate:
each starts its lake's extraction at the current horizon (`start_at`), inserts rows of its
own (tagged), waits until the horizon has passed its transactions, and asserts on those rows.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import bronze.job as bronze_job
from bronze.job import committed_windows, current_horizon, extract_table
from bronze.locking import table_lock
from bronze.watermarks import path as watermarks_path
from bronze.watermarks import read_watermark, save_watermark
from core import db
from core.errors import EcomError, LockBusyError, SchemaDriftError
from core.lake import table_path
from core.schema import clickstream_events, orders, products
from core.settings import Settings, load_settings
from generator.sinks import LOCK_ID as GENERATOR_LOCK_ID
from tests.support import wait_for_horizon

pytestmark = pytest.mark.integration


# --- helpers ------------------------------------------------------------------------------------
@dataclass
class Mine:
    """The source rows one test wrote (deleted afterwards) and its tag."""

    settings: Settings
    tag: str = field(default_factory=lambda: uuid.uuid4().hex)
    keys: dict[str, list[int]] = field(default_factory=dict)

    def add(self, table: str, ids: list[int]) -> list[int]:
        self.keys.setdefault(table, []).extend(ids)
        return ids


KEYS = {"orders": "order_id", "products": "product_id", "clickstream_events": "event_seq"}


@pytest.fixture
def bronze_settings(pg_settings: Settings, tmp_path: Path) -> Settings:
    return load_settings(lake_root=str(tmp_path / "lake"), spark_shuffle_partitions=2, gx_root=str(tmp_path / "gx"))


@pytest.fixture
def mine(bronze_settings: Settings) -> Iterator[Mine]:
    m = Mine(bronze_settings)
    yield m
    with db.connect(bronze_settings, "generator") as conn:
        for table, ids in m.keys.items():
            t = {"orders": orders, "products": products, "clickstream_events": clickstream_events}[table]
            conn.execute(sa.delete(t).where(t.c[KEYS[table]].in_(ids)))


def _xid(conn: sa.Connection) -> int:
    return int(conn.execute(sa.text("SELECT pg_current_xact_id()::text::bigint")).scalar_one())


def generator_lock(conn: sa.Connection) -> None:
    """Serialise key allocation with generator batches, which write explicit keys."""
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": GENERATOR_LOCK_ID})


def order_row(tag: str) -> dict[str, Any]:
    # 'cancelled' is final: the generator only moves open orders, so it never touches these.
    return {
        "customer_id": None,
        "status": "cancelled",
        "order_ts": datetime(2026, 1, 1, 12, 0),
        "total_amount": 10,
        "currency": "EUR",
        "payment_method": "v1",  # the version marker the tests update
        "visitor_id": tag,
    }


def insert_orders(conn: sa.Connection, mine: Mine, n: int, *, lock: bool = True) -> list[int]:
    if lock:
        generator_lock(conn)
    ids = conn.execute(sa.insert(orders).returning(orders.c.order_id), [order_row(mine.tag) for _ in range(n)])
    return mine.add("orders", list(ids.scalars()))


def add_product(conn: sa.Connection, mine: Mine, **extra: object) -> int:
    """A product without a price: the generator only touches priced ones."""
    generator_lock(conn)
    cols = {"sku": f"BT-{uuid.uuid4().hex[:20]}", "name": mine.tag, "category": "test", **extra}
    sql = f"INSERT INTO shop.products ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)}) RETURNING product_id"
    return mine.add("products", [conn.execute(sa.text(sql), cols).scalar_one()])[0]


def set_version(conn: sa.Connection, ids: list[int], marker: str) -> None:
    conn.execute(sa.update(orders).where(orders.c.order_id.in_(ids)).values(payment_method=marker))


def insert_events(conn: sa.Connection, mine: Mine, event_ids: list[str]) -> list[int]:
    generator_lock(conn)
    rows = [
        {
            "event_id": e,
            "visitor_id": mine.tag,
            "event_type": "page_view",
            "page_url": "/",
            "event_ts": datetime(2026, 1, 1, 12, 0),
            "device": "mobile",
            "channel": "seo",
        }
        for e in event_ids
    ]
    seqs = conn.execute(sa.insert(clickstream_events).returning(clickstream_events.c.event_seq), rows)
    return mine.add("clickstream_events", list(seqs.scalars()))


def batch(mine: Mine) -> Iterator[sa.Connection]:
    """One committed generator transaction; the horizon is awaited past it on exit."""
    return _Batch(mine)  # type: ignore[return-value]


class _Batch:
    def __init__(self, mine: Mine) -> None:
        self.mine = mine

    def __enter__(self) -> sa.Connection:
        self.cm = db.connect(self.mine.settings, "generator")
        self.conn = self.cm.__enter__()
        return self.conn

    def __exit__(self, *exc: object) -> None:
        xid = _xid(self.conn)
        self.cm.__exit__(*exc)  # type: ignore[arg-type]
        if exc[0] is None:
            wait_for_horizon(self.mine.settings, xid)


def bronze_df(spark, settings: Settings, table: str, ids: list[int]):  # type: ignore[no-untyped-def]
    from pyspark.sql import functions as F

    return spark.read.format("delta").load(table_path(settings, "bronze", table)).where(F.col(KEYS[table]).isin(ids))


def versions_by_run(spark, settings: Settings, table: str, ids: list[int], value: str) -> dict[str, Counter]:  # type: ignore[no-untyped-def]
    """{run_id: Counter((key, value))} of this test's rows in bronze."""
    out: dict[str, Counter] = {}
    for r in bronze_df(spark, settings, table, ids).select("_run_id", KEYS[table], value).collect():
        out.setdefault(r[0], Counter())[(r[1], r[2])] += 1
    return out


def delta_version(spark, settings: Settings, table: str) -> int:  # type: ignore[no-untyped-def]
    from delta.tables import DeltaTable

    return int(DeltaTable.forPath(spark, table_path(settings, "bronze", table)).history(1).first().version)


# --- tests ----------------------------------------------------------------------------------------
def test_three_batches_every_row_version_once_per_extraction(spark, bronze_settings, mine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    settings = bronze_settings.model_copy(update={"jdbc_partitions": 3})
    mine.settings = settings
    monkeypatch.setattr(bronze_job, "MIN_ROWS_PER_PARTITION", 1)  # exercise the parallel read
    h0 = current_horizon(settings)

    with batch(mine) as conn:
        a = insert_orders(conn, mine, 3)
    first = extract_table(spark, settings, "orders", run_id="r1", start_at=h0)
    assert first.details["partitions"] > 1

    with batch(mine) as conn:
        set_version(conn, a[:2], "v2")
        b = insert_orders(conn, mine, 2)
    bronze_job.run(spark, settings, run_id="r2", tables=["orders"])

    with batch(mine) as conn:
        set_version(conn, a[:1], "v3")
    with batch(mine) as conn:  # two versions between extractions: a query sees the latest
        set_version(conn, a[:1], "v4")
        c = insert_orders(conn, mine, 1)
    bronze_job.run(spark, settings, run_id="r3", tables=["orders"])
    bronze_job.run(spark, settings, run_id="r4", tables=["orders"])

    got = versions_by_run(spark, settings, "orders", mine.keys["orders"], "payment_method")
    assert got == {
        "r1": Counter({(a[0], "v1"): 1, (a[1], "v1"): 1, (a[2], "v1"): 1}),
        "r2": Counter({(a[0], "v2"): 1, (a[1], "v2"): 1, (b[0], "v1"): 1, (b[1], "v1"): 1}),
        "r3": Counter({(a[0], "v4"): 1, (c[0], "v1"): 1}),
    }

    # The metadata, and windows that chain exactly: each run starts where the last one ended.
    rows = (
        bronze_df(spark, settings, "orders", mine.keys["orders"])
        .select("_run_id", "_source", "_extract_horizon", "_ingest_date", "_change_version")
        .collect()
    )
    horizon = {r._run_id: r._extract_horizon for r in rows}
    assert horizon["r1"] < horizon["r2"] < horizon["r3"]
    assert {r._source for r in rows} == {"postgresql:ecom_db.shop.orders"}
    assert all(r._change_version < r._extract_horizon and r._ingest_date is not None for r in rows)
    runs = spark.read.format("delta").load(table_path(settings, "ops", "runs")).where("layer = 'bronze'").collect()
    ledger = {r.run_id: r for r in runs}
    assert set(ledger) == {"r2", "r3", "r4"}  # extract_table leaves recording to its caller
    assert ledger["r2"].watermark_from == first.watermark_to
    assert ledger["r3"].watermark_from == ledger["r2"].watermark_to
    assert ledger["r4"].watermark_from == ledger["r3"].watermark_to
    assert ledger["r2"].status == "succeeded" and ledger["r2"].rows_in == ledger["r2"].rows_out >= 4
    wm = read_watermark(settings, "orders")
    assert wm is not None and str(wm.watermark) == ledger["r4"].watermark_to
    saved_by = "r3" if ledger["r4"].watermark_from == ledger["r4"].watermark_to else "r4"  # unchanged: not saved
    assert str(wm.previous) == ledger[saved_by].watermark_from


def test_events_are_split_on_their_surrogate_key_and_duplicates_kept(spark, bronze_settings, mine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    settings = bronze_settings
    monkeypatch.setattr(bronze_job, "MIN_ROWS_PER_PARTITION", 1)
    h0 = current_horizon(settings)
    dup = str(uuid.uuid4())
    with batch(mine) as conn:
        seqs = insert_events(conn, mine, [dup, dup, str(uuid.uuid4())])  # the collector's at-least-once duplicate
    rec = extract_table(spark, settings, "clickstream_events", run_id="e1", start_at=h0)
    assert rec.details["partitions"] == 2
    got = bronze_df(spark, settings, "clickstream_events", seqs).select("event_seq", "event_id").collect()
    assert sorted(r.event_seq for r in got) == sorted(seqs)
    assert [r.event_id for r in got].count(dup) == 2  # raw: nothing dropped


def test_long_transaction_row_arrives_exactly_once_where_a_naive_extractor_loses_it(  # type: ignore[no-untyped-def]
    spark, bronze_settings, mine
) -> None:
    settings = bronze_settings
    h0 = current_horizon(settings)
    naive_seen: list[int] = []

    def naive(watermark_ts: datetime | None, max_id: int) -> tuple[list[int], list[int]]:
        """The plain extractors: `updated_at > watermark` and `order_id > max_id`."""
        with db.connect(settings, "extractor") as conn:
            by_ts = conn.execute(
                sa.select(orders.c.order_id)
                .where(orders.c.visitor_id == mine.tag)
                .where(orders.c.updated_at > (watermark_ts or datetime(1970, 1, 1)))
            ).scalars()
            by_id = conn.execute(
                sa.select(orders.c.order_id).where(orders.c.visitor_id == mine.tag).where(orders.c.order_id > max_id)
            ).scalars()
            return list(by_ts), list(by_id)

    t1_conn = db.engine(settings, "generator").connect()
    t1 = t1_conn.begin()
    try:
        (long_id,) = insert_orders(t1_conn, mine, 1)  # T1: inserts, stays open
        t1_xid = _xid(t1_conn)
        with db.connect(settings, "generator") as conn:  # T2: inserts after T1, commits first
            (short_id,) = insert_orders(conn, mine, 1, lock=False)  # T1 holds the generator lock
            t2_xid = _xid(conn)
        with db.connect(settings, "extractor") as conn:
            t2_updated_at = conn.execute(
                sa.select(orders.c.updated_at).where(orders.c.order_id == short_id)
            ).scalar_one()

        by_ts, by_id = naive(None, 0)  # the naive extractors run now, see T2's row only
        assert by_ts == by_id == [short_id]
        naive_seen += by_ts
        naive_ts_watermark, naive_id_watermark = t2_updated_at, short_id

        rec1 = extract_table(spark, settings, "orders", run_id="b1", start_at=h0)
        assert int(rec1.watermark_to) <= t1_xid  # the horizon waits for T1...
        assert bronze_df(spark, settings, "orders", [long_id, short_id]).count() == 0  # ...and so does T2's row
        v1 = delta_version(spark, settings, "orders")
        rec2 = extract_table(spark, settings, "orders", run_id="b2")
        assert int(rec2.watermark_to) <= t1_xid
        if rec2.watermark_to == rec1.watermark_to:  # T1 holds the horizon: nothing new below it
            assert rec2.rows_out == 0  # a rerun with nothing new appends nothing
            assert delta_version(spark, settings, "orders") == v1
        t1.commit()
    finally:
        if t1.is_active:
            t1.rollback()
        t1_conn.close()
    wait_for_horizon(settings, max(t1_xid, t2_xid))

    by_ts, by_id = naive(naive_ts_watermark, naive_id_watermark)
    naive_lost = {long_id, short_id} - set(naive_seen) - set(by_ts)
    assert by_ts == [] and by_id == []
    assert naive_lost == {long_id}, "the naive extractors lose T1's row for good"

    extract_table(spark, settings, "orders", run_id="b3")
    got = versions_by_run(spark, settings, "orders", [long_id, short_id], "order_id")
    assert got == {"b3": Counter({(long_id, long_id): 1, (short_id, short_id): 1})}
    print(f"long transaction: naive extractors lost {len(naive_lost)} of 2 rows; bronze lost 0, duplicated 0")


def test_crash_between_commit_and_watermark_appends_nothing_twice(spark, bronze_settings, mine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    settings = bronze_settings
    h0 = current_horizon(settings)
    with batch(mine) as conn:
        first = insert_orders(conn, mine, 2)
    rec1 = extract_table(spark, settings, "orders", run_id="c1", start_at=h0)

    with batch(mine) as conn:
        second = insert_orders(conn, mine, 2)

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated crash after the Delta commit")

    monkeypatch.setattr(bronze_job, "save_watermark", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        extract_table(spark, settings, "orders", run_id="c2")
    monkeypatch.undo()

    committed = committed_windows(spark, table_path(settings, "bronze", "orders"))[0]
    assert committed["run_id"] == "c2"
    wm = read_watermark(settings, "orders")
    assert wm is not None and wm.watermark == int(rec1.watermark_to) < committed["window_to"]

    rec3 = extract_table(spark, settings, "orders", run_id="c3")  # the rerun
    assert int(rec3.watermark_from) == committed["window_to"]  # reconciled before reading
    got = versions_by_run(spark, settings, "orders", first + second, "order_id")
    assert got == {
        "c1": Counter({(i, i): 1 for i in first}),
        "c2": Counter({(i, i): 1 for i in second}),
    }


def test_lost_watermarks_are_rebuilt_from_bronzes_commits(spark, bronze_settings, mine) -> None:  # type: ignore[no-untyped-def]
    """The idempotency net without `ops.watermarks` at all: each append's commit records its
    window, so a rerun starts where bronze ends, not at the start (no window appended twice)."""
    settings = bronze_settings
    h0 = current_horizon(settings)
    with batch(mine) as conn:
        first = insert_orders(conn, mine, 2)
    rec1 = extract_table(spark, settings, "orders", run_id="w1", start_at=h0)
    shutil.rmtree(watermarks_path(settings))
    assert read_watermark(settings, "orders") is None

    with batch(mine) as conn:
        second = insert_orders(conn, mine, 2)
    rec2 = extract_table(spark, settings, "orders", run_id="w2")
    assert int(rec2.watermark_from) == int(rec1.watermark_to)
    got = versions_by_run(spark, settings, "orders", first + second, "order_id")
    assert got == {"w1": Counter({(i, i): 1 for i in first}), "w2": Counter({(i, i): 1 for i in second})}
    wm = read_watermark(settings, "orders")
    assert wm is not None and wm.watermark == int(rec2.watermark_to) and wm.previous == int(rec1.watermark_to)


def _alter(settings: Settings, statement: str) -> None:
    """DDL on a shared table: never queue behind a long transaction (and block everyone)."""
    for attempt in range(20):
        try:
            with db.connect(settings, "admin", "ecom_db") as conn:
                conn.exec_driver_sql("SET LOCAL lock_timeout = '2s'")
                conn.exec_driver_sql(statement)
            return
        except sa.exc.OperationalError:
            if attempt == 19:
                raise
            time.sleep(0.5)


def test_schema_evolution_then_full_refresh(spark, bronze_settings, mine) -> None:  # type: ignore[no-untyped-def]
    """A new column flows in; a retyped or dropped one fails; --full-refresh rebuilds bronze."""
    settings = bronze_settings
    probe = f"bronze_probe_{mine.tag[:8]}"
    h0 = current_horizon(settings)

    with batch(mine) as conn:
        old = add_product(conn, mine)
    extract_table(spark, settings, "products", run_id="s1", start_at=h0)
    try:
        _alter(settings, f"ALTER TABLE shop.products ADD COLUMN {probe} numeric(10,2)")
        with batch(mine) as conn:
            new = add_product(conn, mine, **{probe: 1.25})
            conn.execute(sa.update(products).where(products.c.product_id == old).values(name="renamed"))
        rec = extract_table(spark, settings, "products", run_id="s2")
        assert rec.details["columns_added"] == [probe]
        got = {(r.product_id, r.name, r[probe]) for r in bronze_df(spark, settings, "products", [old, new]).collect()}
        assert got == {(old, mine.tag, None), (old, "renamed", None), (new, mine.tag, Decimal("1.25"))}

        _alter(settings, f"ALTER TABLE shop.products ALTER COLUMN {probe} TYPE numeric(12,2)")
        with pytest.raises(SchemaDriftError, match=rf"'products'.*'{probe}' changed type from decimal\(10,2\)"):
            extract_table(spark, settings, "products", run_id="s3")

        _alter(settings, f"ALTER TABLE shop.products DROP COLUMN {probe}")
        with pytest.raises(SchemaDriftError, match=rf"'products'.*'{probe}' was dropped"):
            extract_table(spark, settings, "products", run_id="s4")
    finally:
        _alter(settings, f"ALTER TABLE shop.products DROP COLUMN IF EXISTS {probe}")

    # --full-refresh is the remedy: bronze is rebuilt from [0, horizon) in the source's current
    # shape, one row per source row — the history of earlier versions is gone.
    rec = bronze_job.run(spark, settings, run_id="s5", full_refresh=True, tables=["products"])[0]
    df = spark.read.format("delta").load(table_path(settings, "bronze", "products"))
    assert rec.status == "succeeded" and rec.watermark_from == "0"
    assert probe not in df.columns
    assert [r[0] for r in df.select("_run_id").distinct().collect()] == ["s5"]
    assert df.groupBy("product_id").count().where("count > 1").count() == 0
    assert {(r.product_id, r.name) for r in bronze_df(spark, settings, "products", [old, new]).collect()} == {
        (old, "renamed"),
        (new, mine.tag),
    }
    assert df.count() == rec.rows_out
    with db.connect(settings, "extractor") as conn:
        below_horizon = conn.execute(
            sa.text("SELECT count(*) FROM shop.products WHERE _change_version < (:h)::xid8"), {"h": rec.watermark_to}
        ).scalar_one()
    assert below_horizon <= df.count()  # equal unless a product changed during the read (next window)
    assert read_watermark(settings, "products").watermark == int(rec.watermark_to)


def test_a_second_writer_on_a_table_is_refused(spark, bronze_settings) -> None:  # type: ignore[no-untyped-def]
    settings = bronze_settings
    holder = subprocess.Popen(  # another process, as a concurrent `ecom run bronze` would be
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from bronze.locking import table_lock\n"
            "from core.settings import load_settings\n"
            "with table_lock(load_settings(lake_root=sys.argv[1]), 'bronze.customers'):\n"
            "    print('locked', flush=True)\n"
            "    time.sleep(600)\n",
            settings.lake_root,
        ],
        cwd=str(settings.home),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        assert holder.poll() is None, "the lock holder died"
        with pytest.raises(LockBusyError, match=rf"bronze\.customers@\w+ is being written by pid {holder.pid}"):
            bronze_job.run(spark, settings, run_id="l1", tables=["customers"])
    finally:
        holder.terminate()
        holder.wait(timeout=10)
    runs = spark.read.format("delta").load(table_path(settings, "ops", "runs")).collect()
    assert [(r.table_name, r.status) for r in runs] == [("customers", "failed")]
    assert "one writer per table" in runs[0].message
    with table_lock(settings, "bronze.customers"):  # released with the process
        pass


def test_a_watermark_that_does_not_match_the_source_is_refused(spark, bronze_settings) -> None:  # type: ignore[no-untyped-def]
    settings = bronze_settings
    h0 = current_horizon(settings)
    source = "postgresql:ecom_db.shop.products"
    # bronze.products is missing while a watermark exists: start over rather than skip what it held.
    save_watermark(spark, settings, "products", source=source, watermark=h0 + 10**12, run_id="x")
    rec = extract_table(spark, settings, "products", run_id="w1", start_at=h0)
    assert rec.watermark_from == str(h0)

    # A horizon behind the watermark: the source was recreated or restored.
    save_watermark(spark, settings, "products", source=source, watermark=h0 + 10**12, run_id="x")
    with pytest.raises(EcomError, match=r"horizon \d+ .* is behind the stored watermark .*--full-refresh"):
        extract_table(spark, settings, "products", run_id="w2")

    # A watermark of another source (dialect or database) means nothing here.
    save_watermark(spark, settings, "products", source="mssql:ecom_db.shop.products", watermark=h0, run_id="x")
    with pytest.raises(EcomError, match=r"belongs to mssql:ecom_db\.shop\.products"):
        extract_table(spark, settings, "products", run_id="w3")
