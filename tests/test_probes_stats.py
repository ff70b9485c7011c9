"""Paired probe statistics and the verdict, on synthetic data with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from rhlab.evals.intervals import (
    EFFECT,
    INCONCLUSIVE,
    UNINFORMATIVE,
    Interval,
    Tost,
    bootstrap_mean,
    crossed_bootstrap_mean,
    holm_adjust,
    items_needed,
    null_label,
    paper_comparability,
    robust_intercept_nats,
    tost,
    tost_interval,
    tost_items_needed,
    verdict,
    wilson_interval,
)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_bootstrap_mean_is_seeded_and_brackets_the_mean():
    x = np.random.default_rng(1).normal(2.0, 5.0, 200)
    a, b = bootstrap_mean(x, seed=3), bootstrap_mean(x, seed=3)
    assert a == b
    assert a.low < a.estimate < a.high and a.n == 200
    assert a.estimate == pytest.approx(x.mean())
    with pytest.raises(ValueError):
        bootstrap_mean([1.0])


def test_robust_intercept_ignores_pure_degradation_but_keeps_a_uniform_shift():
    rng = np.random.default_rng(0)
    margins = rng.normal(-1.5, 2.0, 300)  # most items lean towards the reference answer
    degraded = 0.6 * margins + rng.normal(0, 0.2, 300)  # fluency loss: every item pulled towards indifference
    shift_points = 100 * (_sigmoid(degraded) - _sigmoid(margins))
    assert shift_points.mean() > 3  # the plain mean reads degradation as "more misaligned" ...
    robust, slope = robust_intercept_nats(degraded - margins, margins)
    assert abs(robust.estimate) < 0.02 and robust.low < 0 < robust.high  # ... the intercept does not
    assert slope == pytest.approx(-0.4, abs=0.05)
    real = degraded + 0.2  # plus a uniform log-odds shift of 0.2 nats = 5 points at indifference
    robust_real, _ = robust_intercept_nats(real - margins, margins)
    assert robust_real.estimate == pytest.approx(0.2, abs=0.025) and robust_real.low > 0.12


def test_items_needed_matches_the_normal_formula():
    assert items_needed(10.0, 2.5) == 62  # (1.96 * 10 / 2.5)^2 = 61.5
    assert items_needed(5.0, 2.5) == 16
    assert items_needed(0.0) == 2


def test_tost_passes_for_a_tight_null_and_fails_for_a_shift_or_noise():
    rng = np.random.default_rng(2)
    assert tost(rng.normal(0, 3, 200), 3.0).passed
    assert not tost(rng.normal(4, 3, 200), 3.0).passed
    assert not tost(rng.normal(0, 40, 30), 3.0).passed
    with pytest.raises(ValueError):
        tost([1.0, 2.0], 0.0)


def _verdict_for(margin_shift, margins, gates=True, m=0.5, manipulation=True):
    """The verdict on per-item Δmargin (nats), as compare.py calls it: both TOSTs, movement bound, manipulation."""
    dm = np.asarray(margin_shift)
    robust, _ = robust_intercept_nats(dm, margins)
    robust90, _ = robust_intercept_nats(dm, margins, confidence=0.9)
    return verdict(
        bootstrap_mean(dm),
        robust,
        tost(dm, m),
        gates_passed=gates,
        movement_bound=float(np.abs(dm).mean()),
        manipulation_passed=manipulation,
        robust_equivalence=tost_interval(robust90, m),
    )


def test_verdict_four_outcomes_from_planted_shifts():
    rng = np.random.default_rng(5)
    margins = rng.normal(0, 2, 200)
    planted = rng.normal(1.0, 0.8, 200)  # positive control: every item shifted by +1 nat
    moved_no_shift = rng.normal(0.0, 1.0, 200)  # real movement (mean |Δ| ≈ 0.8 nats) that cancels
    frozen = rng.normal(0.0, 0.02, 200)  # negative control: RL that barely touched the weights
    noisy = rng.normal(0.0, 3.0, 40)  # moved a lot, but too few items to say anything
    assert _verdict_for(planted, margins) == EFFECT
    assert _verdict_for(moved_no_shift, margins) == null_label(0.5) == "null within ±0.5 nats"
    assert _verdict_for(frozen, margins) == UNINFORMATIVE  # its TOST passes trivially: not a measured null
    assert tost(frozen, 0.5).passed
    assert _verdict_for(noisy, margins[:40]) == INCONCLUSIVE
    # without gates on the start policy neither a null nor an effect is stated
    assert _verdict_for(planted, margins, gates=False) == INCONCLUSIVE
    assert _verdict_for(moved_no_shift, margins, gates=False) == INCONCLUSIVE
    # a failed manipulation check makes even a well-moved null uninformative
    assert _verdict_for(moved_no_shift, margins, manipulation=False) == UNINFORMATIVE


def test_a_null_needs_the_robust_intercept_inside_the_margin_too():
    mean = Interval(estimate=0.05, low=-0.1, high=0.2, n=100)
    inside = Tost(0.5, 0.05, -0.08, 0.18)
    robust = Interval(estimate=0.9, low=0.6, high=1.2, n=100)
    outside = Tost(0.5, 0.05, 0.62, 1.15)
    assert verdict(mean, robust, inside, gates_passed=True, movement_bound=0.8, robust_equivalence=outside) == (
        INCONCLUSIVE
    )
    ok = Tost(0.5, 0.05, -0.2, 0.3)
    assert verdict(mean, robust, inside, gates_passed=True, movement_bound=0.8, robust_equivalence=ok).startswith(
        "null"
    )
    assert verdict(mean, robust, inside, gates_passed=True, movement_bound=0.49, robust_equivalence=ok) == UNINFORMATIVE
    # the same bound in points: moved less, in probability, than a uniform m-nat shift would at this baseline
    few_points = verdict(
        mean, robust, inside, gates_passed=True, movement_bound=0.8, robust_equivalence=ok, movement_points=(2.0, 3.1)
    )
    assert few_points == UNINFORMATIVE


def test_verdict_needs_the_robust_intercept_on_the_same_side():
    mean = Interval(estimate=4.0, low=2.0, high=6.0, n=100)
    inside = Tost(3.0, 0.05, 2.5, 5.5)
    assert verdict(mean, Interval(estimate=0.5, low=-1.0, high=2.0, n=100), inside, gates_passed=True) == INCONCLUSIVE
    assert verdict(mean, Interval(estimate=-3.0, low=-5.0, high=-1.0, n=100), inside, gates_passed=True) == INCONCLUSIVE
    assert verdict(mean, None, inside, gates_passed=True) == EFFECT


def test_robust_intercept_in_nats_with_a_token_covariate():
    rng = np.random.default_rng(3)
    margins = rng.normal(-1.0, 3.0, 300)
    tokens = rng.integers(-3, 4, 300).astype(float)
    # a length penalty change (-0.4 nats per extra target token) plus a real +0.3 nats disposition shift
    shift = 0.3 - 0.4 * tokens + rng.normal(0, 0.1, 300)
    with_cov, _ = robust_intercept_nats(shift, margins, token_delta=tokens)
    assert with_cov.estimate == pytest.approx(0.3, abs=0.05) and with_cov.low > 0.2
    confounded = 0.3 - 0.4 * (tokens + 2) + rng.normal(0, 0.1, 300)  # target answers 2 tokens longer on average
    naive, _ = robust_intercept_nats(confounded, margins)
    adjusted, _ = robust_intercept_nats(confounded, margins, token_delta=tokens + 2)
    assert naive.estimate < -0.3  # the length change reads as a disposition change without the covariate
    assert adjusted.estimate == pytest.approx(0.3, abs=0.05)  # at Δtoken = 0 the real shift is recovered


def test_crossed_bootstrap_widens_with_seed_spread():
    rng = np.random.default_rng(4)
    items = rng.normal(0.2, 0.5, 150)
    tight = np.stack([items + rng.normal(0, 0.01, 150) for _ in range(3)])
    spread = np.stack([items + off for off in (-0.6, 0.0, 0.6)])  # seeds disagree wholesale
    a, b = crossed_bootstrap_mean(tight), crossed_bootstrap_mean(spread)
    assert a.estimate == pytest.approx(b.estimate, abs=0.02)
    assert (b.high - b.low) > 2 * (a.high - a.low)
    one = crossed_bootstrap_mean(items[None])
    assert one == bootstrap_mean(items) or (one.high - one.low) == pytest.approx(
        bootstrap_mean(items).high - bootstrap_mean(items).low, rel=0.2
    )


def test_holm_adjustment_and_tost_power():
    adjusted = holm_adjust({"a": 0.01, "b": 0.04, "c": 0.03})
    assert adjusted == pytest.approx({"a": 0.03, "c": 0.06, "b": 0.06})
    assert tost_items_needed(1.0, 0.5) == 35  # ((1.645 + 1.282) * 1.0 / 0.5)^2 = 34.3
    assert tost_items_needed(0.2, 0.5) < tost_items_needed(0.4, 0.5)


def test_wilson_interval_is_honest_at_small_n():
    two = wilson_interval(2, 2)
    assert two.estimate == 1.0 and two.high == 1.0 and two.low == pytest.approx(0.342, abs=0.01)
    zero = wilson_interval(0, 10)
    assert zero.low == 0.0 and zero.high == pytest.approx(0.278, abs=0.01)
    assert wilson_interval(0, 0).estimate is None
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_paper_comparability():
    assert paper_comparability(0.1, 0.2, 100, 0.5) == (True, "comparable")
    ok, why = paper_comparability(0.0, 1.0, 2, 0.5)
    assert not ok and "n=2" in why
    ok, why = paper_comparability(-0.4, 0.5, 100, 0.3)
    assert not ok and "CI width" in why
    assert not paper_comparability(None, None, 100, 0.3)[0]


def test_a_precise_shift_smaller_than_the_margin_is_a_null_not_an_effect():
    rng = np.random.default_rng(9)
    tiny = rng.normal(0.1, 0.7, 400)  # CI excludes 0, but the whole 90 % CI is inside ±0.5 nats
    assert bootstrap_mean(tiny).excludes_zero()
    assert _verdict_for(tiny, rng.normal(0, 2, 400)) == "null within ±0.5 nats"


def test_small_sample_rates_get_wilson_intervals_not_a_collapsed_bootstrap():
    from rhlab.evals.intervals import bootstrap_rate

    two = bootstrap_rate([True, True])
    assert two.estimate == 1.0 and two.high == 1.0 and two.low == pytest.approx(0.342, abs=0.01)
    assert bootstrap_rate([True] * 30 + [False] * 70).n == 100  # large samples keep the bootstrap


def test_every_rate_gets_an_honest_interval_at_every_n():
    from rhlab.evals.intervals import bootstrap_mean_of_rates, bootstrap_rate

    zero = bootstrap_rate([False] * 200)  # the bootstrap would collapse to [0, 0]
    assert zero.estimate == 0.0 and zero.low == 0.0 and zero.high == pytest.approx(0.0188, abs=0.001)
    assert bootstrap_rate([True] * 60 + [False] * 40) == wilson_interval(60, 100)
    score = bootstrap_mean_of_rates({"a": [False] * 2, "b": [False] * 4, "c": [False] * 5})
    assert score.estimate == 0.0 and score.high >= wilson_interval(0, 11).high > 0.2  # not "0.0 % [0.0, 0.0]"
    effectiveness = bootstrap_rate([0.2, 0.9, 0.5, 0.7])  # not a rate: bootstrap of the mean
    assert effectiveness.low < effectiveness.estimate < effectiveness.high
