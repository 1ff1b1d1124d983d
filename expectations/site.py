"""Finishing touches on the Data Docs site GX builds, so it works offline and says more.

GX's index renders its run table with JavaScript fetched from public CDNs: on a machine
without internet access it shows an empty table. `decorate` therefore adds a plain HTML
"Latest checkpoint runs" table to `index.html` (run id, Delta version judged, status, link
to each result page) that needs no script, and points the GX logo (fetched from GX's S3
with the data context id in its query string) at the copy the site already ships.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

MARK_BEGIN = "<!-- ecom:latest-runs -->"
MARK_END = "<!-- /ecom:latest-runs -->"
RUNS_PER_CHECKPOINT = 10
RUNS_LISTED = 200
_REMOTE_LOGO = re.compile(r'src="https://great-expectations-web-assets\.s3[^"]*/(logo-long\.png)[^"]*"')

_STYLE = (
    "<style>#ecom-latest-runs{font:14px system-ui,sans-serif;margin:1rem 0 2rem}"
    "#ecom-latest-runs table{border-collapse:collapse}"
    "#ecom-latest-runs th,#ecom-latest-runs td{border:1px solid #ccc;padding:.25rem .6rem;text-align:left}"
    "#ecom-latest-runs .failed{color:#b00020;font-weight:600}#ecom-latest-runs .passed{color:#1b7a33}</style>"
)


def latest_runs(root: Path) -> list[dict[str, Any]]:
    """The newest validation results per checkpoint, newest first, read from the result store."""
    store = root / "gx" / "uncommitted" / "validations"
    per_suite: dict[Path, list[Path]] = {}
    for path in store.rglob("*.json"):
        rel = path.relative_to(store)
        if len(rel.parts) >= 4:  # <suite parts...>/<run_name>/<run_time>/<batch>.json
            per_suite.setdefault(Path(*rel.parts[:-3]), []).append(rel)
    runs = []
    for suite, rels in per_suite.items():
        rels.sort(key=lambda r: r.parts[-2], reverse=True)  # run_time sorts as text
        for rel in rels[:RUNS_PER_CHECKPOINT]:
            try:
                data = json.loads((store / rel).read_text())
            except (OSError, ValueError):
                continue  # being written or pruned by another command
            meta = data.get("meta") or {}
            markers = meta.get("batch_markers") or {}
            stats = data.get("statistics") or {}
            runs.append(
                {
                    "checkpoint": ".".join(suite.parts),
                    "run_id": markers.get("ecom_run_id") or rel.parts[-3],
                    "delta_version": markers.get("delta_version"),
                    "rows": markers.get("rows"),
                    "success": bool(data.get("success")),
                    "evaluated": stats.get("evaluated_expectations"),
                    "failed": stats.get("unsuccessful_expectations"),
                    "run_time": rel.parts[-2],
                    "page": (Path("validations") / rel.with_suffix(".html")).as_posix(),
                }
            )
    runs.sort(key=lambda r: str(r["run_time"]), reverse=True)
    return runs[:RUNS_LISTED]


def runs_table(runs: list[dict[str, Any]]) -> str:
    """The "Latest checkpoint runs" section: plain HTML, every value escaped."""
    e = html.escape
    rows = []
    for r in runs:
        status = "passed" if r["success"] else "failed"
        version = r["delta_version"]
        judged = "-" if version is None else (f"v{version}" if isinstance(version, int) else str(version))
        when = _time(r["run_time"])
        rows.append(
            f'<tr><td>{e(r["checkpoint"])}</td><td><a href="{e(r["page"])}">{e(str(r["run_id"]))}</a></td>'
            f'<td>{e(judged)}</td><td class="{status}">{status}</td><td>{e(str(r["rows"] or "-"))}</td>'
            f"<td>{e(str(r['failed'] if r['failed'] is not None else '-'))} / {e(str(r['evaluated'] or '-'))}</td>"
            f"<td>{e(when)}</td></tr>"
        )
    body = "".join(rows) or '<tr><td colspan="7">no checkpoint has run yet</td></tr>'
    return (
        f'{MARK_BEGIN}{_STYLE}<section id="ecom-latest-runs"><h2>Latest checkpoint runs</h2>'
        "<table><thead><tr><th>checkpoint</th><th>run id</th><th>Delta version judged</th><th>status</th>"
        f"<th>rows</th><th>failed / expectations</th><th>validated (UTC)</th></tr></thead><tbody>{body}</tbody>"
        f"</table></section>{MARK_END}"
    )


def _time(run_time: str) -> str:
    m = re.match(r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})", run_time)
    return f"{m[1]}-{m[2]}-{m[3]} {m[4]}:{m[5]}:{m[6]}" if m else run_time


def decorate(root: Path, site: Path, pages: list[Path] | None = None) -> None:
    """Add the latest-runs table to `index.html`; use the local logo there and on `pages`."""
    index = site / "index.html"
    if index.exists():
        text = _without_section(index.read_text())
        section = runs_table(latest_runs(root))
        anchor = text.find('<div id="section-1"')
        if anchor < 0:
            anchor = text.find("<body>") + len("<body>") if "<body>" in text else 0
        text = text[:anchor] + section + text[anchor:]
        index.write_text(_local_logo(text, "static/images"))
    for page in pages or []:
        if page.exists():
            prefix = "/".join([".."] * (len(page.relative_to(site).parts) - 1))
            page.write_text(_local_logo(page.read_text(), f"{prefix}/static/images"))


def _without_section(text: str) -> str:
    start = text.find(MARK_BEGIN)
    end = text.find(MARK_END)
    if start >= 0 and end > start:
        return text[:start] + text[end + len(MARK_END) :]
    return text


def _local_logo(text: str, images: str) -> str:
    return _REMOTE_LOGO.sub(lambda m: f'src="{images}/{m[1]}"', text)
