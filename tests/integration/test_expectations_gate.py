"""The gate as layers and operators meet it: stop, say why, alert, record what was judged."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pyspark.sql import functions as F

from core.errors import ValidationFailedError
from core.lake import last_commit, table_path
from core.settings import get_settings, load_settings
from expectations import gate
from expectations.checkpoints import needs_cache

pytestmark = pytest.mark.integration

ORDERS = "order_id bigint, customer_id bigint, status string, total_amount decimal(12,2), _run_id string"


class Hook(BaseHTTPRequestHandler):
    received: list[dict] = []  # noqa: RUF012 — reset per test by the fixture

    def do_POST(self) -> None:
        type(self).received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    Hook.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts"
    server.shutdown()
    server.server_close()


def test_failed_gate_stops_names_the_rule_alerts_and_records_what_it_judged(
    spark: Any, tmp_path: Path, webhook: str
) -> None:
    settings = load_settings(webhook_url=webhook, webhook_retries=0, webhook_timeout_s=5)
    bad_df = spark.createDataFrame(
        [(1, 1, "paid", "5.00", "r"), (1, 2, "lost", "-1.00", "r")], ORDERS.replace("decimal(12,2)", "string")
    )
    bad_df = bad_df.withColumn("total_amount", bad_df["total_amount"].cast("decimal(12,2)"))

    with pytest.raises(ValidationFailedError) as info:
        gate(
            spark,
            settings,
            layer="silver",
            table="orders",
            df=bad_df,
            run_id="silver-run-bad",
            delta_version=7,
            gx_root=tmp_path,
        )

    message = str(info.value)
    assert "silver.orders" in message and "silver-run-bad" in message and "delta v7" in message
    assert "expect_column_values_to_be_unique" in message and "2 unexpected of 2 rows" in message
    assert "expect_column_values_to_be_in_set(status" in message and "e.g. 'lost'" in message
    assert "missing columns" in message  # the silver contract also wants order_ts, currency, ...
    assert not bad_df.is_cached  # the gate's cache is released

    # the alert went through the webhook module, with the failed rules and what was observed
    assert len(Hook.received) == 1
    alert = Hook.received[0]
    assert (alert["layer"], alert["table"], alert["run_id"], alert["delta_version"]) == (
        "silver",
        "orders",
        "silver-run-bad",
        7,
    )
    observed = {f["type"]: f["observed"] for f in alert["failed"]}
    assert observed["expect_column_values_to_be_between"].startswith("1 unexpected of 2 rows")

    # the stored result and its Data Docs page carry the run id and the Delta version judged
    result = info.value.result  # type: ignore[attr-defined]
    stored = next((tmp_path / "gx" / "uncommitted" / "validations").rglob("*.json"))
    meta = json.loads(stored.read_text())["meta"]
    assert meta["batch_markers"]["ecom_run_id"] == "silver-run-bad"
    assert meta["batch_markers"]["delta_version"] == 7
    page = result.docs_page.read_text()
    assert "silver-run-bad" in page and "delta_version" in page


def test_passing_gate_returns_the_checkpoint_result_and_caches_only_what_is_costly(spark: Any, tmp_path: Path) -> None:
    settings = load_settings(webhook_url=None)
    start = datetime(2025, 3, 1, 12, 0)
    events = spark.createDataFrame(
        [("a" * 64, "v1", start), ("a" * 64, "v1", start)],
        "session_id string, visitor_id string, session_start timestamp",
    )
    sessions = events.groupBy("session_id", "visitor_id").agg(F.min("session_start").alias("session_start"))
    assert needs_cache(sessions)  # an aggregate: computed once for all metric jobs ...
    assert not needs_cache(events.where("visitor_id IS NOT NULL"))  # ... local rows: read again
    persisted_before = spark.sparkContext._jsc.getPersistentRDDs().size()

    result = gate(spark, settings, layer="gold", table="sessions", df=sessions, run_id="gold-run-ok", gx_root=tmp_path)
    assert result.passed and result.checkpoint == "passed" and result.rows == 1
    assert "candidate" in result.judged and result.docs_page and result.docs_page.exists()
    assert spark.sparkContext._jsc.getPersistentRDDs().size() == persisted_before  # released

    cached = sessions.cache()
    gate(spark, settings, layer="gold", table="sessions", df=cached, run_id="gold-run-ok-2", gx_root=tmp_path)
    assert cached.is_cached  # the caller's cache is the caller's
    cached.unpersist()


def test_ecom_validate_reads_current_tables_and_reports_missing_ones(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.cli import cli

    lake = tmp_path / "lake"
    monkeypatch.setenv("ECOM_HOME", str(tmp_path))  # GX context in tmp_path/expectations
    monkeypatch.setenv("ECOM_LAKE_ROOT", str(lake))
    monkeypatch.setenv("ECOM_WEBHOOK_URL", "")
    get_settings.cache_clear()
    try:
        settings = get_settings()
        items = "order_item_id bigint, order_id bigint, product_id bigint, quantity int, _run_id string"
        spark.createDataFrame([(1, 1, 5, 1, "r"), (2, 9, 5, 1, "r")], items).write.format("delta").save(
            table_path(settings, "silver", "order_items")
        )
        orders = spark.createDataFrame([(1, None, "paid", None, "r")] * 2, ORDERS)  # order 1 twice
        orders.write.format("delta").save(table_path(settings, "silver", "orders"))

        out = CliRunner().invoke(cli, ["validate", "silver"], terminal_width=200)
        assert out.exit_code == 1, out.output
        text = " ".join(out.output.split())
        assert "silver.customers: no Delta table at" in text  # missing tables are named
        assert "every order_id is in silver.orders.order_id" in text  # references read from the lake
        assert "grain: one row per order_id" in text and "delta v0" in text
        assert "Data Docs:" in text

        docs = CliRunner().invoke(cli, ["docs"])
        assert docs.exit_code == 0, docs.output
        index = Path(docs.output.strip())
        assert index == tmp_path / "expectations" / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
        assert index.exists()
    finally:
        get_settings.cache_clear()


def test_bronze_checkpoint_rejects_a_bad_window_before_it_is_appended(
    spark: Any, pg_settings: Any, tmp_path: Path, webhook: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A NULL key in the extracted window: bronze, its watermark and its version stay as they
    were, the failure is alerted and recorded, and the next run extracts the same window."""
    from bronze import bench
    from bronze import job as bronze_job
    from bronze.watermarks import read_watermark
    from core.ledger import RunRecord

    settings = pg_settings.model_copy(
        update={
            "lake_root": str(tmp_path / "lake"),
            "gx_root": str(tmp_path / "gx"),
            "webhook_url": webhook,
            "webhook_retries": 0,
        }
    )
    name = f"bronze_gate_{tmp_path.name[-8:].replace('-', '_')}"
    target = table_path(settings, "bronze", name)
    bench.create_table(settings, name)  # a scratch copy of shop.orders, judged by the bronze.orders suite
    try:
        start = bronze_job.current_horizon(settings)
        bench.fill(settings, name, 3)
        first = bronze_job.extract_table(spark, settings, name, run_id="bronze-good", start_at=start, suite="orders")
        assert (first.status, first.checkpoint, first.rows_out) == ("succeeded", "passed", 3)
        watermark = read_watermark(settings, name)

        bench.fill(settings, name, 2)
        real_read = bronze_job.read_window

        def read_with_null_key(*args: Any) -> Any:
            df = real_read(*args)
            return df.withColumn("order_id", F.when(F.col("order_id") == F.lit(4), None).otherwise(F.col("order_id")))

        monkeypatch.setattr(bronze_job, "read_window", read_with_null_key)
        rec = RunRecord(run_id="bronze-bad", layer="bronze", table_name=name)
        with pytest.raises(ValidationFailedError, match=r"bronze\.orders.*order_id"):
            bronze_job._extract(spark, settings, rec, full_refresh=False, suite="orders")
        assert rec.checkpoint == "failed"
        assert spark.read.format("delta").load(target).count() == 3  # nothing appended
        assert last_commit(spark, target)[0] == first.delta_version
        assert read_watermark(settings, name) == watermark  # the window will be read again
        assert [a["checkpoint"] for a in Hook.received] == ["bronze.orders"]
        assert any(f["column"] == "order_id" for f in Hook.received[0]["failed"])

        monkeypatch.setattr(bronze_job, "read_window", real_read)
        again = bronze_job.extract_table(spark, settings, name, run_id="bronze-fixed", suite="orders")
        assert (again.checkpoint, again.rows_out, again.watermark_from) == ("passed", 2, first.watermark_to)
        assert spark.read.format("delta").load(target).where("order_id IS NULL").count() == 0
    finally:
        bench.drop_table(settings, name)
