"""Quality gates: Great Expectations 1.x checkpoints between layers, Data Docs, alerts.

The one interface layers use:

    from expectations import gate
    gate(spark, settings, layer="silver", table="orders", df=candidate_df, run_id=run_id)

It returns a `GateResult` (its `.checkpoint` is the `RunRecord.checkpoint` value) or raises
`GateFailedError`, a `core.errors.ValidationFailedError`, after storing the result,
rebuilding Data Docs and posting an alert. `validate_layer` backs `ecom validate`,
`docs_index` backs `ecom docs`. GX itself is imported only when a gate runs.
"""

from expectations.checkpoints import gate, print_results, validate_layer
from expectations.docs import docs_index
from expectations.results import Failure, GateFailedError, GateResult

__all__ = ["Failure", "GateFailedError", "GateResult", "docs_index", "gate", "print_results", "validate_layer"]
