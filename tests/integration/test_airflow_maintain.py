"""`ecom maintain` on real Delta tables: compaction, VACUUM retention, one writer per table."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from core.lake import table_path
from core.locks import writer_lock
from core.maintain import maintain

pytestmark = pytest.mark.integration


def _small_files_table(spark: Any, path: str, appends: int) -> None:
    for i in range(appends):
        spark.createDataFrame([(i, f"row {i}"), (i + 100, None)], "id INT, label STRING").coalesce(1).write.format(
            "delta"
        ).mode("append").save(path)


def test_maintain_compacts_vacuums_and_skips_a_table_being_written(spark: Any, lake_settings: Any) -> None:
    compact = table_path(lake_settings, "bronze", "maint_probe")
    busy = table_path(lake_settings, "silver", "maint_busy")
    _small_files_table(spark, compact, appends=4)
    _small_files_table(spark, busy, appends=2)

    with writer_lock(lake_settings, "silver.maint_busy"):  # a layer is writing this one
        results = {f"{r.database}.{r.table}": r for r in maintain(lake_settings, wait_s=0)}

    assert set(results) == {"bronze.maint_probe", "silver.maint_busy"}
    done = results["bronze.maint_probe"]
    assert done.status == "maintained"
    assert done.files_removed == 4 and done.files_added == 1
    assert done.retain_hours == 168
    assert not done.files_vacuumed  # everything is younger than 7 days: nothing may go
    assert spark.read.format("delta").load(compact).count() == 8
    history = [r["operation"] for r in spark.sql(f"DESCRIBE HISTORY delta.`{compact}`").collect()]
    assert "OPTIMIZE" in history

    skipped = results["silver.maint_busy"]
    assert skipped.status == "busy" and "one writer per table" in (skipped.message or "")
    ops = [r["operation"] for r in spark.sql(f"DESCRIBE HISTORY delta.`{busy}`").collect()]
    assert "OPTIMIZE" not in ops


def test_maintain_resorts_silver_events_by_event_time_into_bounded_files(spark: Any, lake_settings: Any) -> None:
    """Silver events keep their event-time layout (`core.lake.LAYOUTS`): a re-sort, not a bin-pack,
    and the session's own OPTIMIZE file size is left as it was."""
    from datetime import datetime, timedelta

    from delta.tables import DeltaTable

    from core.lake import LAYOUTS

    layout = LAYOUTS[("silver", "clickstream_events")]
    path = table_path(lake_settings, "silver", "clickstream_events")
    t0 = datetime(2026, 1, 1)
    for hours in ((5, 1), (3, 0), (4, 2)):  # three files whose event-time ranges overlap
        rows = [(f"e{h}", t0 + timedelta(hours=h)) for h in hours]
        spark.createDataFrame(rows, "event_id STRING, event_ts TIMESTAMP").coalesce(1).write.format("delta").mode(
            "append"
        ).save(path)

    [result] = maintain(lake_settings, wait_s=0)
    assert (result.status, result.files_removed, result.files_added) == ("maintained", 3, 1)
    last = next(h for h in DeltaTable.forPath(spark, path).history().collect() if h.operation == "OPTIMIZE")
    assert last.operationParameters["zOrderBy"] == f'["{layout.order_by}"]'
    assert spark.conf.get("spark.databricks.delta.optimize.maxFileSize", None) is None
    assert spark.read.format("delta").load(path).count() == 6


def test_maintain_refuses_a_retention_under_seven_days() -> None:
    from core.cli import cli

    result = CliRunner().invoke(cli, ["maintain", "--retain-hours", "24"])
    assert result.exit_code == 2
    assert "168" in result.output
