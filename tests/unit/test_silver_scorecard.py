"""The defect scorecard: precision and recall per reject kind, from a manifest and quarantine."""

from __future__ import annotations

from silver.scorecard import format_scores, score


def test_perfect_when_each_kind_is_caught_by_its_rule_only() -> None:
    manifest = [
        ("customers", "1", "null_email"),
        ("customers", "2", "malformed_email"),
        ("customers", "3", "email_noise"),  # a fix: not scored
        ("order_items", "7", "zero_quantity"),
    ]
    quarantined = {
        "customers": {"1": ["email_not_null"], "2": ["email_format"]},
        "order_items": {"7": ["quantity_not_zero", "order_valid"], "8": ["order_valid"]},
    }
    by_kind = {s.kind: s for s in score(manifest, quarantined)}
    assert by_kind["null_email"].perfect and by_kind["malformed_email"].perfect and by_kind["zero_quantity"].perfect
    assert by_kind["future_timestamp"].injected == 0 and by_kind["future_timestamp"].perfect
    assert "email_noise" not in by_kind


def test_misses_and_false_alarms_lower_recall_and_precision() -> None:
    manifest = [("products", "1", "non_positive_price"), ("products", "2", "non_positive_price")]
    quarantined = {"products": {"1": ["price_positive"], "9": ["price_positive"], "2": ["unit_price_not_null"]}}
    [s] = [s for s in score(manifest, quarantined) if s.kind == "non_positive_price"]
    assert (s.injected, s.caught, s.correct) == (2, 2, 1)
    assert (s.precision, s.recall, s.perfect) == (0.5, 0.5, False)
    table = format_scores([s])
    assert "non_positive_price" in table and "50.0%" in table
