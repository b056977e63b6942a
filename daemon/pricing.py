"""Price one Claude API request from genai-prices' bundled snapshot, offline and fast.

Contract: `Pricer.price(...)` returns the same figure as `genai_prices.calc_price` (to float precision) for
the same request with `provider_id="anthropic"`, the same timestamp and, for fast mode, the same
`price_context`. It never raises for an unknown model (`Price(0.0, False)`, logged once) and never touches the
network (`update_prices` is never called).

Conventions worth knowing (read from genai-prices 0.2.x `types.py`, `data_units.py` and the Anthropic
usage extractor in `data.py`):

- Token counts are Anthropic's: `input_tokens` EXCLUDES cache tokens. genai-prices' `Usage.input_tokens` is
  the parent unit and INCLUDES them (its extractor sums input + cache_creation + cache_read), and
  `cache_write_tokens` includes both TTLs. `genai_usage()` does that conversion.
- Each of input, 5-minute cache write, 1-hour cache write, cache read and output has its own rate. A model
  that lacks a specific rate bills those tokens at the nearest priced parent (1h write -> cache write ->
  input), exactly as genai-prices' leaf decomposition does.
- Long-context tiers are cliffs: when the request's whole prompt (input + cache writes + cache reads) is
  strictly above a tier's start, that tier's rate applies to EVERY token of the request, output included.
- Prices change over time (in the 0.2.3 snapshot the Opus/Sonnet 4.6 200k tier ends on 2026-03-13 and
  batch variants start later), so rates are chosen for the request time `at` (default: now), with genai-prices' own constraints.
- Fast mode: genai-prices models it as a price variant selected by `price_context={"speed": "fast"}` (today
  on Opus 4.8, Opus 5, Opus 5.5, Fable 5.2 and Mythos 5.2). `speed` is passed through as that context; a
  model with no fast variant (e.g. claude-opus-4-6 in this snapshot) is priced at its standard rates, as
  genai-prices does, and that is logged once per model.

Performance: each (model, speed) is resolved once; the rates active for a given set of date constraints are cached,
so a call is a dict lookup plus six multiplications (about 1 µs, against ~70 µs for `calc_price`).
A model whose prices use units this fast path does not model falls back to `calc_price` per request.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from functools import cache
from typing import Any

import genai_prices
from genai_prices import Usage
from genai_prices.data_snapshot import DataSnapshot, get_snapshot
from genai_prices.types import ModelInfo, ModelPrice, Provider, TieredPrices

log = logging.getLogger(__name__)

PROVIDER_ID = "anthropic"

# Components in the order of `_Rates` vectors: (price keys, most specific first; units per price).
_COMPONENTS: tuple[tuple[tuple[str, ...], int], ...] = (
    (("input_mtok",), 1_000_000),
    (("cache_write_5m_mtok", "cache_write_mtok", "input_mtok"), 1_000_000),
    (("cache_write_1h_mtok", "cache_write_mtok", "input_mtok"), 1_000_000),
    (("cache_read_mtok", "input_mtok"), 1_000_000),
    (("output_mtok",), 1_000_000),
    (("requests_kcount",), 1_000),  # a per-request fee, if a model ever has one; the count is always 1
)
_MODELLED_KEYS = frozenset(key for keys, _ in _COMPONENTS for key in keys)


@dataclass(frozen=True, slots=True)
class Price:
    """The cost of one request. `priced` is False (and `cost_usd` 0.0) when the model has no known price."""

    cost_usd: float
    priced: bool


UNPRICED = Price(0.0, False)

# USD per million tokens (per million requests for the last): dividing the sum once keeps round figures exact.
Rates = tuple[float, float, float, float, float, float]
_MILLION = Decimal(1_000_000)


def genai_usage(input_tokens: int, output_tokens: int, cache_write_5m: int, cache_write_1h: int,
                cache_read: int) -> Usage:
    """Anthropic API counts as a genai-prices `Usage` (whose `input_tokens` includes all cache tokens)."""
    return Usage(
        input_tokens=input_tokens + cache_write_5m + cache_write_1h + cache_read,
        cache_write_tokens=cache_write_5m + cache_write_1h,
        cache_write_5m_tokens=cache_write_5m,
        cache_write_1h_tokens=cache_write_1h,
        cache_read_tokens=cache_read,
        output_tokens=output_tokens,
    )


def _rate_at(price: Decimal | TieredPrices | None, prompt_tokens: int) -> Decimal:
    """genai-prices' tier rule: the highest tier whose start is strictly below the prompt size, else base."""
    if price is None:
        return Decimal(0)
    if isinstance(price, TieredPrices):
        for tier in reversed(price.tiers):
            if prompt_tokens > tier.start:
                return tier.price
        return price.base
    return price


@dataclass(frozen=True, slots=True)
class _Rates:
    """Rates (see `Rates`) of one resolved `ModelPrice`: `base`, overridden by the first band whose start
    (descending) is strictly below the prompt size."""

    base: Rates
    bands: tuple[tuple[int, Rates], ...]

    @classmethod
    def of(cls, model_price: ModelPrice) -> _Rates | None:
        """The rates, or None when the price uses token or request units the fast path does not model."""
        keys = {k for k, v in model_price.__dict__.items() if v is not None and not k.startswith("_")}
        if any(k not in _MODELLED_KEYS and (k.endswith("_mtok") or k.startswith("requests")) for k in keys):
            return None
        chosen = [(next((getattr(model_price, k) for k in ks if getattr(model_price, k) is not None), None), per)
                  for ks, per in _COMPONENTS]
        starts = sorted({t.start for p, _ in chosen if isinstance(p, TieredPrices) for t in p.tiers}, reverse=True)

        def vector(prompt_tokens: int) -> Rates:
            return tuple(float(_rate_at(p, prompt_tokens) * _MILLION / per)  # type: ignore[return-value]
                         for p, per in chosen)

        return cls(vector(0), tuple((s, vector(s + 1)) for s in starts))


@dataclass(slots=True)
class _Entry:
    """One resolved (model, speed): the genai-prices model and the rates per set of active constraints."""

    model: ModelInfo
    provider: Provider
    context: Mapping[str, str] | None
    constraints: tuple[Any, ...]  # StartDateConstraint | TimeOfDateConstraint; their .active(at) picks the rates
    rates: dict[tuple[bool, ...], _Rates | None] = field(default_factory=dict)


class Pricer:
    """Prices requests; resolves each (model, speed) once and caches per-token rates.

    Not locked: concurrent use from threads is safe under the GIL (a race only resolves a key twice).
    """

    def __init__(self, snapshot: DataSnapshot | None = None) -> None:
        self._snapshot = snapshot or get_snapshot()
        self._entries: dict[tuple[str, str | None], _Entry | None] = {}
        self._warned: set[str] = set()

    def snapshot_version(self) -> str:
        """The genai-prices version whose bundled prices are used; re-price stored rows when it changes."""
        return genai_prices.__version__

    def price(self, model: str, input_tokens: int, output_tokens: int, cache_write_5m: int,
              cache_write_1h: int, cache_read: int, speed: str | None = None,
              at: datetime | None = None) -> Price:
        """The cost of one request. Counts are Anthropic's (non-negative; `input_tokens` excludes cache
        tokens). `speed` is the request's speed ("fast" selects fast-mode prices where genai-prices has them);
        `at` is the request time (aware, or naive UTC; default now) and selects prices in force then."""
        try:
            entry = self._entries[(model, speed)]
        except KeyError:
            entry = self._entries[(model, speed)] = self._resolve(model, speed)
        if entry is None:
            return UNPRICED
        if entry.constraints:
            if at is None:
                at = datetime.now(timezone.utc)
            key = tuple([c.active(at) for c in entry.constraints])
        else:
            key = ()
        try:
            rates = entry.rates[key]
        except KeyError:
            prices = entry.model.get_prices(at or datetime.now(timezone.utc), entry.context)
            rates = entry.rates[key] = _Rates.of(prices)
        if rates is None:  # slow path, exact by construction
            usage = genai_usage(input_tokens, output_tokens, cache_write_5m, cache_write_1h, cache_read)
            try:
                calc = entry.model.calc_price(usage, entry.provider, genai_request_timestamp=at,
                                              price_context=entry.context)
            except ValueError as exc:  # price data genai-prices itself cannot apply to this usage
                self._warn_once(model, "genai-prices cannot price model %r (%s); recorded unpriced", model, exc)
                return UNPRICED
            return Price(float(calc.total_price), True)
        prompt = input_tokens + cache_write_5m + cache_write_1h + cache_read
        r = rates.base
        for start, band in rates.bands:
            if prompt > start:
                r = band
                break
        return Price((input_tokens * r[0] + cache_write_5m * r[1] + cache_write_1h * r[2] + cache_read * r[3]
                      + output_tokens * r[4] + r[5]) / 1_000_000, True)

    def _resolve(self, model: str, speed: str | None) -> _Entry | None:
        try:
            provider, info = self._snapshot.find_provider_model(model, None, PROVIDER_ID, None)
        except LookupError:
            self._warn_once(model, "no price for model %r in genai-prices %s; its requests are recorded unpriced",
                            model, self.snapshot_version())
            return None
        # genai-prices ignores the context for a model borrowed from a fallback provider; so do we.
        context = {"speed": speed} if speed and any(info is m for m in provider.models) else None
        variants = [v for v in info.price_variants or () if context and v.when.items() <= context.items()]
        if speed and speed != "standard" and not variants:
            log.info("genai-prices has no %r price for model %r; priced at standard rates", speed, model)
        conditional = info.prices if isinstance(info.prices, list) else []
        constraints = tuple(x.constraint for x in [*conditional, *variants] if x.constraint is not None)
        return _Entry(info, provider, context, constraints)

    def _warn_once(self, model: str, msg: str, *args: object) -> None:
        if model not in self._warned:
            self._warned.add(model)
            log.warning(msg, *args)


@cache
def default_pricer() -> Pricer:
    """The process-wide `Pricer` over the bundled snapshot."""
    return Pricer()
