"""A silver table corrupted on purpose stops `ecom run gold` at its checkpoint, before publish."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from core.errors import EcomError
from core.lake import table_path
from core.settings import load_settings

pytestmark = pytest.mark.e2e  # the whole gold job and the runner: minutes, not seconds

T0 = datetime(2025, 3, 1, 10, 0)
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


def test_corrupt_silver_fails_gold_checkpoint_alerts_and_never_reaches_publish(
    spark: Any, tmp_path: Path, webhook: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    silver_contracts = pytest.importorskip("silver.contracts")
    gold_job = pytest.importorskip("gold.job")
    publish = pytest.importorskip("gold.publish")
    import expectations
    from core import runner
    from core.ledger import latest_runs

    settings = load_settings(lake_root=str(tmp_path / "lake"), webhook_url=webhook, webhook_retries=0)
    for table, rows in silver_rows().items():
        schema = silver_contracts.TABLES[table].schema
        spark.createDataFrame([tuple(r[f] for f in schema.fieldNames()) for r in rows], schema).write.format(
            "delta"
        ).option("delta.enableChangeDataFeed", "true").save(table_path(settings, "silver", table))

    real_gate = expectations.gate
    monkeypatch.setattr(expectations, "gate", lambda *a, **kw: real_gate(*a, **kw, gx_root=tmp_path / "gx"))
    published: list[str] = []
    monkeypatch.setattr(publish, "run", lambda *a, **kw: published.append("publish") or [])
    monkeypatch.setattr(gold_job, "select_marts", lambda tables: ["customer_360"])  # the mart this corrupts

    with pytest.raises(EcomError, match=r"gold.*customer_360"):  # `ecom run` turns this into a non-zero exit
        runner.run_layers(settings, ["gold", "publish"])

    assert published == []  # the gold checkpoint gates publish
    assert not (tmp_path / "lake" / "gold" / "customer_360" / "_delta_log").exists()  # gold left unchanged
    assert len(Hook.received) == 1
    alert = Hook.received[0]
    assert alert["checkpoint"] == "gold.customer_360" and alert["run_id"].startswith("gold-")
    assert any(
        f["type"] == "expect_column_values_to_be_unique" and f["column"] == "customer_id" for f in alert["failed"]
    )
    runs = {(r["layer"], r["table_name"]): r for r in latest_runs(spark, settings)}
    assert runs[("gold", "customer_360")]["checkpoint"] == "failed"  # recorded in ops.runs
