"""Gold end to end on silver-format Delta tables (change data feed on) in a temporary lake.

Several batches of a simulated shop — new rows, status changes (cancellations, returns),
re-dated and re-assigned orders, re-categorised and re-priced products, late events that
merge two sessions, sign-ups that claim anonymous sessions, deletes — are MERGEd into silver
as the silver job does. After each batch `gold.job.run` runs incrementally; its tables must
equal the marts' transforms applied to the whole of silver, and at the end a
`--full-refresh` run must reproduce them. Metrics a test can recompute on its own (revenue
and orders per customer, session counts, daily revenue) are recomputed with pandas.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from chispa import assert_df_equality

from core.errors import ValidationFailedError
from core.lake import last_commit, table_path

pytestmark = pytest.mark.integration

SCHEMAS = {
    "customers": "customer_id BIGINT, visitor_id STRING, email STRING, first_name STRING, last_name STRING, "
    "phone STRING, country_code STRING, city STRING, signup_at TIMESTAMP, updated_at TIMESTAMP, _run_id STRING",
    "products": "product_id BIGINT, sku STRING, name STRING, category STRING, unit_price DECIMAL(12,2), "
    "is_active BOOLEAN, created_at TIMESTAMP, updated_at TIMESTAMP, _run_id STRING",
    "orders": "order_id BIGINT, customer_id BIGINT, status STRING, order_ts TIMESTAMP, total_amount DECIMAL(12,2), "
    "currency STRING, payment_method STRING, visitor_id STRING, updated_at TIMESTAMP, _run_id STRING",
    "order_items": "order_item_id BIGINT, order_id BIGINT, product_id BIGINT, quantity INT, "
    "unit_price DECIMAL(12,2), discount_amount DECIMAL(12,2), updated_at TIMESTAMP, _run_id STRING",
    "clickstream_events": "event_id STRING, visitor_id STRING, customer_id BIGINT, event_type STRING, "
    "page_url STRING, product_id BIGINT, event_ts TIMESTAMP, device STRING, channel STRING, referrer STRING, "
    "ingested_at TIMESTAMP, session_id STRING, _run_id STRING",
}
KEYS = {
    "customers": "customer_id",
    "products": "product_id",
    "orders": "order_id",
    "order_items": "order_item_id",
    "clickstream_events": "event_id",
}
CATEGORIES = ("books", "toys", "garden", "home")
STATUSES = ("placed", "paid", "shipped", "delivered", "delivered", "cancelled", "returned")
DAY0 = datetime(2024, 5, 1, tzinfo=UTC)


class Shop:
    """A tiny simulated shop whose rows are silver-format tuples, keyed per table."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.rows: dict[str, dict[Any, tuple[Any, ...]]] = {t: {} for t in SCHEMAS}
        self.clock = datetime(2024, 5, 21, tzinfo=UTC)
        self.next_id = {"orders": 1, "order_items": 1, "events": 1}
        self.v28: list[str] = []

    def tick(self) -> datetime:
        self.clock += timedelta(seconds=1)
        return self.clock

    def put(self, table: str, row: tuple[Any, ...], changed: dict[str, dict[Any, tuple[Any, ...] | None]]) -> None:
        key = row[0]
        self.rows[table][key] = row
        changed[table][key] = row

    def delete(self, table: str, key: Any, changed: dict[str, dict[Any, tuple[Any, ...] | None]]) -> None:
        self.rows[table].pop(key, None)
        changed[table][key] = None

    # --- row factories ---
    def customer(self, cid: int, city: str = "Berlin") -> tuple[Any, ...]:
        return (cid, f"v{cid}", f"c{cid}@example.com", f"F{cid}", None, None, "DE", city, DAY0, self.tick(), "r")

    def product(self, pid: int, category: str, price: str) -> tuple[Any, ...]:
        return (pid, f"SKU{pid}", f"P{pid}", category, Decimal(price), True, DAY0, self.tick(), "r")

    def order(self, cid: int | None, when: datetime, changed: dict) -> int:  # type: ignore[type-arg]
        oid = self.next_id["orders"]
        self.next_id["orders"] += 1
        total = Decimal("0.00")
        for _ in range(int(self.rng.integers(1, 4))):
            pid = int(self.rng.integers(1, 13))
            price = self.rows["products"][pid][4]
            qty = int(self.rng.integers(1, 4))
            discount = Decimal("1.00") if self.rng.random() < 0.3 else Decimal("0.00")
            iid = self.next_id["order_items"]
            self.next_id["order_items"] += 1
            self.put("order_items", (iid, oid, pid, qty, price, discount, self.tick(), "r"), changed)
            total += qty * price - discount
        status = str(self.rng.choice(STATUSES))
        visitor = None if cid is None else f"v{cid}"
        self.put("orders", (oid, cid, status, when, total, "USD", "card", visitor, self.tick(), "r"), changed)
        return oid

    def session(self, visitor: str, start: datetime, changed: dict, *, customer_id: int | None = None) -> str:  # type: ignore[type-arg]
        sid = hashlib.sha256(f"{visitor}|{start.isoformat()}".encode()).hexdigest()  # silver: sha2, 64 hex
        when = start
        for i in range(int(self.rng.integers(1, 7))):
            etype = "page_view" if i == 0 else str(self.rng.choice(["product_view", "add_to_cart", "purchase",
                                                                      "remove_from_cart", "search"]))  # fmt: skip
            pid = (
                int(self.rng.integers(1, 14)) if etype in ("product_view", "add_to_cart", "remove_from_cart") else None
            )
            self.event(sid, visitor, etype, when, changed, customer_id=customer_id, product_id=pid)
            when += timedelta(seconds=int(self.rng.integers(5, 600)))
        return sid

    def event(self, sid, visitor, etype, when, changed, *, customer_id=None, product_id=None) -> str:  # type: ignore[no-untyped-def]
        eid = f"e{self.next_id['events']:05d}"
        self.next_id["events"] += 1
        row = (eid, visitor, customer_id, etype, f"/{etype}", product_id, when, "mobile", "organic", None,
               self.tick(), sid, "r")  # fmt: skip
        self.put("clickstream_events", row, changed)
        return eid

    def moment(self, first_day: int, days: int) -> datetime:
        return DAY0 + timedelta(days=first_day, seconds=int(self.rng.integers(0, days * 86_400)))


def _changes() -> dict[str, dict[Any, tuple[Any, ...] | None]]:
    return {t: {} for t in SCHEMAS}


def batch_1(shop: Shop) -> dict:  # type: ignore[type-arg]
    changed = _changes()
    for pid in range(1, 13):
        shop.put("products", shop.product(pid, CATEGORIES[pid % 4], f"{5 + 3 * pid}.50"), changed)
    for cid in range(1, 26):
        shop.put("customers", shop.customer(cid), changed)
    for _ in range(60):
        cid = int(shop.rng.integers(1, 26)) if shop.rng.random() < 0.9 else None
        shop.order(cid, shop.moment(0, 20), changed)
    for _ in range(40):
        n = int(shop.rng.integers(1, 31))  # v26..v30 are anonymous so far
        logged = n if n <= 25 and shop.rng.random() < 0.5 else None
        shop.session(f"v{n}", shop.moment(0, 20), changed, customer_id=logged)
    shop.session("v26", DAY0 + timedelta(days=3), changed)  # v26 signs up in batch 2
    return changed


def batch_2(shop: Shop) -> dict:  # type: ignore[type-arg]
    """Next day: cancellations and returns, a back-dated order, sign-ups, price and category moves, deletes."""
    shop.clock = datetime(2024, 5, 22, 8, tzinfo=UTC)
    changed = _changes()
    orders = shop.rows["orders"]
    for oid in sorted(orders)[:8]:
        row = orders[oid]
        shop.put("orders", (*row[:2], "cancelled" if oid % 2 else "returned", *row[3:8], shop.tick(), "r"), changed)
    shop.order(3, DAY0 - timedelta(days=3), changed)  # earlier than customer 3's first order
    for cid in (26, 27):  # v26 browsed anonymously before signing up
        shop.put("customers", shop.customer(cid), changed)
        shop.order(cid, shop.moment(21, 1), changed)
    for _ in range(8):
        shop.order(int(shop.rng.integers(1, 28)), shop.moment(20, 2), changed)
    p3, p4 = shop.rows["products"][3], shop.rows["products"][4]
    shop.put("products", (*p3[:3], "garden" if p3[3] != "garden" else "home", *p3[4:7], shop.tick(), "r"), changed)
    shop.put("products", (*p4[:4], p4[4] + Decimal("2.00"), *p4[5:7], shop.tick(), "r"), changed)
    item = shop.rows["order_items"][5]
    shop.put("order_items", (*item[:3], item[3] + 2, *item[4:6], shop.tick(), "r"), changed)
    shop.delete("order_items", 7, changed)
    gone = 11
    for iid, it in list(shop.rows["order_items"].items()):
        if it[1] == gone:
            shop.delete("order_items", iid, changed)
    shop.delete("orders", gone, changed)
    for _ in range(10):
        n = int(shop.rng.integers(1, 31))
        shop.session(f"v{n}", shop.moment(20, 2), changed, customer_id=n if n <= 27 else None)
    late = sorted(shop.rows["clickstream_events"].values(), key=lambda r: r[0])[3]  # a late event, old session
    shop.event(late[11], late[1], "product_view", late[6] - timedelta(seconds=30), changed, product_id=4)
    # two sessions of v28, three hours apart: batch 3 merges them
    shop.v28 = [shop.session("v28", DAY0 + timedelta(days=5, hours=h), changed) for h in (10, 13)]
    return changed


def batch_3(shop: Shop) -> dict:  # type: ignore[type-arg]
    """Same day: two sessions merged by a late event, a re-assigned order, a re-pointed line, a deleted customer."""
    shop.clock = datetime(2024, 5, 22, 18, tzinfo=UTC)
    changed = _changes()
    visitor, (first, second) = "v28", shop.v28
    # a late event bridges the gap: silver moves every event of the second session into the first
    events = shop.rows["clickstream_events"]
    end_first = max(r[6] for r in events.values() if r[11] == first)
    for row in list(events.values()):
        if row[11] == second:
            shop.put("clickstream_events", (*row[:11], first, "r"), changed)
    shop.event(first, visitor, "page_view", end_first + timedelta(minutes=20), changed)
    order = shop.rows["orders"][20]
    shop.put("orders", (order[0], 27, *order[2:8], shop.tick(), "r"), changed)
    item = shop.rows["order_items"][min(i for i in shop.rows["order_items"] if i > 8)]
    shop.put("order_items", (item[0], item[1], 12, *item[3:6], shop.tick(), "r"), changed)
    shop.put("customers", shop.customer(2, city="Hamburg"), changed)
    shop.delete("customers", 10, changed)
    shop.order(5, shop.moment(21, 1), changed)
    return changed


# --- silver writer ------------------------------------------------------------------------------------
def write_silver(spark, settings, changed: dict) -> None:  # type: ignore[no-untyped-def]
    """MERGE a batch into silver-format Delta tables (change data feed on), as silver does."""
    from delta.tables import DeltaTable

    for table, rows in changed.items():
        path = table_path(settings, "silver", table)
        key = KEYS[table]
        upserts = [r for r in rows.values() if r is not None]
        deletes = [k for k, r in rows.items() if r is None]
        if not DeltaTable.isDeltaTable(spark, path):
            writer = spark.createDataFrame(upserts, SCHEMAS[table]).coalesce(1).write.format("delta")
            writer.option("delta.enableChangeDataFeed", "true").save(path)
            continue
        target = DeltaTable.forPath(spark, path)
        if upserts:
            source = spark.createDataFrame(upserts, SCHEMAS[table])
            (
                target.alias("t")
                .merge(source.alias("s"), f"t.{key} = s.{key}")
                .whenMatchedUpdateAll()
                .whenNotMatchedInsertAll()
                .execute()
            )
        if deletes:
            quoted = ", ".join(f"'{k}'" if isinstance(k, str) else str(k) for k in deletes)
            target.delete(f"{key} IN ({quoted})")


def silver_state(spark, settings):  # type: ignore[no-untyped-def]
    from gold.job import business_columns
    from gold.marts.scope import SilverState

    return SilverState.of(
        {t: business_columns(spark.read.format("delta").load(table_path(settings, "silver", t))) for t in SCHEMAS}
    )


def gold_df(spark, settings, name: str, version: int | None = None):  # type: ignore[no-untyped-def]
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(table_path(settings, "gold", name))


def assert_equal(actual, expected) -> None:  # type: ignore[no-untyped-def]
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True, ignore_column_order=False)


# --- the tests ----------------------------------------------------------------------------------------
def test_incremental_runs_equal_a_full_rebuild_and_independent_recomputation(  # type: ignore[no-untyped-def]
    spark, lake_settings, monkeypatch
) -> None:
    import expectations
    from gold import job
    from gold.marts.registry import RECIPES

    gated: list[tuple[str, str]] = []
    facts: dict[str, set[str]] = {}

    def recording_gate(spark_, settings_, *, layer, table, df, run_id, delta_version, extra) -> None:  # type: ignore[no-untyped-def]
        assert delta_version is None and df.columns == RECIPES[table].mart.column_names
        # the cross-table facts gold passes hold for a correct candidate, whole or incremental:
        # each covers frame's keys are all in it, each of its keys is in the references frame
        for column, frame in extra.get("covers", {}).items():
            assert frame.join(df, column, "left_anti").count() == 0, (table, column)
        for column, frame in extra.get("references", {}).items():
            assert df.join(frame, column, "left_anti").count() == 0, (table, column)
        gated.append((layer, table))
        facts.setdefault(table, set()).update(extra)

    monkeypatch.setattr(expectations, "gate", recording_gate, raising=False)
    # Small batches touch half of these small marts: never let that turn a run into a rebuild
    # here, this test is about the incremental path (the switch has its own test below).
    monkeypatch.setattr(job, "FULL_REBUILD_SHARE", float("inf"))

    shop = Shop(seed=7)
    runs = []
    for step, batch in enumerate((batch_1, batch_2, batch_3)):
        write_silver(spark, lake_settings, batch(shop))
        records = job.run(spark, lake_settings, run_id=f"gold-test-{step}")
        assert all(r.status == "succeeded" and r.checkpoint == "passed" for r in records)
        runs.append({r.table_name: r for r in records})
    assert gated == [("gold", name) for name in job.select_marts(None)] * 3  # sessions before customer_360
    assert facts == {
        "customer_360": {"covers", "references"},
        "sessions": {"covers"},
        "daily_sales": set(),
        "product_performance": set(),
    }

    assert {name: r.details["mode"] for name, r in runs[0].items()} == dict.fromkeys(RECIPES, "full")
    for step in (1, 2):
        assert {name: r.details["mode"] for name, r in runs[step].items()} == dict.fromkeys(RECIPES, "incremental")
    # batch 2 is the next day: customer_360 is re-derived whole; the others MERGE their scope only
    assert runs[1]["customer_360"].details.get("as_of_moved") is True
    assert 0 < runs[1]["sessions"].details["scope_keys"] < 30  # of the 50-odd sessions
    assert runs[2]["customer_360"].details.get("as_of_moved") is None
    assert runs[2]["sessions"].details["deleted"] == 1  # the session merged into another one
    # customer_360 followed the sessions MERGE's change feed up to the version this run left
    assert runs[2]["customer_360"].details[job.UPSTREAM_KEY] == {"sessions": runs[2]["sessions"].delta_version}
    assert job.read_progress(spark, lake_settings)["customer_360"].as_of == shop.clock.replace(tzinfo=None)

    # a MERGE marks the rows it replaces in deletion vectors: no unchanged row is rewritten
    sessions_merge = merge_metrics(
        spark, table_path(lake_settings, "gold", "sessions"), runs[2]["sessions"].delta_version
    )
    assert int(sessions_merge["numTargetDeletionVectorsAdded"]) > 0
    assert int(sessions_merge["numTargetRowsCopied"]) == 0

    versions = {name: r.delta_version for name, r in runs[2].items()}
    records = job.run(spark, lake_settings, run_id="gold-test-noop")  # no silver change: nothing written
    assert [(r.rows_out, r.delta_version) for r in records] == [(0, versions[r.table_name]) for r in records]

    records = job.run(spark, lake_settings, run_id="gold-test-full", full_refresh=True)
    assert {r.details["mode"] for r in records} == {"full"}
    for name in RECIPES:  # the incremental tables (time travel) equal the rebuilt ones
        assert_equal(gold_df(spark, lake_settings, name, versions[name]), gold_df(spark, lake_settings, name))

    check_independently(spark, lake_settings)

    # a failed gate writes nothing: neither the mart nor its progress move
    def failing_gate(spark_, settings_, *, layer, table, df, run_id, delta_version, extra) -> None:  # type: ignore[no-untyped-def]
        raise ValidationFailedError(f"{layer}.{table}: expect_column_values_to_be_between(revenue) failed")

    monkeypatch.setattr(expectations, "gate", failing_gate)
    before = job.read_progress(spark, lake_settings)["daily_sales"]
    write_silver(
        spark,
        lake_settings,
        {**_changes(), "orders": {1: (*shop.rows["orders"][1][:2], "paid", *shop.rows["orders"][1][3:])}},
    )
    version = last_commit(spark, table_path(lake_settings, "gold", "daily_sales"))[0]
    with pytest.raises(ValidationFailedError, match=r"gold\.daily_sales"):
        job.run(spark, lake_settings, run_id="gold-test-gate", tables=["daily_sales"])
    assert last_commit(spark, table_path(lake_settings, "gold", "daily_sales"))[0] == version
    assert job.read_progress(spark, lake_settings)["daily_sales"] == before
    last = spark.read.format("delta").load(table_path(lake_settings, "ops", "runs")).where("run_id = 'gold-test-gate'")
    assert [(r.table_name, r.status, r.checkpoint) for r in last.collect()] == [("daily_sales", "failed", "failed")]


def merge_metrics(spark, path: str, version: int) -> dict[str, str]:  # type: ignore[no-untyped-def]
    from delta.tables import DeltaTable

    commit = DeltaTable.forPath(spark, path).history().where(f"version = {version}").collect()[0]
    assert commit.operation == "MERGE", commit.operation
    return dict(commit.operationMetrics)


def test_a_mart_built_without_its_properties_gets_them_before_its_merge(spark, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A lake's marts from before deletion vectors and the change data feed: an overwrite keeps
    an existing table's properties, so the MERGE path turns them on (once: a second call
    commits nothing)."""
    from delta.tables import DeltaTable

    from gold.job import MART_PROPERTIES, with_mart_properties

    path = str(tmp_path / "old_mart")
    spark.range(3).write.format("delta").save(path)

    def enabled() -> dict[str, str]:
        properties = DeltaTable.forPath(spark, path).detail().collect()[0].properties or {}
        return {k: v for k, v in properties.items() if k in MART_PROPERTIES}

    assert enabled() == {"delta.enableChangeDataFeed": "false"}  # core.spark's default for a new table
    with_mart_properties(spark, path)
    assert enabled() == {"delta.enableDeletionVectors": "true", "delta.enableChangeDataFeed": "true"}
    version = last_commit(spark, path)[0]
    with_mart_properties(spark, path)
    assert last_commit(spark, path)[0] == version


def test_changes_touching_half_the_keys_rebuild_in_full(spark, lake_settings) -> None:  # type: ignore[no-untyped-def]
    """A MERGE of most of a table costs more than writing it anew (a history load, status
    moves over every day): at `FULL_REBUILD_SHARE` of a mart's scope keys the run rebuilds."""
    from gold import job
    from gold.marts.registry import RECIPES

    path = table_path(lake_settings, "gold", "daily_sales")
    days = ["2024-05-01", "2024-05-02", "2024-05-03", "2024-05-04"]
    spark.createDataFrame(
        [(day, category) for day in days for category in ("books", "toys")], "sales_date STRING, category STRING"
    ).selectExpr("CAST(sales_date AS DATE) AS sales_date", "category").write.format("delta").save(path)
    run = job.GoldRun(spark, lake_settings, "too-wide", {}, None, None, {})  # type: ignore[arg-type]
    recipe = RECIPES["daily_sales"]  # scope: sales_date (4 keys over 8 rows)
    assert job.too_wide(run, recipe, path, 1) is None
    reason = job.too_wide(run, recipe, path, 2)
    assert reason == "the changes touch 2 of its 4 sales_date keys (≥ 50%): rebuilding in full"
    reason = job.too_wide(run, recipe, path, 2, at_least=True)
    assert reason == "the changes touch at least 2 of its 4 sales_date keys (≥ 50%): rebuilding in full"


def test_status_moves_over_most_days_rebuild_daily_sales_before_its_scope(spark, lake_settings) -> None:  # type: ignore[no-untyped-def]
    """A few cancellations spread over most days: too few changed rows for the plan to rebuild,
    but their days alone (`daily_sales_scope_floor`, from the change feed) are half the mart's
    days or more, so it rebuilds without computing the scope — and equals a full rebuild."""
    from gold import job

    shop = Shop(seed=17)
    write_silver(spark, lake_settings, batch_1(shop))
    job.run(spark, lake_settings, run_id="floor-0", tables=["daily_sales"])
    changed, days = _changes(), set()
    for _, row in sorted(shop.rows["orders"].items()):  # one cancellation per order day
        if row[2] != "cancelled" and row[3].date() not in days:
            days.add(row[3].date())
            shop.put("orders", (*row[:2], "cancelled", *row[3:8], shop.tick(), "r"), changed)
    write_silver(spark, lake_settings, changed)
    (rec,) = job.run(spark, lake_settings, run_id="floor-1", tables=["daily_sales"])
    stored = gold_df(spark, lake_settings, "daily_sales").select("sales_date").distinct().count()
    assert rec.details["mode"] == "full" and "scope" not in rec.details["timings"]
    assert rec.details["reason"] == (
        f"the changes touch at least {rec.details['scope_keys_at_least']} of its {stored} sales_date keys (≥ 50%): "
        "rebuilding in full"
    )
    assert rec.details["scope_keys_at_least"] >= stored / 2
    rebuilt = gold_df(spark, lake_settings, "daily_sales", rec.delta_version)
    job.run(spark, lake_settings, run_id="floor-2", tables=["daily_sales"], full_refresh=True)
    assert_equal(rebuilt, gold_df(spark, lake_settings, "daily_sales"))


def test_customer_360_is_not_built_when_sessions_fails_in_the_same_run(spark, lake_settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """customer_360 reads gold.sessions as the run leaves it: asked alone, the run builds
    sessions first; when sessions fails (its checkpoint, here), customer_360 writes nothing and
    says why, and the other marts still build."""
    from delta.tables import DeltaTable

    from core.errors import EcomError
    from gold import job

    write_silver(spark, lake_settings, batch_1(Shop(seed=5)))
    gate = job.gate

    def failing_sessions(run, table, *args, **kwargs):  # type: ignore[no-untyped-def]
        if table == "sessions":
            raise ValidationFailedError("gold.sessions: checkpoint failed (planted)")
        gate(run, table, *args, **kwargs)

    monkeypatch.setattr(job, "gate", failing_sessions)
    with pytest.raises(EcomError) as failed:
        job.run(spark, lake_settings, run_id="gold-upstream-failed", tables=["customer_360", "daily_sales"])
    assert "sessions" in str(failed.value) and "customer_360" in str(failed.value)

    def built(mart: str) -> bool:
        return DeltaTable.isDeltaTable(spark, table_path(lake_settings, "gold", mart))

    assert (built("sessions"), built("customer_360"), built("daily_sales")) == (False, False, True)
    ledger = spark.read.format("delta").load(table_path(lake_settings, "ops", "runs"))
    runs = {r.table_name: r for r in ledger.where("run_id = 'gold-upstream-failed'").collect()}
    assert runs["sessions"].status == runs["customer_360"].status == "failed"
    assert runs["customer_360"].message == (
        "gold.customer_360 reads gold.sessions, which did not build in this run: nothing written"
    )

    monkeypatch.setattr(job, "gate", gate)
    records = job.run(spark, lake_settings, run_id="gold-upstream-ok", tables=["customer_360"])
    assert [r.table_name for r in records] == ["sessions", "customer_360"]
    assert built("customer_360")


def test_customer_360_rebuilds_in_full_after_a_sessions_rebuild(spark, lake_settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """customer_360's scope follows gold.sessions' change data feed since the version it read:
    a rebuild of sessions in between (an overwrite: every row in its feed) rebuilds it too."""
    from gold import job

    monkeypatch.setattr(job, "FULL_REBUILD_SHARE", float("inf"))
    shop = Shop(seed=13)
    write_silver(spark, lake_settings, batch_1(shop))
    job.run(spark, lake_settings, run_id="feed-0", tables=["customer_360"])
    write_silver(spark, lake_settings, batch_2(shop))
    runs = {r.table_name: r for r in job.run(spark, lake_settings, run_id="feed-1", tables=["customer_360"])}
    assert runs["customer_360"].details["mode"] == "incremental"
    assert runs["customer_360"].details["upstream_versions"] == {"sessions": runs["sessions"].delta_version}

    job.run(spark, lake_settings, run_id="feed-2", tables=["sessions"], full_refresh=True)
    write_silver(spark, lake_settings, batch_3(shop))
    runs = {r.table_name: r for r in job.run(spark, lake_settings, run_id="feed-3", tables=["customer_360"])}
    assert (runs["sessions"].details["mode"], runs["customer_360"].details["mode"]) == ("incremental", "full")
    assert runs["customer_360"].details["reason"] == (
        f"gold.sessions was rebuilt since the v{runs['sessions'].delta_version - 2} gold.customer_360 read "
        "(or its change feed is gone)"
    )


def test_a_history_load_rebuilds_before_any_scope_is_computed(spark, lake_settings) -> None:  # type: ignore[no-untyped-def]
    """When silver's commits since the last gold run changed half the rows a mart reads or
    more (a history load), the plan is a rebuild, decided from the commits' row counts alone:
    computing the scope of such a change costs more than the rebuild it leads to."""
    from gold import job

    shop = Shop(seed=11)
    write_silver(spark, lake_settings, batch_1(shop))
    job.run(spark, lake_settings, run_id="gold-history-0", tables=["daily_sales"])
    loaded = len(shop.rows["orders"]) + len(shop.rows["order_items"])

    def planned() -> tuple[str, str]:
        pinned = job.pin_silver(spark, lake_settings)
        new = job.read_state(spark, pinned, {n: t.version for n, t in pinned.items()})
        run = job.GoldRun(spark, lake_settings, "plan", pinned, new, None, job.read_progress(spark, lake_settings))
        mode, reason, _ = job.plan(run, "daily_sales", full_refresh=False)
        return mode, reason

    changed = _changes()
    shop.order(3, shop.moment(0, 20), changed)
    write_silver(spark, lake_settings, changed)
    assert planned() == ("incremental", "changes since the last gold run")

    changed = _changes()
    for _ in range(150):
        shop.order(int(shop.rng.integers(1, 26)), shop.moment(0, 20), changed)
    write_silver(spark, lake_settings, changed)
    now = len(shop.rows["orders"]) + len(shop.rows["order_items"])
    size = now + len(shop.rows["products"])  # daily_sales reads orders, order_items, products
    assert planned() == (
        "full",
        f"silver changed {now - loaded:,} row(s) since, of the {size:,} it reads (≥ 50%): rebuilding in full",
    )


def check_independently(spark, settings) -> None:  # type: ignore[no-untyped-def]
    """Revenue and orders per customer, session counts and daily revenue, recomputed with pandas."""

    def silver(table: str):  # type: ignore[no-untyped-def]
        return spark.read.format("delta").load(table_path(settings, "silver", table)).toPandas()

    orders, items, events = silver("orders"), silver("order_items"), silver("clickstream_events")
    customers = silver("customers")
    net = orders[~orders["status"].isin(["cancelled", "returned"])]

    c360 = gold_df(spark, settings, "customer_360").toPandas().set_index("customer_id")
    assert sorted(c360.index) == sorted(customers["customer_id"])
    for cid in customers["customer_id"]:
        revenue = sum(net.loc[net["customer_id"] == cid, "total_amount"], Decimal("0.00"))
        assert c360.loc[cid, "orders_count"] == (orders["customer_id"] == cid).sum(), cid
        assert c360.loc[cid, "revenue"] == revenue, cid

    sessions = gold_df(spark, settings, "sessions").toPandas()
    assert len(sessions) == events["session_id"].nunique()
    assert sessions["events_count"].sum() == len(events)
    per_visitor = events.groupby("visitor_id")["session_id"].nunique()
    assert sessions.groupby("visitor_id").size().to_dict() == per_visitor.to_dict()

    lines = items.merge(net[["order_id", "order_ts"]], on="order_id")
    lines["amount"] = lines["quantity"].map(Decimal) * lines["unit_price"] - lines["discount_amount"]
    expected = lines.groupby(lines["order_ts"].dt.date)["amount"].sum()
    daily = gold_df(spark, settings, "daily_sales").toPandas().groupby("sales_date")["revenue"].sum()
    assert daily[daily != 0].to_dict() == expected[expected != 0].to_dict()
