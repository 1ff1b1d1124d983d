"""How well silver caught the generator's injected defects: precision and recall per kind.

The generator records every defect it plants in `sim.defects` (table, business key, kind).
Each `reject` kind has the one rule that must catch it (`silver.rules.REJECT_KIND_RULES`):

- recall — of the rows injected with the kind, the share quarantined with that rule;
- precision — of the rows quarantined with that rule, the share injected with the kind.

Both must be 100%. The caller limits quarantine to the keys of the batches it compares (the
source is shared), reads the manifest as it likes, and prints `format_scores`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.settings import Settings
from silver.rules import REJECT_KIND_RULES

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@dataclass(frozen=True)
class KindScore:
    kind: str
    table: str
    rule: str
    injected: int  # rows the manifest lists with this kind
    caught: int  # rows quarantined with the kind's rule
    correct: int  # both

    @property
    def precision(self) -> float:
        return self.correct / self.caught if self.caught else 1.0

    @property
    def recall(self) -> float:
        return self.correct / self.injected if self.injected else 1.0

    @property
    def perfect(self) -> bool:
        return self.correct == self.injected == self.caught


def score(
    manifest: Iterable[tuple[str, str, str]], quarantined: Mapping[str, Mapping[str, Iterable[str]]]
) -> list[KindScore]:
    """`manifest`: (table, record key, kind) rows; `quarantined`: {table: {record key: reasons}}
    (keys as text, as the manifest stores them). One score per reject kind, in rule order."""
    injected: dict[str, set[str]] = {kind: set() for kind in REJECT_KIND_RULES}
    for table, key, kind in manifest:
        if kind in injected and REJECT_KIND_RULES[kind][0] == table:
            injected[kind].add(str(key))
    out = []
    for kind, (table, rule) in REJECT_KIND_RULES.items():
        caught = {str(k) for k, reasons in quarantined.get(table, {}).items() if rule in set(reasons)}
        out.append(KindScore(kind, table, rule, len(injected[kind]), len(caught), len(caught & injected[kind])))
    return out


def format_scores(scores: Iterable[KindScore]) -> str:
    """A fixed-width table for logs, tests and the demo."""
    lines = [f"{'kind':<20} {'table':<20} {'rule':<22} {'injected':>8} {'caught':>7} {'precision':>9} {'recall':>7}"]
    for s in scores:
        lines.append(
            f"{s.kind:<20} {s.table:<20} {s.rule:<22} {s.injected:>8} {s.caught:>7} "
            f"{s.precision:>9.1%} {s.recall:>7.1%}"
        )
    return "\n".join(lines)


def read_scorecard(spark: SparkSession, settings: Settings, batch_ids: Sequence[str]) -> list[KindScore]:
    """Score the generator batches `batch_ids` (their manifest, read as admin from `sim`)
    against `quarantine.*`, limited to the key ranges those batches wrote. For `make demo`
    and `make bench`, after bronze and silver ran over the batches."""
    import json

    import sqlalchemy as sa
    from pyspark.sql import functions as F

    from core import db
    from core.lake import table_path
    from core.schema import sim_batches, sim_defects
    from silver.contracts import TABLES

    with db.connect(settings, "admin", settings.source_db) as conn:
        manifest = [
            (r.table_name, r.record_key, r.kind)
            for r in conn.execute(
                sa.select(sim_defects.c.table_name, sim_defects.c.record_key, sim_defects.c.kind).where(
                    sim_defects.c.batch_id.in_(list(batch_ids))
                )
            )
        ]
        spans = [
            json.loads(text).get("keys", {})
            for text in conn.execute(
                sa.select(sim_batches.c.rows_json).where(sim_batches.c.batch_id.in_(list(batch_ids)))
            ).scalars()
        ]
    quarantined: dict[str, dict[str, list[str]]] = {}
    for table, spec in TABLES.items():
        ranges = [s[table] for s in spans if s.get(table)]
        path = table_path(settings, "quarantine", table)
        if not ranges or not _is_delta(spark, path):
            continue
        physical = "event_seq" if table == "clickstream_events" else spec.key  # the batches' ranges
        inside = F.lit(False)
        for lo, hi in ranges:
            inside = inside | F.col(physical).between(int(lo), int(hi))
        found = quarantined.setdefault(table, {})
        for r in spark.read.format("delta").load(path).where(inside).select(spec.key, "_reasons").collect():
            found.setdefault(str(r[0]), []).extend(r[1])
    return score(manifest, quarantined)


def _is_delta(spark: SparkSession, path: str) -> bool:
    from delta.tables import DeltaTable

    return bool(DeltaTable.isDeltaTable(spark, path))
