"""The shop simulation: determinism, volumes, referential and funnel consistency of clean rows."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from core.errors import EcomError
from core.schema import EVENT_TYPES, ORDER_STATUSES
from generator import defects as dfx
from generator.simulate import (
    ORDER_FLOW,
    Batch,
    InvalidVolumeError,
    Spec,
    State,
    next_state,
    simulate,
    write_columns,
)

NOW = datetime(2025, 3, 14, 15, 9, 26)
SPEC = Spec(customers=300, products=60, orders=800, events=12_000, seed=7)
EMAIL_RE = re.compile(r"^[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}$")


@pytest.fixture(scope="module")
def first() -> Batch:
    return simulate(State(), SPEC, now=NOW)


@pytest.fixture(scope="module")
def second(first: Batch) -> tuple[State, Batch]:
    state = next_state(State(), first)
    return state, simulate(state, Spec(customers=50, products=5, orders=400, events=6_000, seed=8), now=NOW)


def keys_of(batch: Batch, *kinds: str) -> set[str]:
    return set(batch.defects.loc[batch.defects["kind"].isin(kinds), "record_key"])


def clean(batch: Batch, table: str) -> pd.DataFrame:
    """The rows silver would accept: without `reject` defects; events deduplicated."""
    df = batch.inserts[table]
    key = "event_id" if table == "clickstream_events" else df.columns[0]
    bad = batch.defects[(batch.defects["table_name"] == table) & batch.defects["kind"].isin(dfx.REJECT_KINDS)]
    out = df[~df[key].astype(str).isin(set(bad["record_key"]))]
    if table == "clickstream_events":
        out = out.drop_duplicates("event_id")
    return out


# --- determinism and volumes ------------------------------------------------------------------
def test_same_seed_same_frames(first: Batch) -> None:
    again = simulate(State(), SPEC, now=NOW)
    for table, df in first.inserts.items():
        pd.testing.assert_frame_equal(df, again.inserts[table], obj=table)
    pd.testing.assert_frame_equal(first.defects, again.defects)


def test_other_seed_other_frames(first: Batch) -> None:
    other = simulate(State(), Spec(**{**SPEC.__dict__, "seed": 8}), now=NOW)
    assert not other.inserts["customers"]["email"].equals(first.inserts["customers"]["email"])
    assert not other.inserts["clickstream_events"]["event_id"].equals(first.inserts["clickstream_events"]["event_id"])


def test_requested_volumes(first: Batch) -> None:
    rows = first.rows
    assert rows["customers"] == SPEC.customers
    assert rows["products"] == SPEC.products
    assert rows["orders"] == SPEC.orders
    duplicates = len(keys_of(first, "duplicate_event"))
    assert rows["clickstream_events"] == SPEC.events + first.defect_counts.get("duplicate_event", 0)
    assert duplicates > 0
    # Only the generator's columns, never the database-owned clocks and versions.
    for table, df in first.inserts.items():
        assert list(df.columns) == write_columns(table)
        assert not {"updated_at", "ingested_at", "_change_version"} & set(df.columns)
        key = df.columns[0]
        assert df[key].is_unique and df[key].is_monotonic_increasing


def test_zero_volumes_make_an_empty_batch() -> None:
    batch = simulate(State(), Spec(customers=0, products=0, orders=0, events=0, seed=1), now=NOW)
    assert all(n == 0 for n in batch.rows.values())
    assert batch.defects.empty


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"customers": -1}, "--customers must be a non-negative integer"),
        ({"events": 1.5}, "--events must be a non-negative integer"),
        ({"orders": True}, "--orders must be a non-negative integer"),
        ({"defect_rate": 0.9}, "--defect-rate must be between 0 and 0.5"),
    ],
)
def test_bad_volumes_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidVolumeError, match=message):
        Spec(**kwargs)  # type: ignore[arg-type]


def test_impossible_combinations_say_what_to_pass() -> None:
    with pytest.raises(EcomError, match="pass --customers"):
        simulate(State(), Spec(customers=0, products=5, orders=3, events=100, seed=1), now=NOW)
    with pytest.raises(EcomError, match="pass --products"):
        simulate(State(), Spec(customers=5, products=0, orders=3, events=100, seed=1), now=NOW)
    with pytest.raises(EcomError, match=r"--events ≥ 40"):
        simulate(State(), Spec(customers=5, products=5, orders=10, events=20, seed=1), now=NOW)


# --- referential consistency -----------------------------------------------------------------------
def test_clean_rows_reference_existing_rows(second: tuple[State, Batch]) -> None:
    state, batch = second
    customers = set(state.customers["customer_id"]) | set(clean(batch, "customers")["customer_id"])
    products = set(state.products["product_id"]) | set(clean(batch, "products")["product_id"])
    orders = clean(batch, "orders")
    items = clean(batch, "order_items")
    events = clean(batch, "clickstream_events")
    assert set(orders["customer_id"]) <= customers
    assert set(items["order_id"]) <= set(batch.inserts["orders"]["order_id"])
    assert set(items["product_id"]) <= products
    assert set(events["customer_id"].dropna()) <= customers
    assert set(events["product_id"].dropna()) <= products
    assert set(orders["status"]) <= set(ORDER_STATUSES)
    assert set(events["event_type"]) <= set(EVENT_TYPES)
    # New keys continue after the state's.
    for table in ("customers", "products", "orders", "order_items"):
        key = batch.inserts[table].columns[0]
        assert batch.inserts[table][key].min() >= state.next_ids[table]


def test_order_totals_equal_their_lines(first: Batch) -> None:
    items = clean(first, "order_items")
    cents = np.round(items["quantity"] * items["unit_price"] * 100 - items["discount_amount"] * 100)
    by_order = cents.groupby(items["order_id"]).sum()
    orders = clean(first, "orders").set_index("order_id")
    assert (np.round(orders["total_amount"] * 100) == by_order.reindex(orders.index)).all()
    assert (items["quantity"] > 0).all() and (items["unit_price"] > 0).all()


def test_each_purchase_event_is_one_order(first: Batch) -> None:
    events = clean(first, "clickstream_events")
    purchases = events[events["event_type"] == "purchase"]
    order_id = purchases["page_url"].str.extract(r"order_id=(\d+)$")[0].astype(np.int64)
    orders = first.inserts["orders"].set_index("order_id")
    assert order_id.is_unique and set(order_id) == set(orders.index)
    matched = orders.loc[order_id.to_numpy()]
    assert (matched["order_ts"].to_numpy() == purchases["event_ts"].to_numpy()).all()
    assert (matched["visitor_id"].to_numpy() == purchases["visitor_id"].to_numpy()).all()
    assert (matched["customer_id"].to_numpy() == purchases["customer_id"].to_numpy()).all()


def sessions(events: pd.DataFrame, gap: timedelta = timedelta(minutes=30)) -> pd.Series:
    """Session number per event by the 30-minute inactivity rule (what silver does)."""
    ev = events.sort_values(["visitor_id", "event_ts", "event_seq"])
    new = (ev["visitor_id"] != ev["visitor_id"].shift()) | (ev["event_ts"].diff() > gap)
    return new.cumsum().reindex(events.index)


def test_the_inactivity_rule_recovers_the_simulated_sessions(second: tuple[State, Batch]) -> None:
    _, batch = second
    true_session = pd.Series(batch.event_session, index=batch.inserts["clickstream_events"].index)
    events = clean(batch, "clickstream_events")
    events = events.assign(true_session=true_session.loc[events.index])
    found = sessions(events)
    pairs = pd.DataFrame({"found": found, "true": events["true_session"]}).drop_duplicates()
    assert pairs["found"].is_unique and pairs["true"].is_unique


def test_funnels_of_purchasing_sessions(first: Batch) -> None:
    events = clean(first, "clickstream_events").assign(session=sessions(clean(first, "clickstream_events")))
    items = clean(first, "order_items")
    events = events.sort_values(["session", "event_ts", "event_seq"])
    purchase = events[events["event_type"] == "purchase"]
    order_of_session = dict(
        zip(purchase["session"], purchase["page_url"].str.extract(r"(\d+)$")[0].astype(int), strict=True)
    )
    lines = items.groupby("order_id")["product_id"].apply(set)
    for session, ev in events[events["session"].isin(order_of_session)].groupby("session"):
        types = ev["event_type"].tolist()
        assert types[-1] == "purchase" and types[-2] == "checkout_start", types
        carted = set(ev.loc[ev["event_type"] == "add_to_cart", "product_id"])
        assert lines[order_of_session[session]] <= carted
    # Browsing funnel: fewer sessions reach each next step.
    reached = {t: events.loc[events["event_type"] == t, "session"].nunique() for t in EVENT_TYPES}
    assert reached["page_view"] >= reached["product_view"] > reached["add_to_cart"] > reached["checkout_start"]
    assert reached["checkout_start"] >= reached["purchase"]


def test_time_is_consistent(second: tuple[State, Batch]) -> None:
    state, batch = second
    events = clean(batch, "clickstream_events")
    late = events["event_id"].isin(keys_of(batch, "late_event"))
    on_time = events[~late]
    assert on_time["event_ts"].max() <= pd.Timestamp(batch.now)
    assert on_time["event_ts"].min() >= pd.Timestamp(batch.window_start)
    assert (events.loc[late, "event_ts"] < pd.Timestamp(batch.window_start)).all()
    signup = pd.concat([state.customers, batch.inserts["customers"]]).set_index("customer_id")["signup_at"]
    orders = clean(batch, "orders")
    assert (orders["order_ts"].to_numpy() >= signup.loc[orders["customer_id"]].to_numpy()).all()
    known = on_time.dropna(subset=["customer_id"])
    assert (known["event_ts"].to_numpy() >= signup.loc[known["customer_id"].astype(int)].to_numpy()).all()


# --- realistic distributions ------------------------------------------------------------------------
def test_customer_activity_is_heavy_tailed(second: tuple[State, Batch]) -> None:
    state, batch = second
    per_customer = batch.inserts["orders"]["customer_id"].value_counts()
    top_decile = per_customer.head(len(state.customers) // 10).sum()
    assert top_decile / per_customer.sum() > 0.33  # even spending would give about 0.2 here


def test_daily_seasonality(first: Batch) -> None:
    hours = first.inserts["clickstream_events"]["event_ts"].dt.hour
    assert (hours.between(19, 21)).mean() > 3 * (hours.between(3, 5)).mean()


def test_prices_depend_on_category(first: Batch) -> None:
    median = first.inserts["products"].query("unit_price > 0").groupby("category")["unit_price"].median()
    assert median["electronics"] > 4 * median["grocery"]


def test_later_batches_update_existing_rows(second: tuple[State, Batch]) -> None:
    state, batch = second
    before = state.open_orders.set_index("order_id")["status"]
    moved = batch.updates["orders"].set_index("order_id")["status"]
    assert len(moved) > 0.3 * len(before)
    for order_id, status in moved.items():
        assert status in {nxt for nxt, _ in ORDER_FLOW[before[order_id]]}
    assert len(batch.updates["products"]) > 0 and (batch.updates["products"]["unit_price"] > 0).all()
    assert len(batch.updates["customers"]) > 0
    assert set(batch.updates["customers"]["customer_id"]) <= set(state.customers["customer_id"])


# --- defects -----------------------------------------------------------------------------------------
def test_the_catalogue_classifies_every_kind() -> None:
    assert set(dfx.DEFECT_KINDS) == dfx.REJECT_KINDS | dfx.FIX_KINDS | dfx.KEEP_KINDS
    assert {"email_noise", "country_code_noise", "duplicate_event"} <= dfx.FIX_KINDS
    assert "late_event" in dfx.KEEP_KINDS and "null_email" in dfx.REJECT_KINDS


def detect(batch: Batch) -> dict[str, set[str]]:
    """Find every defect in the frames from the data alone, independently of the manifest."""
    ins = batch.inserts
    cust, prod, orders, items, events = (
        ins["customers"], ins["products"], ins["orders"], ins["order_items"], ins["clickstream_events"]
    )  # fmt: skip
    email = cust["email"]
    normal = email.str.strip().str.lower()
    valid = normal.str.match(EMAIL_RE, na=False)
    item_ids = items["order_item_id"].astype(str)
    known_orders = set(orders["order_id"])
    known_products = set(prod["product_id"])
    good = (items["quantity"] > 0) & items["order_id"].isin(known_orders) & items["product_id"].isin(known_products)
    lines = items[good]
    cents = np.round((lines["quantity"] * lines["unit_price"] - lines["discount_amount"]) * 100)
    sums = cents.groupby(lines["order_id"]).sum().reindex(orders["order_id"]).fillna(0).to_numpy()
    dup_ids = events.loc[events["event_id"].duplicated(), "event_id"]
    return {
        "null_email": set(cust.loc[email.isna(), "customer_id"].astype(str)),
        "malformed_email": set(cust.loc[email.notna() & ~valid, "customer_id"].astype(str)),
        "email_noise": set(cust.loc[valid & (email != normal), "customer_id"].astype(str)),
        "country_code_noise": set(
            cust.loc[cust["country_code"] != cust["country_code"].str.strip().str.upper(), "customer_id"].astype(str)
        ),
        "non_positive_price": set(prod.loc[prod["unit_price"] <= 0, "product_id"].astype(str)),
        "total_mismatch": set(orders.loc[np.round(orders["total_amount"] * 100) != sums, "order_id"].astype(str)),
        "zero_quantity": set(item_ids[items["quantity"] == 0]),
        "negative_quantity": set(item_ids[items["quantity"] < 0]),
        "orphan_order": set(item_ids[~items["order_id"].isin(known_orders)]),
        "orphan_product": set(item_ids[~items["product_id"].isin(known_products)]),
        "duplicate_event": set(dup_ids),
        "future_timestamp": set(events.loc[events["event_ts"] > pd.Timestamp(batch.now), "event_id"]),
        "late_event": set(events.loc[events["event_ts"] < pd.Timestamp(batch.window_start), "event_id"]),
    }


@pytest.mark.parametrize("rate", [0.02, 0.1])
def test_manifest_is_exactly_what_the_data_shows(rate: float) -> None:
    batch = simulate(State(), Spec(**{**SPEC.__dict__, "defect_rate": rate}), now=NOW)
    found = detect(batch)
    for kind in dfx.DEFECT_KINDS:
        assert keys_of(batch, kind) == found[kind], kind
    assert all(found.values()) or rate < 0.1, "every kind is planted at a 10% rate"
    # One kind per defective row, and each kind in its own table.
    manifest = batch.defects
    assert (
        not manifest.duplicated(["table_name", "record_key"]).any()
        or (
            manifest.loc[manifest.duplicated(["table_name", "record_key"], keep=False), "kind"] == "duplicate_event"
        ).all()
    )
    assert (manifest["table_name"] == manifest["kind"].map(lambda k: dfx.DEFECT_KINDS[k].table)).all()


def test_defect_rate_is_respected(first: Batch) -> None:
    per_table = first.defects.groupby("table_name").size()
    assert 0.01 < per_table["clickstream_events"] / SPEC.events < 0.03
    none = simulate(State(), Spec(**{**SPEC.__dict__, "defect_rate": 0.0}), now=NOW)
    assert none.defects.empty
    assert all(not keys for keys in detect(none).values())


def test_rejected_rows_get_no_activity(first: Batch) -> None:
    bad_customers = keys_of(first, "null_email", "malformed_email")
    assert not bad_customers & set(first.inserts["orders"]["customer_id"].astype(str))
    assert not bad_customers & set(first.inserts["clickstream_events"]["customer_id"].dropna().astype(str))
    bad_products = keys_of(first, "non_positive_price")
    assert not bad_products & set(first.inserts["order_items"]["product_id"].astype(str))
    assert not bad_products & set(first.inserts["clickstream_events"]["product_id"].dropna().astype(str))


def test_same_seed_on_a_later_state_repeats_no_business_key(first: Batch) -> None:
    later = simulate(next_state(State(), first), SPEC, now=NOW)
    for table, key in (("clickstream_events", "event_id"), ("customers", "visitor_id"), ("customers", "email")):
        assert not set(first.inserts[table][key].dropna()) & set(later.inserts[table][key].dropna()), key


@pytest.mark.parametrize("seed", range(8))
def test_tiny_shops_still_make_consistent_batches(seed: int) -> None:
    """One customer with several orders: the window stretches back rather than failing."""
    batch = simulate(State(), Spec(customers=1, products=2, orders=5, events=40, seed=seed, defect_rate=0), now=NOW)
    orders, customer = batch.inserts["orders"], batch.inserts["customers"].iloc[0]
    assert len(orders) == 5 and (orders["order_ts"] >= customer["signup_at"]).all()
    assert batch.inserts["clickstream_events"]["event_ts"].min() >= pd.Timestamp(batch.window_start)
