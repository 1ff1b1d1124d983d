"""Acceptance of silver: generate a batch with defects → bronze → silver, then compare
quarantine with the generator's manifest (`sim.defects`).

ecom_db is shared with other tests (and holds millions of rows), so bronze starts at the
horizon taken just before the batch (products from the start: the batch's lines may name any
clean product of earlier batches) and every comparison is limited to this batch's keys.
Silver runs with its logical time past the orphan grace period, so orphan lines are judged.
The real GX checkpoint gates every table, in a context of its own.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pyspark.sql import functions as F

from core import db
from core.lake import table_path
from core.schema import SOURCE_TABLES
from core.settings import Settings, load_settings
from silver import job as silver_job
from silver.contracts import TABLES
from silver.rules import REJECT_KIND_RULES
from silver.scorecard import format_scores, read_scorecard, score
from tests.support import wait_for_horizon

pytestmark = pytest.mark.integration

EVENTS = "clickstream_events"


@pytest.fixture
def settings(pg_settings: Settings, tmp_path: Path) -> Settings:
    return load_settings(lake_root=str(tmp_path / "lake"), spark_shuffle_partitions=2, gx_root=str(tmp_path / "gx"))


def batch_xid(settings: Settings, keys: dict[str, tuple[int, int] | None]) -> int:
    """The transaction id (= `_change_version`) the batch was written in."""
    lo, hi = keys["customers"]  # type: ignore[misc]
    with db.connect(settings, "admin", settings.source_db) as conn:
        return int(
            conn.execute(
                sa.text(
                    "SELECT max(_change_version::text::bigint) FROM shop.customers WHERE customer_id BETWEEN :lo AND :hi"
                ),
                {"lo": lo, "hi": hi},
            ).scalar_one()
        )


def source_keys(settings: Settings, keys: dict[str, tuple[int, int] | None]) -> dict[str, set[str]]:
    """The business keys the batch inserted, per table (as text, as the manifest has them)."""
    out: dict[str, set[str]] = {}
    with db.connect(settings, "admin", settings.source_db) as conn:
        for table, span in keys.items():
            if not span:
                out[table] = set()
                continue
            physical = "event_seq" if table == EVENTS else SOURCE_TABLES[table].key
            key = SOURCE_TABLES[table].key
            rows = conn.execute(
                sa.text(f"SELECT DISTINCT {key} FROM shop.{table} WHERE {physical} BETWEEN :lo AND :hi"),
                {"lo": span[0], "hi": span[1]},
            ).scalars()
            out[table] = {str(k) for k in rows}
    return out


def test_quarantine_matches_the_manifest_and_every_clean_row_is_in_silver(spark, settings) -> None:  # type: ignore[no-untyped-def]
    from delta.tables import DeltaTable

    import expectations
    from bronze.job import current_horizon, extract_table
    from generator.simulate import Spec
    from generator.sinks import read_manifest
    from generator.stream import run_batch

    # 1. a batch with plenty of every defect kind
    h0 = current_horizon(settings)
    result = run_batch(settings, Spec(customers=150, products=40, orders=200, events=5000, seed=5, defect_rate=0.2))
    batch = result.record
    wait_for_horizon(settings, batch_xid(settings, batch.keys))

    # 2. bronze
    for table in SOURCE_TABLES:
        extract_table(spark, settings, table, run_id="bronze-acceptance", start_at=None if table == "products" else h0)

    # 3. silver, gated by the real checkpoint (in a GX context of its own: `gx_root`)
    as_of = datetime.now(UTC) + timedelta(hours=settings.orphan_grace_hours, minutes=5)
    real_gate = expectations.gate
    gated: list[str] = []

    def gate(*args: Any, **kw: Any) -> Any:
        gated.append(kw["table"])
        return real_gate(*args, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(expectations, "gate", functools.wraps(real_gate)(gate))
        records = silver_job.run(spark, settings, run_id="silver-acceptance", as_of=as_of)
    assert all(r.status == "succeeded" and r.checkpoint == "passed" for r in records), records
    assert gated == list(TABLES)

    # 4. quarantine against the manifest, limited to this batch's keys
    with db.connect(settings, "admin", settings.source_db) as conn:
        manifest = read_manifest(conn, [batch.batch_id])
    inserted = source_keys(settings, batch.keys)
    quarantined: dict[str, dict[str, list[str]]] = {}
    silver: dict[str, list[str]] = {}
    for table, spec in TABLES.items():
        quarantined[table] = {}
        q_path = table_path(settings, "quarantine", table)
        if inserted[table] and DeltaTable.isDeltaTable(spark, q_path):
            q = spark.read.format("delta").load(q_path)
            for r in (
                q.where(F.col(spec.key).cast("string").isin(*inserted[table])).select(spec.key, "_reasons").collect()
            ):
                quarantined[table].setdefault(str(r[0]), []).extend(r[1])
        s = spark.read.format("delta").load(table_path(settings, "silver", table))
        silver[table] = [str(r[0]) for r in s.select(spec.key).collect() if str(r[0]) in inserted[table]]

    scores = read_scorecard(spark, settings, [batch.batch_id])
    assert scores == score(manifest[["table_name", "record_key", "kind"]].itertuples(index=False), quarantined)
    print(f"\nbatch {batch.batch_id}: silver against the manifest\n{format_scores(scores)}")
    assert all(s.injected > 0 for s in scores), "the batch has no defect of some kind: raise the volumes"
    assert all(s.perfect for s in scores), format_scores(scores)

    # 5. every clean row is in silver, once; the only other rows held out are the lines of a rejected order
    rejected = {(t, k) for t, k, kind in manifest[["table_name", "record_key", "kind"]].itertuples(index=False)
                if kind in REJECT_KIND_RULES}  # fmt: skip
    mismatched_orders = {int(k) for t, k in rejected if t == "orders"}
    with db.connect(settings, "admin", settings.source_db) as conn:
        spill = {
            str(k)
            for k in conn.execute(
                sa.select(SOURCE_TABLES["order_items"].table.c.order_item_id).where(
                    SOURCE_TABLES["order_items"].table.c.order_id.in_(sorted(mismatched_orders))
                )
            ).scalars()
        }
    for table in TABLES:
        clean = {k for k in inserted[table] if (table, k) not in rejected}
        if table == "order_items":
            assert {k for k in spill if k in quarantined[table]} == spill, "a line of a rejected order was promoted"
            assert all(quarantined[table][k] == ["order_valid"] for k in spill if ("order_items", k) not in rejected)
            clean -= spill
        assert len(silver[table]) == len(set(silver[table])), f"duplicate keys in silver.{table}"
        assert set(silver[table]) == clean, (
            f"silver.{table}: clean keys missing {sorted(clean - set(silver[table]))[:5]}"
        )

    # 6. the fixes: noise standardised, duplicates delivered once
    fixes = manifest[manifest["handling"] == "fix"]
    noisy = {k for k, kind in zip(fixes["record_key"], fixes["kind"], strict=True) if kind.endswith("_noise")}
    customers = spark.read.format("delta").load(table_path(settings, "silver", "customers"))
    for r in customers.where(F.col("customer_id").cast("string").isin(*noisy)).collect():
        assert r.email == r.email.strip().lower() and r.country_code == r.country_code.strip().upper()
    ledger = {r.table_name: r for r in records}
    assert ledger[EVENTS].details["duplicates_dropped"] >= result.record.defects.get("duplicate_event", 0)
