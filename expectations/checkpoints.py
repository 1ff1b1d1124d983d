"""The gate layers call, and `ecom validate`: run a table's checkpoint on a Spark frame.

Write–audit–publish: a layer builds its candidate rows, calls `gate(...)`, and writes only
if it returns. On failure the gate has already stored the result, rebuilt Data Docs and
posted an alert, and it raises `GateFailedError` (a `core.errors.ValidationFailedError`)
whose message names the table, each failed expectation and its observed value.

Speed: GX runs pass/fail only (its column rules share one aggregate job per frame), and
observed values are computed for the failed rules alone. A candidate whose lineage is costly
to recompute is cached for the checkpoint and unpersisted afterwards; one that is cheap to
re-read (cached, checkpointed, a Delta table) is not copied again (`needs_cache`).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from core import console
from core.ledger import new_run_id
from core.settings import Settings
from expectations import context as gxc
from expectations import site, suites
from expectations.alerts import send_alert
from expectations.results import GateFailedError, GateResult, failures_of

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def gate(
    spark: SparkSession,
    settings: Settings,
    *,
    layer: str,
    table: str,
    df: DataFrame,
    run_id: str,
    delta_version: int | None = None,
    extra: Mapping[str, Any] | None = None,
    gx_root: str | Path | None = None,
) -> GateResult:
    """Run checkpoint `<layer>.<table>` on `df`; return the result, or raise `GateFailedError`.

    `delta_version`: the version judged (None for a candidate not yet written). `extra`: the
    run's cross-table facts (see `suites.Facts`: expected_rows, references, covers).
    """
    result = judge(
        spark,
        settings,
        layer=layer,
        table=table,
        df=df,
        run_id=run_id,
        delta_version=delta_version,
        extra=extra,
        gx_root=gx_root,
    )
    if not result.passed:
        send_alert(settings, result.alert_payload())
        raise GateFailedError(result)
    return result


def judge(
    spark: SparkSession,
    settings: Settings,
    *,
    layer: str,
    table: str,
    df: DataFrame,
    run_id: str,
    delta_version: int | None = None,
    extra: Mapping[str, Any] | None = None,
    gx_root: str | Path | None = None,
) -> GateResult:
    """Validate, store the result with its run id and Delta version, rebuild Data Docs."""
    from great_expectations.core.batch import BatchMarkers
    from great_expectations.core.run_identifier import RunIdentifier

    contract = suites.contract(layer, table)
    facts = suites.Facts.of(extra)
    unknown = suites.unknown_fact_columns(contract, facts)
    if unknown:
        raise ValueError(f"{contract.name} has no cross-table rule for {', '.join(unknown)}")
    root = gxc.gx_root(settings, gx_root)
    t0 = time.monotonic()
    timings: dict[str, float] = {}

    cached_here = needs_cache(df)
    candidate = df.persist() if cached_here else df
    views: list[str] = []
    frames: list[DataFrame] = []
    try:
        rows = candidate.count()  # fills the cache, if any, for the metric jobs below
        timings["count"] = round(time.monotonic() - t0, 3)
        views, frames = _register_facts(contract, facts)
        with gxc.gx_lock(root):
            context = gxc.get_context(root)
            suite = context.suites.add_or_update(suites.build_suite(contract, candidate.columns, facts))
            checkpoint = gxc.checkpoint_for(context, suite, contract.name)
        t1 = time.monotonic()
        params = {} if facts.expected_rows is None else {"expected_rows": facts.expected_rows}
        gx_run_id = RunIdentifier(run_name=run_id, run_time=datetime.now(UTC))
        run = checkpoint.run(batch_parameters={"dataframe": candidate}, expectation_parameters=params, run_id=gx_run_id)
        key, validation = next(iter(run.run_results.items()))
        timings["validate"] = round(time.monotonic() - t1, 3)
        if not validation.success:
            t1 = time.monotonic()
            _add_details(checkpoint, validation, candidate, params)
            timings["details"] = round(time.monotonic() - t1, 3)
    finally:
        for view in views:
            spark.catalog.dropTempView(view)
        for frame in frames:
            frame.unpersist()
        if cached_here:
            candidate.unpersist()

    t2 = time.monotonic()
    # What was judged, on the result itself: Data Docs shows it under "Batch Markers".
    markers = BatchMarkers(dict(validation.meta.get("batch_markers") or {}))
    markers.update(
        ecom_run_id=run_id,
        delta_version="candidate (not yet written)" if delta_version is None else delta_version,
        table=contract.name,
        rows=rows,
    )
    validation.meta["batch_markers"] = markers
    with gxc.gx_lock(root):
        context.validation_results_store.set(key, validation)
        gxc.prune_results(root, contract.name)
        context.build_data_docs(site_names=[gxc.SITE], resource_identifiers=[key])
        page = gxc.page_of(context, key)
        site.decorate(root, gxc.site_dir(root), [page] if page else [])
    timings["docs"] = round(time.monotonic() - t2, 3)

    failures = failures_of(validation)
    result = GateResult(
        layer=layer,
        table=table,
        run_id=run_id,
        status="passed" if validation.success else "failed",
        delta_version=delta_version,
        rows=rows,
        evaluated=len(validation.results),
        failures=failures,
        seconds=round(time.monotonic() - t0, 3),
        docs_page=page,
        timings=timings,
    )
    _say(result)
    return result


# Plan leaves that are cheap to read again: rows already computed (checkpoint, cache, local
# rows) or columnar files (Delta/Parquet: each metric job reads only the columns it needs).
# Plan nodes that only pass rows through. A JDBC source, a join, a window or an aggregate
# is worth caching once rather than recomputing for every metric job.
_CHEAP_LEAVES = frozenset({"LogicalRDD", "InMemoryRelation", "LocalRelation", "OneRowRelation", "files"})
_PASS_THROUGH = frozenset({"Project", "Filter", "SubqueryAlias", "ResolvedHint", "Sample"})


def needs_cache(df: DataFrame) -> bool:
    """True unless `df` is cached, or only projects/filters rows that are cheap to read again
    (a `localCheckpoint`, a Delta table): GX reads the candidate once per metric job."""
    if df.is_cached:
        return False
    try:
        names = _plan_node_names(df._jdf.queryExecution().optimizedPlan())
    except Exception:  # not classic Spark (e.g. Spark Connect): caching is always correct
        return True
    return not names <= (_CHEAP_LEAVES | _PASS_THROUGH)


def _plan_node_names(plan: Any) -> set[str]:
    """Node names of a logical plan; a file-based relation is called `files`."""
    names, stack = set(), [plan]
    while stack:
        node = stack.pop()
        name = str(node.nodeName())
        if name == "LogicalRelation" and node.relation().getClass().getSimpleName() == "HadoopFsRelation":
            name = "files"
        names.add(name)
        children = node.children()
        stack.extend(children.apply(i) for i in range(children.size()))
    return names


def _add_details(checkpoint: Any, validation: Any, candidate: DataFrame, params: dict[str, Any]) -> None:
    """Re-judge only the failed expectations, with observed values and sample values, and put
    those results in place of the pass/fail-only ones (the passing rules cost no more scans)."""
    import great_expectations as gx

    failed = [i for i, r in enumerate(validation.results) if not r.success]
    definition = checkpoint.validation_definitions[0]
    batch = definition.data.get_batch(batch_parameters={"dataframe": candidate})
    suite = gx.ExpectationSuite(
        name=f"{definition.suite.name}.details",
        expectations=[copy.copy(validation.results[i].expectation_config.to_domain_obj()) for i in failed],
    )
    detailed = batch.validate(suite, result_format=gxc.DETAIL_FORMAT, expectation_parameters=params)
    unused = list(detailed.results)
    for i in failed:
        mine = validation.results[i].expectation_config
        for found in unused:
            theirs = found.expectation_config
            if theirs.type == mine.type and _rule_kwargs(theirs.kwargs) == _rule_kwargs(mine.kwargs):
                validation.results[i] = found
                unused.remove(found)
                break


def _rule_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k not in ("batch_id", "result_format")}


def _register_facts(contract: suites.Contract, facts: suites.Facts) -> tuple[list[str], list[DataFrame]]:
    """Expose the other tables' frames to the cross-table queries as temporary views."""
    views, frames = [], []
    for kind, given, rules in (
        ("ref", facts.references, contract.references),
        ("covers", facts.covers, contract.covers),
    ):
        for column, frame in given.items():
            ref = rules[column]
            if ref.column not in frame.columns:
                raise ValueError(
                    f"{contract.name}: the {kind} frame for {column!r} needs a column {ref.column!r}, has {frame.columns}"
                )
            projected = frame.select(ref.column)
            if needs_cache(projected):
                projected = projected.persist()
                frames.append(projected)
            name = suites.view_name(contract, kind, column)
            projected.createOrReplaceTempView(name)
            views.append(name)
    return views, frames


def _say(result: GateResult) -> None:
    where = f"{result.evaluated} expectations on {result.rows:,} rows ({result.judged}) in {result.seconds:.1f}s"
    if result.passed:
        console.ok(f"checkpoint {result.name} passed: {escape(where)}")
    else:
        console.error(f"checkpoint {result.name} FAILED: {len(result.failures)} of {escape(where)}")


# --- ecom validate <layer> ----------------------------------------------------------------------------------
def validate_layer(
    spark: SparkSession,
    settings: Settings,
    layer: str,
    *,
    gx_root: str | Path | None = None,
    run_id: str | None = None,
) -> list[GateResult]:
    """Re-validate the current version of each table of `layer`; alert on each failure.

    Cross-table rules use the current lake tables they name (when those exist). A table
    that is not in the lake yet is reported as `missing`, not skipped silently.
    """
    from core.lake import table_path

    run_id = run_id or new_run_id(f"validate-{layer}")
    results = []
    for table in suites.layer_tables(layer):
        found = _current(spark, table_path(settings, layer, table))
        if found is None:
            results.append(
                GateResult(
                    layer=layer,
                    table=table,
                    run_id=run_id,
                    status="missing",
                    message=f"no Delta table at {table_path(settings, layer, table)}: run `ecom run {layer}` first",
                )
            )
            continue
        df, version = found
        contract = suites.contract(layer, table)
        result = judge(
            spark,
            settings,
            layer=layer,
            table=table,
            df=df,
            run_id=run_id,
            delta_version=version,
            extra=lake_facts(spark, settings, contract),
            gx_root=gx_root,
        )
        if not result.passed:
            send_alert(settings, result.alert_payload())
        results.append(result)
    return results


def lake_facts(spark: SparkSession, settings: Settings, contract: suites.Contract) -> dict[str, Any]:
    """The cross-table facts of a contract, read from the current lake tables that exist."""
    from core.lake import table_path

    facts: dict[str, Any] = {}
    for kind, rules in (("references", contract.references), ("covers", contract.covers)):
        for column, ref in rules.items():
            found = _current(spark, table_path(settings, ref.layer, ref.table))
            if found is not None:
                facts.setdefault(kind, {})[column] = found[0]
    return facts


def _current(spark: SparkSession, path: str) -> tuple[DataFrame, int] | None:
    """The table's latest version as a frame pinned to that version, or None if absent."""
    from delta.tables import DeltaTable

    if not DeltaTable.isDeltaTable(spark, path):
        return None
    version = int(DeltaTable.forPath(spark, path).history(1).select("version").first()[0])  # type: ignore[index]
    return spark.read.format("delta").option("versionAsOf", version).load(path), version


def print_results(results: list[GateResult]) -> None:
    """The one-screen summary of `ecom validate`: a table, then each failure in words."""
    console.table(
        "Checkpoints",
        ["checkpoint", "status", "judged", "rows", "expectations", "failed", "s"],
        [
            (
                r.name,
                r.status,
                "-" if r.status == "missing" else r.judged,
                r.rows,
                r.evaluated,
                len(r.failures),
                f"{r.seconds:.1f}",
            )
            for r in results
        ],
    )
    for r in results:
        if r.status == "missing":
            console.warn(escape(r.summary()))
        for failure in r.failures:
            console.error(escape(f"{r.name}: {failure}"))
    pages = [r.docs_page for r in results if r.docs_page]
    if pages:
        site = next((p for p in pages[0].parents if p.name == gxc.SITE), pages[0].parent)
        console.ok(escape(f"Data Docs: {site / 'index.html'}"))
