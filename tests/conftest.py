"""Shared fixtures: one SparkSession for the whole run, per-test lakes, the local cluster."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """The one SparkSession of the test run: local[2], 2 shuffle partitions, UI off, Delta."""
    from core.settings import load_settings
    from core.spark import get_spark, stop_spark

    lake = tmp_path_factory.mktemp("session-lake")
    settings = load_settings(lake_root=str(lake), spark_master="local[2]", spark_shuffle_partitions=2)
    session = get_spark(settings, "ecom-tests", register=False)
    yield session
    stop_spark()


@pytest.fixture
def lake_settings(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Settings whose lake root is this test's own temporary folder."""
    from core.settings import load_settings

    return load_settings(lake_root=str(tmp_path / "lake"), spark_shuffle_partitions=2, gx_root=str(tmp_path / "gx"))


@pytest.fixture(scope="session")
def pg_settings():  # type: ignore[no-untyped-def]
    """The local PostgreSQL cluster, up and initialised (idempotent), and its settings."""
    from core import dbinit, localpg
    from core.settings import get_settings, load_settings

    localpg.up(load_settings())
    get_settings.cache_clear()
    settings = load_settings()
    dbinit.init(settings, echo=lambda _msg: None)
    return settings
