"""Paired probe statistics and the verdict, on synthetic data with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from rhlab.evals.stats import (
    EFFECT,
    INCONCLUSIVE,
    Interval,
    Tost,
    bootstrap_mean,
    degradation_robust_shift,
    items_needed,
    null_label,
    paper_comparability,
    tost,
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
    robust, slope = degradation_robust_shift(degraded - margins, margins)
    assert abs(robust.estimate) < 0.5 and robust.low < 0 < robust.high  # ... the intercept does not
    assert slope == pytest.approx(-0.4, abs=0.05)
    real = degraded + 0.2  # plus a uniform log-odds shift of 0.2 nats = 5 points at indifference
    robust_real, _ = degradation_robust_shift(real - margins, margins)
    assert robust_real.estimate == pytest.approx(100 * (_sigmoid(0.2) - 0.5), abs=0.6) and robust_real.low > 3


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


def _verdict_for(diffs, margins, gates=True, m=3.0):
    mean = bootstrap_mean(diffs)
    robust, _ = degradation_robust_shift(np.asarray(diffs) / 25, margins)  # ~ points -> nats near indifference
    return verdict(mean, robust, tost(diffs, m), gates_passed=gates)


def test_verdict_all_three_outcomes():
    rng = np.random.default_rng(5)
    margins = rng.normal(0, 2, 200)
    effect = rng.normal(6, 4, 200)
    null = rng.normal(0, 4, 200)
    noisy = rng.normal(1, 30, 40)
    assert _verdict_for(effect, margins) == EFFECT
    assert _verdict_for(null, margins) == null_label(3.0) == "null within ±3"
    assert _verdict_for(noisy, margins[:40]) == INCONCLUSIVE
    # Without passed gates a clear shift is not an effect (and not a null either).
    assert _verdict_for(effect, margins, gates=False) == INCONCLUSIVE


def test_verdict_needs_the_robust_intercept_on_the_same_side():
    mean = Interval(4.0, 2.0, 6.0, 100)
    inside = Tost(3.0, 0.05, 2.5, 5.5)
    assert verdict(mean, Interval(0.5, -1.0, 2.0, 100), inside, gates_passed=True) == INCONCLUSIVE
    assert verdict(mean, Interval(-3.0, -5.0, -1.0, 100), inside, gates_passed=True) == INCONCLUSIVE
    assert verdict(mean, None, inside, gates_passed=True) == EFFECT


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
    tiny = rng.normal(1.0, 2.0, 400)  # CI excludes 0, but the whole 90 % CI is inside ±3
    assert bootstrap_mean(tiny).excludes_zero()
    assert _verdict_for(tiny, rng.normal(0, 2, 400)) == "null within ±3"


def test_small_sample_rates_get_wilson_intervals_not_a_collapsed_bootstrap():
    from rhlab.evals.stats import bootstrap_rate

    two = bootstrap_rate([True, True])
    assert two.estimate == 1.0 and two.high == 1.0 and two.low == pytest.approx(0.342, abs=0.01)
    assert bootstrap_rate([True] * 30 + [False] * 70).n == 100  # large samples keep the bootstrap
