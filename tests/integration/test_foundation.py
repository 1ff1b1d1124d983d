"""Foundation, against the real things: Delta on Spark, the local cluster over JDBC and psycopg,
and the real `spark-sql`. (The roles' privileges are in tests/reliability/test_security.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import psycopg
import pytest
from chispa import assert_df_equality

from core import db
from core.lake import register_table, table_path
from core.settings import load_settings

pytestmark = pytest.mark.integration


def test_delta_write_merge_and_read_by_catalog_name(spark, lake_settings) -> None:  # type: ignore[no-untyped-def]
    from delta.tables import DeltaTable

    path = table_path(lake_settings, "ops", "foundation_smoke")
    spark.createDataFrame([(1, "a"), (2, None)], "id INT, v STRING").write.format("delta").save(path)
    updates = spark.createDataFrame([(2, "b"), (3, "c")], "id INT, v STRING")
    (
        DeltaTable.forPath(spark, path)
        .alias("t")
        .merge(updates.alias("s"), "t.id = s.id")
        .whenMatchedUpdateAll()
        .whenNotMatchedInsertAll()
        .execute()
    )
    spark.sql("DROP TABLE IF EXISTS ops.foundation_smoke")
    register_table(spark, lake_settings, "ops", "foundation_smoke")
    expected = spark.createDataFrame([(1, "a"), (2, "b"), (3, "c")], "id INT, v STRING")
    assert_df_equality(spark.table("ops.foundation_smoke"), expected, ignore_row_order=True)
    spark.sql("DROP TABLE ops.foundation_smoke")


def test_a_layer_run_releases_the_frames_it_materialised(spark, lake_settings) -> None:  # type: ignore[no-untyped-def]
    """Local checkpoints hold their blocks until released: a long JVM (the bench) ran out of
    execution memory when every layer run left its own behind. The blocks are on disk, none in
    Spark's memory (unrolled there, a large one starved the queries of execution memory)."""
    from core.ledger import LayerRun
    from core.spark import materialize

    def stored() -> dict[int, tuple[int, int]]:  # RDD id → (bytes in memory, bytes on disk)
        return {i.id(): (i.memSize(), i.diskSize()) for i in spark.sparkContext._jsc.sc().getRDDStorageInfo()}

    def cached() -> int:
        return len(stored())

    before = stored()
    with LayerRun(spark, lake_settings, "gold", "release-probe") as layer_run, layer_run.table("probe") as rec:
        kept = materialize(spark.range(1000).selectExpr("id * 2 AS x"))
        assert kept.count() == 1000
        new = [sizes for rdd, sizes in stored().items() if rdd not in before]
        assert len(new) == 1 and new[0][0] == 0 and new[0][1] > 0
        rec.finish("succeeded")
    assert cached() == len(before)


def test_spark_jdbc_roundtrip_and_psycopg_sees_the_same_rows(spark, pg_settings) -> None:  # type: ignore[no-untyped-def]
    table = f"gold.smoke_{uuid.uuid4().hex[:8]}"
    opts = db.jdbc_options(pg_settings, "publisher")
    rows = [(1, "Zoë", 10.25), (2, None, 0.0)]
    df = spark.createDataFrame(rows, "id INT, name STRING, amount DOUBLE")
    try:
        df.write.format("jdbc").options(**opts, dbtable=table).mode("overwrite").save()
        back = spark.read.format("jdbc").options(**opts, dbtable=table).load()
        assert_df_equality(back, df, ignore_row_order=True, ignore_nullable=True, ignore_metadata=True)
        url = db.sqlalchemy_url(pg_settings, "publisher")
        with psycopg.connect(
            host=url.host, port=url.port, dbname=url.database, user=url.username, password=url.password
        ) as conn:
            got = conn.execute(f"SELECT id, name, amount FROM {table} ORDER BY id").fetchall()
        assert got == rows
    finally:
        with db.connect(pg_settings, "publisher") as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")


def test_db_init_twice_changes_nothing(pg_settings) -> None:  # type: ignore[no-untyped-def]
    from core import dbinit

    def snapshot() -> list[tuple[object, ...]]:
        with db.connect(pg_settings, "admin", "ecom_db") as conn:
            return [
                tuple(r)
                for r in conn.exec_driver_sql(
                    "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema IN ('shop','sim') ORDER BY 1,2,3"
                )
            ]

    before = snapshot()
    dbinit.init(pg_settings, echo=lambda _m: None)
    assert snapshot() == before


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"ECOM_DB_PORT": "1"}, ["127.0.0.1:1", "ecom_db", "ECOM_DB_PORT"]),
        ({"ECOM_GENERATOR_PASSWORD": "wrong;'@}"}, ["ecom_db", "ECOM_GENERATOR_PASSWORD"]),
    ],
)
def test_dead_database_or_wrong_password_gives_one_clear_line(pg_settings, env, names) -> None:  # type: ignore[no-untyped-def]
    proc = subprocess.run(
        [sys.executable, "-m", "core.cli", "db", "status"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    for name in names:
        assert name in out
    assert "Traceback" not in out
    assert "wrong;'@}" not in out


def _ecom_sql(lake: str, query: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ECOM_LAKE_ROOT": lake}
    return subprocess.run(
        [sys.executable, "-m", "core.cli", "sql", "-e", query],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_spark_sql_answers_while_another_application_holds_a_session(spark, tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert spark.sql("SELECT 1").collect()  # this process's session is alive
    lake = str(tmp_path / "lake")
    answer = _ecom_sql(lake, "SELECT 41+1")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() == "42"
    created = _ecom_sql(lake, "CREATE TABLE ops.smoke USING delta AS SELECT 1 AS x")
    assert created.returncode == 0, created.stderr
    again = _ecom_sql(lake, "SELECT x FROM ops.smoke")
    assert again.stdout.strip() == "1", again.stderr
    assert os.path.isdir(table_path(load_settings(lake_root=lake), "ops", "smoke") + "/_delta_log")
