"""The whole pipeline against a live SQL Server (`make test-mssql`; see tests/mssql/target.py).

init → generate → bronze → silver → gold → publish, twice (the second batch updates rows, so
publish takes its incremental upsert path), each time reconciled: every source row version is
in bronze, and the warehouse equals gold row for row. Nothing here needs PostgreSQL.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import sqlalchemy as sa

from core import db, dbinit
from core.errors import DatabaseUnavailableError
from core.lake import table_path
from core.ledger import new_run_id
from core.schema import SOURCE_SCHEMA, SOURCE_TABLES, WAREHOUSE_SCHEMA
from tests.mssql.target import live_marks

pytestmark = live_marks()


def _pk(table: str) -> str:
    return str(SOURCE_TABLES[table].table.primary_key.columns.keys()[0])


def _rows(settings: Any, role: Any, sql: str, database: str | None = None) -> list[Any]:
    with db.connect(settings, role, database) as conn:
        return list(conn.exec_driver_sql(sql).all())


# --- init -----------------------------------------------------------------------------------------
def test_init_is_idempotent_and_builds_the_schema_it_prints(mssql: Any) -> None:
    dbinit.init(mssql, echo=lambda _msg: None)  # a second run changes nothing and fails on nothing
    columns = {
        (t, c): (ty, scale)
        for t, c, ty, scale in _rows(
            mssql,
            "admin",
            "SELECT t.name, c.name, ty.name, c.scale FROM sys.columns AS c "
            "JOIN sys.tables AS t ON t.object_id = c.object_id JOIN sys.types AS ty ON ty.user_type_id = c.user_type_id "
            f"WHERE SCHEMA_NAME(t.schema_id) = N'{SOURCE_SCHEMA}'",
            mssql.source_db,
        )
    }
    for table, st in SOURCE_TABLES.items():
        assert columns[(table, "_change_version")][0] == "timestamp", table  # ROWVERSION
        assert columns[(table, st.clock)] == ("datetime2", 6), table
    assert columns[("products", "unit_price")][0] == "numeric" and columns[("products", "is_active")][0] == "bit"
    triggers = {r[0] for r in _rows(mssql, "admin", "SELECT name FROM sys.triggers", mssql.source_db)}
    assert triggers == {f"touch_{t}" for t, st in SOURCE_TABLES.items() if st.clock == "updated_at"}
    marts = {
        r[0]
        for r in _rows(
            mssql, "publisher", f"SELECT name FROM sys.tables WHERE SCHEMA_NAME(schema_id) = N'{WAREHOUSE_SCHEMA}'"
        )
    }
    assert {"customer_360", "sessions", "daily_sales", "product_performance"} <= marts


def test_each_login_may_do_only_its_step(mssql: Any) -> None:
    for role in ("generator", "extractor", "publisher"):
        user = getattr(mssql, f"{role}_user")
        [(is_sysadmin,)] = _rows(mssql, "admin", f"SELECT IS_SRVROLEMEMBER('sysadmin', N'{user}')", "master")
        assert is_sysadmin == 0, role
    assert _rows(mssql, "extractor", f"SELECT COUNT_BIG(*) FROM {SOURCE_SCHEMA}.customers")  # reads the shop
    with pytest.raises(sa.exc.DBAPIError, match=r"(?i)permission"):  # but writes nothing
        _rows(mssql, "extractor", f"DELETE FROM {SOURCE_SCHEMA}.customers WHERE 1 = 0")
    with pytest.raises(sa.exc.DBAPIError, match=r"(?i)permission|invalid object"):  # nor reads the manifest
        _rows(mssql, "extractor", "SELECT COUNT_BIG(*) FROM sim.defects")
    with pytest.raises(DatabaseUnavailableError):  # the publisher has no user in ecom_db
        _rows(mssql, "publisher", "SELECT 1", mssql.source_db)
    with pytest.raises(DatabaseUnavailableError):  # the generator none in ecom_dwh
        _rows(mssql, "generator", "SELECT 1", mssql.warehouse_db)


# --- the pipeline ---------------------------------------------------------------------------------
def _generate(settings: Any, seed: int) -> Any:
    from generator import stream
    from generator.simulate import Spec

    spec = Spec(customers=60, products=15, orders=150, events=1_500, seed=seed)
    return stream.run_batch(settings, spec, batch_id=f"mssql-live-{seed}")


def _source_matches_bronze(spark: Any, settings: Any) -> None:
    """Every current source row version is in bronze (the rowversion watermark lost nothing)."""
    for table in SOURCE_TABLES:
        key = _pk(table)
        source = {
            (int(k), int(v))
            for k, v in _rows(
                settings,
                "extractor",
                f"SELECT {key}, CAST(_change_version AS BIGINT) FROM {SOURCE_SCHEMA}.{table}",
            )
        }
        bronze = {
            (int(r[0]), int(r[1]))
            for r in spark.read.format("delta")
            .load(table_path(settings, "bronze", table))
            .select(key, "_change_version")
            .collect()
        }
        missing = source - bronze
        assert source and not missing, (
            f"bronze.{table} misses {len(missing)} source row version(s): {sorted(missing)[:5]}"
        )


def _warehouse_matches_gold(spark: Any, settings: Any) -> dict[str, int]:
    """The warehouse equals gold row for row, and the T-SQL checksum equals Spark's."""
    from gold import publish
    from gold.marts.registry import MARTS

    d = publish.Dialect("mssql")
    counts = {}
    for name, mart in MARTS.items():
        gold_df = spark.read.format("delta").load(table_path(settings, "gold", name)).select(*mart.column_names)
        expected = Counter(tuple(r) for r in publish.flatten_for_jdbc(gold_df).collect())
        cols = ", ".join(d.q(c) for c in mart.column_names)
        got = Counter(tuple(r) for r in _rows(settings, "publisher", f"SELECT {cols} FROM {d.table(name)}"))
        assert got == expected, (
            f"{WAREHOUSE_SCHEMA}.{name}: {sum((got - expected).values())} extra, {sum((expected - got).values())} missing rows"
        )
        [row] = _rows(settings, "publisher", d.checksum(name, list(mart.key), publish.money_columns(mart)))
        got_sum = publish.Checksum.of(row)
        assert got_sum == publish.spark_checksum(gold_df, mart), name
        counts[name] = sum(expected.values())
    return counts


def test_the_pipeline_end_to_end(mssql: Any, spark: Any) -> None:
    from core import runner
    from gold import publish

    first = _generate(mssql, seed=20260101)
    assert sum(first.record.inserted.values()) > 0
    assert runner.run_layers(mssql, ["bronze", "silver", "gold"])
    recs = publish.run(spark, mssql, run_id=new_run_id("publish"))
    assert {r.details.get("mode") for r in recs} == {"full"}
    _source_matches_bronze(spark, mssql)
    counts = _warehouse_matches_gold(spark, mssql)
    assert all(counts.values()), counts

    second = _generate(mssql, seed=20260102)  # new rows and updates (orders move on, prices change)
    assert sum(second.record.updated.values()) > 0
    assert runner.run_layers(mssql, ["bronze", "silver", "gold"])
    recs = publish.run(spark, mssql, run_id=new_run_id("publish"))
    assert "incremental" in {r.details.get("mode") for r in recs}  # UPDATE … FROM + INSERT … WHERE NOT EXISTS
    _source_matches_bronze(spark, mssql)
    _warehouse_matches_gold(spark, mssql)

    # a re-run converges: nothing new extracted, nothing to stage
    assert runner.run_layers(mssql, ["bronze", "silver", "gold"])
    again = publish.run(spark, mssql, run_id=new_run_id("publish"))
    assert [r.rows_out for r in again] == [0] * len(again)
    _warehouse_matches_gold(spark, mssql)


# --- the watermark ------------------------------------------------------------------------------------
def test_bronze_never_skips_a_transaction_that_commits_late(mssql: Any, spark: Any, tmp_path: Any) -> None:
    """An older transaction committing after a younger one is not skipped (MIN_ACTIVE_ROWVERSION)."""
    from bronze import job
    from bronze.watermarks import read_watermark

    settings = mssql.model_copy(update={"lake_root": str(tmp_path / "lake")})
    job.run(spark, settings, run_id=new_run_id("bronze"), tables=["customers"])
    insert = (
        f"INSERT INTO {SOURCE_SCHEMA}.customers (email, city, signup_at) "
        "VALUES (:email, N'late-commit', SYSUTCDATETIME())"
    )
    version = (
        f"SELECT customer_id, CAST(_change_version AS BIGINT) FROM {SOURCE_SCHEMA}.customers "
        "WHERE customer_id = SCOPE_IDENTITY()"
    )
    eng = db.engine(settings, "generator")
    with eng.connect() as older:
        tx = older.begin()
        older.execute(sa.text(insert), {"email": "older@example.com"})
        older_key, older_version = older.execute(sa.text(version)).one()
        with db.connect(settings, "generator") as younger:  # commits first, with a higher version
            younger.execute(sa.text(insert), {"email": "younger@example.com"})
            younger_key, younger_version = younger.execute(sa.text(version)).one()
        assert younger_version > older_version
        horizon = job.current_horizon(settings)
        assert horizon <= older_version, "the safe horizon must stay below an open transaction"
        tx.commit()
    job.run(spark, settings, run_id=new_run_id("bronze"), tables=["customers"])
    got = {
        (int(r[0]), int(r[1]))
        for r in spark.read.format("delta")
        .load(table_path(settings, "bronze", "customers"))
        .select("customer_id", "_change_version")
        .collect()
    }
    assert {(older_key, older_version), (younger_key, younger_version)} <= got
    watermark = read_watermark(settings, "customers")
    assert watermark is not None and watermark.watermark > younger_version
