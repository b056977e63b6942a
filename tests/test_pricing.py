"""daemon.pricing must agree with genai_prices.calc_price, request by request, without the network.

The oracles here build genai-prices' usage independently of the module: by hand (genai-prices'
`input_tokens` includes cache reads and writes) and through genai-prices' own Anthropic response extractor.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from decimal import Decimal

import genai_prices
import pytest
from genai_prices import Usage, calc_price, extract_usage
from genai_prices.data_snapshot import DataSnapshot, get_snapshot
from genai_prices.types import ClauseEquals, ModelInfo, ModelPrice, Provider

from daemon.pricing import UNPRICED, Price, Pricer, default_pricer

UTC = timezone.utc
BEFORE_TIER_END = datetime(2026, 1, 5, 12, tzinfo=UTC)  # Opus/Sonnet 4.6 still have the 200k tier
AFTER_TIER_END = datetime(2026, 4, 1, tzinfo=UTC)  # 4.6 flat; batch variants not yet started
LATE = datetime(2026, 11, 1, tzinfo=UTC)  # after every dated change in the snapshot
DATES = (BEFORE_TIER_END, AFTER_TIER_END, LATE)

MODELS = (
    "claude-opus-4-6", "claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001", "claude-opus-4-1-20250805",
    "claude-opus-4-5-20251101", "claude-sonnet-4-6", "claude-opus-4-7", "claude-sonnet-5", "claude-opus-5",
    "claude-opus-4-8", "claude-haiku-5-5", "claude-3-5-haiku-20241022", "claude-2.1",
)

# (input, output, cache_write_5m, cache_write_1h, cache_read) in Anthropic's convention.
USAGES = (
    (0, 0, 0, 0, 0),
    (3, 250, 0, 0, 0),
    (1234, 400, 500, 200, 30_000),  # mixed, 1h writes included
    (10, 90, 0, 12_000, 0),  # 1h writes only
    (2, 1500, 1000, 0, 199_000),  # prompt 200_002: above 200k only because of cache tokens
    (100_000, 5000, 60_000, 40_000, 0),  # prompt exactly 200_000: not above the tier
    (150_000, 2000, 30_000, 20_000, 50_000),  # prompt 250_000
    (900_000, 32_000, 0, 0, 0),
)


def by_hand(i: int, o: int, w5: int, w1: int, r: int) -> Usage:
    return Usage(input_tokens=i + w5 + w1 + r, output_tokens=o, cache_read_tokens=r,
                 cache_write_tokens=w5 + w1, cache_write_5m_tokens=w5, cache_write_1h_tokens=w1)


def oracle(model: str, counts: tuple[int, int, int, int, int], speed: str | None, at: datetime) -> float:
    context = {"speed": speed} if speed else None
    expected = calc_price(by_hand(*counts), model, provider_id="anthropic", genai_request_timestamp=at,
                          price_context=context).total_price
    i, o, w5, w1, r = counts
    response = {"model": model, "usage": {
        "input_tokens": i, "output_tokens": o, "cache_read_input_tokens": r,
        "cache_creation_input_tokens": w5 + w1,
        "cache_creation": {"ephemeral_5m_input_tokens": w5, "ephemeral_1h_input_tokens": w1}}}
    extracted = extract_usage(response, provider_id="anthropic").calc_price(
        genai_request_timestamp=at, price_context=context).total_price
    assert extracted == expected  # our by-hand Usage matches genai-prices' own reading of an API response
    return float(expected)


def close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b)) + 1e-15


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("speed", [None, "fast"])
def test_matches_calc_price(model: str, speed: str | None) -> None:
    pricer = Pricer()
    for at in DATES:
        for counts in USAGES:
            got = pricer.price(model, *counts, speed=speed, at=at)
            assert got.priced
            assert close(got.cost_usd, oracle(model, counts, speed, at)), (model, counts, speed, at, got)


def test_every_anthropic_model_in_snapshot_matches() -> None:
    pricer = Pricer()
    provider = next(p for p in get_snapshot().providers if p.id == "anthropic")
    for info in provider.models:
        for at in DATES:
            for speed in (None, "fast"):
                for counts in USAGES[2], USAGES[6]:
                    got = pricer.price(info.id, *counts, speed=speed, at=at)
                    assert close(got.cost_usd, oracle(info.id, counts, speed, at)), (info.id, counts, speed, at)


def test_known_figures_from_snapshot() -> None:
    pricer = Pricer()
    info = get_snapshot().find_provider_model("claude-sonnet-4-5", None, "anthropic", None)[1]
    rates = info.get_prices(LATE)
    assert rates.input_mtok.base == Decimal("3") and rates.input_mtok.tiers[0].start == 200_000
    assert rates.input_mtok.tiers[0].price == Decimal("6")
    # 200k input tokens (not above the threshold) cost $3/MTok; 1M is above it and costs $6/MTok for all of it.
    assert pricer.price("claude-sonnet-4-5", 200_000, 0, 0, 0, 0, at=LATE) == Price(0.6, True)
    assert pricer.price("claude-sonnet-4-5", 1_000_000, 0, 0, 0, 0, at=LATE) == Price(6.0, True)
    assert pricer.price("claude-sonnet-4-5", 0, 1_000_000, 0, 0, 0, at=LATE) == Price(15.0, True)


def test_tier_applies_to_whole_request_and_counts_cache_tokens() -> None:
    pricer = Pricer()
    at = LATE
    below = pricer.price("claude-sonnet-4-5", 1, 1_000_000, 0, 0, 199_999, at=at).cost_usd
    above = pricer.price("claude-sonnet-4-5", 2, 1_000_000, 0, 0, 199_999, at=at).cost_usd
    assert close(below, 15.0 + 199_999 * 0.3e-6 + 1 * 3e-6)
    assert close(above, 22.5 + 199_999 * 0.6e-6 + 2 * 6e-6)


def test_rates_follow_request_date() -> None:
    pricer = Pricer()
    before = pricer.price("claude-opus-4-6", 300_000, 0, 0, 0, 0, at=BEFORE_TIER_END)
    after = pricer.price("claude-opus-4-6", 300_000, 0, 0, 0, 0, at=AFTER_TIER_END)
    assert (before.cost_usd, after.cost_usd) == (3.0, 1.5)
    naive = pricer.price("claude-opus-4-6", 300_000, 0, 0, 0, 0, at=datetime(2026, 1, 5))  # naive means UTC
    assert naive == before
    now = pricer.price("claude-opus-4-6", 300_000, 0, 0, 0, 0)
    assert close(now.cost_usd, float(calc_price(by_hand(300_000, 0, 0, 0, 0), "claude-opus-4-6",
                                                provider_id="anthropic").total_price))


def test_fast_mode() -> None:
    pricer = Pricer()
    standard = pricer.price("claude-opus-5", 1000, 1000, 1000, 1000, 1000, at=LATE).cost_usd
    assert close(pricer.price("claude-opus-5", 1000, 1000, 1000, 1000, 1000, speed="fast", at=LATE).cost_usd,
                 2 * standard)
    # No fast variant for Opus 4.6 in this snapshot: standard rates, like calc_price.
    assert pricer.price("claude-opus-4-6", 1000, 0, 0, 0, 0, speed="fast", at=LATE) == Price(0.005, True)
    assert pricer.price("claude-opus-5", 1000, 0, 0, 0, 0, speed="standard", at=LATE) == Price(0.005, True)


@pytest.mark.parametrize("model", ["kimi-for-coding", "<synthetic>", "anthropic/claude-sonnet-4-5", ""])
def test_unknown_models_are_unpriced_and_logged_once(model: str, caplog: pytest.LogCaptureFixture) -> None:
    pricer = Pricer()
    with caplog.at_level(logging.WARNING, logger="daemon.pricing"):
        for speed in (None, "fast"):
            for _ in range(3):
                assert pricer.price(model, 10, 10, 10, 10, 10, speed=speed) == UNPRICED
    assert UNPRICED == Price(0.0, False)
    assert [r.getMessage().count(repr(model)) for r in caplog.records] == [1]
    with pytest.raises(LookupError):
        calc_price(by_hand(10, 10, 10, 10, 10), model, provider_id="anthropic")


def test_zero_usage_is_priced_zero() -> None:
    assert Pricer().price("claude-opus-4-6", 0, 0, 0, 0, 0) == Price(0.0, True)


def test_each_model_and_speed_resolved_once(monkeypatch: pytest.MonkeyPatch) -> None:
    pricer = Pricer()
    calls: list[str] = []
    real = pricer._snapshot.find_provider_model

    def spy(model_ref: str, *args: object) -> object:
        calls.append(model_ref)
        return real(model_ref, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(pricer._snapshot, "find_provider_model", spy)
    for _ in range(50):
        pricer.price("claude-opus-4-6", 5, 5, 5, 5, 5, at=LATE)
        pricer.price("claude-opus-4-6", 5, 5, 5, 5, 5, speed="fast", at=LATE)
        pricer.price("<synthetic>", 0, 0, 0, 0, 0)
    assert sorted(calls) == ["<synthetic>", "claude-opus-4-6", "claude-opus-4-6"]


def test_units_outside_the_fast_path_fall_back_to_calc_price() -> None:
    def model(model_id: str, prices: ModelPrice) -> ModelInfo:
        return ModelInfo(id=model_id, match=ClauseEquals(equals=model_id), prices=prices)

    provider = Provider(id="anthropic", name="Anthropic", api_pattern="", models=[
        model("claude-fee", ModelPrice(input_mtok=Decimal("3"), output_mtok=Decimal("15"),
                                       requests_kcount=Decimal("2"))),
        model("claude-audio", ModelPrice(input_mtok=Decimal("3"), output_mtok=Decimal("15"),
                                         input_audio_mtok=Decimal("7"))),
    ])
    snapshot = DataSnapshot(providers=[provider], from_auto_update=False)
    pricer = Pricer(snapshot)
    for model_id in ("claude-fee", "claude-audio"):
        for counts in USAGES:
            expected = snapshot.calc(by_hand(*counts), model_id, "anthropic", None, LATE).total_price
            got = pricer.price(model_id, *counts, at=LATE)
            assert got.priced and close(got.cost_usd, float(expected)), (model_id, counts)
    assert pricer.price("claude-fee", 0, 0, 0, 0, 0) == Price(0.002, True)


def test_default_pricer_and_version() -> None:
    assert default_pricer() is default_pricer()
    assert default_pricer().snapshot_version() == genai_prices.__version__


def test_snapshot_models_take_the_arithmetic_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every Anthropic model is priced by cached rates, never by a per-request calc_price (the slow fallback)."""
    pricer = Pricer()
    provider = next(p for p in get_snapshot().providers if p.id == "anthropic")

    def fail(*args: object, **kwargs: object) -> object:
        raise AssertionError("calc_price called per request")

    monkeypatch.setattr(ModelInfo, "calc_price", fail)
    for info in provider.models:
        for at in DATES:
            for speed in (None, "fast"):
                assert pricer.price(info.id, *USAGES[6], speed=speed, at=at).priced
