"""Bronze's pure transforms: ingestion metadata (chispa) and the source/bronze schema contract."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from chispa import assert_df_equality
from pyspark.sql import types as T

from bronze.transforms import check_schema, compare_schemas, with_ingestion_metadata
from core.errors import SchemaDriftError

SOURCE = T.StructType(
    [
        T.StructField("order_id", T.LongType(), True),
        T.StructField("status", T.StringType(), True),
        T.StructField("total_amount", T.DecimalType(12, 2), True),
        T.StructField("_change_version", T.LongType(), True),
    ]
)
META = T.StructType(
    [
        T.StructField("_run_id", T.StringType(), False),
        T.StructField("_ingested_at", T.TimestampType(), True),
        T.StructField("_source", T.StringType(), False),
        T.StructField("_extract_horizon", T.LongType(), False),
        T.StructField("_ingest_date", T.DateType(), True),
    ]
)


def test_with_ingestion_metadata_adds_columns_and_changes_nothing(spark) -> None:  # type: ignore[no-untyped-def]
    rows = [
        (1, "placed", Decimal("10.50"), 700),
        (2, None, None, 701),  # nulls pass through untouched
        (3, "  Paid ", Decimal("-0.01"), 701),  # raw: no trimming, no validation
    ]
    df = spark.createDataFrame(rows, SOURCE)
    # 23:30 at UTC-02:00 is already the next day in UTC: the partition date is UTC's.
    at = datetime(2026, 3, 1, 23, 30, 0, 123456, tzinfo=timezone(timedelta(hours=-2)))
    actual = with_ingestion_metadata(
        df, run_id="bronze-1", source="postgresql:ecom_db.shop.orders", ingested_at=at, horizon=702
    )
    utc = datetime(2026, 3, 2, 1, 30, 0, 123456)
    expected = spark.createDataFrame(
        [(*r, "bronze-1", utc, "postgresql:ecom_db.shop.orders", 702, date(2026, 3, 2)) for r in rows],
        T.StructType(SOURCE.fields + META.fields),
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_with_ingestion_metadata_refuses_a_naive_timestamp(spark) -> None:  # type: ignore[no-untyped-def]
    df = spark.createDataFrame([(1, "placed", None, 1)], SOURCE)
    with pytest.raises(ValueError, match="timezone-aware"):
        with_ingestion_metadata(df, run_id="r", source="s", ingested_at=datetime(2026, 1, 1), horizon=1)


def test_with_ingestion_metadata_refuses_a_source_column_named_like_metadata(spark) -> None:  # type: ignore[no-untyped-def]
    df = spark.createDataFrame([(1, "x")], "order_id long, _run_id string")
    with pytest.raises(SchemaDriftError, match="_run_id"):
        with_ingestion_metadata(df, run_id="r", source="s", ingested_at=datetime.now(UTC), horizon=1)


def _bronze(*extra: T.StructField) -> T.StructType:
    return T.StructType([*SOURCE.fields, *META.fields, *extra])


def test_new_source_column_is_accepted() -> None:
    source = T.StructType([*SOURCE.fields, T.StructField("coupon", T.StringType(), True)])
    change = check_schema("orders", _bronze(), source)
    assert change.added == ("coupon",)
    assert not change.is_drift


def test_same_schema_differing_only_in_nullability_and_case_is_no_change() -> None:
    source = T.StructType([T.StructField(f.name.upper(), f.dataType, False) for f in SOURCE.fields])
    assert compare_schemas(_bronze(), source) == compare_schemas(_bronze(), SOURCE)
    assert not compare_schemas(_bronze(), source).added


def test_dropped_source_column_names_table_and_column() -> None:
    source = T.StructType([f for f in SOURCE.fields if f.name != "status"])
    with pytest.raises(SchemaDriftError, match=r"'orders'.*column 'status' was dropped.*--full-refresh"):
        check_schema("orders", _bronze(), source)


def test_retyped_source_column_names_both_types() -> None:
    source = T.StructType(
        [T.StructField(f.name, T.DecimalType(14, 2) if f.name == "total_amount" else f.dataType) for f in SOURCE.fields]
    )
    with pytest.raises(
        SchemaDriftError, match=r"column 'total_amount' changed type from decimal\(12,2\).*decimal\(14,2\)"
    ):
        check_schema("orders", _bronze(), source)


def test_a_column_once_added_then_dropped_is_drift() -> None:
    bronze = _bronze(T.StructField("coupon", T.StringType(), True))
    with pytest.raises(SchemaDriftError, match="'coupon'"):
        check_schema("orders", bronze, SOURCE)
