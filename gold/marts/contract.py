"""A mart's contract, declared once: grain, key, and each column as (name, type, definition).

The Spark select (`Mart.conform`), the Delta schema and the data dictionary all come from
the same declaration, so a column cannot be added without its one-line definition.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

AMOUNT = T.DecimalType(18, 2)  # money in gold: sums of silver's DECIMAL(12,2) amounts
RATE = T.DoubleType()  # ratios in [0, 1], rounded to 4 decimals


@dataclass(frozen=True)
class Col:
    """One mart column: its name, Spark type and a one-line definition for the dictionary."""

    name: str
    type: T.DataType
    definition: str


@dataclass(frozen=True)
class Mart:
    """A gold table: one row per `key`; incremental runs recompute it by `scope` (⊆ key or coarser)."""

    name: str
    grain: str
    key: tuple[str, ...]
    scope: tuple[str, ...]
    sources: tuple[str, ...]
    columns: tuple[Col, ...]
    notes: tuple[str, ...] = ()

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def schema(self) -> T.StructType:
        return T.StructType([T.StructField(c.name, c.type, c.name not in self.key) for c in self.columns])

    def conform(self, df: DataFrame) -> DataFrame:
        """Exactly the declared columns, in order, cast to their declared types."""
        return conform(df, self.columns)


def conform(df: DataFrame, columns: tuple[Col, ...]) -> DataFrame:
    missing = [c.name for c in columns if c.name not in df.columns]
    if missing:
        raise ValueError(f"missing column(s) {', '.join(missing)}; the frame has {', '.join(df.columns)}")
    return df.select(*[F.col(c.name).cast(c.type).alias(c.name) for c in columns])
