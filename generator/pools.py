"""Pre-generated Faker value pools and the shop's static catalogue.

Faker costs tens of microseconds per value, so it is called a few thousand times, once per
process, to fill pools (names, cities, phones per country; words for products and
searches); the simulation then samples pool indices with numpy. The pools are seeded with
a fixed seed, so they are the same in every process and a batch depends only on its own
seed.
"""

from __future__ import annotations

import json
import os
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

POOL_SEED = 20_240_601

# country code → (Faker locale, share of customers)
COUNTRIES: dict[str, tuple[str, float]] = {
    "US": ("en_US", 0.30),
    "GB": ("en_GB", 0.10),
    "DE": ("de_DE", 0.12),
    "FR": ("fr_FR", 0.09),
    "ES": ("es_ES", 0.06),
    "IT": ("it_IT", 0.06),
    "NL": ("nl_NL", 0.04),
    "PL": ("pl_PL", 0.04),
    "SE": ("sv_SE", 0.03),
    "CA": ("en_CA", 0.05),
    "AU": ("en_AU", 0.04),
    "BR": ("pt_BR", 0.04),
    "IN": ("en_IN", 0.03),
}


@dataclass(frozen=True)
class Category:
    """A catalogue category: its log-normal price (median, spread) and its product nouns."""

    name: str
    code: str
    median_price: float
    sigma: float
    share: float
    nouns: tuple[str, ...]


CATEGORIES: tuple[Category, ...] = (
    Category(
        "electronics",
        "ELE",
        180.0,
        0.8,
        0.14,
        ("Headphones", "Speaker", "Charger", "Monitor", "Keyboard", "Tablet", "Camera", "Smartwatch"),
    ),
    Category("books", "BOO", 14.0, 0.45, 0.12, ("Novel", "Cookbook", "Atlas", "Biography", "Guide", "Anthology")),
    Category(
        "clothing", "CLO", 35.0, 0.6, 0.16, ("T-Shirt", "Jacket", "Sweater", "Jeans", "Dress", "Scarf", "Sneakers")
    ),
    Category("home", "HOM", 45.0, 0.7, 0.12, ("Lamp", "Cushion", "Rug", "Vase", "Blanket", "Mirror", "Shelf")),
    Category("beauty", "BEA", 22.0, 0.55, 0.09, ("Serum", "Lipstick", "Shampoo", "Perfume", "Cream", "Mascara")),
    Category("sports", "SPO", 60.0, 0.75, 0.09, ("Yoga Mat", "Dumbbell", "Racket", "Bottle", "Backpack", "Helmet")),
    Category("toys", "TOY", 28.0, 0.6, 0.08, ("Puzzle", "Robot", "Doll", "Board Game", "Kite", "Blocks")),
    Category("grocery", "GRO", 7.5, 0.5, 0.10, ("Coffee", "Tea", "Olive Oil", "Chocolate", "Pasta", "Honey")),
    Category("garden", "GAR", 38.0, 0.7, 0.05, ("Planter", "Hose", "Shears", "Seeds", "Lantern", "Bench")),
    Category("jewelry", "JEW", 95.0, 0.9, 0.05, ("Ring", "Necklace", "Bracelet", "Earrings", "Watch", "Brooch")),
)

ADJECTIVES = (
    "Classic", "Premium", "Compact", "Eco", "Deluxe", "Smart", "Vintage", "Urban", "Essential",
    "Pro", "Soft", "Bold", "Light", "Travel", "Everyday", "Signature", "Organic", "Modern",
)  # fmt: skip

DEVICES = ("desktop", "mobile", "tablet")
DEVICE_P = (0.38, 0.55, 0.07)
CHANNELS = ("organic", "paid_search", "social", "email", "direct", "referral")
CHANNEL_P = (0.30, 0.22, 0.16, 0.10, 0.16, 0.06)
CHANNEL_REFERRERS: dict[str, tuple[str, ...]] = {
    "organic": ("https://www.google.com/", "https://www.bing.com/", "https://duckduckgo.com/"),
    "paid_search": ("https://www.google.com/aclk", "https://www.bing.com/aclick"),
    "social": ("https://www.instagram.com/", "https://www.facebook.com/", "https://www.tiktok.com/"),
    "email": ("https://mail.google.com/", "https://outlook.live.com/"),
    "direct": ("",),
    "referral": ("https://www.reddit.com/", "https://blog.example.org/", "https://news.ycombinator.com/"),
}
PAYMENT_METHODS = ("card", "paypal", "apple_pay", "bank_transfer", "gift_card")
PAYMENT_P = (0.58, 0.21, 0.09, 0.07, 0.05)
CURRENCY = "USD"

_TRANSLIT = str.maketrans({"ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "ß": "ss", "æ": "ae", "Æ": "AE", "đ": "d"})


def ascii_slug(text: str) -> str:
    """Lower-case ASCII letters only: 'Łukasz Müller-O'Brien' → 'lukaszmullerobrien'."""
    folded = unicodedata.normalize("NFKD", text.translate(_TRANSLIT))
    return "".join(ch for ch in folded.lower() if "a" <= ch <= "z")


@dataclass(frozen=True)
class Pools:
    """Value pools per country (index-aligned with `country_codes`) and shared word pools."""

    country_codes: np.ndarray  # (C,) str
    country_p: np.ndarray  # (C,) float, sums to 1
    first_names: tuple[np.ndarray, ...]  # per country
    last_names: tuple[np.ndarray, ...]
    email_first: tuple[np.ndarray, ...]  # ASCII slugs aligned with first_names
    email_last: tuple[np.ndarray, ...]
    cities: tuple[np.ndarray, ...]
    phones: tuple[np.ndarray, ...]
    email_domains: np.ndarray
    brands: np.ndarray
    colors: np.ndarray
    search_terms: np.ndarray


def _unique(values: list[str], size: int) -> np.ndarray:
    seen = list(dict.fromkeys(v for v in values if v))
    return np.array(seen[:size] or ["x"], dtype=object)


def _cache_file(sizes: int) -> Path:
    from importlib.metadata import version

    from core.settings import project_dir

    return project_dir() / ".cache" / "generator" / f"pools-faker{version('faker')}-{POOL_SEED}-{sizes}.json"


@lru_cache(maxsize=1)
def build_pools(sizes: int = 120) -> Pools:
    """The pools: read from the cache file, else made with Faker (about a second) and cached.

    The cache is plain JSON keyed by the Faker version, the pool seed and the sizes, so it
    always holds what Faker would make; a missing or unreadable file is simply rebuilt.
    """
    path = _cache_file(sizes)
    try:
        return _from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    pools = _make_pools(sizes)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(_to_json(pools), ensure_ascii=False), encoding="utf-8")
        tmp.replace(path)
    except OSError:
        pass  # a read-only checkout just rebuilds the pools each time
    return pools


_PER_COUNTRY = ("first_names", "last_names", "email_first", "email_last", "cities", "phones")
_SHARED = ("country_codes", "email_domains", "brands", "colors", "search_terms")


def _to_json(pools: Pools) -> dict[str, object]:
    out: dict[str, object] = {k: [list(a) for a in getattr(pools, k)] for k in _PER_COUNTRY}
    out.update({k: list(getattr(pools, k)) for k in _SHARED})
    out["country_p"] = pools.country_p.tolist()
    return out


def _from_json(data: dict[str, list]) -> Pools:
    kwargs: dict[str, object] = {k: tuple(np.array(a, dtype=object) for a in data[k]) for k in _PER_COUNTRY}
    kwargs.update({k: np.array(data[k], dtype=object) for k in _SHARED})
    kwargs["country_p"] = np.array(data["country_p"], dtype=float)
    if list(kwargs["country_codes"]) != list(COUNTRIES):  # type: ignore[call-overload]
        raise ValueError("cached pools are for other countries")
    return Pools(**kwargs)  # type: ignore[arg-type]


def _make_pools(sizes: int) -> Pools:
    from faker import Faker

    firsts, lasts, efirsts, elasts, cities, phones = [], [], [], [], [], []
    for i, (_, (locale, _)) in enumerate(COUNTRIES.items()):
        fake = Faker(locale)
        fake.seed_instance(POOL_SEED + i)
        f = _unique([fake.first_name() for _ in range(sizes)], sizes)
        la = _unique([fake.last_name() for _ in range(sizes)], sizes)
        firsts.append(f)
        lasts.append(la)
        efirsts.append(np.array([ascii_slug(x) or "user" for x in f], dtype=object))
        elasts.append(np.array([ascii_slug(x) or "shop" for x in la], dtype=object))
        cities.append(_unique([fake.city() for _ in range(sizes // 2)], sizes // 2))
        phones.append(_unique([fake.phone_number() for _ in range(sizes // 2)], sizes // 2))
    fake = Faker("en_US")
    fake.seed_instance(POOL_SEED)
    domains = _unique([fake.free_email_domain() for _ in range(60)], 20)
    brands = _unique([fake.last_name() for _ in range(200)], 80)
    colors = _unique([fake.safe_color_name().title() for _ in range(100)], 30)
    words = [*ADJECTIVES, *(n for c in CATEGORIES for n in c.nouns), *(c.name for c in CATEGORIES)]
    terms = _unique(
        [f"{fake.random_element(colors)} {fake.random_element(words)}".lower() for _ in range(400)]
        + [w.lower() for w in words],
        400,
    )
    p = np.array([share for _, share in COUNTRIES.values()])
    return Pools(
        country_codes=np.array(list(COUNTRIES), dtype=object),
        country_p=p / p.sum(),
        first_names=tuple(firsts),
        last_names=tuple(lasts),
        email_first=tuple(efirsts),
        email_last=tuple(elasts),
        cities=tuple(cities),
        phones=tuple(phones),
        email_domains=domains,
        brands=brands,
        colors=colors,
        search_terms=terms,
    )


def pick_per_country(
    rng: np.random.Generator, country_idx: np.ndarray, pools: tuple[np.ndarray, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """For each row, a random value from its country's pool; also the chosen index."""
    out = np.empty(len(country_idx), dtype=object)
    idx = np.zeros(len(country_idx), dtype=np.int64)
    for c, pool in enumerate(pools):
        rows = np.flatnonzero(country_idx == c)
        if rows.size:
            idx[rows] = rng.integers(0, len(pool), rows.size)
            out[rows] = pool[idx[rows]]
    return out, idx
