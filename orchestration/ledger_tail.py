"""The rows a command appended to the run ledger `ops.runs`, read without Spark.

An Airflow task runs `ecom run <layer>` in a subprocess; the layer records one row per
table in `ops.runs` (rows in/out/quarantined, Delta version, checkpoint). To put those
figures on the Asset events, the task notes the ledger's Delta version before the command
(`mark`) and afterwards reads the data files that later commits *added* (`appended_since`):
`ops.runs` is append-only, so those are exactly the new rows. This reads the Delta
protocol's commit files (JSON) and the added Parquet files with pyarrow — a few KB, no JVM.
OPTIMIZE rewrites (dataChange=false) are ignored, so `ecom maintain` never double counts.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import unquote

COMMIT_FILE = re.compile(r"^(\d{20})\.json$")


def _filesystem(uri: str) -> tuple[Any, str]:
    """A pyarrow filesystem and the path inside it, for a local path or any URI it knows."""
    from pyarrow import fs

    if uri.startswith("file:") and not uri.startswith("file://"):
        uri = uri[len("file:") :]
    if "://" not in uri:
        return fs.LocalFileSystem(), uri
    return fs.FileSystem.from_uri(uri.replace("s3a://", "s3://", 1))


def ledger_path(lake_root: str) -> str:
    """Where `ops.runs` lives under a lake root (core.lake: database `ops` is folder `_ops`)."""
    return f"{lake_root.rstrip('/')}/_ops/runs"


def _commit_versions(filesystem: Any, table: str) -> list[int]:
    from pyarrow import fs

    infos = filesystem.get_file_info(fs.FileSelector(f"{table}/_delta_log", allow_not_found=True))
    versions = []
    for info in infos:
        match = COMMIT_FILE.match(info.base_name)
        if match and info.type == fs.FileType.File:
            versions.append(int(match.group(1)))
    return sorted(versions)


def mark(table_uri: str) -> int:
    """The latest committed version of the Delta table (-1 when it does not exist yet)."""
    filesystem, table = _filesystem(table_uri)
    versions = _commit_versions(filesystem, table)
    return versions[-1] if versions else -1


def added_files(table_uri: str, after_version: int) -> list[str]:
    """Data files that commits newer than `after_version` added with new data, oldest first."""
    filesystem, table = _filesystem(table_uri)
    paths: list[str] = []
    for version in _commit_versions(filesystem, table):
        if version <= after_version:
            continue
        with filesystem.open_input_stream(f"{table}/_delta_log/{version:020d}.json") as stream:
            lines = stream.read().decode().splitlines()
        for line in lines:
            if not line.strip():
                continue
            add = json.loads(line).get("add")
            if add and add.get("dataChange", True):
                path = unquote(add["path"])
                paths.append(path if "://" in path else f"{table}/{path}")
    return paths


def _plain(value: Any) -> Any:
    """A JSON-friendly value (Asset event extras must serialise)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def appended_since(table_uri: str, after_version: int, **equal: str) -> list[dict[str, Any]]:
    """Rows appended after `after_version`, optionally only those whose columns equal `equal`."""
    import pyarrow.parquet as pq

    filesystem, _ = _filesystem(table_uri)
    rows: list[dict[str, Any]] = []
    for path in added_files(table_uri, after_version):
        if "://" in path:
            filesystem_, path = _filesystem(path)
        else:
            filesystem_ = filesystem
        for row in pq.read_table(path, filesystem=filesystem_).to_pylist():
            if all(row.get(k) == v for k, v in equal.items()):
                rows.append({k: _plain(v) for k, v in row.items()})
    return rows


def event_extra(layer: str, table: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The extra of one Asset event: the ledger row of that table in this run (latest if several)."""
    mine = [r for r in rows if r.get("table_name") == table]
    if not mine:
        return {"layer": layer, "table": table, "status": "not recorded", "rows_written": None, "delta_version": None}
    row = max(mine, key=lambda r: str(r.get("ended_at") or r.get("started_at") or ""))
    return {
        "layer": layer,
        "table": table,
        "ecom_run_id": row.get("run_id"),
        "status": row.get("status"),
        "rows_in": row.get("rows_in"),
        "rows_written": row.get("rows_out"),
        "rows_quarantined": row.get("rows_quarantined"),
        "delta_version": row.get("delta_version"),
        "checkpoint": row.get("checkpoint"),
        "seconds": row.get("seconds"),
    }
