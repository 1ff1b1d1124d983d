"""Suites as code, failure reports and alerts: pure Python, no Spark."""

from __future__ import annotations

import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from core.errors import ValidationFailedError
from core.settings import load_settings
from expectations import alerts, suites
from expectations.context import gx_root, prune_results, site_dir
from expectations.docs import make_server
from expectations.results import Failure, GateFailedError, GateResult, label, observed


def types_of(suite) -> list[tuple[str, object]]:  # type: ignore[no-untyped-def]
    return [(e.expectation_type, e.configuration.kwargs.get("column")) for e in suite.expectations]


# --- contracts -------------------------------------------------------------------------------
def test_one_suite_per_table_per_layer() -> None:
    assert suites.layer_tables("bronze") == suites.layer_tables("silver")
    assert set(suites.layer_tables("silver")) == {
        "customers",
        "products",
        "orders",
        "order_items",
        "clickstream_events",
    }
    assert suites.layer_tables("gold") == ["customer_360", "sessions", "daily_sales", "product_performance"]
    assert {c.name for c in suites.CONTRACTS.values()} == set(suites.CONTRACTS)


def test_unknown_table_or_layer_is_named() -> None:
    with pytest.raises(ValueError, match=r"silver\.nope.*customers"):
        suites.contract("silver", "nope")
    with pytest.raises(ValueError, match="unknown layer 'platinum'"):
        suites.layer_tables("platinum")


def test_bronze_suite_requires_source_and_ingestion_columns_but_not_unique_keys() -> None:
    c = suites.contract("bronze", "orders")
    suite = suites.build_suite(c, [*c.required])
    kinds = types_of(suite)
    columns_rule = suite.expectations[0]
    assert columns_rule.expectation_type == "expect_table_columns_to_match_set"
    assert {"order_id", "customer_id", "status", "total_amount", "_run_id", "_ingested_at"} <= set(
        columns_rule.configuration.kwargs["column_set"]
    )
    assert ("expect_column_values_to_not_be_null", "order_id") in kinds
    assert ("expect_column_values_to_not_be_null", "_run_id") in kinds
    assert ("expect_column_values_to_not_be_null", "_ingested_at") in kinds
    assert not any(t == "expect_column_values_to_be_unique" for t, _ in kinds)  # append-only: keys repeat


def test_silver_suite_enforces_grain_formats_sets_and_ranges() -> None:
    c = suites.contract("silver", "orders")
    kinds = types_of(suites.build_suite(c, c.required))
    assert ("expect_column_values_to_be_unique", "order_id") in kinds
    assert ("expect_column_values_to_be_in_set", "status") in kinds
    assert ("expect_column_values_to_be_between", "total_amount") in kinds
    assert ("expect_column_values_to_match_regex", "currency") in kinds
    email = suites.contract("silver", "customers")
    assert ("expect_column_values_to_match_regex", "email") in types_of(suites.build_suite(email, email.required))
    events = suites.contract("silver", "clickstream_events")
    assert "session_id" in events.required


def test_cross_table_rules_only_with_their_frames() -> None:
    c = suites.contract("silver", "order_items")
    without = types_of(suites.build_suite(c, c.required))
    assert not any(t == "unexpected_rows_expectation" for t, _ in without)
    facts = suites.Facts.of({"references": {"order_id": object(), "product_id": object()}, "expected_rows": 7})
    suite = suites.build_suite(c, c.required, facts)
    queries = [
        e.configuration.kwargs["unexpected_rows_query"]
        for e in suite.expectations
        if e.expectation_type == "unexpected_rows_expectation"
    ]
    assert len(queries) == 2
    assert all("{batch}" in q and "LEFT ANTI JOIN" in q for q in queries)
    count = [e for e in suite.expectations if e.expectation_type == "expect_table_row_count_to_equal"]
    assert count and count[0].configuration.kwargs["value"] == {"$PARAMETER": "expected_rows"}


def test_facts_reject_typos() -> None:
    with pytest.raises(ValueError, match="unknown gate facts"):
        suites.Facts.of({"expected_row": 3})
    c = suites.contract("silver", "orders")
    assert suites.unknown_fact_columns(c, suites.Facts.of({"references": {"customer_id": object()}})) == [
        "references['customer_id']"
    ]


def test_gold_rules_apply_only_to_columns_the_mart_has() -> None:
    c = suites.contract("gold", "customer_360")
    bare = types_of(suites.build_suite(c, ["customer_id"]))
    assert bare == [
        ("expect_table_columns_to_match_set", None),
        ("expect_column_values_to_be_unique", "customer_id"),
        ("expect_column_values_to_not_be_null", "customer_id"),
    ]
    full = suites.build_suite(c, ["customer_id", "revenue", "r_score", "conversion_rate", "rfm_segment"])
    ranges = {
        e.configuration.kwargs["column"]: (
            e.configuration.kwargs.get("min_value"),
            e.configuration.kwargs.get("max_value"),
        )
        for e in full.expectations
        if e.expectation_type == "expect_column_values_to_be_between"
    }
    assert ranges == {"revenue": (0, None), "r_score": (1, 5), "conversion_rate": (0, 1)}
    assert ("expect_column_values_to_be_in_set", "rfm_segment") in types_of(full)


def test_gold_compound_grains() -> None:
    for table, key in (
        ("daily_sales", ["sales_date", "category"]),
        ("product_performance", ["product_id", "activity_date"]),
    ):
        c = suites.contract("gold", table)
        grain = [
            e
            for e in suites.build_suite(c, key).expectations
            if e.expectation_type == "expect_compound_columns_to_be_unique"
        ]
        assert grain and grain[0].configuration.kwargs["column_list"] == key


def test_every_silver_customer_rule_for_customer_360() -> None:
    c = suites.contract("gold", "customer_360")
    q = suites.covers_query(c, "customer_id", "customer_id")
    assert "FROM _gx_gold_customer_360_covers_customer_id" in q and "LEFT ANTI JOIN {batch}" in q


# --- what a failure says ------------------------------------------------------------------------
def test_label_and_observed_values() -> None:
    assert label("expect_column_values_to_be_between", {"column": "revenue", "min_value": 0, "batch_id": "x"}) == (
        "expect_column_values_to_be_between(revenue, min_value=0)"
    )
    assert label("x", {"value": {"$PARAMETER": "expected_rows"}}) == "x(value=$expected_rows)"
    assert label("unexpected_rows_expectation", {}, "every order_id is in silver.orders") == (
        "every order_id is in silver.orders (unexpected_rows_expectation)"
    )
    text, raw = observed(
        {"unexpected_count": 2, "element_count": 3, "unexpected_percent": 66.666, "partial_unexpected_list": [2, 2]}
    )
    assert text == "2 unexpected of 3 rows (66.7%), e.g. 2, 2"
    assert raw["unexpected_count"] == 2
    assert observed({"observed_value": 5})[0] == "5"
    assert observed({"observed_value": ["a"], "details": {"mismatched": {"missing": ["_run_id"]}}})[0] == (
        "missing columns '_run_id'"
    )
    assert observed({"unexpected_count": 2, "element_count": 2, "partial_unexpected_list": [None, None]})[0] == (
        "2 unexpected of 2 rows"
    )
    assert observed({"observed_value": 3}, None, "unexpected_rows_expectation")[0] == "3 offending rows"
    assert observed({}, {"m": {"raised_exception": True, "exception_message": "boom"}})[0] == "error: boom"


def failed_result(tmp_path: Path) -> GateResult:
    return GateResult(
        layer="silver",
        table="orders",
        run_id="silver-20250101T000000-abcd1234",
        status="failed",
        delta_version=None,
        rows=3,
        evaluated=9,
        failures=(
            Failure(
                "grain: one row per order_id (expect_column_values_to_be_unique)",
                "expect_column_values_to_be_unique",
                "order_id",
                "2 unexpected of 3 rows (66.7%), e.g. 2, 2",
            ),
        ),
        docs_page=tmp_path / "page.html",
    )


def test_failure_summary_names_table_expectation_and_observed_value(tmp_path: Path) -> None:
    result = failed_result(tmp_path)
    err = GateFailedError(result)
    assert isinstance(err, ValidationFailedError)
    text = str(err)
    assert "silver.orders" in text and "silver-20250101T000000-abcd1234" in text
    assert "expect_column_values_to_be_unique" in text and "2 unexpected of 3 rows" in text
    assert "candidate (not yet written)" in text
    assert result.checkpoint == "failed"
    payload = result.alert_payload()
    assert payload["layer"] == "silver" and payload["table"] == "orders" and payload["run_id"] == result.run_id
    assert payload["failed"][0]["observed"].startswith("2 unexpected")
    json.dumps(payload)  # serialisable as is


# --- alerts through the one webhook module --------------------------------------------------------
class Recorder(BaseHTTPRequestHandler):
    received: list[dict] = []  # noqa: RUF012 — one list per test server class, reset by the test

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_alert_is_posted_through_the_webhook_module(tmp_path: Path) -> None:
    Recorder.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        settings = load_settings(webhook_url=url, webhook_retries=0, webhook_timeout_s=2)
        assert alerts.send_alert(settings, failed_result(tmp_path).alert_payload()) is True
    finally:
        server.shutdown()
        server.server_close()
    assert Recorder.received and Recorder.received[0]["checkpoint"] == "silver.orders"
    assert alerts.post_json.__module__ == "core.webhook"


def test_alert_without_url_or_with_dead_endpoint_never_raises(tmp_path: Path) -> None:
    payload = failed_result(tmp_path).alert_payload()
    assert alerts.send_alert(load_settings(webhook_url=None), payload) is None
    dead = load_settings(webhook_url="http://127.0.0.1:9/x", webhook_retries=0, webhook_timeout_s=1)
    assert alerts.send_alert(dead, payload) is False


# --- the GX folder -----------------------------------------------------------------------------------
def test_gx_root_defaults_to_expectations_folder(tmp_path: Path) -> None:
    settings = load_settings()
    assert gx_root(settings) == settings.home / "expectations"
    assert gx_root(settings, tmp_path) == tmp_path.resolve()


def test_prune_keeps_newest_results_and_their_pages(tmp_path: Path) -> None:
    store = tmp_path / "gx" / "uncommitted" / "validations" / "silver" / "orders"
    pages = site_dir(tmp_path) / "validations" / "silver" / "orders"
    for i in range(5):
        for base, ext in ((store, ".json"), (pages, ".html")):
            f = base / f"run-{i}" / f"2025010{i}T000000.000000Z" / f"ecom-silver.orders{ext}"
            f.parent.mkdir(parents=True)
            f.write_text("{}")
    assert prune_results(tmp_path, "silver.orders", keep=2) == 3
    assert sorted(p.name for p in store.iterdir()) == ["run-3", "run-4"]
    assert sorted(p.name for p in pages.iterdir()) == ["run-3", "run-4"]


def test_docs_server_binds_localhost_and_serves_the_site(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<html>ecom docs</html>")
    server = make_server(tmp_path, 0)
    host, port = server.server_address[:2]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert host == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=5) as response:
            assert b"ecom docs" in response.read()
    finally:
        server.shutdown()
        server.server_close()
