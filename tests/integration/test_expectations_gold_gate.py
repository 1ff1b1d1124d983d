"""A silver table corrupted on purpose stops `ecom run gold` at its checkpoint, before publish."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from core.errors import EcomError
from core.lake import table_path

pytestmark = pytest.mark.e2e  # the whole gold job and the runner: minutes, not seconds

T0 = datetime(2025, 3, 1, 10, 0)
MART = "customer_360"
SESSION = "c" * 64


class Hook(BaseHTTPRequestHandler):
    received: list[dict] = []  # noqa: RUF012 — reset by the fixture

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


def silver_rows() -> dict[str, list[dict[str, Any]]]:
    lineage = {"_change_version": 1, "_ingested_at": T0, "_run_id": "silver-corrupt"}
    customer = {"customer_id": 1, "visitor_id": "v1", "email": "ann@example.com", "first_name": "Ann",
                "last_name": "A", "phone": None, "country_code": "DE", "city": "Berlin", "signup_at": T0,
                "updated_at": T0, **lineage}  # fmt: skip
    return {
        # the corruption: customer 1 twice (silver's grain is one row per customer_id)
        "customers": [customer, {**customer, "city": "Hamburg"}],
        "products": [{"product_id": 1, "sku": "SKU-1", "name": "Mug", "category": "home",
                      "unit_price": Decimal("5.00"), "is_active": True, "created_at": T0, "updated_at": T0, **lineage}],
        "orders": [{"order_id": 1, "customer_id": 1, "status": "paid", "order_ts": T0, "total_amount": Decimal("5.00"),
                    "currency": "EUR", "payment_method": "card", "visitor_id": "v1", "updated_at": T0, **lineage}],
        "order_items": [{"order_item_id": 1, "order_id": 1, "product_id": 1, "quantity": 1, "unit_price": Decimal("5.00"),
                         "discount_amount": Decimal("0.00"), "line_amount": Decimal("5.00"), "updated_at": T0, **lineage}],
        "clickstream_events": [{"event_id": "e1", "event_seq": 1, "visitor_id": "v1", "customer_id": 1,
                                "event_type": "purchase", "page_url": "/checkout", "product_id": 1, "event_ts": T0,
                                "device": "mobile", "channel": "seo", "referrer": None, "ingested_at": T0,
                                "session_id": SESSION, **lineage}],
    }  # fmt: skip


@pytest.fixture
def warehouse(pg_settings: Any) -> Iterator[Any]:
    """Settings for a scratch warehouse database (schema gold, publisher-owned tables), dropped
    afterwards: other tests and runs publish to ecom_dwh meanwhile."""
    from core import dbinit

    name = f"ecom_dwh_gate_{uuid.uuid4().hex[:8]}"
    scratch = pg_settings.model_copy(update={"warehouse_db": name})
    dbinit.init(scratch, echo=lambda _msg: None)
    try:
        yield scratch
    finally:
        with dbinit._admin_autocommit(scratch, "postgres") as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def warehouse_state(settings: Any) -> dict[str, tuple[Any, ...]]:
    """Row count and a digest of every row, per warehouse table."""
    from core import db
    from gold.marts.registry import MARTS

    digest = "SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM gold.{} t"
    with db.connect(settings, "publisher") as conn:
        return {name: tuple(conn.exec_driver_sql(digest.format(name)).one()) for name in MARTS}


def gold_versions(spark: Any, settings: Any) -> dict[str, int]:
    from delta.tables import DeltaTable

    from core.lake import last_commit
    from gold.marts.registry import MARTS

    paths = {name: table_path(settings, "gold", name) for name in MARTS}
    return {name: last_commit(spark, path)[0] for name, path in paths.items() if DeltaTable.isDeltaTable(spark, path)}


def test_corrupt_silver_fails_gold_checkpoint_alerts_and_leaves_gold_and_warehouse_unchanged(
    spark: Any, tmp_path: Path, webhook: str, warehouse: Any
) -> None:
    """Publish good gold once; duplicate a silver customer; `ecom run gold` (a real CLI process)
    exits non-zero, alerts, records the failure; gold keeps its version and publish refuses the
    failed mart, so the warehouse keeps every row it had. (customer_360 only: the other marts
    are gated on their own, and one that passes its checkpoint is written.)"""
    silver_contracts = pytest.importorskip("silver.contracts")
    from core import runner
    from core.ledger import latest_runs
    from gold import publish

    settings = warehouse.model_copy(
        update={
            "lake_root": str(tmp_path / "lake"),
            "gx_root": str(tmp_path / "gx"),
            "webhook_url": webhook,
            "webhook_retries": 0,
        }
    )

    def write_silver(table: str, rows: list[dict[str, Any]], mode: str) -> None:
        schema = silver_contracts.TABLES[table].schema
        spark.createDataFrame([tuple(r[f] for f in schema.fieldNames()) for r in rows], schema).write.format(
            "delta"
        ).mode(mode).option("delta.enableChangeDataFeed", "true").save(table_path(settings, "silver", table))

    rows = silver_rows()
    for table, table_rows in rows.items():
        write_silver(table, table_rows[:1], "overwrite")  # good silver: customer 1 once
    assert runner.run_layers(settings, ["gold", "publish"], tables=[MART])  # the mart the corruption breaks
    gold_before, warehouse_before = gold_versions(spark, settings), warehouse_state(settings)
    # customer_360 reads gold.sessions: the run builds it first
    assert set(gold_before) == {"sessions", MART} and warehouse_before[MART][0] == 1 and Hook.received == []

    write_silver("customers", rows["customers"][1:], "append")  # the corruption: customer 1 twice
    env = {
        **os.environ,
        "ECOM_LAKE_ROOT": settings.lake_root,
        "ECOM_GX_ROOT": str(settings.gx_root),
        "ECOM_WEBHOOK_URL": webhook,
        "ECOM_WEBHOOK_RETRIES": "0",
        "ECOM_SPARK_MASTER": "local[2]",
        "ECOM_SPARK_SHUFFLE_PARTITIONS": "2",
        "GX_ANALYTICS_ENABLED": "false",
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    cli = subprocess.run(
        [sys.executable, "-m", "core.cli", "run", "gold", "--tables", MART],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = " ".join((cli.stdout + cli.stderr).split())
    assert cli.returncode != 0, output
    assert "customer_360" in output and "checkpoint" in output.lower(), output

    assert gold_versions(spark, settings)[MART] == gold_before[MART]  # gold.customer_360 not written
    alerts = {a["checkpoint"]: a for a in Hook.received}
    alert = alerts["gold.customer_360"]
    assert alert["run_id"].startswith("gold-")
    assert any(
        f["type"] == "expect_column_values_to_be_unique" and f["column"] == "customer_id" for f in alert["failed"]
    )
    runs = {(r["layer"], r["table_name"]): r for r in latest_runs(spark, settings)}
    assert runs[("gold", "customer_360")]["checkpoint"] == "failed"  # recorded in ops.runs

    # the gold checkpoint gates publish: the failed mart is refused, the others are unchanged
    with pytest.raises(EcomError, match=r"customer_360.*checkpoint"):
        publish.run(spark, settings, run_id="publish-after-failed-gold", tables=[MART])
    assert warehouse_state(settings) == warehouse_before
