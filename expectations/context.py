"""The GX 1.x file context under `expectations/` and the objects it holds.

Everything under `<root>/gx/` is generated from code at run time (GX stamps each object
with a fresh UUID, so nothing in it could be deterministic): suites come from
`expectations.suites`, the rest is fetched-or-added here. `gx/uncommitted/` holds the
validation results and the Data Docs site. `expectations/.gitignore` keeps it all out of
git.

One Spark datasource `ecom`; per table one dataframe asset, one whole-dataframe batch
definition, one validation definition and one checkpoint, all named `<layer>.<table>`.
Several commands may share the folder (a layer run and `ecom validate`), so changes to it
happen under an exclusive file lock.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from core.errors import EcomError
from core.settings import Settings

if TYPE_CHECKING:
    from great_expectations import Checkpoint, ExpectationSuite, ValidationDefinition
    from great_expectations.data_context import FileDataContext
    from great_expectations.datasource.fluent import SparkDatasource

DATASOURCE = "ecom"
BATCH_DEFINITION = "whole_dataframe"
SITE = "local_site"
RESULTS_KEPT = 30  # validation results kept per suite; older ones (and their pages) are pruned
LOCK_TIMEOUT_S = 300.0
# Pass/fail only: GX bundles the unexpected counts of all column rules into one aggregate
# job; observed values (one more job per rule) are computed only when something failed.
RESULT_FORMAT: dict[str, Any] = {"result_format": "BOOLEAN_ONLY"}
DETAIL_FORMAT: dict[str, Any] = {"result_format": "SUMMARY", "partial_unexpected_count": 10}

_CONTEXTS: dict[Path, FileDataContext] = {}
_HELD: dict[Path, int] = {}  # lock depth per root held by this process


def gx_root(settings: Settings, root: str | Path | None = None) -> Path:
    """The folder holding `gx/`: `root` if given, else the `gx_root` setting, else `expectations/`."""
    chosen = root or getattr(settings, "gx_root", None) or settings.home / "expectations"
    return Path(chosen).resolve()


def site_dir(root: Path) -> Path:
    return root / "gx" / "uncommitted" / "data_docs" / SITE


@contextmanager
def gx_lock(root: Path, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Exclusive lock on the GX folder against other commands (re-entrant within a process),
    waiting up to `timeout` seconds for another command to finish with it."""
    if root in _HELD:
        _HELD[root] += 1
        try:
            yield
        finally:
            _HELD[root] -= 1
        return
    folder = root / "gx"
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise EcomError(
                        f"the GX context {folder} stayed locked for {timeout:.0f}s by another command"
                    ) from None
                time.sleep(0.2)
        _HELD[root] = 1
        try:
            yield
        finally:
            del _HELD[root]
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def get_context(root: Path) -> FileDataContext:
    """The file context at `root` (created and configured on first use; cached per process)."""
    if root in _CONTEXTS:
        return _CONTEXTS[root]
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    with gx_lock(root):
        context = gx.get_context(mode="file", project_root_dir=str(root))
        _configure(context)
    _CONTEXTS[root] = context
    return context


def _configure(context: FileDataContext) -> None:
    """No progress bars in task logs; a Data Docs site without GX's marketing footer."""
    from great_expectations.data_context.types.base import ProgressBarsConfig

    changed = False
    bars = context.variables.progress_bars  # a ProgressBarsConfig when set here, a dict when read from the yml
    flags = dict(bars) if isinstance(bars, dict) else vars(bars) if bars is not None else {}
    if flags.get("globally", True) or flags.get("metric_calculations", True):
        context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        changed = True
    sites = dict(context.variables.data_docs_sites or {})
    site = dict(sites.get(SITE) or {})
    if site and site.get("show_how_to_buttons", True):
        site["show_how_to_buttons"] = False
        sites[SITE] = site
        context.variables.data_docs_sites = sites
        changed = True
    if changed:
        context.variables.save()


def checkpoint_for(context: FileDataContext, suite: ExpectationSuite, name: str) -> Checkpoint:
    """Get-or-add the datasource, asset, batch definition, validation definition and checkpoint."""
    import great_expectations as gx
    from great_expectations.exceptions import DataContextError

    try:
        datasource = cast("SparkDatasource", context.data_sources.get(DATASOURCE))
    except KeyError:
        # persist=False: the gate caches the candidate itself and unpersists it afterwards
        datasource = context.data_sources.add_spark(name=DATASOURCE, persist=False)
    try:
        asset = datasource.get_asset(name)
    except LookupError:
        asset = datasource.add_dataframe_asset(name=name)
    try:
        batch_definition = asset.get_batch_definition(BATCH_DEFINITION)
    except KeyError:
        batch_definition = asset.add_batch_definition_whole_dataframe(BATCH_DEFINITION)
    validation: ValidationDefinition | None = None
    try:
        found = context.validation_definitions.get(name)
        if found.suite.id == suite.id and found.data.id == batch_definition.id:
            validation = found
    except DataContextError:
        pass
    if validation is None:
        validation = context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=name, data=batch_definition, suite=suite)
        )
    try:
        checkpoint = context.checkpoints.get(name)
        if [v.id for v in checkpoint.validation_definitions] != [validation.id]:
            raise DataContextError(f"checkpoint {name} points at another validation definition")
    except DataContextError:
        checkpoint = context.checkpoints.add_or_update(
            gx.Checkpoint(
                name=name,
                validation_definitions=[validation],
                actions=[],  # Data Docs are built by the gate once the result carries run id and version
                result_format=RESULT_FORMAT,
            )
        )
    return checkpoint


def prune_results(root: Path, suite_name: str, keep: int = RESULTS_KEPT) -> int:
    """Delete all but the newest `keep` validation results of a suite, and their pages."""
    parts = suite_name.split(".")
    store = root / "gx" / "uncommitted" / "validations" / Path(*parts)
    if not store.is_dir():
        return 0
    found: list[tuple[str, Path]] = []
    for path in store.rglob("*.json"):
        rel = path.relative_to(store)
        if len(rel.parts) == 3:  # <run_name>/<run_time>/<batch>.json
            found.append((rel.parts[1], path))
    found.sort(key=lambda item: item[0], reverse=True)  # run_time: %Y%m%dT%H%M%S.%fZ sorts as text
    pages = site_dir(root) / "validations" / Path(*parts)
    removed = 0
    for _, path in found[keep:]:
        rel = path.relative_to(store)
        path.unlink(missing_ok=True)
        (pages / rel.with_suffix(".html")).unlink(missing_ok=True)
        for base in (store, pages):
            _remove_empty(base / rel.parts[0] / rel.parts[1], stop=base)
        removed += 1
    return removed


def _remove_empty(folder: Path, stop: Path) -> None:
    while folder != stop and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


def reset(root: Path) -> None:
    """Forget the cached context of `root` and delete its generated folder (tests, `make clean`)."""
    _CONTEXTS.pop(root, None)
    shutil.rmtree(root / "gx", ignore_errors=True)


def page_of(context: FileDataContext, key: Any) -> Path | None:
    """The local HTML page of a validation result."""
    for site in context.get_docs_sites_urls(resource_identifier=key, site_name=SITE):
        url = site.get("site_url") or ""
        if url.startswith("file://"):
            return Path(url.removeprefix("file://"))
    return None
