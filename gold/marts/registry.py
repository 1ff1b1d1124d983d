"""Every mart as a recipe: its contract, its full build, its incremental scope and recomputation.

The full build and the recomputation call the same pure transform, so a mart is defined once;
`gold.job` only chooses the path and does the I/O. A mart may read marts built before it in
the same run (`upstream`: customer_360 reads gold.sessions), given as they were just written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

from pyspark.sql import DataFrame

from gold.marts import customer_360, daily_sales, product_performance, scope, sessions
from gold.marts.contract import Mart
from gold.marts.scope import Changes, Materialize, SilverState

AsOf = datetime | date | None
# mart name → its rows as this run wrote them (build, recompute), or the row images of its
# change data feed since the version the reading mart read last (scope)
Upstream = dict[str, DataFrame]


@dataclass(frozen=True)
class Recipe:
    mart: Mart
    # (state, as-of, upstream marts): the whole mart.
    build: Callable[[SilverState, AsOf, Upstream], DataFrame]
    # (changes, old state, new state, upstream marts' change feeds): the gold scope keys the
    # changes touch.
    scope: Callable[[Changes, SilverState, SilverState, Upstream], DataFrame]
    # (state, scope keys, as-of, materialize, upstream marts): the scope's rows, from the mart's own transform.
    recompute: Callable[[SilverState, DataFrame, AsOf, Materialize, Upstream], DataFrame]
    # Re-derives stored rows for a new as-of date (marts with as-of columns only).
    refresh_as_of: Callable[[DataFrame, AsOf], DataFrame] | None = None
    # Marts this one reads: built before it in the same run.
    upstream: tuple[str, ...] = ()
    # (changes): scope keys known from the change feed alone, a part of the scope; when they
    # are already too many (`gold.job.too_wide`), the mart rebuilds without computing the scope.
    scope_floor: Callable[[Changes], DataFrame] | None = None


RECIPES: dict[str, Recipe] = {
    r.mart.name: r
    for r in (
        Recipe(
            customer_360.MART,
            build=lambda s, as_of, up: customer_360.build_customer_360(
                s.customers, s.orders, s.order_items, s.products, up["sessions"], as_of
            ),
            scope=lambda changes, old, new, up: scope.customer_360_scope(changes, new, up["sessions"]),
            recompute=lambda s, keys, as_of, materialize, up: scope.recompute_customer_360(
                s, keys, as_of, up["sessions"]
            ),
            refresh_as_of=customer_360.refresh_as_of,
            upstream=("sessions",),
        ),
        Recipe(
            sessions.MART,
            build=lambda s, as_of, up: sessions.build_sessions(s.clickstream_events, s.customers, s.products),
            scope=lambda changes, old, new, up: scope.sessions_scope(changes, new),
            recompute=lambda s, keys, as_of, materialize, up: scope.recompute_sessions(s, keys, materialize),
        ),
        Recipe(
            daily_sales.MART,
            build=lambda s, as_of, up: daily_sales.build_daily_sales(s.orders, s.order_items, s.products),
            scope=lambda changes, old, new, up: scope.daily_sales_scope(changes, old, new),
            recompute=lambda s, keys, as_of, materialize, up: scope.recompute_daily_sales(s, keys),
            scope_floor=scope.daily_sales_scope_floor,
        ),
        Recipe(
            product_performance.MART,
            build=lambda s, as_of, up: product_performance.build_product_performance(
                s.clickstream_events, s.orders, s.order_items
            ),
            scope=lambda changes, old, new, up: scope.product_performance_scope(changes, new),
            recompute=lambda s, keys, as_of, materialize, up: scope.recompute_product_performance(s, keys),
        ),
    )
}
MARTS: dict[str, Mart] = {name: r.mart for name, r in RECIPES.items()}
