"""The defect catalogue and the injectors that plant defects in a simulated batch.

Every defect kind is declared once, in `DEFECT_KINDS`, with the table it lives in and how
silver must handle it:

- `reject` — the row is invalid: silver quarantines it (with the rule it broke);
- `fix` — the row is valid once standardised or deduplicated: silver keeps one clean row
  (trimmed lower-case email, upper-case country code, one copy of a duplicated event);
- `keep` — the row is valid as it is but stresses the pipeline (a late event belongs to an
  old day): silver must keep it unchanged and gold must still count it.

Each injected defect becomes one manifest record `(table_name, record_key, kind)`, written
to `sim.defects` with the batch id in the batch's own transaction. `record_key` is the
business key of the defective row (`event_id` for events).

Defects are planted so that each defective row has exactly one kind and so that they do not
spill into clean rows: rejected customers and products have no activity in the batch and are
never used by later batches; bad order lines (zero/negative quantity, orphans) are extra
lines that do not count in their order's total; only anonymous browsing sessions are made
late or get future timestamps, so purchase funnels stay whole. One spill is inherent: the
lines of an order whose total is wrong belong to a rejected order.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd


class Handling(StrEnum):
    REJECT = "reject"
    FIX = "fix"
    KEEP = "keep"


@dataclass(frozen=True)
class DefectKind:
    name: str
    table: str
    handling: Handling
    description: str


DEFECT_KINDS: dict[str, DefectKind] = {
    k.name: k
    for k in (
        DefectKind("null_email", "customers", Handling.REJECT, "email is NULL"),
        DefectKind("malformed_email", "customers", Handling.REJECT, "email is not an address (no @, no domain…)"),
        DefectKind("email_noise", "customers", Handling.FIX, "valid email with surrounding spaces / upper case"),
        DefectKind("country_code_noise", "customers", Handling.FIX, "country code with spaces / lower case"),
        DefectKind("non_positive_price", "products", Handling.REJECT, "unit_price is zero or negative"),
        DefectKind("total_mismatch", "orders", Handling.REJECT, "total_amount differs from the sum of its lines"),
        DefectKind("zero_quantity", "order_items", Handling.REJECT, "quantity is 0"),
        DefectKind("negative_quantity", "order_items", Handling.REJECT, "quantity is negative"),
        DefectKind("orphan_order", "order_items", Handling.REJECT, "order_id names an order that does not exist"),
        DefectKind("orphan_product", "order_items", Handling.REJECT, "product_id names a product that does not exist"),
        DefectKind("duplicate_event", "clickstream_events", Handling.FIX, "the same event_id delivered twice"),
        DefectKind("future_timestamp", "clickstream_events", Handling.REJECT, "event_ts after the batch's clock"),
        DefectKind("late_event", "clickstream_events", Handling.KEEP, "event_ts hours before the batch window"),
    )
}

REJECT_KINDS = frozenset(k for k, d in DEFECT_KINDS.items() if d.handling is Handling.REJECT)
FIX_KINDS = frozenset(k for k, d in DEFECT_KINDS.items() if d.handling is Handling.FIX)
KEEP_KINDS = frozenset(k for k, d in DEFECT_KINDS.items() if d.handling is Handling.KEEP)

MANIFEST_COLUMNS = ["table_name", "record_key", "kind"]


def kinds_of(table: str) -> list[str]:
    return [k for k, d in DEFECT_KINDS.items() if d.table == table]


def handling(kind: str) -> Handling:
    return DEFECT_KINDS[kind].handling


def plan_counts(rng: np.random.Generator, table: str, rows: int, rate: float) -> dict[str, int]:
    """How many defects of each kind a table gets: Binomial(rows, rate) split evenly by kind."""
    kinds = kinds_of(table)
    if rows <= 0 or rate <= 0:
        return dict.fromkeys(kinds, 0)
    total = int(rng.binomial(rows, rate))
    split = rng.multinomial(total, np.full(len(kinds), 1 / len(kinds)))
    return {k: int(n) for k, n in zip(kinds, split, strict=True)}


def records(table: str, keys: np.ndarray | pd.Series, kind: str) -> pd.DataFrame:
    keys = np.asarray(keys)
    return pd.DataFrame(
        {
            "table_name": np.full(len(keys), table, dtype=object),
            "record_key": keys.astype(str).astype(object),
            "kind": np.full(len(keys), kind, dtype=object),
        }
    )


def empty_manifest() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in MANIFEST_COLUMNS})


# --- value corruptions (vectorised over the chosen rows) --------------------------------------
_MALFORMED_STYLES = 5


def malformed_emails(rng: np.random.Generator, emails: np.ndarray) -> np.ndarray:
    """Break valid addresses in a few realistic ways (no @, no domain, space, double @, no TLD)."""
    out = np.empty(len(emails), dtype=object)
    style = rng.integers(0, _MALFORMED_STYLES, len(emails))
    for i, (email, s) in enumerate(zip(emails, style, strict=True)):
        local, _, domain = str(email).partition("@")
        out[i] = (
            f"{local}{domain}",  # at sign lost
            f"{local}@",  # domain lost
            f"{local[:3]} {local[3:]}@{domain}",  # space inside
            f"{local}@@{domain}",  # doubled at sign
            f"{local}@{domain.rsplit('.', 1)[0]}",  # no top-level domain
        )[s]
    return out


def noisy_emails(rng: np.random.Generator, emails: np.ndarray) -> np.ndarray:
    """Same address, with padding and/or upper case: silver must trim and lower-case it."""
    out = np.empty(len(emails), dtype=object)
    style = rng.integers(0, 3, len(emails))
    for i, (email, s) in enumerate(zip(emails, style, strict=True)):
        e = str(email)
        local, _, domain = e.partition("@")
        out[i] = (f"  {e} ", f"{local.title()}@{domain.upper()}", f"\t{e.upper()}")[s]
    return out


def noisy_country_codes(rng: np.random.Generator, codes: np.ndarray) -> np.ndarray:
    out = np.empty(len(codes), dtype=object)
    style = rng.integers(0, 3, len(codes))
    for i, (code, s) in enumerate(zip(codes, style, strict=True)):
        c = str(code)
        out[i] = (c.lower(), f" {c} ", f"{c.title()} ")[s]
    return out
