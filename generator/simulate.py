"""The shop simulation: one batch of activity as pandas frames, from a state and a seed.

Pure and vectorised: `simulate(state, spec, now)` does no I/O and returns the same frames
for the same inputs. The model, in order:

1. New customers sign up (timestamps follow a daily curve) and new products are listed
   (log-normal prices per category).
2. Each order is a purchasing session: landing page, maybe searches, browsing, then a
   `product_view` + `add_to_cart` per order line, maybe an add-and-remove, `checkout_start`,
   `purchase`. The remaining event budget goes to browsing sessions that leave the funnel
   at realistic rates (product views 65%, cart 30%, checkout 35% of carts).
3. Sessions of registered customers are spread over customers with heavy-tailed
   (Pareto) activity, never before their sign-up, in per-customer slots that keep a
   visitor's sessions at least 31 minutes apart (events inside a session are at most
   10 minutes apart, so the 30-minute inactivity rule recovers the sessions). Other
   sessions are anonymous; some anonymous visitors later sign up (their pre-sign-up
   session carries the customer's `visitor_id` but no `customer_id`).
4. A purchase creates an order (`order_ts` = the purchase event, `page_url` carries the
   order id) whose lines repeat the products added to the cart; the order total is the
   sum of its lines (quantity × price − discount), in cents.
5. Earlier orders move through their statuses, some product prices and customer
   profiles change: these are UPDATEs of existing rows.
6. Defects are planted at `spec.defect_rate` (see `generator.defects`).

New keys are taken from `state.next_ids` onwards (the sink reserves them); clean rows are
never later than `now` nor earlier than the window start.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from core.errors import EcomError
from core.schema import SOURCE_TABLES
from generator import defects as dfx
from generator.pools import (
    CATEGORIES,
    CHANNEL_P,
    CHANNEL_REFERRERS,
    CHANNELS,
    CURRENCY,
    DEVICE_P,
    DEVICES,
    PAYMENT_METHODS,
    PAYMENT_P,
    Pools,
    build_pools,
    pick_per_country,
)

TABLES = tuple(SOURCE_TABLES)  # customers, products, orders, order_items, clickstream_events
PK = {"customers": "customer_id", "products": "product_id", "orders": "order_id",
      "order_items": "order_item_id", "clickstream_events": "event_seq"}  # fmt: skip
DB_OWNED = frozenset({"updated_at", "ingested_at", "_change_version", "created_at"})

US = 1_000_000  # microseconds per second
MINUTE = 60 * US
HOUR = 60 * MINUTE
SLOT = 55 * MINUTE  # a registered visitor has at most one session per slot
SESSION_GAP = 31 * MINUTE  # > the 30-minute inactivity rule, with a margin
MAX_SESSION = SLOT - SESSION_GAP - MINUTE  # 23 minutes
MAX_EVENT_GAP = 10 * MINUTE
MAX_SLOTS_PER_CUSTOMER = 512
MAX_WINDOW = 64 * 24 * HOUR  # the furthest back a batch stretches to fit its customers' sessions

PRICE_CHANGES_PER_DAY = 0.03  # share of products whose price changes in a simulated day
PROFILE_CHANGES_PER_DAY = 0.02  # share of customers who update their profile in a day
ORDER_FLOW: dict[str, tuple[tuple[str, float], ...]] = {
    # status → possible next statuses with their probability per simulated day (else unchanged)
    "placed": (("paid", 0.75), ("cancelled", 0.05)),
    "paid": (("shipped", 0.60), ("cancelled", 0.02)),
    "shipped": (("delivered", 0.55),),
    "delivered": (("returned", 0.03),),
}
OPEN_STATUSES = tuple(ORDER_FLOW)


def per_window(p_day: float, days: float) -> float:
    """The probability of an event with daily probability `p_day` happening within `days`."""
    return 1.0 - (1.0 - p_day) ** days


class InvalidVolumeError(EcomError):
    """A volume, rate or combination of volumes cannot make a consistent batch."""

    exit_code = 2


def write_columns(table: str) -> list[str]:
    """The columns the generator sends: all but those the database owns."""
    return [c.name for c in SOURCE_TABLES[table].table.columns if c.name not in DB_OWNED]


# --- inputs ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Spec:
    """What one batch should contain. Volumes are new rows; events exclude planted duplicates."""

    customers: int = 100
    products: int = 20
    orders: int = 500
    events: int = 5_000
    seed: int | None = None
    defect_rate: float = 0.02
    window: timedelta = timedelta(hours=24)

    def __post_init__(self) -> None:
        for name in ("customers", "products", "orders", "events"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
                raise InvalidVolumeError(f"--{name} must be a non-negative integer, got {value!r}")
        if not 0 <= self.defect_rate <= 0.5:
            raise InvalidVolumeError(f"--defect-rate must be between 0 and 0.5, got {self.defect_rate!r}")
        if self.window < timedelta(hours=1):
            raise InvalidVolumeError(f"the simulated window must be at least 1 hour, got {self.window}")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise InvalidVolumeError(f"--seed must be between 0 and 2**63-1, got {self.seed}")

    def resolved(self) -> Spec:
        """The same spec with a concrete seed (drawn at random when none was given)."""
        return self if self.seed is not None else replace(self, seed=secrets.randbits(62))


def _frame(columns: dict[str, object]) -> pd.DataFrame:
    return pd.DataFrame(columns)


@dataclass(frozen=True)
class State:
    """What the simulation needs to know of the database before a batch.

    `customers`: customer_id, visitor_id, signup_at, country_code, email (clean ones only);
    `products`: product_id, category, price_cents (active, positively priced, clean);
    `open_orders`: order_id, status (not cancelled/returned, clean);
    `next_ids`: the first key each table's new rows may use.
    """

    customers: pd.DataFrame = field(
        default_factory=lambda: _frame(
            {
                "customer_id": pd.Series(dtype="int64"),
                "visitor_id": pd.Series(dtype=object),
                "signup_at": pd.Series(dtype="datetime64[us]"),
                "country_code": pd.Series(dtype=object),
                "email": pd.Series(dtype=object),
            }
        )
    )
    products: pd.DataFrame = field(
        default_factory=lambda: _frame(
            {
                "product_id": pd.Series(dtype="int64"),
                "category": pd.Series(dtype=object),
                "price_cents": pd.Series(dtype="int64"),
            }
        )
    )
    open_orders: pd.DataFrame = field(
        default_factory=lambda: _frame({"order_id": pd.Series(dtype="int64"), "status": pd.Series(dtype=object)})
    )
    next_ids: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 1))


# --- output ------------------------------------------------------------------------------------
@dataclass
class Batch:
    """One simulated batch: rows to insert, rows to update, and the defect manifest."""

    spec: Spec
    now: datetime  # the batch clock (UTC, naive); no clean row is later
    window_start: datetime  # no clean row is earlier
    inserts: dict[str, pd.DataFrame]
    updates: dict[str, pd.DataFrame]
    defects: pd.DataFrame  # table_name, record_key, kind
    burned_ids: dict[str, np.ndarray]  # keys reserved for orphans, never inserted
    event_session: np.ndarray  # the session number of each event row (duplicates repeat it)

    @property
    def rows(self) -> dict[str, int]:
        return {t: len(self.inserts[t]) for t in TABLES}

    @property
    def updated(self) -> dict[str, int]:
        return {t: len(df) for t, df in self.updates.items()}

    @property
    def defect_counts(self) -> dict[str, int]:
        counts = self.defects["kind"].value_counts()
        return {k: int(counts.get(k, 0)) for k in dfx.DEFECT_KINDS if counts.get(k, 0)}

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values()) + sum(self.updated.values())

    def id_span(self, table: str) -> int:
        """How many keys from `next_ids[table]` the batch uses (inserted rows and burned keys)."""
        return len(self.inserts[table]) + len(self.burned_ids.get(table, ()))


# --- small vectorised helpers --------------------------------------------------------------------
def uuids(rng: np.random.Generator, n: int) -> np.ndarray:
    """n random (version 4) UUID strings, built without a Python loop."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    hexd = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    h = np.empty((n, 32), dtype=np.uint8)
    h[:, 0::2] = hexd[raw >> 4]
    h[:, 1::2] = hexd[raw & 0x0F]
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    positions = [*range(0, 8), *range(9, 13), *range(14, 18), *range(19, 23), *range(24, 36)]
    out[:, positions] = h
    return out.view("S36").ravel().astype("U36").astype(object)


def _hash_unit(ids: np.ndarray, salt: int) -> np.ndarray:
    """A stable pseudo-random number in (0, 1) per key (so a key keeps its traits across batches)."""
    x = ids.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(salt)
    x ^= x >> np.uint64(31)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(29)
    return ((x >> np.uint64(11)).astype(np.float64) + 0.5) / float(2**53)


def activity_weight(customer_ids: np.ndarray) -> np.ndarray:
    """Heavy-tailed (Pareto, alpha 1.3) activity per customer, stable across batches."""
    return (1.0 - _hash_unit(customer_ids, 1)) ** (-1 / 1.3)


def popularity_weight(product_ids: np.ndarray) -> np.ndarray:
    """Heavy-tailed (Pareto, alpha 1.1) popularity per product, stable across batches."""
    return (1.0 - _hash_unit(product_ids, 2)) ** (-1 / 1.1)


def daily_intensity(us: np.ndarray) -> np.ndarray:
    """Relative shop traffic at UTC timestamps (µs): quiet at night, a lunch and an evening peak."""
    hour = (us // MINUTE % (24 * 60)) / 60.0

    def bump(center: float, width: float) -> np.ndarray:
        d = np.abs(hour - center)
        d = np.minimum(d, 24 - d)
        return np.exp(-0.5 * (d / width) ** 2)

    return 0.12 + 0.55 * bump(12.5, 2.2) + 1.0 * bump(20.5, 2.4)


def sample_times(rng: np.random.Generator, n: int, start_us: int, end_us: int) -> np.ndarray:
    """n timestamps in [start, end) following the daily curve (sampled per minute)."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    minutes = max(1, (end_us - start_us) // MINUTE)
    grid = start_us + np.arange(minutes, dtype=np.int64) * MINUTE
    p = daily_intensity(grid)
    idx = rng.choice(minutes, size=n, p=p / p.sum())
    return np.minimum(grid[idx] + rng.integers(0, MINUTE, n), end_us - 1)


def _ends(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flattening helpers: group index per element and the element's position in its group."""
    counts = np.asarray(counts, dtype=np.int64)
    group = np.repeat(np.arange(len(counts)), counts)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1])) if len(counts) else np.zeros(0, np.int64)
    pos = np.arange(counts.sum()) - np.repeat(starts, counts)
    return group, pos


def _to_us(ts: datetime) -> int:
    return int((ts.replace(tzinfo=None) - datetime(1970, 1, 1)).total_seconds() * US)


def _us_to_datetime64(us: np.ndarray) -> np.ndarray:
    return np.asarray(us, dtype=np.int64).astype("datetime64[us]")


def _dollars(cents: np.ndarray) -> np.ndarray:
    """Cents as float dollars: cents/100 is the double closest to the decimal, printed exactly."""
    return np.asarray(cents, dtype=np.int64) / 100.0


# --- the simulation --------------------------------------------------------------------------------
@dataclass
class _Rngs:
    customers: np.random.Generator
    products: np.random.Generator
    sessions: np.random.Generator
    events: np.random.Generator
    orders: np.random.Generator
    updates: np.random.Generator
    defects: np.random.Generator

    @classmethod
    def from_seed(cls, seed: int, state: State) -> _Rngs:
        # The state's next keys are mixed in: the same seed on the same database gives the
        # same batch, but two batches with one seed never repeat business keys (event ids,
        # visitor ids) — the second one starts from other keys.
        entropy = [seed, *(int(state.next_ids[t]) for t in TABLES)]
        children = np.random.SeedSequence(entropy).spawn(7)
        return cls(*(np.random.default_rng(c) for c in children))


# Phases of a session, in the order its events happen.
PH_LANDING, PH_PAGES, PH_SEARCH, PH_BROWSE, PH_ITEMS, PH_CART, PH_ADD_REMOVE, PH_REMOVE, PH_CHECKOUT, PH_PURCHASE = (
    range(10)
)
N_PHASES = 10
OPTIONAL_PHASES = (PH_LANDING, PH_SEARCH, PH_BROWSE, PH_ADD_REMOVE)  # of a purchasing session


def simulate(state: State, spec: Spec, now: datetime | None = None, pools: Pools | None = None) -> Batch:
    """Simulate one batch of shop activity ending at `now` (UTC). Deterministic per seed."""
    spec = spec.resolved()
    assert spec.seed is not None
    pools = pools or build_pools()
    now = now or datetime.now(UTC)
    if now.tzinfo is not None:
        now = now.astimezone(UTC).replace(tzinfo=None)  # the database stores naive UTC
    now_us = _to_us(now)
    rng = _Rngs.from_seed(spec.seed, state)
    sim = _Simulation(state, spec, pools, rng, now_us)
    return sim.run(now)


class _Simulation:
    """One batch being built; methods run in order and share the arrays they fill."""

    def __init__(self, state: State, spec: Spec, pools: Pools, rng: _Rngs, now_us: int) -> None:
        self.state, self.spec, self.pools, self.rng, self.now_us = state, spec, pools, rng, now_us
        self.window_us = int(spec.window.total_seconds() * US)
        self.manifest: list[pd.DataFrame] = []
        self.burned: dict[str, np.ndarray] = {}

    # -- orchestration ---------------------------------------------------------------------
    def run(self, now: datetime) -> Batch:
        spec, state = self.spec, self.state
        rate = spec.defect_rate
        rd = self.rng.defects

        # Plan the purchases first: the number of order lines drives the line defects.
        self._plan_purchases()
        self.plan = {
            "customers": dfx.plan_counts(rd, "customers", spec.customers, rate),
            "products": dfx.plan_counts(rd, "products", spec.products, rate),
            "orders": dfx.plan_counts(rd, "orders", spec.orders, rate),
            "order_items": dfx.plan_counts(rd, "order_items", int(self.k.sum()), rate),
            "clickstream_events": dfx.plan_counts(rd, "clickstream_events", spec.events, rate),
        }
        if spec.products == 0:
            self.plan["order_items"]["orphan_product"] = 0
        # Keep at least one usable customer and product when the database has none yet.
        c = self.plan["customers"]
        while not len(state.customers) and c["null_email"] + c["malformed_email"] >= max(spec.customers, 1):
            c["malformed_email" if c["malformed_email"] else "null_email"] -= 1
        if not len(state.products):
            p = self.plan["products"]
            p["non_positive_price"] = min(p["non_positive_price"], max(spec.products - 1, 0))

        self._new_customers()
        self._new_products()
        self._check_feasible()
        self._plan_browsing()
        self._place_sessions()
        self._build_events()
        self._build_orders()
        self._event_defects()
        self._item_defects()
        self._customer_defects()
        updates = self._updates()

        inserts = {
            "customers": self.customers_df,
            "products": self.products_df,
            "orders": self.orders_df,
            "order_items": self.items_df,
            "clickstream_events": self.events_df,
        }
        for t, df in inserts.items():
            inserts[t] = df[write_columns(t)].reset_index(drop=True)
        manifest = pd.concat(self.manifest, ignore_index=True) if self.manifest else dfx.empty_manifest()
        return Batch(
            spec=spec,
            now=now,
            window_start=now - timedelta(microseconds=self.window_us),
            inserts=inserts,
            updates=updates,
            defects=manifest,
            burned_ids=self.burned,
            event_session=self.event_session,
        )

    # -- customers & products ----------------------------------------------------------------
    def _new_customers(self) -> None:
        r, p, n = self.rng.customers, self.pools, self.spec.customers
        start = self.state.next_ids["customers"]
        ids = np.arange(start, start + n, dtype=np.int64)
        country = r.choice(len(p.country_codes), size=n, p=p.country_p)
        first, fi = pick_per_country(r, country, p.first_names)
        last, li = pick_per_country(r, country, p.last_names)
        efirst = np.empty(n, dtype=object)
        elast = np.empty(n, dtype=object)
        for c in range(len(p.country_codes)):
            rows = np.flatnonzero(country == c)
            efirst[rows] = p.email_first[c][fi[rows]]
            elast[rows] = p.email_last[c][li[rows]]
        city, _ = pick_per_country(r, country, p.cities)
        phone, _ = pick_per_country(r, country, p.phones)
        sep = r.choice(np.array([".", "_", ""], dtype=object), n)
        domain = p.email_domains[r.integers(0, len(p.email_domains), n)]
        email = efirst + sep + elast + ids.astype(str).astype(object) + "@" + domain
        signup_us = sample_times(r, n, self.now_us - self.window_us, self.now_us)
        self.customers_df = pd.DataFrame(
            {
                "customer_id": ids,
                "visitor_id": uuids(r, n),
                "email": email,
                "first_name": first,
                "last_name": last,
                "phone": phone,
                "country_code": p.country_codes[country],
                "city": city,
                "signup_at": _us_to_datetime64(signup_us),
            }
        )
        self.new_signup_us = signup_us
        # Rejected customers (bad email) are chosen now so that they get no activity.
        plan = self.plan["customers"]
        order = r.permutation(n)
        n_null, n_bad = plan["null_email"], plan["malformed_email"]
        self.customer_reject_rows = order[: n_null + n_bad]
        self.customer_defect_order = order

    def _burn(self, table: str, orphans: int, per_key: int) -> np.ndarray:
        """Keys that will never exist (about `per_key` orphan lines share one): the first of the range.

        They come first so that the table's identity moves past them (SQL Server continues
        after the largest inserted key; PostgreSQL's sequence is advanced past the range).
        """
        first = self.state.next_ids[table]
        return np.arange(first, first + -(-orphans // per_key), dtype=np.int64)

    def _new_products(self) -> None:
        r, p, n = self.rng.products, self.pools, self.spec.products
        self.burned["products"] = self._burn("products", self.plan["order_items"]["orphan_product"], per_key=10)
        start = self.state.next_ids["products"] + len(self.burned["products"])
        ids = np.arange(start, start + n, dtype=np.int64)
        shares = np.array([c.share for c in CATEGORIES])
        cat = r.choice(len(CATEGORIES), size=n, p=shares / shares.sum())
        median = np.array([c.median_price for c in CATEGORIES])[cat]
        sigma = np.array([c.sigma for c in CATEGORIES])[cat]
        raw = median * np.exp(sigma * r.standard_normal(n))
        # Prices end in .99 / .49 / .00 like real price lists; at least 0.99.
        ending = r.choice(np.array([99, 49, 0]), size=n, p=[0.6, 0.25, 0.15])
        cents = np.maximum(np.floor(raw).astype(np.int64), 0) * 100 + ending
        cents = np.where(cents < 99, 99, cents)
        nouns = np.empty(n, dtype=object)
        for c, category in enumerate(CATEGORIES):
            rows = np.flatnonzero(cat == c)
            nouns[rows] = np.array(category.nouns, dtype=object)[r.integers(0, len(category.nouns), rows.size)]
        brand = p.brands[r.integers(0, len(p.brands), n)]
        color = p.colors[r.integers(0, len(p.colors), n)]
        name = brand + " " + color + " " + nouns
        codes = np.array([c.code for c in CATEGORIES], dtype=object)[cat]
        sku = codes + "-" + pd.Series(ids).map("{:08d}".format).to_numpy(dtype=object)
        self.products_df = pd.DataFrame(
            {
                "product_id": ids,
                "sku": sku,
                "name": name,
                "category": np.array([c.name for c in CATEGORIES], dtype=object)[cat],
                "unit_price": _dollars(cents),
                "is_active": np.ones(n, dtype=bool),
            }
        )
        self.new_price_cents = cents
        self.new_category = cat

    def _check_feasible(self) -> None:
        """Fail early, with what to pass, when the volumes cannot make a consistent batch."""
        spec = self.spec
        clean_customers = len(self.state.customers) + spec.customers - len(self.customer_reject_rows)
        usable_products = len(self.state.products) + spec.products
        if spec.orders and clean_customers <= 0:
            raise InvalidVolumeError(
                f"--orders {spec.orders} needs customers, but ecom_db has none yet: pass --customers N (N > 0)"
            )
        if spec.orders and usable_products <= 0:
            raise InvalidVolumeError(
                f"--orders {spec.orders} needs products, but ecom_db has none yet: pass --products N (N > 0)"
            )

    # -- sessions ---------------------------------------------------------------------------------
    def _plan_purchases(self) -> None:
        """Per order: number of lines and the optional parts of its purchasing session."""
        r, n = self.rng.sessions, self.spec.orders
        k = 1 + np.minimum(r.poisson(0.9, n), 5)
        mandatory = 2 * k + 2  # (product_view, add_to_cart) per line, checkout_start, purchase
        if mandatory.sum() > self.spec.events:
            k = np.ones(n, dtype=np.int64)
            mandatory = 2 * k + 2
            if mandatory.sum() > self.spec.events:
                raise InvalidVolumeError(
                    f"--events {self.spec.events} is too small for --orders {n}: each purchase is at least "
                    f"4 events (product_view, add_to_cart, checkout_start, purchase); pass --events ≥ {4 * n}"
                )
        counts = np.zeros((n, N_PHASES), dtype=np.int64)
        counts[:, PH_LANDING] = r.random(n) < 0.9
        counts[:, PH_SEARCH] = r.choice(3, size=n, p=[0.5, 0.35, 0.15])
        counts[:, PH_BROWSE] = np.minimum(r.poisson(1.2, n), 6)
        counts[:, PH_ITEMS] = 2 * k
        counts[:, PH_ADD_REMOVE] = 2 * (r.random(n) < 0.15)
        counts[:, PH_CHECKOUT] = 1
        counts[:, PH_PURCHASE] = 1
        # Too few events for the full funnels: drop the optional parts of some sessions.
        excess = int(counts.sum()) - self.spec.events
        if excess > 0:
            optional = counts[:, np.array(OPTIONAL_PHASES)].sum(axis=1)
            order = r.permutation(n)
            cut = order[: int(np.searchsorted(np.cumsum(optional[order]), excess)) + 1]
            counts[np.ix_(cut, np.array(OPTIONAL_PHASES))] = 0
        self.k = k
        self.purchase_counts = counts

    def _plan_browsing(self) -> None:
        """Browsing sessions that use exactly the events left over by the purchases."""
        r = self.rng.sessions
        budget = self.spec.events - int(self.purchase_counts.sum())
        has_products = (len(self.state.products) + self.spec.products) > 0
        chunks: list[np.ndarray] = []
        total = 0
        while total < budget:
            m = max(16, int((budget - total) / 3.5 * 1.2))
            c = np.zeros((m, N_PHASES), dtype=np.int64)
            c[:, PH_LANDING] = 1
            c[:, PH_PAGES] = np.minimum(r.geometric(0.55, m) - 1, 4)
            c[:, PH_SEARCH] = r.choice(3, size=m, p=[0.6, 0.3, 0.1])
            views = (r.random(m) < 0.65) & has_products
            c[:, PH_BROWSE] = views * (1 + np.minimum(r.poisson(1.3, m), 8))
            cart = views & (r.random(m) < 0.30)
            c[:, PH_CART] = cart * (1 + (r.random(m) < 0.25))
            c[:, PH_CART] = np.minimum(c[:, PH_CART], c[:, PH_BROWSE])
            c[:, PH_REMOVE] = cart & (r.random(m) < 0.30)
            c[:, PH_CHECKOUT] = cart & (r.random(m) < 0.35)
            chunks.append(c)
            total += int(c.sum())
        counts = np.concatenate(chunks) if chunks else np.zeros((0, N_PHASES), dtype=np.int64)
        # Keep whole sessions up to the budget, then cut the next one (a prefix of a funnel is a funnel).
        lengths = counts.sum(axis=1)
        cum = np.cumsum(lengths)
        full = int(np.searchsorted(cum, budget, side="right"))
        rest = budget - (int(cum[full - 1]) if full else 0)
        counts = counts[: full + (1 if rest else 0)].copy()
        if rest:
            row = counts[-1]
            flat = np.repeat(np.arange(N_PHASES), row)[:rest]
            counts[-1] = np.bincount(flat, minlength=N_PHASES)
        self.browse_counts = counts

    def _event_durations(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gap before each event (µs; 0 for a session's first) and each session's duration."""
        r = self.rng.events
        lengths = counts.sum(axis=1)
        session, pos = _ends(lengths)
        n = len(session)
        gaps = np.minimum(np.exp(np.log(25.0) + 1.0 * r.standard_normal(n)) * US, MAX_EVENT_GAP).astype(np.int64)
        gaps = np.maximum(gaps, US // 2)
        gaps[pos == 0] = 0
        dur = np.bincount(session, weights=gaps, minlength=len(lengths)).astype(np.int64)
        over = dur > MAX_SESSION
        if over.any():
            scale = np.where(over, MAX_SESSION / np.maximum(dur, 1), 1.0)
            gaps = (gaps * scale[session]).astype(np.int64)
            dur = np.bincount(session, weights=gaps, minlength=len(lengths)).astype(np.int64)
        return gaps, dur

    def _customer_pool(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """Customers who can act: clean ones in the database, then the clean new ones.

        Returns ids, visitor ids, sign-up times (µs) and the position of the first new one.
        """
        state = self.state
        keep_new = np.ones(self.spec.customers, dtype=bool)
        keep_new[self.customer_reject_rows] = False
        new = self.customers_df[keep_new]
        old_visitors = state.customers["visitor_id"].to_numpy(dtype=object).copy()
        missing = pd.isna(old_visitors)
        if missing.any():  # a customer without a visitor id (not one of ours): give one per batch
            old_visitors[missing] = uuids(self.rng.sessions, int(missing.sum()))
        ids = np.concatenate([state.customers["customer_id"].to_numpy(np.int64), new["customer_id"].to_numpy()])
        visitors = np.concatenate([old_visitors, new["visitor_id"].to_numpy(dtype=object)])
        signup = np.concatenate(
            [state.customers["signup_at"].to_numpy("datetime64[us]").astype(np.int64), self.new_signup_us[keep_new]]
        )
        return ids, visitors, signup, len(state.customers)

    def _place_sessions(self) -> None:
        """Who runs each session and when it starts."""
        r = self.rng.sessions
        counts = np.concatenate([self.purchase_counts, self.browse_counts])
        n_purchase, n_sessions = len(self.purchase_counts), len(counts)
        self.session_counts = counts
        self.is_purchase = np.arange(n_sessions) < n_purchase
        self.gaps, self.duration = self._event_durations(counts)
        cust_ids, cust_visitor, cust_signup, new_first = self._customer_pool()

        # All purchases are by signed-in customers, and about a third of browsing sessions.
        known = np.concatenate([np.ones(n_purchase, dtype=bool), r.random(n_sessions - n_purchase) < 0.35])
        if not len(cust_ids):
            known[:] = False
        known_idx = np.flatnonzero(known)
        customer_of = np.full(n_sessions, -1, dtype=np.int64)
        start = np.zeros(n_sessions, dtype=np.int64)
        if known_idx.size:
            who, slot = self._allocate_slots(cust_ids, cust_signup, known_idx.size, new_first)
            cust_signup = self._customer_pool()[2]  # the window may have stretched
            perm = r.permutation(known_idx.size)
            customer_of[known_idx] = who[perm]
            # Start inside the slot so that the session ends ≥ 31 minutes before the next slot.
            room = np.maximum(SLOT - SESSION_GAP - self.duration[known_idx], 0)
            start[known_idx] = slot[perm] + (r.random(known_idx.size) * room).astype(np.int64)
        anon_idx = np.flatnonzero(~known)
        visitor = np.empty(n_sessions, dtype=object)
        visitor[known_idx] = cust_visitor[customer_of[known_idx]]
        visitor[anon_idx] = uuids(r, anon_idx.size)
        start[anon_idx] = np.minimum(
            sample_times(r, anon_idx.size, self.now_us - self.window_us, self.now_us),
            self.now_us - self.duration[anon_idx] - US,
        )

        # Some new customers browsed anonymously before signing up (ending > 31 min before it).
        self.pre_signup = np.zeros(n_sessions, dtype=bool)
        earliest = self.now_us - self.window_us
        new_rows = np.arange(new_first, len(cust_ids))
        eligible = new_rows[cust_signup[new_rows] >= earliest + SESSION_GAP + MAX_SESSION]
        takers = eligible[r.random(eligible.size) < 0.35]
        m = min(takers.size, anon_idx.size)
        if m:
            takers = takers[:m]
            chosen = anon_idx[r.permutation(anon_idx.size)[:m]]
            visitor[chosen] = cust_visitor[takers]
            latest = cust_signup[takers] - SESSION_GAP - self.duration[chosen]
            start[chosen] = latest - (r.random(m) * np.maximum(latest - earliest, 0) * 0.5).astype(np.int64)
            self.pre_signup[chosen] = True

        self.session_customer = np.where(customer_of >= 0, cust_ids[np.maximum(customer_of, 0)], -1)
        self.session_visitor = visitor
        self.session_start = start
        self.session_device = np.array(DEVICES, dtype=object)[r.choice(len(DEVICES), n_sessions, p=DEVICE_P)]
        self.session_channel = np.array(CHANNELS, dtype=object)[r.choice(len(CHANNELS), n_sessions, p=CHANNEL_P)]

    def _stretch_window(self) -> None:
        """Double the simulated window; new customers keep their relative place in it."""
        share = (self.now_us - self.new_signup_us) / self.window_us
        self.window_us *= 2
        self.new_signup_us = self.now_us - (share * self.window_us).astype(np.int64)
        self.customers_df["signup_at"] = _us_to_datetime64(self.new_signup_us)

    def _allocate_slots(
        self, ids: np.ndarray, signup: np.ndarray, n: int, new_first: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Spread n sessions over customers, heavy-tailed, in distinct slots: (customer row, slot start µs).

        Customer c's slots start at a random phase after max(sign-up, window start) and are
        SLOT apart; a session in a slot ends at least SESSION_GAP before the next slot.
        """
        r = self.rng.sessions
        keep_new = np.ones(self.spec.customers, dtype=bool)
        keep_new[self.customer_reject_rows] = False
        signup = signup.copy()
        weight = activity_weight(ids)
        phase = (r.random(len(ids)) * SLOT).astype(np.int64)
        while True:
            origin = np.maximum(signup, self.now_us - self.window_us) + phase
            slots = np.clip(np.floor_divide(self.now_us - origin - (SLOT - SESSION_GAP), SLOT) + 1, 0, None)
            slots = np.minimum(slots, MAX_SLOTS_PER_CUSTOMER)
            # Nobody is active in more than half of their slots: people sleep (see the daily curve).
            cap = -(-slots // 2)
            if cap.sum() >= n:
                break
            if self.window_us >= MAX_WINDOW:
                raise InvalidVolumeError(
                    f"{n} customer sessions do not fit the activity of {len(ids)} customers: "
                    "pass more --customers or fewer --orders/--events"
                )
            # Not enough room for so many sessions: the batch looks further back, and the new
            # customers signed up proportionally earlier.
            self._stretch_window()
            signup[new_first:] = self.new_signup_us[keep_new]
        counts = np.zeros(len(ids), dtype=np.int64)
        need = n
        for _ in range(64):  # multinomial draws capped at each customer's room
            p = np.where(cap > counts, weight, 0.0)
            if need == 0 or p.sum() == 0:
                break
            counts += r.multinomial(need, p / p.sum())
            over = np.maximum(counts - cap, 0)
            counts -= over
            need = int(over.sum())
        if need:  # the heaviest customers are full: fill the remaining room in order
            room = cap - counts
            counts += np.minimum(room, np.maximum(need - (np.cumsum(room) - room), 0))
        # Each customer's slots, without replacement, weighted by the daily curve.
        active = np.flatnonzero(counts)
        owner, j = _ends(slots[active])
        row = active[owner]
        slot_start = origin[row] + j * SLOT
        key = r.exponential(size=len(row)) / daily_intensity(slot_start + SLOT // 2) ** 3
        order = np.lexsort((key, row))
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = j  # rows stay grouped in the same order, so j is the rank within the group
        take = rank < counts[row]
        return row[take], slot_start[take]

    # -- events -------------------------------------------------------------------------------------
    def _product_pool(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Products that may be viewed and bought: ids, price (cents), popularity weights."""
        bad = set(self._price_defect_rows())
        keep = np.array([i not in bad for i in range(self.spec.products)], dtype=bool)
        ids = np.concatenate(
            [self.state.products["product_id"].to_numpy(np.int64), self.products_df["product_id"].to_numpy()[keep]]
        )
        price = np.concatenate([self.state.products["price_cents"].to_numpy(np.int64), self.new_price_cents[keep]])
        w = popularity_weight(ids)
        return ids, price, w / w.sum() if len(w) else w

    def _price_defect_rows(self) -> np.ndarray:
        if not hasattr(self, "_price_rows"):
            n = self.plan["products"]["non_positive_price"]
            self._price_rows = self.rng.defects.permutation(self.spec.products)[:n]
        return self._price_rows

    def _build_events(self) -> None:
        r = self.rng.events
        counts = self.session_counts
        n_sessions = len(counts)
        lengths = counts.sum(axis=1)
        session, pos = _ends(lengths)
        n = len(session)
        # Phase of each event: repeat the phase numbers by their counts, session by session.
        phase = np.repeat(np.tile(np.arange(N_PHASES), n_sessions), counts.ravel())
        flat = counts.ravel()
        block_start = (np.cumsum(flat) - flat).reshape(n_sessions, N_PHASES)
        in_phase = np.arange(n) - block_start[session, phase]
        # Time since the session's first event: the running sum of gaps (the first gap is 0).
        elapsed = np.cumsum(self.gaps)
        first = np.arange(n) - pos
        ts = self.session_start[session] + elapsed - elapsed[first]

        pid, price, pw = self._product_pool()
        self.pool_pid, self.pool_price, self.pool_w = pid, price, pw
        product = np.full(n, -1, dtype=np.int64)

        def draw(m: int) -> np.ndarray:
            return r.choice(len(pid), size=m, p=pw) if m and len(pid) else np.zeros(m, dtype=np.int64)

        # Order lines: distinct products per order where the catalogue allows.
        n_orders = self.spec.orders
        line_order, _ = _ends(self.k)
        line_product = draw(len(line_order))
        for _ in range(4):
            keyed = line_order * (len(pid) + 1) + line_product
            _, first = np.unique(keyed, return_index=True)
            dup = np.ones(len(keyed), dtype=bool)
            dup[first] = False
            if not dup.any() or len(pid) <= int(self.k.max(initial=1)):
                break
            line_product[dup] = draw(int(dup.sum()))
        self.line_order, self.line_product_row = line_order, line_product

        is_browse = phase == PH_BROWSE
        product[is_browse] = draw(int(is_browse.sum()))
        items = phase == PH_ITEMS
        line_start = np.concatenate(([0], np.cumsum(self.k)[:-1])) if n_orders else np.zeros(0, np.int64)
        product[items] = line_product[line_start[session[items]] + in_phase[items] // 2]
        cart = phase == PH_CART  # browsing carts take products viewed in the same session
        n_views = counts[session[cart], PH_BROWSE]
        product[cart] = product[block_start[session[cart], PH_BROWSE] + in_phase[cart] % np.maximum(n_views, 1)]
        addrm = phase == PH_ADD_REMOVE
        pair_product = draw(n_sessions)
        product[addrm] = pair_product[session[addrm]]
        remove = phase == PH_REMOVE
        product[remove] = product[block_start[session[remove], PH_CART]]

        etype = np.empty(n, dtype=object)
        etype[(phase == PH_LANDING) | (phase == PH_PAGES)] = "page_view"
        etype[phase == PH_SEARCH] = "search"
        etype[is_browse] = "product_view"
        etype[items] = np.where(in_phase[items] % 2 == 0, "product_view", "add_to_cart")
        etype[cart] = "add_to_cart"
        etype[addrm] = np.where(in_phase[addrm] == 0, "add_to_cart", "remove_from_cart")
        etype[remove] = "remove_from_cart"
        etype[phase == PH_CHECKOUT] = "checkout_start"
        etype[phase == PH_PURCHASE] = "purchase"

        self.event_phase, self.event_session, self.event_ts = phase, session, ts
        self.event_product_row = product
        self.event_type = etype
        self.n_events = n

    def _render_events(self, order_ids: np.ndarray) -> pd.DataFrame:
        r = self.rng.events
        n, session, phase = self.n_events, self.event_session, self.event_phase
        product_id = np.full(n, -1, dtype=np.int64)
        has_product = self.event_product_row >= 0
        product_id[has_product] = self.pool_pid[self.event_product_row[has_product]]
        url = np.empty(n, dtype=object)
        cats = np.array([c.name for c in CATEGORIES], dtype=object)
        landing = phase == PH_LANDING
        url[landing] = np.array(["/", "/deals", "/new"], dtype=object)[
            r.choice(3, int(landing.sum()), p=[0.6, 0.2, 0.2])
        ]
        pages = phase == PH_PAGES
        url[pages] = "/c/" + cats[r.integers(0, len(cats), int(pages.sum()))]
        search = phase == PH_SEARCH
        terms = self.pools.search_terms[r.integers(0, len(self.pools.search_terms), int(search.sum()))]
        url[search] = "/search?q=" + pd.Series(terms, dtype=object).str.replace(" ", "+").to_numpy(dtype=object)
        url[has_product] = "/p/" + product_id[has_product].astype(str).astype(object)
        url[self.event_type == "remove_from_cart"] = "/cart"
        url[phase == PH_CHECKOUT] = "/checkout"
        purchase = phase == PH_PURCHASE
        url[purchase] = "/checkout/confirmation?order_id=" + order_ids[session[purchase]].astype(str).astype(object)

        # Referrer: the channel's site on the first event, the previous page after that.
        first = np.ones(n, dtype=bool)
        first[1:] = session[1:] != session[:-1]
        referrer = np.empty(n, dtype=object)
        referrer[1:] = "https://shop.example.com" + url[:-1]
        channel = self.session_channel[session]
        for ch, sites in CHANNEL_REFERRERS.items():
            rows = np.flatnonzero(first & (channel == ch))
            pick = np.array(sites, dtype=object)[r.integers(0, len(sites), rows.size)]
            referrer[rows] = pick
        referrer[referrer == ""] = None

        customer = self.session_customer[session]
        start = self.state.next_ids["clickstream_events"]
        return pd.DataFrame(
            {
                "event_seq": np.arange(start, start + n, dtype=np.int64),
                "event_id": uuids(r, n),
                "visitor_id": self.session_visitor[session],
                "customer_id": pd.Series(customer, dtype="Int64").where(customer > 0),
                "event_type": self.event_type,
                "page_url": url,
                "product_id": pd.Series(product_id, dtype="Int64").where(has_product),
                "event_ts_us": self.event_ts,
                "device": self.session_device[session],
                "channel": channel,
                "referrer": referrer,
            }
        )

    # -- orders -------------------------------------------------------------------------------------
    def _build_orders(self) -> None:
        r = self.rng.orders
        n = self.spec.orders
        self.burned["orders"] = self._burn("orders", self.plan["order_items"]["orphan_order"], per_key=3)
        start = self.state.next_ids["orders"] + len(self.burned["orders"])
        order_ids = np.arange(start, start + n, dtype=np.int64)
        all_session_orders = np.full(len(self.session_counts), -1, dtype=np.int64)
        all_session_orders[:n] = order_ids
        events = self._render_events(all_session_orders)
        purchase_ts = self.event_ts[self.event_phase == PH_PURCHASE]  # purchase sessions come first, in order

        # Lines: the products added to the cart, at today's price, sometimes discounted.
        line_product = self.line_product_row
        qty = 1 + np.minimum(r.poisson(0.35, len(line_product)), 4)
        price = self.pool_price[line_product] if len(line_product) else np.zeros(0, np.int64)
        gross = qty * price
        discounted = r.random(len(line_product)) < 0.15
        pct = r.choice(np.array([5, 10, 15, 20]), size=len(line_product))
        discount = np.where(discounted, np.round(gross * pct / 100).astype(np.int64), 0)
        line_total = gross - discount
        totals = np.bincount(self.line_order, weights=line_total, minlength=n).astype(np.int64)
        item_start = self.state.next_ids["order_items"]
        self.items_df = pd.DataFrame(
            {
                "order_item_id": np.arange(item_start, item_start + len(line_product), dtype=np.int64),
                "order_id": order_ids[self.line_order],
                "product_id": self.pool_pid[line_product] if len(line_product) else np.zeros(0, np.int64),
                "quantity": qty.astype(np.int64),
                "unit_price": _dollars(price),
                "discount_amount": _dollars(discount),
            }
        )
        self.orders_df = pd.DataFrame(
            {
                "order_id": order_ids,
                "customer_id": self.session_customer[:n],
                "status": np.full(n, "placed", dtype=object),
                "order_ts": _us_to_datetime64(purchase_ts),
                "total_amount": _dollars(totals),
                "currency": np.full(n, CURRENCY, dtype=object),
                "payment_method": np.array(PAYMENT_METHODS, dtype=object)[
                    r.choice(len(PAYMENT_METHODS), n, p=PAYMENT_P)
                ],
                "visitor_id": self.session_visitor[:n],
            }
        )
        self.order_totals_cents = totals
        self.events_df = events

    # -- defects ------------------------------------------------------------------------------------
    def _event_defects(self) -> None:
        r, plan = self.rng.defects, self.plan["clickstream_events"]
        ev = self.events_df
        ts = ev.pop("event_ts_us").to_numpy(np.int64).copy()
        session = self.event_session
        # Only anonymous browsing sessions are shifted or broken, so funnels stay whole.
        anon = ~self.is_purchase & (self.session_customer < 0) & ~self.pre_signup
        candidates = r.permutation(np.flatnonzero(anon))
        lengths = self.session_counts.sum(axis=1)
        late_sessions = candidates[: int(np.searchsorted(np.cumsum(lengths[candidates]), plan["late_event"]))]
        if plan["late_event"] and late_sessions.size == 0 and candidates.size:
            late_sessions = candidates[:1]
        shift = (self.window_us + r.integers(1 * HOUR, 47 * HOUR, len(lengths))).astype(np.int64)
        is_late = np.isin(session, late_sessions)
        ts[is_late] -= shift[session[is_late]]
        self._defect("clickstream_events", ev["event_id"].to_numpy()[is_late], "late_event")

        pool = np.flatnonzero(anon[session] & ~is_late)
        future = r.permutation(pool)[: plan["future_timestamp"]]
        ts[future] = self.now_us + r.integers(1 * HOUR, 72 * HOUR, future.size)
        self._defect("clickstream_events", ev["event_id"].to_numpy()[future], "future_timestamp")

        ev["event_ts"] = _us_to_datetime64(ts)
        clean = np.ones(len(ev), dtype=bool)
        clean[future] = False
        clean[is_late] = False
        dup = r.permutation(np.flatnonzero(clean))[: plan["duplicate_event"]]
        dup.sort()
        copies = ev.iloc[dup].copy()
        if len(dup):
            copies["event_seq"] = ev["event_seq"].max() + 1 + np.arange(len(dup))
        self._defect("clickstream_events", copies["event_id"].to_numpy(), "duplicate_event")
        # The copies arrive later in the same batch: append them, keys continue the range.
        self.events_df = pd.concat([ev, copies], ignore_index=True)
        self.event_session = np.concatenate([session, session[dup]])

    def _item_defects(self) -> None:
        r, plan = self.rng.defects, self.plan["order_items"]
        n_orders = self.spec.orders
        kinds = ["zero_quantity", "negative_quantity", "orphan_order", "orphan_product"]
        n = sum(plan[k] for k in kinds)
        if n == 0:  # (no lines without orders, so n_orders > 0 and products exist below)
            self._order_defects()
            return
        kind = np.repeat(np.array(kinds, dtype=object), [plan[k] for k in kinds])
        prod_row = r.choice(len(self.pool_pid), size=n, p=self.pool_w)
        order_id = (
            self.orders_df["order_id"].to_numpy()[r.integers(0, n_orders, n)] if n_orders else np.zeros(n, np.int64)
        )
        qty = 1 + r.poisson(0.35, n)
        qty = np.where(kind == "zero_quantity", 0, qty)
        qty = np.where(kind == "negative_quantity", -r.integers(1, 4, n), qty)
        product_id = self.pool_pid[prod_row]
        orphan_o = kind == "orphan_order"
        orphan_p = kind == "orphan_product"
        if orphan_o.any():
            order_id[orphan_o] = r.choice(self.burned["orders"], int(orphan_o.sum()))
        if orphan_p.any():
            product_id[orphan_p] = r.choice(self.burned["products"], int(orphan_p.sum()))
        start = (
            int(self.items_df["order_item_id"].max()) + 1
            if len(self.items_df)
            else (self.state.next_ids["order_items"])
        )
        extra = pd.DataFrame(
            {
                "order_item_id": np.arange(start, start + n, dtype=np.int64),
                "order_id": order_id,
                "product_id": product_id,
                "quantity": qty.astype(np.int64),
                "unit_price": _dollars(self.pool_price[prod_row]),
                "discount_amount": np.zeros(n),
            }
        )
        # Extra lines land among the others (ordered by key, as a source would return them).
        self.items_df = pd.concat([self.items_df, extra], ignore_index=True)
        for k in kinds:
            self._defect("order_items", extra["order_item_id"].to_numpy()[kind == k], k)
        self._order_defects()

    def _order_defects(self) -> None:
        r, n = self.rng.defects, self.spec.orders
        m = min(self.plan["orders"]["total_mismatch"], n)
        rows = r.permutation(n)[:m]
        if m:
            totals = self.order_totals_cents[rows]
            off = np.maximum(np.round(totals * r.uniform(0.05, 0.4, m)).astype(np.int64), 100)
            sign = np.where(r.random(m) < 0.5, -1, 1)
            wrong = totals + sign * off
            self.orders_df.loc[rows, "total_amount"] = _dollars(wrong)
            self._defect("orders", self.orders_df["order_id"].to_numpy()[rows], "total_mismatch")
        # Products with a non-positive price are new ones that nothing in the batch references.
        price_rows = self._price_defect_rows()
        if price_rows.size:
            r2 = self.rng.defects
            bad = np.where(r2.random(price_rows.size) < 0.4, 0.0, -r2.integers(1, 5000, price_rows.size) / 100.0)
            self.products_df.loc[price_rows, "unit_price"] = bad
            self._defect("products", self.products_df["product_id"].to_numpy()[price_rows], "non_positive_price")

    def _customer_defects(self) -> None:
        r, plan = self.rng.defects, self.plan["customers"]
        df = self.customers_df
        rows = self.customer_reject_rows
        n_null = plan["null_email"]
        null_rows, bad_rows = rows[:n_null], rows[n_null:]
        df.loc[null_rows, "email"] = None
        df.loc[bad_rows, "email"] = dfx.malformed_emails(r, df["email"].to_numpy()[bad_rows])
        rest = self.customer_defect_order[len(rows) :]
        n_email, n_cc = plan["email_noise"], plan["country_code_noise"]
        email_rows, cc_rows = rest[:n_email], rest[n_email : n_email + n_cc]
        df.loc[email_rows, "email"] = dfx.noisy_emails(r, df["email"].to_numpy()[email_rows])
        df.loc[cc_rows, "country_code"] = dfx.noisy_country_codes(r, df["country_code"].to_numpy()[cc_rows])
        ids = df["customer_id"].to_numpy()
        for kind, chosen in (
            ("null_email", null_rows),
            ("malformed_email", bad_rows),
            ("email_noise", email_rows),
            ("country_code_noise", cc_rows),
        ):
            self._defect("customers", ids[chosen], kind)

    def _defect(self, table: str, keys: np.ndarray, kind: str) -> None:
        if len(keys):
            self.manifest.append(dfx.records(table, keys, kind))

    # -- updates of existing rows -----------------------------------------------------------------
    def _updates(self) -> dict[str, pd.DataFrame]:
        r, state, spec = self.rng.updates, self.state, self.spec
        cap = max(50, (spec.customers + spec.products + spec.orders) // 2)
        days = spec.window / timedelta(days=1)

        # Orders move one step along their flow, or stay (rates per simulated day).
        open_orders = state.open_orders
        u = r.random(len(open_orders))
        status = open_orders["status"].to_numpy(dtype=object)
        new_status = status.copy()
        for current, moves in ORDER_FLOW.items():
            here = status == current
            acc = 0.0
            for nxt, p in moves:
                p = per_window(p, days)
                new_status[here & (u >= acc) & (u < acc + p)] = nxt
                acc += p
        moved = new_status != status
        orders = pd.DataFrame(
            {"order_id": open_orders["order_id"].to_numpy(np.int64)[moved], "status": new_status[moved]}
        )

        # Some prices change by -15%..+20%, a few products are withdrawn.
        prods = state.products
        n_p = min(int(r.binomial(len(prods), per_window(PRICE_CHANGES_PER_DAY, days))) if len(prods) else 0, cap)
        rows = r.permutation(len(prods))[:n_p]
        old = prods["price_cents"].to_numpy(np.int64)[rows]
        new = np.maximum(np.round(old * r.uniform(0.85, 1.2, n_p) / 50).astype(np.int64) * 50 - 1, 99)
        products = pd.DataFrame(
            {
                "product_id": prods["product_id"].to_numpy(np.int64)[rows],
                "unit_price": _dollars(new),
                "is_active": r.random(n_p) >= 0.05,
            }
        )

        # Some customers move city, change phone, or change email provider.
        cust = state.customers
        n_c = min(int(r.binomial(len(cust), per_window(PROFILE_CHANGES_PER_DAY, days))) if len(cust) else 0, cap)
        rows = r.permutation(len(cust))[:n_c]
        codes = cust["country_code"].fillna("US").astype(str).str.strip().str.upper().to_numpy(dtype=object)[rows]
        code_idx = {c: i for i, c in enumerate(self.pools.country_codes)}
        cidx = np.array([code_idx.get(c, 0) for c in codes], dtype=np.int64)
        city, _ = pick_per_country(r, cidx, self.pools.cities)
        phone, _ = pick_per_country(r, cidx, self.pools.phones)
        stored = cust["email"].to_numpy(dtype=object)[rows]
        clean = pd.Series(stored, dtype=object).fillna("").astype(str).str.strip().str.lower().to_numpy(dtype=object)
        # Only clean addresses change provider, so a planted defect is never silently repaired.
        change_email = (r.random(n_c) < 0.3) & (clean == stored) & np.array(["@" in e for e in clean], dtype=bool)
        domain = self.pools.email_domains[r.integers(0, len(self.pools.email_domains), n_c)]
        new_email = np.array([e.split("@", 1)[0] for e in clean], dtype=object) + "@" + domain
        customers = pd.DataFrame(
            {
                "customer_id": cust["customer_id"].to_numpy(np.int64)[rows],
                "email": np.where(change_email, new_email, stored),
                "phone": phone,
                "city": city,
            }
        )
        return {"orders": orders, "products": products, "customers": customers}


def next_state(state: State, batch: Batch) -> State:
    """The state a database would be in after `batch` (what the sink would load next time).

    Pure: lets tests and dry runs chain batches without a database. Rows with a `reject`
    defect are left out, as `sinks.load_state` leaves them out.
    """
    rejected = batch.defects[batch.defects["kind"].isin(dfx.REJECT_KINDS)]

    def keep(table: str, df: pd.DataFrame) -> pd.DataFrame:
        bad = rejected.loc[rejected["table_name"] == table, "record_key"].astype(np.int64)
        return df[~df[PK[table]].isin(bad)]

    cust = keep("customers", batch.inserts["customers"])
    customers = pd.concat(
        [state.customers, cust[["customer_id", "visitor_id", "signup_at", "country_code", "email"]]],
        ignore_index=True,
    )
    upd = batch.updates["customers"].set_index("customer_id")
    if len(upd):
        idx = customers["customer_id"].isin(upd.index)
        customers.loc[idx, "email"] = upd.loc[customers.loc[idx, "customer_id"], "email"].to_numpy()
    prods = keep("products", batch.inserts["products"])
    products = pd.concat(
        [
            state.products,
            pd.DataFrame(
                {
                    "product_id": prods["product_id"],
                    "category": prods["category"],
                    "price_cents": np.round(prods["unit_price"].to_numpy() * 100).astype(np.int64),
                }
            ),
        ],
        ignore_index=True,
    )
    pu = batch.updates["products"]
    if len(pu):
        products = products.merge(pu, on="product_id", how="left")
        changed = products["unit_price"].notna()
        products.loc[changed, "price_cents"] = np.round(products.loc[changed, "unit_price"] * 100).astype(np.int64)
        products = products[products["is_active"].fillna(True).astype(bool)][["product_id", "category", "price_cents"]]
    orders = pd.concat(
        [state.open_orders, keep("orders", batch.inserts["orders"])[["order_id", "status"]]], ignore_index=True
    )
    ou = batch.updates["orders"].set_index("order_id")["status"]
    if len(ou):
        orders["status"] = orders["order_id"].map(ou).fillna(orders["status"])
    orders = orders[orders["status"].isin(OPEN_STATUSES)]
    next_ids = {t: state.next_ids[t] + batch.id_span(t) for t in TABLES}
    return State(
        customers=customers.reset_index(drop=True),
        products=products.reset_index(drop=True),
        open_orders=orders.reset_index(drop=True),
        next_ids=next_ids,
    )
