"""The Spark session factory: Delta from the pinned local jars, sized for small machines.

One session per command (rule 4). Every session sees the databases `bronze`, `silver`,
`quarantine`, `gold` and `ops` with the tables found in the lake: the catalog is rebuilt
from the lake at start-up (in-memory, per JVM), so no shared metastore can lock out
`spark-sql` while a pipeline job runs.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import EcomError
from core.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

JAR_DIR = "jars/lib"
CODEGEN_CACHE_ENTRIES = 4000
_MATERIALIZED: list[Any] = []  # the JVM RDDs of this process's local checkpoints, until released


def local_jars(settings: Settings) -> list[Path]:
    """The pinned jars fetched by `make setup`; a clear error when they are missing."""
    lib = settings.home / JAR_DIR
    manifest = settings.home / "jars" / "checksums.sha256"
    names = [line.split()[1] for line in manifest.read_text().splitlines() if line.strip()]
    missing = [n for n in names if not (lib / n).exists()]
    if missing:
        raise EcomError(f"JVM jars missing from {lib}: {', '.join(missing)} — run `make setup`")
    return [lib / n for n in names]


def spark_env(settings: Settings) -> dict[str, str]:
    """Environment for any Spark JVM we start (pyspark or spark-sql)."""
    import pyspark

    logs = settings.local_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    return {
        "SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"),
        "SPARK_HOME": os.environ.get("SPARK_HOME", str(Path(pyspark.__file__).parent)),
        "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable),
        "PYSPARK_DRIVER_PYTHON": os.environ.get("PYSPARK_DRIVER_PYTHON", sys.executable),
    }


def spark_conf(settings: Settings, app_name: str) -> dict[str, str]:
    """The one Spark configuration, shared by pyspark sessions and the spark-sql shell."""
    logs = settings.local_dir / "logs"
    java_opts = (
        f"-Dlog4j.configurationFile=file:{Path(__file__).with_name('log4j2.properties')} "
        f"-Decom.spark.log={logs / 'spark.log'} "
        f"-Dderby.system.home={settings.local_dir / 'derby'} "
        "-Dderby.stream.error.file=/dev/null "
        # Throughput over pause times: a batch JVM on a few cores. G1's concurrent work and
        # write barriers cost more CPU than they save here (a fresh incremental `ecom run gold`
        # at the quick bench's scale: 58.8 s with G1, 52.4 s with the parallel collector).
        "-XX:+UseParallelGC"
    )
    return {
        "spark.app.name": app_name,
        "spark.master": settings.spark_master,
        "spark.jars": ",".join(str(p) for p in local_jars(settings)),
        "spark.jars.ivy": str(settings.home / ".cache" / "ivy"),
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.warehouse.dir": f"{settings.lake_root}/_warehouse",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(settings.spark_shuffle_partitions),
        "spark.default.parallelism": str(max(2, settings.spark_shuffle_partitions)),
        # Delta rebuilds a table's state from its log in 50 tasks by default: on a few cores the
        # first read of every small table (ledger, watermarks, progress) then costs seconds.
        "spark.databricks.delta.snapshotPartitions": str(max(2, settings.spark_shuffle_partitions)),
        "spark.sql.adaptive.enabled": "true",
        # Most of a small run's time is Spark compiling the code of its queries (Janino). A
        # JVM that runs the pipeline again (`ecom run all`, the bench, the test suite) meets the
        # same query shapes again: Spark's cache of compiled code (100 by default) was too small
        # to keep one cycle's worth, so every cycle compiled them anew.
        "spark.sql.codegen.cache.maxEntries": str(CODEGEN_CACHE_ENTRIES),
        # Caches here are short-lived audit copies (a candidate judged, then written): storing
        # them uncompressed fills them ~1/3 faster (1M bronze rows: 1.9 s instead of 2.8 s).
        "spark.sql.inMemoryColumnarStorage.compressed": "false",
        "spark.ui.enabled": str(settings.spark_ui).lower(),
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.memory": settings.spark_driver_memory,
        "spark.driver.extraJavaOptions": java_opts,
        "spark.executor.extraJavaOptions": java_opts,
        "spark.local.dir": str(settings.local_dir / "spark-tmp"),
        "spark.databricks.delta.properties.defaults.enableChangeDataFeed": "false",
        "spark.databricks.delta.optimizeWrite.enabled": "false",
        # Catalog per JVM: in-memory Derby for the Hive metastore that spark-sql needs.
        "spark.hadoop.javax.jdo.option.ConnectionURL": "jdbc:derby:memory:ecom_metastore;create=true",
        "spark.hadoop.datanucleus.schema.autoCreateAll": "true",
        "spark.hadoop.hive.metastore.schema.verification": "false",
    }


_SESSION: SparkSession | None = None


def get_spark(settings: Settings, app_name: str = "ecom", register: bool = True) -> SparkSession:
    """The process's SparkSession (created once), with the lake's tables registered."""
    global _SESSION
    if _SESSION is not None and _SESSION._jsc is not None:
        return _SESSION
    started = time.perf_counter()
    os.environ.update(spark_env(settings))
    from pyspark.sql import SparkSession

    builder = SparkSession.builder
    for key, value in spark_conf(settings, app_name).items():
        builder = builder.config(key, value)
    builder = builder.config("spark.sql.catalogImplementation", "in-memory")
    _SESSION = builder.getOrCreate()
    _SESSION.sparkContext.setLogLevel("WARN")
    if register:
        from core.lake import register_lake

        register_lake(_SESSION, settings)
    starts = os.environ.get("ECOM_SPARK_STARTS_FILE")  # bench/ counts and times sessions per command
    if starts:
        with open(starts, "a") as fh:
            fh.write(f"{os.getpid()} {app_name} {time.perf_counter() - started:.3f}\n")
    return _SESSION


def materialize(df: DataFrame) -> DataFrame:
    """Compute a frame read more than once, once: a local checkpoint, which also cuts its lineage
    so the plan's broadcast relations can be freed (a cached plan would pin them). Its blocks
    stay until `release_materialized`.

    The blocks go straight to local disk (the OS's page cache keeps them in memory when it can).
    Kept in memory first, as Spark does by default, each block is unrolled into storage memory
    until it is found too large: at 1M orders `ecom run silver` loading the 10× history unrolled
    500–800 MB per task before spilling it, and a window in the same stage then found no
    execution memory left (`UNABLE_TO_ACQUIRE_MEMORY`, 2026-11-28, at the 3g default)."""
    from pyspark import StorageLevel

    out = df.localCheckpoint(eager=True, storageLevel=StorageLevel.DISK_ONLY)
    plan = out._jdf.queryExecution().analyzed()
    if plan.getClass().getSimpleName() == "LogicalRDD":
        _MATERIALIZED.append(plan.rdd())
    return out


def release_materialized() -> None:
    """Drop the blocks of every local checkpoint taken so far (a layer run ends: nothing reads
    them any more). Spark would keep them until a full GC of a long JVM — the bench, many runs
    in one session — and execution memory ran out (seen: a 9M-event silver increment failing
    after a dozen gold runs)."""
    while _MATERIALIZED:
        _MATERIALIZED.pop().unpersist(False)


def stop_spark() -> None:
    global _SESSION
    if _SESSION is not None:
        _SESSION.stop()
        _SESSION = None
