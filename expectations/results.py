"""What a checkpoint found, in words a failed task log can act on.

`GateResult` is what `gate` returns (and carries on `GateFailedError`); `Failure` is one
failed expectation with its observed value. Both are plain data, built from GX's
validation result by `from_validation`, so layers and tests never touch GX objects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ValidationFailedError

SAMPLE_VALUES = 5
MAX_TEXT = 200
# GX bookkeeping kwargs that say nothing about the rule itself
_NOISE_KWARGS = frozenset({"column", "column_list", "batch_id", "result_format", "meta_properties_to_render"})


@dataclass(frozen=True)
class Failure:
    """One failed expectation: what was expected and what was found."""

    expectation: str  # readable: the description, or type(column, kwargs)
    type: str
    column: str | None
    observed: str
    observed_value: Any = None

    def __str__(self) -> str:
        return f"{self.expectation}: observed {self.observed}"


@dataclass(frozen=True)
class GateResult:
    """The outcome of one table's checkpoint. `status`: passed | failed | missing."""

    layer: str
    table: str
    run_id: str
    status: str
    delta_version: int | None = None
    rows: int | None = None
    evaluated: int = 0
    failures: tuple[Failure, ...] = ()
    seconds: float = 0.0
    docs_page: Path | None = None
    message: str | None = None
    timings: Mapping[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.layer}.{self.table}"

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def checkpoint(self) -> str:
        """The value for `RunRecord.checkpoint`: passed | failed."""
        return "passed" if self.passed else "failed"

    @property
    def judged(self) -> str:
        return "candidate (not yet written)" if self.delta_version is None else f"delta v{self.delta_version}"

    def summary(self) -> str:
        """One paragraph naming the table, each failed expectation and its observed value."""
        if self.status == "missing":
            return f"{self.name}: {self.message}"
        head = f"checkpoint {self.name} {self.status} for run {self.run_id} ({self.judged}, {_n(self.rows)} rows)"
        if self.passed:
            return f"{head}: {self.evaluated} expectations met"
        shown = "; ".join(str(f) for f in self.failures)
        where = f" — Data Docs: {self.docs_page}" if self.docs_page else ""
        return f"{head}: {len(self.failures)} of {self.evaluated} expectations failed — {shown}{where}"

    def alert_payload(self) -> dict[str, Any]:
        """The webhook body of a failed checkpoint."""
        return {
            "event": "checkpoint_failed",
            "checkpoint": self.name,
            "layer": self.layer,
            "table": self.table,
            "run_id": self.run_id,
            "delta_version": self.delta_version,
            "rows": self.rows,
            "evaluated": self.evaluated,
            "failed": [asdict(f) for f in self.failures],
            "summary": self.summary(),
            "data_docs": self.docs_page.as_uri() if self.docs_page else None,
        }


class GateFailedError(ValidationFailedError):
    """A checkpoint failed: nothing may be promoted. `result` says what failed and why."""

    def __init__(self, result: GateResult) -> None:
        super().__init__(result.summary())
        self.result = result


def _n(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def _short(value: Any, limit: int = MAX_TEXT) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def label(expectation_type: str, kwargs: Mapping[str, Any], description: str | None = None) -> str:
    """`description` if the suite gave one, else `type(column, key=value, ...)`."""
    if description:
        return f"{description} ({expectation_type})"
    target = kwargs.get("column") or kwargs.get("column_list")
    parts = [", ".join(target) if isinstance(target, list | tuple) else str(target)] if target else []
    for key, value in kwargs.items():
        if key in _NOISE_KWARGS or value is None:
            continue
        if isinstance(value, Mapping) and "$PARAMETER" in value:
            value = f"${value['$PARAMETER']}"
        parts.append(f"{key}={_short(value, 80)}")
    return f"{expectation_type}({', '.join(parts)})"


def observed(
    result: Mapping[str, Any] | None, exception_info: Mapping[str, Any] | None = None, expectation_type: str = ""
) -> tuple[str, Any]:
    """(text, raw value) of what a GX expectation observed."""
    error = _exception_message(exception_info)
    if error:
        return f"error: {_short(error)}", None
    r = dict(result or {})
    if expectation_type == "unexpected_rows_expectation" and isinstance(r.get("observed_value"), int):
        n = r["observed_value"]
        return f"{n:,} offending row{'s' if n != 1 else ''}", n
    if "unexpected_count" in r and r.get("unexpected_count") is not None:
        n, total = int(r["unexpected_count"]), r.get("element_count")
        pct = r.get("unexpected_percent")
        sample = list(r.get("partial_unexpected_list") or [])[:SAMPLE_VALUES]
        text = f"{n:,} unexpected of {_n(total)} rows"
        if pct is not None:
            text += f" ({pct:.3g}%)"
        if any(v is not None for v in sample):
            text += f", e.g. {_short(_listed(sample), 120)}"
        return text, {"unexpected_count": n, "element_count": total, "sample": sample}
    mismatched = (r.get("details") or {}).get("mismatched") if isinstance(r.get("details"), Mapping) else None
    if mismatched:
        missing = mismatched.get("missing") or []
        text = (
            f"missing columns {_listed(missing)}"
            if missing
            else f"unexpected columns {_listed(mismatched.get('unexpected') or [])}"
        )
        return text, {"missing": missing, "unexpected": mismatched.get("unexpected") or []}
    if "observed_value" in r:
        return _short(r["observed_value"]), r["observed_value"]
    return "no observed value", None


def _listed(values: Sequence[Any]) -> str:
    """`a, 'b', None`: values without list brackets (a console reading `[x]` as markup loses them)."""
    return ", ".join(repr(v) for v in values)


def _exception_message(info: Mapping[str, Any] | None) -> str | None:
    if not info:
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "exception")
    for value in info.values():  # GX nests exception info per metric
        if isinstance(value, Mapping) and value.get("raised_exception"):
            return str(value.get("exception_message") or "exception")
    return None


def failures_of(validation: Any) -> tuple[Failure, ...]:
    """The failed expectations of a GX `ExpectationSuiteValidationResult`, in suite order."""
    out = []
    for evr in validation.results:
        if evr.success:
            continue
        config = evr.expectation_config
        kwargs = dict(config.kwargs)
        text, raw = observed(evr.result, evr.exception_info, config.type)
        out.append(
            Failure(
                expectation=label(config.type, kwargs, getattr(config, "description", None)),
                type=config.type,
                column=_column(kwargs),
                observed=text,
                observed_value=raw,
            )
        )
    return tuple(out)


def _column(kwargs: Mapping[str, Any]) -> str | None:
    column = kwargs.get("column") or kwargs.get("column_list")
    if isinstance(column, Sequence) and not isinstance(column, str):
        return "+".join(str(c) for c in column)
    return None if column is None else str(column)
