"""Silver's named rules: each catches its defect and nothing else; NULLs are handled on purpose.

Rows go through `transforms.with_reasons`, so what is asserted is the `_reasons` array that
quarantine will hold. The generator's own corruptors (`generator.defects`) feed the e-mail and
country-code cases, so a change to how defects are planted shows up here first.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
from pyspark.sql import functions as F

from silver import rules
from silver import transforms as tf

AS_OF = datetime(2024, 6, 2, 12, 0, 0)
NOW = datetime(2024, 6, 2, 11, 0, 0)
CTX = rules.RuleContext(as_of=AS_OF, total_tolerance=Decimal("0.01"))


def reasons_of(spark, table: str, rows: list[tuple], schema: str, key: str) -> dict:  # type: ignore[no-untyped-def]
    df = spark.createDataFrame(rows, schema).transform(tf.with_reasons(rules.RULES[table](CTX)))
    return {r[key]: (list(r["_reasons"]), r["_is_waiting"]) for r in df.collect()}


CUSTOMER_SCHEMA = "customer_id LONG, email STRING, country_code STRING, signup_at TIMESTAMP, updated_at TIMESTAMP"


def test_customer_rules_name_exactly_the_broken_ones(spark) -> None:  # type: ignore[no-untyped-def]
    rows = [
        (1, "ada@example.com", "GB", NOW, NOW),
        (2, None, "GB", NOW, NOW),  # null e-mail: only email_not_null
        (3, "ada.example.com", "GB", NOW, NOW),
        (4, "ada@example.com", None, NOW, NOW),  # no country: allowed
        (5, "ada@example.com", "GBR", NOW, NOW),
        (6, None, "gb", NOW + timedelta(hours=1), NOW),  # three at once
        (None, "x@example.com", "US", None, None),  # no key, no timestamps
    ]
    got = reasons_of(spark, "customers", rows, CUSTOMER_SCHEMA, "customer_id")
    assert got == {
        1: ([], False),
        2: (["email_not_null"], False),
        3: (["email_format"], False),
        4: ([], False),
        5: (["country_code_iso"], False),
        6: (["email_not_null", "country_code_iso", "signup_at_not_future"], False),
        None: (["customer_id_not_null"], False),
    }


def test_every_generated_malformed_email_breaks_email_format_and_noise_is_fixed(spark) -> None:  # type: ignore[no-untyped-def]
    from generator import defects

    clean = np.array([f"{first}{sep}lovelace{i}@{dom}" for i, (first, sep, dom) in enumerate(
        [("ada", ".", "gmail.com"), ("bo", "_", "yahoo.com"), ("zoe", "", "hotmail.com"), ("al", ".", "example.org")] * 10
    )], dtype=object)  # fmt: skip
    rng = np.random.default_rng(7)
    malformed = defects.malformed_emails(rng, clean)
    noisy = defects.noisy_emails(rng, clean)
    noisy_codes = defects.noisy_country_codes(rng, np.array(["GB", "US", "DE", "FR"] * 10, dtype=object))
    rows = [(i, e, "GB", NOW, NOW) for i, e in enumerate(clean)]
    rows += [(100 + i, e, "GB", NOW, NOW) for i, e in enumerate(malformed)]
    rows += [(200 + i, e, c, NOW, NOW) for i, (e, c) in enumerate(zip(noisy, noisy_codes, strict=True))]
    df = (
        spark.createDataFrame(rows, CUSTOMER_SCHEMA)
        .withColumn("email", tf.standardise_email(F.col("email")))
        .withColumn("country_code", tf.standardise_code(F.col("country_code")))
    )
    got = {r.customer_id: list(r._reasons) for r in df.transform(tf.with_reasons(rules.customers(CTX))).collect()}
    assert all(got[i] == [] for i in range(len(clean))), "a clean address was rejected"
    assert all(got[100 + i] == ["email_format"] for i in range(len(clean))), "a malformed address passed"
    assert all(got[200 + i] == [] for i in range(len(clean))), "noise was rejected instead of standardised"


def test_product_price_rules(spark) -> None:  # type: ignore[no-untyped-def]
    rows = [(1, Decimal("0.99")), (2, Decimal("0.00")), (3, Decimal("-12.50")), (4, None)]
    got = reasons_of(spark, "products", rows, "product_id LONG, unit_price DECIMAL(12,2)", "product_id")
    assert got == {
        1: ([], False),
        2: (["price_positive"], False),
        3: (["price_positive"], False),
        4: (["unit_price_not_null"], False),
    }


ORDER_SCHEMA = (
    "order_id LONG, status STRING, order_ts TIMESTAMP, total_amount DECIMAL(12,2), currency STRING, "
    "updated_at TIMESTAMP, _lines_count LONG, _lines_amount DECIMAL(18,2)"
)


def test_order_rules_including_the_total_against_its_lines(spark) -> None:  # type: ignore[no-untyped-def]
    d = Decimal
    rows = [
        (1, "placed", NOW, d("20.00"), "USD", NOW, 2, d("20.00")),
        (2, "placed", NOW, d("20.01"), "USD", NOW, 2, d("20.00")),  # within the 0.01 tolerance
        (3, "placed", NOW, d("20.02"), "USD", NOW, 2, d("20.00")),  # beyond it
        (4, "placed", NOW, d("20.00"), "USD", NOW, 0, d("0.00")),  # lines not here yet: waits
        (5, "lost", NOW, d("-1.00"), "usd", NOW, 1, d("-1.00")),
        (6, None, NOW + timedelta(minutes=4), d("5.00"), "EUR", NOW, 1, d("5.00")),  # inside the clock skew
        (7, "paid", NOW + timedelta(minutes=6), d("5.00"), "EUR", NOW, 1, d("5.00")),
        (8, "paid", NOW, None, "EUR", NOW, 1, d("5.00")),
    ]
    got = reasons_of(spark, "orders", rows, ORDER_SCHEMA, "order_id")
    assert got == {
        1: ([], False),
        2: ([], False),
        3: (["total_matches_items"], False),
        4: (["has_items"], True),
        5: (["status_known", "total_non_negative", "currency_iso"], False),
        6: (["status_known"], False),
        7: (["order_ts_not_future"], False),
        8: (["total_amount_not_null"], False),
    }


ITEM_SCHEMA = (
    "order_item_id LONG, order_id LONG, product_id LONG, quantity INT, unit_price DECIMAL(12,2), "
    "discount_amount DECIMAL(12,2), _order_state STRING, _product_state STRING"
)


def test_order_item_rules_one_reason_per_defect(spark) -> None:  # type: ignore[no-untyped-def]
    d = Decimal
    ok = ("accepted", "accepted")
    rows = [
        (1, 10, 100, 2, d("5.00"), d("1.00"), *ok),
        (2, 10, 100, 0, d("5.00"), d("0.00"), *ok),  # zero: not also "discount_within_price"
        (3, 10, 100, -2, d("5.00"), d("0.00"), *ok),  # negative: likewise
        (4, 10, 100, 1, d("5.00"), d("5.01"), *ok),
        (5, 10, 100, 1, d("5.00"), d("5.00"), *ok),  # a 100% discount is allowed
        (6, 10, 100, 1, d("0.00"), d("-1.00"), *ok),
        (7, 99, 100, 1, d("5.00"), d("0.00"), "missing", "accepted"),
        (8, 10, 999, 1, d("5.00"), d("0.00"), "accepted", "missing"),
        (9, 11, 100, 1, d("5.00"), d("0.00"), "rejected", None),
        (10, None, 100, None, d("5.00"), None, "missing", "accepted"),
    ]
    got = reasons_of(spark, "order_items", rows, ITEM_SCHEMA, "order_item_id")
    assert got == {
        1: ([], False),
        2: (["quantity_not_zero"], False),
        3: (["quantity_not_negative"], False),
        4: (["discount_within_price"], False),
        5: ([], False),
        6: (["unit_price_positive", "discount_non_negative"], False),
        7: (["order_exists"], True),
        8: (["product_exists"], True),
        9: (["order_valid", "product_exists"], True),
        10: (["order_id_not_null", "quantity_not_null", "order_exists"], False),
    }


EVENT_SCHEMA = "event_id STRING, visitor_id STRING, event_type STRING, event_ts TIMESTAMP, ingested_at TIMESTAMP"


def test_event_rules_judge_time_against_receipt_and_run_time(spark) -> None:  # type: ignore[no-untyped-def]
    rows = [
        ("a", "v", "page_view", NOW, NOW),
        ("b", "v", "purchase", NOW - timedelta(days=3), NOW),  # a late event is fine
        ("c", "v", "page_view", NOW + timedelta(hours=1), NOW),  # after it was received
        ("d", "v", "page_view", AS_OF + timedelta(hours=1), None),  # no receipt: after the run's time
        ("e", "v", "teleport", NOW, NOW),
        ("f", None, None, None, NOW),
    ]
    got = reasons_of(spark, "clickstream_events", rows, EVENT_SCHEMA, "event_id")
    assert got == {
        "a": ([], False),
        "b": ([], False),
        "c": (["event_ts_not_future"], False),
        "d": (["event_ts_not_future"], False),
        "e": (["event_type_known"], False),
        "f": (["visitor_id_not_null", "event_ts_not_null", "event_type_known"], False),
    }


def test_every_reject_kind_of_the_generator_has_exactly_one_rule() -> None:
    from generator import defects

    assert set(rules.REJECT_KIND_RULES) == set(defects.REJECT_KINDS)
    for kind, (table, _rule) in rules.REJECT_KIND_RULES.items():
        assert defects.DEFECT_KINDS[kind].table == table
    fixes = {k for k in defects.DEFECT_KINDS if k not in defects.REJECT_KINDS}
    assert not fixes & set(rules.REJECT_KIND_RULES)


@pytest.mark.parametrize("table", sorted(rules.RULES))
def test_rule_names_are_unique_and_mapped_rules_exist(spark, table: str) -> None:  # type: ignore[no-untyped-def]
    names = rules.rule_names(table)
    assert len(names) == len(set(names))
    for mapped_table, rule in rules.REJECT_KIND_RULES.values():
        if mapped_table == table:
            assert rule in names
