"""Publish against the real local PostgreSQL: atomic, reconciled, incremental, gated."""

from __future__ import annotations

import threading
import time
from datetime import date, datetime
from decimal import Decimal

import psycopg
import pytest

from core import db
from core.errors import EcomError, ValidationFailedError
from core.lake import table_path
from core.ledger import RunRecord, new_run_id, record
from gold import publish
from gold.marts.registry import MARTS

pytestmark = pytest.mark.integration
MART = MARTS["daily_sales"]
C360 = MARTS["customer_360"]


def _rows(spark, mart, rows):  # type: ignore[no-untyped-def]
    """A gold-shaped frame: given columns, every other column NULL, cast to the contract."""
    from pyspark.sql import functions as F

    df = spark.createDataFrame(rows)
    for c in mart.columns:
        if c.name not in df.columns:
            df = df.withColumn(c.name, F.lit(None))
    return mart.conform(df)


def _daily(spark, n: int, bump: int = 0):  # type: ignore[no-untyped-def]
    return _rows(
        spark,
        MART,
        [
            {
                "sales_date": date(2026, 1, 1 + i % 28),
                "category": f"cat{i // 28}",
                "orders": i,
                "units": i,
                "revenue": Decimal(f"{i + bump}.25"),
                "avg_order_value": Decimal("1.10"),
            }
            for i in range(n)
        ],
    )


def _write(df, settings, name: str) -> None:  # type: ignore[no-untyped-def]
    df.write.format("delta").mode("overwrite").save(table_path(settings, "gold", name))


def _warehouse(settings, sql: str):  # type: ignore[no-untyped-def]
    with db.connect(settings, "publisher") as conn:
        return conn.exec_driver_sql(sql).all()


@pytest.fixture
def wh_settings(pg_settings, tmp_path):  # type: ignore[no-untyped-def]
    return pg_settings.model_copy(update={"lake_root": str(tmp_path / "lake")})


def test_full_then_incremental_publish_equals_gold(spark, wh_settings) -> None:  # type: ignore[no-untyped-def]
    _write(_daily(spark, 60), wh_settings, "daily_sales")
    publish.run(spark, wh_settings, run_id=new_run_id("publish"), tables=["daily_sales"], full_refresh=True)
    assert _warehouse(wh_settings, "SELECT count(*), sum(revenue) FROM gold.daily_sales")[0] == (60, Decimal("1785.00"))

    # change 10 rows, drop 5: only those travel, and the warehouse equals gold again
    _write(_daily(spark, 55).where("orders >= 10").unionByName(_daily(spark, 10, bump=100)), wh_settings, "daily_sales")
    recs = publish.run(spark, wh_settings, run_id=new_run_id("publish"), tables=["daily_sales"])
    assert recs[0].details["mode"] == "incremental"
    assert recs[0].rows_out == 10
    got = _warehouse(wh_settings, "SELECT count(*), sum(revenue) FROM gold.daily_sales")[0]
    assert got == (55, sum(Decimal(f"{i + (100 if i < 10 else 0)}.25") for i in range(55)))

    again = publish.run(spark, wh_settings, run_id=new_run_id("publish"), tables=["daily_sales"])
    assert again[0].details["mode"] == "unchanged" and again[0].rows_out == 0


def test_merged_changes_travel_from_the_change_data_feed(spark, wh_settings) -> None:  # type: ignore[no-untyped-def]
    """After incremental gold runs (MERGEs only), publish stages the current row of each key in
    gold's change data feed and the keys it deleted, without comparing the whole mart; a
    rebuild in between is compared instead. Either way the warehouse reconciles with gold."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    from gold.job import overwrite

    path = table_path(wh_settings, "gold", "daily_sales")
    keys = " AND ".join(f"t.{k} = s.{k}" for k in MART.key)
    values = {c: f"s.{c}" for c in MART.column_names}

    def merge(upserts, deletes=None) -> None:  # type: ignore[no-untyped-def]
        source = upserts.withColumn("_gone", F.lit(False))
        if deletes is not None:
            source = source.unionByName(deletes.withColumn("_gone", F.lit(True)))
        (
            DeltaTable.forPath(spark, path)
            .alias("t")
            .merge(source.alias("s"), keys)
            .whenMatchedDelete(condition="s._gone")
            .whenMatchedUpdate(set=values)
            .whenNotMatchedInsert(condition="NOT s._gone", values=values)
            .execute()
        )

    def warehouse_equals_gold() -> None:
        gold = spark.read.format("delta").load(path).agg(F.count("*"), F.sum("revenue")).first()
        assert _warehouse(wh_settings, "SELECT count(*), sum(revenue) FROM gold.daily_sales")[0] == tuple(gold)

    overwrite(_daily(spark, 60), path)
    publish.run(spark, wh_settings, run_id=new_run_id("publish"), tables=["daily_sales"], full_refresh=True)
    # two gold runs: 10 rows changed, 5 deleted, 3 new; then one of the changed rows again
    merge(
        _daily(spark, 10, bump=100).unionByName(_daily(spark, 63).where("orders >= 60")),
        _daily(spark, 60).where("orders >= 55"),
    )
    merge(_daily(spark, 1, bump=200))
    [rec] = publish.run(spark, wh_settings, run_id=new_run_id("publish"), tables=["daily_sales"])
    assert (rec.details["mode"], rec.details["diff"]) == ("incremental", "change data feed")
    assert rec.rows_out == 13  # the changed and the new rows, each once, in its latest version
    assert rec.rows_in == 58
    warehouse_equals_gold()
    assert _warehouse(wh_settings, "SELECT revenue FROM gold.daily_sales WHERE orders = 0")[0][0] == Decimal("200.25")

    overwrite(_daily(spark, 58, bump=7), path)  # a rebuild: every row deleted and inserted in one commit
    [rec] = publish.run(spark, wh_settings, run_id=new_run_id("publish"), tables=["daily_sales"])
    assert (rec.details["mode"], rec.details["diff"]) == ("incremental", "compare")
    warehouse_equals_gold()


def test_arrays_arrive_as_json_and_timestamps_keep_microseconds(spark, wh_settings) -> None:  # type: ignore[no-untyped-def]
    ts = datetime(2026, 3, 4, 5, 6, 7, 123456)
    df = _rows(
        spark,
        C360,
        [
            {
                "customer_id": 7,
                "top_categories": ["Books", "Toys"],
                "top_categories_csv": "Books,Toys",
                "signup_at": ts,
                "revenue": Decimal("12.34"),
            }
        ],
    )
    _write(df, wh_settings, "customer_360")
    publish.run(spark, wh_settings, run_id=new_run_id("publish"), tables=["customer_360"], full_refresh=True)
    row = _warehouse(wh_settings, "SELECT top_categories, signup_at FROM gold.customer_360 WHERE customer_id = 7")[0]
    assert row == ('["Books","Toys"]', ts)


def test_failed_reconciliation_keeps_the_previous_table(spark, wh_settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _write(_daily(spark, 20), wh_settings, "daily_sales")
    publish.run(spark, wh_settings, run_id=new_run_id("publish"), tables=["daily_sales"], full_refresh=True)
    before = _warehouse(wh_settings, "SELECT * FROM gold.daily_sales ORDER BY 1, 2")
    _write(_daily(spark, 30, bump=5), wh_settings, "daily_sales")
    real = publish.Dialect.checksum  # the warehouse disagrees with gold: one row too many

    def off_by_one(self: publish.Dialect, live: str, keys: list[str], money: list[str]) -> str:
        return real(self, live, keys, money).replace("COUNT(*)", "COUNT(*) + 1", 1)

    monkeypatch.setattr(publish.Dialect, "checksum", off_by_one)
    with pytest.raises(EcomError, match="rolled back"):
        publish.run(spark, wh_settings, run_id=new_run_id("publish"), tables=["daily_sales"], full_refresh=True)
    assert _warehouse(wh_settings, "SELECT * FROM gold.daily_sales ORDER BY 1, 2") == before


def test_a_failed_gold_run_gates_publish(spark, wh_settings) -> None:  # type: ignore[no-untyped-def]
    _write(_daily(spark, 5), wh_settings, "daily_sales")
    failed = RunRecord(run_id=new_run_id("gold"), layer="gold", table_name="daily_sales", checkpoint="failed")
    record(spark, wh_settings, failed.finish("failed", "expect_column_values_to_be_unique: 3 duplicates"))
    with pytest.raises(EcomError, match=r"latest gold run .* failed"):
        publish.run(spark, wh_settings, run_id=new_run_id("publish"), tables=["daily_sales"], full_refresh=True)
    assert issubclass(ValidationFailedError, EcomError)


def test_a_reader_never_sees_a_partial_or_empty_table(spark, wh_settings) -> None:  # type: ignore[no-untyped-def]
    _write(_daily(spark, 300), wh_settings, "daily_sales")
    publish.run(spark, wh_settings, run_id=new_run_id("publish"), tables=["daily_sales"], full_refresh=True)
    _write(_daily(spark, 500, bump=1), wh_settings, "daily_sales")
    url = db.sqlalchemy_url(wh_settings, "publisher")
    seen: set[int] = set()
    stop = threading.Event()

    def reader() -> None:
        with psycopg.connect(
            host=url.host, port=url.port, dbname=url.database, user=url.username, password=url.password, autocommit=True
        ) as conn:
            while not stop.is_set():
                seen.add(conn.execute("SELECT count(*) FROM gold.daily_sales").fetchone()[0])
                time.sleep(0.005)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    publish.run(spark, wh_settings, run_id=new_run_id("publish"), tables=["daily_sales"], full_refresh=True)
    time.sleep(0.1)
    stop.set()
    t.join(10)
    assert seen <= {300, 500}, seen
    assert 500 in seen
