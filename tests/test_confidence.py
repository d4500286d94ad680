"""The confidence bounds behind the performance verdict, on timings drawn to sit at each edge.

Every draw is seeded: a test that depends on chance must not itself flap.
"""

from __future__ import annotations

import random

import pytest

from pytest_dbgate.performance.confidence import MIN_ROUNDS, from_summaries, independent, paired


def noisy(rng: random.Random, ms: float, n: int, spread: float = 0.3) -> list[float]:
    """``n`` runs around ``ms``, log-normal, with the odd run a neighbour disturbed (x3)."""
    runs = [ms * rng.lognormvariate(0, spread) for _ in range(n)]
    for i in rng.sample(range(n), k=max(1, n // 10)):
        runs[i] *= 3
    return runs


def test_an_unchanged_query_is_never_bounded_above_the_allowance() -> None:
    rng = random.Random(1)
    lowers = []
    for _ in range(200):
        before, after = noisy(rng, 0.5, 30), noisy(rng, 0.5, 30)
        ratio = paired(before, after)
        lowers.append(ratio.lower)
        assert ratio.lower < ratio.estimate
    # Chance alone: the lower bound sits below 1 about 95 % of the time, never above 1.2.
    assert max(lowers) < 1.2
    assert sum(lower > 1 for lower in lowers) <= 200 * 0.1


def test_a_slowdown_of_twice_the_allowance_clears_the_bound_from_few_rounds() -> None:
    rng = random.Random(2)
    # 5 % noise per run, and one run in ten disturbed threefold, on either side.
    before = noisy(rng, 1.0, 10, spread=0.05)
    after = [b * 1.5 for b in noisy(rng, 1.0, 10, spread=0.05)]
    assert paired(before, after).lower > 1.2


def test_pairing_cancels_noise_that_falls_on_both_sides_of_a_round() -> None:
    # Each round's load (the machine's, varying widely) multiplies both sides alike.
    rng = random.Random(3)
    load = [rng.lognormvariate(0, 1) for _ in range(20)]
    before = [0.5 * f for f in load]
    after = [0.65 * f for f in load]
    assert paired(before, after).lower == pytest.approx(1.3)
    # Unpaired, the same numbers say far less.
    assert independent(before, after).lower < 1.2


def test_independent_samples_give_the_ratio_of_medians() -> None:
    ratio = independent([1.0, 1.0, 1.1, 0.9, 1.0], [3.0, 3.1, 2.9, 3.0, 3.0])
    assert ratio.estimate == pytest.approx(3.0)
    assert 2.5 < ratio.lower <= 3.0


def test_summaries_bound_the_ratio_of_means() -> None:
    tight = from_summaries(1.0, 0.05, 50, 2.0, 0.1, 50)
    assert tight.estimate == pytest.approx(2.0)
    assert 1.9 < tight.lower < 2.0
    loose = from_summaries(1.0, 2.0, 5, 2.0, 4.0, 5)
    assert loose.lower < 1.2  # a mean from five scattered calls proves little


def test_too_few_rounds_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        paired([1.0] * (MIN_ROUNDS - 1), [2.0] * (MIN_ROUNDS - 1))
    with pytest.raises(ValueError, match="at least 3"):
        independent([1.0] * 5, [1.0] * 2)


def test_zero_timings_do_not_divide_by_zero() -> None:
    assert paired([0.0] * 5, [0.0] * 5).estimate == pytest.approx(1.0)


def test_the_same_timings_give_the_same_bound() -> None:
    rng = random.Random(4)
    before, after = noisy(rng, 1, 30), noisy(rng, 1, 30)
    assert paired(before, after) == paired(before, after)
