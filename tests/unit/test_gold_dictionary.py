"""The committed gold data dictionary is exactly what the mart declarations generate."""

from __future__ import annotations

from gold.dictionary import DICTIONARY_PATH, render
from gold.marts.registry import MARTS


def test_committed_dictionary_is_up_to_date() -> None:
    committed = DICTIONARY_PATH.read_text(encoding="utf-8")
    assert committed == render(), "gold/DICTIONARY.md is stale: run `python -m gold.dictionary` and commit it"


def test_every_column_has_a_definition_and_keys_are_columns() -> None:
    for mart in MARTS.values():
        names = mart.column_names
        assert len(names) == len(set(names)), f"{mart.name}: duplicate column"
        assert set(mart.key) <= set(names) and set(mart.scope) <= set(mart.key), mart.name
        blank = [c.name for c in mart.columns if len(c.definition.strip()) < 10]
        assert not blank, f"{mart.name}: columns without a real definition: {blank}"


def test_customer_360_has_the_contract_columns() -> None:
    required = {"orders_count", "revenue", "avg_order_value", "rfm_segment", "top_categories", "top_categories_csv",
                "sessions_count", "r_score", "f_score", "m_score", "clv_estimate", "is_churn_risk"}  # fmt: skip
    assert required <= set(MARTS["customer_360"].column_names)
    assert set(MARTS) == {"customer_360", "sessions", "daily_sales", "product_performance"}
