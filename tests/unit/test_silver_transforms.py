"""Silver's pure transforms, each on a few inline rows with a NULL and an edge case (chispa)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from chispa import assert_column_equality, assert_df_equality
from pyspark.sql import functions as F
from pyspark.sql import types as T

from silver import transforms as tf
from silver.contracts import TABLES
from silver.job import ReconciliationError, reconcile, select_tables
from silver.rules import RuleContext

T0 = datetime(2024, 6, 1, 10, 0, 0)
CTX = RuleContext(as_of=datetime(2024, 6, 2, 0, 0, 0))


def test_clean_text_trims_every_whitespace_and_blanks_become_null(spark) -> None:  # type: ignore[no-untyped-def]
    df = spark.createDataFrame(
        [("  a ", "a"), ("\tb\n", "b"), ("a  b", "a  b"), ("\u00a0c", "c"), ("", None), ("   ", None), (None, None)],
        "raw STRING, expected STRING",
    ).withColumn("got", tf.clean_text(F.col("raw")))
    assert_column_equality(df, "got", "expected")


def test_email_and_codes_are_standardised(spark) -> None:  # type: ignore[no-untyped-def]
    df = (
        spark.createDataFrame(
            [
                ("  Ada@Example.COM\t", "ada@example.com", " gb", "GB"),
                (None, None, "Us ", "US"),
                ("\t", None, None, None),
            ],
            "email STRING, email_expected STRING, code STRING, code_expected STRING",
        )
        .withColumn("email_got", tf.standardise_email(F.col("email")))
        .withColumn("code_got", tf.standardise_code(F.col("code")))
    )
    assert_column_equality(df, "email_got", "email_expected")
    assert_column_equality(df, "code_got", "code_expected")


def test_phone_is_normalised(spark) -> None:  # type: ignore[no-untyped-def]
    cases = [
        ("(591)341-7776", "US", "+15913417776"),
        ("+1-537-640-6812x41586", "US", "+15376406812"),
        ("1 (786) 834-4978", "CA", "+17868344978"),
        ("+44(0)115 4960914", "GB", "+441154960914"),
        ("(0161) 4960066", "gb", "+441614960066"),
        ("00669 074391", "DE", "+669074391"),
        ("3420837783", "IT", "+393420837783"),
        ("0825066904", "IT", "+390825066904"),  # Italy dials its leading 0
        ("08-170 669 07", "SE", "+46817066907"),
        ("555 0100", None, "5550100"),  # unknown country: digits only
        ("555 0100", "ZZ", "5550100"),
        ("ext. 12", "US", None),
        (None, "US", None),
    ]
    df = spark.createDataFrame(cases, "phone STRING, country STRING, expected STRING").withColumn(
        "got", tf.normalise_phone(F.col("phone"), F.col("country"))
    )
    assert_column_equality(df, "got", "expected")


def test_line_amount_is_exact_decimal(spark) -> None:  # type: ignore[no-untyped-def]
    d = Decimal
    df = spark.createDataFrame(
        [(3, d("9.99"), d("1.00"), d("28.97")), (1, d("0.10"), None, d("0.10")), (-2, d("5.00"), d("0.00"), d("-10.00")),
         (None, d("5.00"), d("0.00"), None)],
        "quantity INT, unit_price DECIMAL(12,2), discount DECIMAL(12,2), expected DECIMAL(18,2)",
    ).withColumn("got", tf.line_amount(F.col("quantity"), F.col("unit_price"), F.col("discount")))  # fmt: skip
    assert_column_equality(df, "got", "expected")


def bronze_customers(spark, rows):  # type: ignore[no-untyped-def]
    return spark.createDataFrame(
        rows,
        "customer_id LONG, visitor_id STRING, email STRING, first_name STRING, last_name STRING, phone STRING, "
        "country_code STRING, city STRING, signup_at TIMESTAMP, updated_at TIMESTAMP, _change_version LONG, "
        "_ingested_at TIMESTAMP, _run_id STRING, extra_new_column STRING",
    )


def test_conform_gives_the_contract_columns_and_types(spark) -> None:  # type: ignore[no-untyped-def]
    df = bronze_customers(
        spark,
        [(1, " v1 ", " Ada@X.COM", "Ada ", None, "+44 20 7946 0000", "gb ", " London", T0, T0, 7, T0, "b1", "new")],
    ).transform(tf.conform("customers"))
    assert df.columns == [*TABLES["customers"].columns, "_change_version", "_ingested_at"]
    expected = spark.createDataFrame(
        [(1, "v1", "ada@x.com", "Ada", None, "+442079460000", "GB", "London", T0, T0, 7, T0)],
        T.StructType(TABLES["customers"].schema.fields[:-1]),  # all but the silver run id
    )
    assert_df_equality(df, expected, ignore_nullable=True)


def test_conform_names_what_is_missing(spark) -> None:  # type: ignore[no-untyped-def]
    from core.errors import SchemaDriftError

    df = bronze_customers(spark, []).drop("email")
    with pytest.raises(SchemaDriftError, match="lacks column\\(s\\) email"):
        df.transform(tf.conform("customers"))


VERSION_SCHEMA = "customer_id LONG, updated_at TIMESTAMP, _change_version LONG, _ingested_at TIMESTAMP, tag STRING"


def test_latest_version_wins_by_clock_then_version_then_arrival(spark) -> None:  # type: ignore[no-untyped-def]
    later = T0 + timedelta(minutes=1)
    df = spark.createDataFrame(
        [
            (1, T0, 5, T0, "old"),
            (1, later, 4, T0, "newest clock"),
            (2, T0, 5, T0, "lower version"),
            (2, T0, 6, T0, "higher version"),
            (3, T0, 5, T0, "first arrival"),
            (3, T0, 5, later, "re-extracted"),
            (None, T0, 1, T0, "no key a"),
            (None, T0, 1, T0, "no key b"),
        ],
        VERSION_SCHEMA,
    ).transform(tf.with_version_rank(TABLES["customers"]))
    kept = sorted(r.tag for r in df.where("_version_rank = 1").collect())
    assert kept == ["higher version", "newest clock", "no key a", "no key b", "re-extracted"]


def test_first_delivery_of_an_event_is_kept(spark) -> None:  # type: ignore[no-untyped-def]
    df = spark.createDataFrame(
        [("e1", 2, T0), ("e1", 1, T0), ("e2", 3, T0 + timedelta(seconds=1)), ("e2", 4, T0), ("e3", 5, None)],
        "event_id STRING, event_seq LONG, ingested_at TIMESTAMP",
    ).transform(tf.with_version_rank(TABLES["clickstream_events"]))
    assert sorted(r.event_seq for r in df.where("_version_rank = 1").collect()) == [1, 4, 5]


def test_current_flag_compares_with_what_silver_holds(spark) -> None:  # type: ignore[no-untyped-def]
    stored = spark.createDataFrame(
        [(1, T0, 5), (2, T0, 5), (3, T0, 5)], "customer_id LONG, updated_at TIMESTAMP, _change_version LONG"
    )
    df = (
        spark.createDataFrame(
            [(1, T0, 5, T0, "same"), (2, T0, 6, T0, "newer"), (3, T0 - timedelta(hours=1), 9, T0, "older"),
             (4, T0, 1, T0, "unknown"), (None, T0, 1, T0, "no key")],
            VERSION_SCHEMA,
        )
        .withColumn("_version_rank", F.lit(1))
        .transform(tf.with_current_flag(TABLES["customers"], stored))
    )  # fmt: skip
    got = {r.tag: (r._is_current, r._is_duplicate) for r in df.collect()}
    assert got == {
        "same": (True, False),
        "newer": (False, False),
        "older": (True, False),
        "unknown": (False, False),
        "no key": (False, False),
    }


def test_events_seen_before_are_duplicates_unless_the_same_delivery(spark) -> None:  # type: ignore[no-untyped-def]
    stored = spark.createDataFrame([("e1", 1), ("e2", 2)], "event_id STRING, event_seq LONG")
    df = (
        spark.createDataFrame(
            [("e1", 1, 1), ("e2", 9, 1), ("e3", 3, 1), ("e3", 4, 2), (None, 5, 1)],
            "event_id STRING, event_seq LONG, _version_rank INT",
        )
        .transform(tf.with_current_flag(TABLES["clickstream_events"], stored))
        .orderBy("event_seq")
    )
    assert [(r.event_seq, r._is_current, r._is_duplicate) for r in df.collect()] == [
        (1, True, False),  # replay of the kept delivery
        (3, False, False),
        (4, False, True),  # second delivery in the same batch
        (5, False, False),
        (9, False, True),  # an event already kept, delivered again: dropped
    ]


def test_outcome_of_each_case_and_the_grace_boundary(spark) -> None:  # type: ignore[no-untyped-def]
    grace = timedelta(hours=24)
    as_of = CTX.as_of
    rows = [
        ("superseded", 2, False, False, [], False, as_of),
        ("duplicate", 1, True, False, [], False, as_of),
        ("current", 1, False, True, ["email_format"], False, as_of),
        ("valid", 1, False, False, [], False, as_of),
        ("held", 1, False, False, ["order_exists"], True, as_of - grace + timedelta(microseconds=1)),
        ("expired", 1, False, False, ["order_exists"], True, as_of - grace),
        ("no arrival time", 1, False, False, ["order_exists"], True, None),
        ("rejected", 1, False, False, ["quantity_not_zero", "order_exists"], False, as_of),
    ]
    df = spark.createDataFrame(
        rows,
        "tag STRING, _version_rank INT, _is_duplicate BOOLEAN, _is_current BOOLEAN, _reasons ARRAY<STRING>, "
        "_is_waiting BOOLEAN, _ingested_at TIMESTAMP",
    ).transform(tf.with_outcome(CTX, grace))
    got = {r.tag: r._outcome for r in df.collect()}
    assert got == {
        "superseded": tf.SUPERSEDED,
        "duplicate": tf.DUPLICATE,
        "current": tf.CURRENT,
        "valid": tf.VALID,
        "held": tf.HELD,
        "expired": tf.QUARANTINED,
        "no arrival time": tf.QUARANTINED,
        "rejected": tf.QUARANTINED,
    }


LINE_SCHEMA = (
    "order_item_id LONG, order_id LONG, product_id LONG, quantity INT, unit_price DECIMAL(12,2), "
    "discount_amount DECIMAL(12,2), line_amount DECIMAL(18,2), updated_at TIMESTAMP, _change_version LONG, "
    "_ingested_at TIMESTAMP"
)


def test_order_total_counts_only_valid_lines_of_known_products(spark) -> None:  # type: ignore[no-untyped-def]
    d = Decimal
    lines = spark.createDataFrame(
        [
            (1, 10, 100, 2, d("5.00"), d("0.00"), d("10.00"), T0, 1, T0),
            (1, 10, 100, 3, d("5.00"), d("0.00"), d("15.00"), T0 + timedelta(minutes=1), 2, T0),  # newer version
            (2, 10, 100, 1, d("2.50"), d("0.50"), d("2.00"), T0, 1, T0),
            (3, 10, 100, -1, d("5.00"), d("0.00"), d("-5.00"), T0, 1, T0),  # invalid: not counted
            (4, 10, 999, 1, d("7.00"), d("0.00"), d("7.00"), T0, 1, T0),  # unknown product: not counted
            (5, 20, 100, 0, d("5.00"), d("0.00"), d("0.00"), T0, 1, T0),
        ],
        LINE_SCHEMA,
    )
    products = spark.createDataFrame([(100,), (None,)], "id LONG")
    counted = tf.countable_lines(lines, products, CTX)
    orders = spark.createDataFrame([(10,), (20,), (30,), (None,)], "order_id LONG").transform(
        tf.with_order_lines(counted)
    )
    expected = spark.createDataFrame(
        [(10, 4, d("17.00")), (20, 1, d("0.00")), (30, 0, d("0.00")), (None, 0, d("0.00"))],
        "order_id LONG, _lines_count LONG, _lines_amount DECIMAL(18,2)",
    )
    assert_df_equality(orders, expected, ignore_row_order=True, ignore_nullable=True)


def test_parent_state_accepted_rejected_or_missing(spark) -> None:  # type: ignore[no-untyped-def]
    accepted = spark.createDataFrame([(1,), (2,), (2,)], "id LONG")
    rejected = spark.createDataFrame([(2,), (3,)], "id LONG")
    df = spark.createDataFrame([(1,), (2,), (3,), (4,), (None,)], "order_id LONG").transform(
        tf.with_parent_state("order_id", "_order_state", accepted, rejected)
    )
    expected = spark.createDataFrame(
        [(1, "accepted"), (2, "accepted"), (3, "rejected"), (4, "missing"), (None, "missing")],
        "order_id LONG, _order_state STRING",
    )
    assert_df_equality(df, expected, ignore_row_order=True, ignore_nullable=True)


def sessions_of(spark, rows):  # type: ignore[no-untyped-def]
    df = spark.createDataFrame(rows, "event_id STRING, visitor_id STRING, event_ts TIMESTAMP")
    out = df.transform(tf.with_sessions(30)).collect()
    ids = {r.event_id: r.session_id for r in out}
    return ids


def test_sessions_split_after_more_than_30_minutes_of_inactivity(spark) -> None:  # type: ignore[no-untyped-def]
    m = timedelta(minutes=1)
    ids = sessions_of(
        spark,
        [
            ("a1", "A", T0),
            ("a2", "A", T0 + 30 * m),  # exactly 30 minutes: same session
            ("a3", "A", T0 + 60 * m + timedelta(microseconds=1)),  # 30 min + 1 µs: new session
            ("a4", "A", T0 + 60 * m + timedelta(microseconds=1)),  # same instant
            ("b1", "B", T0),  # another visitor at the same time: its own session
            ("n1", None, T0),
        ],
    )
    assert ids["a1"] == ids["a2"] != ids["a3"] == ids["a4"]
    assert ids["b1"] not in (ids["a1"], ids["a3"])
    assert all(len(v) == 64 for v in ids.values())
    first = spark.createDataFrame([("A", T0)], "v STRING, ts TIMESTAMP").select(
        tf.session_id(F.col("v"), F.col("ts")).alias("s")
    )
    assert first.first()["s"] == ids["a1"], "the session id is sha2(visitor | first event)"


def test_a_late_event_joins_two_sessions_as_a_full_recomputation_would(spark) -> None:  # type: ignore[no-untyped-def]
    m = timedelta(minutes=1)
    before = sessions_of(spark, [("a1", "A", T0), ("a3", "A", T0 + 40 * m)])
    after = sessions_of(spark, [("a1", "A", T0), ("a3", "A", T0 + 40 * m), ("a2", "A", T0 + 20 * m)])
    assert before["a1"] != before["a3"]
    assert after["a1"] == after["a2"] == after["a3"] == before["a1"]


def test_with_reasons_treats_a_null_verdict_as_broken(spark) -> None:  # type: ignore[no-untyped-def]
    from silver.rules import Rule

    rules = [Rule("x_positive", F.col("x") > 0), Rule("y_known", F.col("y").isNotNull(), waits=True)]
    df = spark.createDataFrame([(1, "a"), (None, "a"), (1, None), (-1, None)], "x INT, y STRING").transform(
        tf.with_reasons(rules)
    )
    expected = spark.createDataFrame(
        [(1, "a", [], False), (None, "a", ["x_positive"], False), (1, None, ["y_known"], True),
         (-1, None, ["x_positive", "y_known"], False)],
        "x INT, y STRING, _reasons ARRAY<STRING>, _is_waiting BOOLEAN",
    )  # fmt: skip
    assert_df_equality(df, expected, ignore_row_order=True, ignore_nullable=True)


def test_reconcile_adds_up_or_says_what_is_missing() -> None:
    counts = {("bronze", "valid"): 5, ("bronze", "superseded"): 2, ("bronze", "held"): 1, ("held", "valid"): 1}
    out = reconcile("orders", counts, bronze_in=8, held_in=1)
    assert out["upserted"] == 5 and out["superseded"] == 2 and out["held_back"] == 1 and out["held_released"] == 1
    with pytest.raises(ReconciliationError, match="expected 9 bronze row"):
        reconcile("orders", counts, bronze_in=9, held_in=1)
    with pytest.raises(ReconciliationError, match="expected 0 held"):
        reconcile("orders", counts, bronze_in=8, held_in=0)


def test_tables_run_parents_first_and_unknown_names_fail() -> None:
    from core.errors import EcomError

    assert select_tables(["order_items", "orders"]) == ["orders", "order_items"]
    assert select_tables(None)[0] == "customers"
    with pytest.raises(EcomError, match="unknown silver table"):
        select_tables(["nope"])
