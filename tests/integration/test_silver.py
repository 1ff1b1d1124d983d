"""Silver on real bronze-format Delta tables: one scenario of two bronze extractions and five
silver runs, judged by the tests below.

1. bronze b1: clean rows and defects; an order line whose order (and another whose product)
   only arrives later; an orphan line; a session that the next batch will extend, and one
   that a late event will join; a duplicate delivery; an event from the future;
2. silver, then silver again (must write nothing);
3. bronze b2: the late parents, newer and replayed versions, the late and continuing events;
4. silver; silver after the grace period (the orphans are quarantined);
5. silver --full-refresh: must equal the incremental result.

The checkpoint is replaced by a recorder (GX is the expectations suite's own business); one
test makes it fail.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from core.errors import ValidationFailedError
from core.lake import table_path
from core.settings import load_settings
from silver import job
from silver.contracts import TABLES
from tests.integration.test_silver_support import (
    T0,
    append_bronze,
    customer,
    event,
    item,
    order,
    product,
)

pytestmark = pytest.mark.integration

M = timedelta(minutes=1)
E0 = T0 - 3 * 60 * M  # the first event
B1_AT = T0 + 5 * M  # bronze b1 received
B2_AT = T0 + 2 * 60 * M  # bronze b2 received
RUN1_AT = T0 + 60 * M
RUN3_AT = T0 + 3 * 60 * M
RUN4_AT = B1_AT + timedelta(hours=24, minutes=1)  # b1's held rows are past their grace
LAKE_TABLES = [("silver", t) for t in TABLES] + [("quarantine", t) for t in TABLES]
LAKE_TABLES += [("silver", job.held_name(t)) for t in job.HELD_TABLES] + [("ops", "silver_progress")]


@dataclass
class Scenario:
    settings: Any
    gate_calls: list[dict[str, Any]] = field(default_factory=list)
    records: dict[str, list[Any]] = field(default_factory=dict)
    versions: dict[str, dict[str, int | None]] = field(default_factory=dict)
    snapshots: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    incremental: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def read(spark, settings, database: str, table: str) -> DataFrame:  # type: ignore[no-untyped-def]
    return spark.read.format("delta").load(table_path(settings, database, table))


def versions(settings) -> dict[str, int | None]:  # type: ignore[no-untyped-def]
    """The latest Delta version of each table, from its log folder (same version, same content)."""
    out: dict[str, int | None] = {}
    for database, table in LAKE_TABLES:
        log = Path(table_path(settings, database, table)) / "_delta_log"
        commits = [int(p.stem) for p in log.glob("*.json")] if log.is_dir() else []
        out[f"{database}.{table}"] = max(commits, default=None)
    return out


def snapshot(spark, settings) -> dict[str, list[dict[str, Any]]]:  # type: ignore[no-untyped-def]
    """Every silver-owned table's rows (lineage and run columns left out), sorted."""
    out = {}
    for database, table in LAKE_TABLES:
        if database == "ops":
            continue
        path = table_path(settings, database, table)
        try:
            df = spark.read.format("delta").load(path)
        except Exception:
            continue
        keep = [c for c in df.columns if c not in ("_run_id", "_quarantined_at", "_held_since")]
        out[f"{database}.{table}"] = sorted((r.asDict() for r in df.select(*keep).collect()), key=repr)
        SCHEMAS[f"{database}.{table}"] = df.select(*keep).schema
    return out


SCHEMAS: dict[str, Any] = {}  # the snapshots' schemas, by table


def bronze_b1(spark, settings) -> None:  # type: ignore[no-untyped-def]
    add = append_bronze
    add(spark, settings, "customers", [
        customer(1),
        customer(2, email=None),  # rejected: email_not_null
        customer(3, email="  Grace@Example.COM\t", country_code=" us", phone="(591)341-7776"),  # standardised
        customer(4, email="grace@example"),  # rejected: email_format
    ], run_id="b1", ingested_at=B1_AT)  # fmt: skip
    add(
        spark,
        settings,
        "products",
        [product(1), product(2, unit_price=Decimal("0.00"))],
        run_id="b1",
        ingested_at=B1_AT,
    )
    add(spark, settings, "orders", [
        order(10, "20.00"),  # = line 1 (line 3 is rejected: it does not count)
        order(11, "99.00"),  # ≠ line 2: rejected, and line 2 must not be promoted
    ], run_id="b1", ingested_at=B1_AT)  # fmt: skip
    add(spark, settings, "order_items", [
        item(1, 10, quantity=2),
        item(2, 11, quantity=1),
        item(3, 10, quantity=0),  # rejected: quantity_not_zero
        item(4, 12),  # order 12 arrives in b2
        item(5, 999),  # order 999 never arrives: an orphan after the grace period
        item(6, 12, product_id=3, price="5.00"),  # order 12 and product 3 arrive in b2
    ], run_id="b1", ingested_at=B1_AT)  # fmt: skip
    got = B1_AT - M  # when the source received them
    add(spark, settings, "clickstream_events", [
        event(1, "a1", "A", E0, ingested_at=got),
        event(2, "a3", "A", E0 + 40 * M, ingested_at=got),  # 40 min later: a second session ... until a2 arrives
        event(3, "a5", "A", E0 + 80 * M, ingested_at=got),  # a third session; b2's a6 continues it
        event(4, "b1", "B", E0, customer_id=1, ingested_at=got),
        event(5, "a1", "A", E0, ingested_at=got + timedelta(seconds=1)),  # a second delivery of a1
        event(6, "f1", "F", T0 + 3 * 60 * M, ingested_at=T0 + M),  # from the future: rejected
    ], run_id="b1", ingested_at=B1_AT)  # fmt: skip


def bronze_b2(spark, settings) -> None:  # type: ignore[no-untyped-def]
    add = append_bronze
    add(spark, settings, "customers", [
        customer(1, city="Paris", updated_at=T0 + 90 * M, _change_version=2000),  # newer version
        customer(1, _change_version=1999),  # older version in the same extraction: superseded
        customer(3, email="grace@example.com", updated_at=T0 - 60 * M, _change_version=5),  # older than silver's
    ], run_id="b2", ingested_at=B2_AT)  # fmt: skip
    add(spark, settings, "products", [product(3, unit_price=Decimal("5.00"))], run_id="b2", ingested_at=B2_AT)
    add(spark, settings, "orders", [order(12, "15.00")], run_id="b2", ingested_at=B2_AT)
    got = B2_AT - M
    add(spark, settings, "clickstream_events", [
        event(7, "a2", "A", E0 + 20 * M, ingested_at=got),  # late: joins a1's and a3's sessions into one
        event(8, "a6", "A", E0 + 100 * M, ingested_at=got),  # continues a5's session across the batches
        event(9, "a1", "A", E0, ingested_at=got),  # a1 delivered a third time
        event(10, "b2", "B", E0 + 4 * 60 * M, ingested_at=got),
    ], run_id="b2", ingested_at=B2_AT)  # fmt: skip


def run_silver(spark, scenario: Scenario, label: str, as_of: datetime, *, keep: bool = True, **kw: Any) -> None:  # type: ignore[no-untyped-def]
    scenario.records[label] = job.run(spark, scenario.settings, run_id=f"silver-{label}", as_of=as_of, **kw)
    scenario.versions[label] = versions(scenario.settings)
    if keep:
        scenario.snapshots[label] = snapshot(spark, scenario.settings)


@pytest.fixture(scope="module")
def scenario(spark, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:  # type: ignore[no-untyped-def]
    import expectations

    settings = load_settings(lake_root=str(tmp_path_factory.mktemp("silver") / "lake"), spark_shuffle_partitions=2)
    sc = Scenario(settings)

    def recording_gate(spark_, settings_, **kw: Any) -> None:
        sc.gate_calls.append({**kw, "rows": kw["df"].count(), "columns": kw["df"].columns})

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(expectations, "gate", recording_gate, raising=False)
        # events in event-time ranges of one row: the MERGE can skip files
        mp.setattr(job, "EVENTS_LAYOUT", replace(job.EVENTS_LAYOUT, rows_per_file=1))
        bronze_b1(spark, settings)
        run_silver(spark, sc, "run1", RUN1_AT)
        run_silver(spark, sc, "rerun", RUN1_AT, keep=False)  # nothing may change: compared by version
        bronze_b2(spark, settings)
        run_silver(spark, sc, "run3", RUN3_AT)
        run_silver(spark, sc, "run4", RUN4_AT)
        sc.incremental = sc.snapshots["run4"]
        run_silver(spark, sc, "refresh", RUN4_AT, full_refresh=True)
    yield sc


def rows(sc: Scenario, label: str, name: str) -> list[dict[str, Any]]:
    return sc.snapshots[label].get(name, [])


def keys(sc: Scenario, label: str, name: str, key: str) -> set[Any]:
    return {r[key] for r in rows(sc, label, name)}


def reasons(sc: Scenario, label: str, table: str) -> dict[Any, list[str]]:
    return {r[TABLES[table].key]: list(r["_reasons"]) for r in rows(sc, label, f"quarantine.{table}")}


# --- run 1 -----------------------------------------------------------------------------------------------
def test_first_run_promotes_clean_rows_and_quarantines_each_defect_with_its_rule(scenario: Scenario) -> None:
    sc = scenario
    assert keys(sc, "run1", "silver.customers", "customer_id") == {1, 3}
    assert reasons(sc, "run1", "customers") == {2: ["email_not_null"], 4: ["email_format"]}
    grace = next(r for r in rows(sc, "run1", "silver.customers") if r["customer_id"] == 3)
    assert (grace["email"], grace["country_code"], grace["phone"]) == ("grace@example.com", "US", "+15913417776")

    assert keys(sc, "run1", "silver.products", "product_id") == {1}
    assert reasons(sc, "run1", "products") == {2: ["price_positive"]}
    assert keys(sc, "run1", "silver.orders", "order_id") == {10}
    assert reasons(sc, "run1", "orders") == {11: ["total_matches_items"]}
    assert keys(sc, "run1", "silver.order_items", "order_item_id") == {1}
    assert reasons(sc, "run1", "order_items") == {3: ["quantity_not_zero"]}
    held = {r["order_item_id"]: list(r["_reasons"]) for r in rows(sc, "run1", "silver._held_order_items")}
    assert held == {
        2: ["order_valid"],
        4: ["order_exists"],
        5: ["order_exists"],
        6: ["order_exists", "product_exists"],
    }
    assert keys(sc, "run1", "silver.clickstream_events", "event_id") == {"a1", "a3", "a5", "b1"}
    assert reasons(sc, "run1", "clickstream_events") == {"f1": ["event_ts_not_future"]}
    kept = next(r for r in rows(sc, "run1", "silver.clickstream_events") if r["event_id"] == "a1")
    assert kept["event_seq"] == 1, "the first delivery is kept"


def test_money_stays_decimal_and_change_data_feed_is_on(spark, scenario: Scenario) -> None:  # type: ignore[no-untyped-def]
    s = scenario.settings
    orders = read(spark, s, "silver", "orders")
    assert dict(orders.dtypes)["total_amount"] == "decimal(12,2)"
    assert dict(read(spark, s, "silver", "order_items").dtypes)["line_amount"] == "decimal(18,2)"
    for table in TABLES:
        props = {
            r.key: r.value for r in spark.sql(f"SHOW TBLPROPERTIES delta.`{table_path(s, 'silver', table)}`").collect()
        }
        assert props.get("delta.enableChangeDataFeed") == "true", table
    changes = (
        spark.read.format("delta")
        .option("readChangeFeed", "true")
        .option("startingVersion", 0)
        .load(table_path(s, "silver", "customers"))
    )
    assert {r._change_type for r in changes.collect()} >= {"insert"}


def test_a_rerun_writes_nothing(scenario: Scenario) -> None:
    sc = scenario
    assert sc.versions["rerun"] == sc.versions["run1"], "a table got a new Delta version on a rerun"
    by_table = {r.table_name: r for r in sc.records["rerun"]}
    assert by_table["customers"].message == "no new bronze rows"
    assert by_table["order_items"].details["held_still"] == 4
    assert all(r.status == "succeeded" and r.rows_out == 0 and r.rows_quarantined == 0 for r in sc.records["rerun"])


# --- run 3: b2 -------------------------------------------------------------------------------------------
def test_only_a_newer_version_updates_a_key(scenario: Scenario) -> None:
    sc = scenario
    customers = {r["customer_id"]: r for r in rows(sc, "run3", "silver.customers")}
    assert customers[1]["city"] == "Paris"
    assert customers[3]["updated_at"] == T0, "an older version overwrote a newer one"
    details = next(r for r in sc.records["run3"] if r.table_name == "customers").details
    assert (details["upserted"], details["superseded"], details["already_current"]) == (1, 1, 1)


def test_late_parents_release_held_lines(scenario: Scenario) -> None:
    sc = scenario
    assert keys(sc, "run3", "silver.orders", "order_id") == {10, 12}
    assert keys(sc, "run3", "silver.order_items", "order_item_id") == {1, 4, 6}
    assert keys(sc, "run3", "silver._held_order_items", "order_item_id") == {2, 5}
    details = next(r for r in sc.records["run3"] if r.table_name == "order_items").details
    assert (details["held_rows_in"], details["held_released"], details["held_still"]) == (4, 2, 2)


def test_orphans_are_quarantined_after_the_grace_period(scenario: Scenario) -> None:
    sc = scenario
    assert reasons(sc, "run4", "order_items") == {
        2: ["order_valid"],  # its order was rejected
        3: ["quantity_not_zero"],
        5: ["order_exists"],  # its order never came
    }
    assert rows(sc, "run4", "silver._held_order_items") == []


def test_sessions_follow_late_and_continuing_events(scenario: Scenario) -> None:
    sc = scenario
    before = {r["event_id"]: r["session_id"] for r in rows(sc, "run1", "silver.clickstream_events")}
    after = {r["event_id"]: r["session_id"] for r in rows(sc, "run3", "silver.clickstream_events")}
    assert before["a1"] != before["a3"] != before["a5"]
    assert after["a1"] == after["a2"] == after["a3"] == before["a1"], "the late event did not join the sessions"
    assert after["a5"] == after["a6"] == before["a5"], "the session did not continue across the batches"
    assert after["b1"] != after["b2"]
    details = next(r for r in sc.records["run3"] if r.table_name == "clickstream_events").details
    assert (details["upserted"], details["duplicates_dropped"], details["sessions_reassigned"]) == (3, 1, 1)


def test_the_events_merge_reads_only_the_files_from_the_earliest_reassigned_event(spark, scenario: Scenario) -> None:  # type: ignore[no-untyped-def]
    """run1 wrote the events in event-time ranges (a file per row here); run3's late a2
    re-assigns a3 (E0 + 40 min), so its MERGE names that time and can skip the files of a1 and
    b1 (E0)."""
    import pyarrow as pa
    from delta.tables import DeltaTable
    from deltalake import DeltaTable as FileTable

    path = table_path(scenario.settings, "silver", "clickstream_events")
    history = DeltaTable.forPath(spark, path).history().collect()
    assert [h.operation for h in sorted(history, key=lambda h: h.version)][:2] == ["WRITE", "MERGE"]
    [merge] = [h for h in history if h.operation == "MERGE"]
    bound = E0 + 40 * M - job.SKIP_MARGIN  # a3's time, less the margin
    assert "event_ts#" in merge.operationParameters["predicate"]
    assert f">= {bound.isoformat(sep=' ')}" in merge.operationParameters["predicate"]
    # What Delta's data skipping does with that predicate: run1's files by their event_ts statistics.
    files = pa.table(FileTable(path, version=0).get_add_actions(flatten=True)).to_pylist()
    assert len(files) == 4  # a1, b1, a3, a5 (f1 was rejected)
    kept = [f for f in files if f["max.event_ts"].replace(tzinfo=None) >= bound]
    assert len(kept) == 2  # a3's and a5's: the MERGE reads and may rewrite only these
    assert int(merge.operationMetrics["numTargetRowsUpdated"]) == 1
    assert int(merge.operationMetrics["numTargetRowsInserted"]) == 3
    assert int(merge.operationMetrics["numTargetFilesRemoved"]) == 1  # a3's file only
    details = next(r for r in scenario.records["run3"] if r.table_name == "clickstream_events").details
    assert details["events_written"] == "merged"
    assert details["rows_copied"] == int(merge.operationMetrics["numTargetRowsCopied"])  # the write amplification


def test_a_catch_up_rewrites_the_events_in_event_time_ranges(spark, lake_settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """More new events than silver holds (a history load, a backlog): one overwrite in event-time
    ranges, not a MERGE whose inserts, hashed by event_id, would each span the whole period. It
    re-assigns sessions as the MERGE does and equals a full refresh."""
    import pyarrow as pa
    from delta.tables import DeltaTable
    from deltalake import DeltaTable as FileTable

    import expectations

    monkeypatch.setattr(expectations, "gate", lambda *_a, **_kw: None, raising=False)
    monkeypatch.setattr(job, "EVENTS_LAYOUT", replace(job.EVENTS_LAYOUT, rows_per_file=2))
    s, events = lake_settings, ["clickstream_events"]
    append_bronze(spark, s, "clickstream_events", [
        event(1, "c1", "C", E0),
        event(2, "c3", "C", E0 + 40 * M),  # a second session ... until c2 arrives
    ], run_id="c1", ingested_at=B1_AT)  # fmt: skip
    [first] = job.run(spark, s, run_id="silver-c1", as_of=RUN1_AT, tables=events)
    append_bronze(spark, s, "clickstream_events", [
        event(3, "c2", "C", E0 + 20 * M),  # late: joins c1's and c3's sessions
        *[event(4 + i, f"d{i}", "D", E0 + i * 50 * M) for i in range(3)],  # a session each
    ], run_id="c2", ingested_at=B2_AT)  # fmt: skip
    [catch_up] = job.run(spark, s, run_id="silver-c2", as_of=RUN3_AT, tables=events)

    assert (first.details["events_written"], catch_up.details["events_written"]) == ("created", "rewritten")
    assert (catch_up.details["upserted"], catch_up.details["sessions_reassigned"]) == (4, 1)
    path = table_path(s, "silver", "clickstream_events")
    last = DeltaTable.forPath(spark, path).history(1).first()
    assert (last.operation, last.operationParameters["mode"]) == ("WRITE", "Overwrite")
    sessions = {r.event_id: r.session_id for r in read(spark, s, "silver", "clickstream_events").collect()}
    assert sessions.keys() == {"c1", "c2", "c3", "d0", "d1", "d2"}
    assert sessions["c1"] == sessions["c2"] == sessions["c3"] != sessions["d0"]
    # Files in event-time ranges: each one starts where the one before it ended, or later.
    files = pa.table(FileTable(path).get_add_actions(flatten=True)).to_pylist()
    ranges = sorted((f["min.event_ts"], f["max.event_ts"]) for f in files)
    assert len(ranges) >= 2
    assert all(before[1] <= after[0] for before, after in pairwise(ranges)), ranges

    def business_rows() -> list[dict[str, Any]]:
        df = read(spark, s, "silver", "clickstream_events").drop("_run_id")
        return sorted((r.asDict() for r in df.collect()), key=repr)

    incremental = business_rows()
    job.run(spark, s, run_id="silver-refresh", as_of=RUN3_AT, tables=events, full_refresh=True)
    assert business_rows() == incremental


def test_incremental_runs_equal_a_full_refresh(spark, scenario: Scenario) -> None:  # type: ignore[no-untyped-def]
    sc = scenario
    assert sc.snapshots["refresh"].keys() == sc.incremental.keys()
    for name, expected in sc.incremental.items():
        got = sc.snapshots["refresh"][name]
        schema = SCHEMAS[name]

        def frame(rows: list[dict[str, Any]], schema: Any = schema) -> DataFrame:
            return spark.createDataFrame([tuple(r[c] for c in schema.fieldNames()) for r in rows], schema)

        assert_df_equality(frame(got), frame(expected), ignore_row_order=True, ignore_nullable=True)


# --- the whole scenario ----------------------------------------------------------------------------------
def test_reconciliation_adds_up_in_every_ledger_row(spark, scenario: Scenario) -> None:  # type: ignore[no-untyped-def]
    runs = read(spark, scenario.settings, "ops", "runs").where(F.col("layer") == "silver").collect()
    assert len(runs) == 5 * len(scenario.records)
    for r in runs:
        d = json.loads(r.details)
        if not d.get("bronze_rows_in") and "upserted" not in d:
            continue  # nothing new
        parts = ("superseded", "duplicates_dropped", "already_current", "quarantined", "held_back", "upserted")
        assert d["bronze_rows_in"] == sum(d[p] for p in parts), (r.table_name, d)
        held = ("held_released", "held_quarantined", "held_still", "held_superseded")
        assert d["held_rows_in"] == sum(d[p] for p in held), (r.table_name, d)
        assert r.rows_out == d["upserted"] + d["held_released"]
        assert r.rows_quarantined == d["quarantined"] + d["held_quarantined"]


def test_no_duplicate_keys_anywhere(spark, scenario: Scenario) -> None:  # type: ignore[no-untyped-def]
    for table, spec in TABLES.items():
        df = read(spark, scenario.settings, "silver", table)
        assert df.count() == df.select(spec.key).distinct().count(), table


def test_the_gate_sees_exactly_the_rows_about_to_be_promoted(scenario: Scenario) -> None:
    run1 = [c for c in scenario.gate_calls if c["run_id"] == "silver-run1"]
    assert {c["table"]: c["rows"] for c in run1} == {
        "customers": 2,
        "products": 1,
        "orders": 1,
        "order_items": 1,
        "clickstream_events": 4,
    }
    for c in run1:
        assert c["layer"] == "silver" and c["extra"]["expected_rows"] == c["rows"]
        assert c["columns"] == TABLES[c["table"]].schema.fieldNames()
    assert set(run1[3]["extra"]["references"]) == {"order_id", "product_id"}
    assert not [c for c in scenario.gate_calls if c["run_id"] == "silver-rerun"], "a rerun has nothing to judge"


def test_a_failed_gate_writes_nothing(spark, lake_settings, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import expectations

    def failing_gate(*_a: Any, **_kw: Any) -> None:
        raise ValidationFailedError("silver.customers: email regex failed for 1 row")

    monkeypatch.setattr(expectations, "gate", failing_gate, raising=False)
    append_bronze(spark, lake_settings, "customers", [customer(1), customer(2, email=None)], run_id="b1")
    with pytest.raises(ValidationFailedError, match="email regex"):
        job.run(spark, lake_settings, run_id="silver-gated", tables=["customers"], as_of=RUN1_AT)
    from delta.tables import DeltaTable

    for database in ("silver", "quarantine"):
        assert not DeltaTable.isDeltaTable(spark, table_path(lake_settings, database, "customers")), database
    assert not DeltaTable.isDeltaTable(spark, table_path(lake_settings, "ops", "silver_progress"))
    [ledger] = read(spark, lake_settings, "ops", "runs").collect()
    assert (ledger.status, ledger.checkpoint) == ("failed", "failed")


def test_new_events_that_move_no_session_are_appended(spark, lake_settings, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """No stored event changes session: the new events are appended (no MERGE), and the
    change data feed that gold reads shows them as inserts."""
    from delta.tables import DeltaTable

    import expectations

    monkeypatch.setattr(expectations, "gate", lambda *_a, **_kw: None, raising=False)
    got = B1_AT - M
    first = [
        event(1, "a1", "A", E0, ingested_at=got),
        event(4, "b1", "B", E0, ingested_at=got),  # more stored events than new ones: not a catch-up
        event(5, "x1", "X", E0 + 5 * M, ingested_at=got),
    ]
    append_bronze(spark, lake_settings, "clickstream_events", first, run_id="b1")
    job.run(spark, lake_settings, run_id="silver-1", tables=["clickstream_events"], as_of=RUN1_AT)
    later = [
        event(2, "a2", "A", E0 + 90 * M, ingested_at=got),  # A's next session: 90 minutes later
        event(3, "c1", "C", E0 + 10 * M, ingested_at=got),  # a new visitor
    ]
    append_bronze(spark, lake_settings, "clickstream_events", later, run_id="b2")
    job.run(spark, lake_settings, run_id="silver-2", tables=["clickstream_events"], as_of=RUN1_AT)

    path = table_path(lake_settings, "silver", "clickstream_events")
    last = DeltaTable.forPath(spark, path).history(1).collect()[0]
    assert (last.operation, last.operationParameters["mode"]) == ("WRITE", "Append")
    feed = spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", last.version)
    assert sorted((r.event_id, r._change_type) for r in feed.load(path).collect()) == [
        ("a2", "insert"),
        ("c1", "insert"),
    ]
    sessions = {r.event_id: r.session_id for r in read(spark, lake_settings, "silver", "clickstream_events").collect()}
    assert len(set(sessions.values())) == 5
