"""gold.job's pure helpers: choosing marts, and the ledger's time format."""

from __future__ import annotations

from datetime import datetime

import pytest

from core.errors import EcomError
from core.lake import micros_to_datetime
from gold.job import select_marts


def test_select_marts_accepts_marts_and_silver_tables_and_names_unknown_ones() -> None:
    # customer_360 reads gold.sessions: built after it, and never without it
    assert select_marts(None) == ["sessions", "customer_360", "daily_sales", "product_performance"]
    assert select_marts(["daily_sales", "sessions"]) == ["sessions", "daily_sales"]
    assert select_marts(["customer_360"]) == ["sessions", "customer_360"]
    # a silver table selects the marts built from it
    assert select_marts(["products"]) == ["sessions", "customer_360", "daily_sales"]
    assert select_marts(["orders"]) == ["sessions", "customer_360", "daily_sales", "product_performance"]
    with pytest.raises(EcomError, match=r"unknown gold table\(s\) nope: expected marts \(customer_360"):
        select_marts(["nope", "sessions"])


def test_micros_to_datetime_is_exact_and_timezone_free() -> None:
    assert micros_to_datetime(None) is None
    assert micros_to_datetime(1_717_502_400_000_001) == datetime(2024, 6, 4, 12, 0, 0, 1)
