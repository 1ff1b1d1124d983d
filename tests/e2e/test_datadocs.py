"""The Data Docs site as a person sees it: rendered by a real headless Chromium, offline.

Needs Debian's `chromium` package (`apt-get install chromium`); no browser is downloaded.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from core.settings import load_settings
from expectations import GateFailedError, docs_index, gate

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def rendered_text(page: Path, profile: Path) -> str:
    """The page's DOM after scripts ran, as visible text (scripts and styles dropped)."""
    assert CHROMIUM
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    assert "<html" in dom
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S | re.I)
    return " ".join(re.sub(r"<[^>]+>", " ", dom).split())


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed (apt-get install chromium)")
def test_data_docs_index_lists_the_latest_runs_in_a_real_browser(spark: Any, tmp_path: Path) -> None:
    settings = load_settings(webhook_url=None)
    root = tmp_path / "gx-root"
    columns = "sales_date date, category string, revenue decimal(18,2)"
    day = datetime(2025, 3, 1).date()
    good = spark.createDataFrame([(day, "home", 5), (day, "toys", 0)], columns.replace("decimal(18,2)", "int"))
    bad = spark.createDataFrame([(day, "home", 5), (day, "home", -1)], columns.replace("decimal(18,2)", "int"))

    gate(
        spark,
        settings,
        layer="gold",
        table="daily_sales",
        df=good,
        run_id="gold-e2e-first",
        delta_version=3,
        gx_root=root,
    )
    with pytest.raises(GateFailedError) as failed:
        gate(spark, settings, layer="gold", table="daily_sales", df=bad, run_id="gold-e2e-second", gx_root=root)

    index = docs_index(settings, gx_root=root)
    assert index.is_file()
    text = rendered_text(index, tmp_path / "chromium-profile")
    assert "Latest checkpoint runs" in text
    assert "gold-e2e-first" in text and "gold-e2e-second" in text
    assert text.index("gold-e2e-second") < text.index("gold-e2e-first")  # newest first
    assert "gold.daily_sales" in text and "v3" in text and "failed" in text and "passed" in text

    page = failed.value.result.docs_page  # type: ignore[attr-defined]
    page_text = rendered_text(page, tmp_path / "chromium-profile")
    assert "gold-e2e-second" in page_text  # GX's "Run Name"
    assert "ecom_run_id" in page_text and "delta_version" in page_text  # our batch markers
    assert "grain: one row per sales_date + category" in page_text
