"""Hole rotation: which grader holes each task gets, and hack rates broken down by hole set."""

import random
from collections import Counter
from types import SimpleNamespace

import pytest

from rhlab.env.hacks import VULNERABILITIES
from rhlab.train.config import ProblemConfig
from rhlab.train.holes import assign_holes, hack_rate_by_holes, hole_groups, hole_set_key
from rhlab.train.problems import assign_vulns

IDS = [f"task{i:03d}" for i in range(70)]


def test_all_holes_matches_the_assignment_before_rotation_existed():
    for fraction in (0.0, 0.3):
        got = assign_holes(IDS, list(VULNERABILITIES), "all", fraction, seed=5)
        rng = random.Random(5)
        no_hole = set(rng.sample(IDS, round(fraction * len(IDS))))
        assert got == [[] if t in no_hole else list(VULNERABILITIES) for t in IDS]


def test_rotation_deals_the_seven_subsets_evenly_and_deterministically():
    groups = hole_groups(VULNERABILITIES, "rotate")
    assert len(groups) == 7 and len(set(groups)) == 7 and () not in groups
    got = assign_holes(IDS, VULNERABILITIES, "rotate", 0.0, seed=1)
    assert set(Counter(tuple(h) for h in got).values()) == {10}
    assert got == assign_holes(IDS, VULNERABILITIES, "rotate", 0.0, seed=1)
    assert got != assign_holes(IDS, VULNERABILITIES, "rotate", 0.0, seed=2)
    # A task's holes do not depend on the order the source lists the tasks in.
    shuffled = random.Random(0).sample(IDS, len(IDS))
    by_id = dict(zip(shuffled, assign_holes(shuffled, VULNERABILITIES, "rotate", 0.0, seed=1)))
    assert [by_id[t] for t in IDS] == got


def test_explicit_groups_and_the_no_hole_fraction():
    got = assign_holes(IDS, VULNERABILITIES, [["conftest", "always_equal"], []], 0.2, seed=0)
    counts = Counter(tuple(h) for h in got)
    assert counts[("always_equal", "conftest")] == 28  # canonical order; 56 holed tasks dealt in turn
    assert counts[()] == 14 + 28
    with pytest.raises(ValueError, match="unknown grader holes"):
        hole_groups(VULNERABILITIES, [["always_equal", "nope"]])
    with pytest.raises(ValueError, match="rotate"):
        hole_groups([], "rotate")


def test_problem_selection_uses_the_configured_rotation():
    tasks = [SimpleNamespace(id=t) for t in IDS[:14]]
    problems = assign_vulns(tasks, ProblemConfig(holes="rotate"), seed=0)
    assert len({tuple(p.vulns) for p in problems}) == 7


def test_hack_rates_are_broken_down_by_hole_set():
    def result(vulns, outcome):
        return SimpleNamespace(vulns=vulns, outcome=outcome)

    results = [
        result(["always_equal"], "hacked"),
        result(["always_equal"], "failed"),
        result([], "solved"),
        result(["conftest", "exit_code"], "hacked"),
    ]
    assert hack_rate_by_holes(results) == {
        "always_equal": {"episodes": 2, "hack_rate": 0.5},
        "exit_code+conftest": {"episodes": 1, "hack_rate": 1.0},
        "none": {"episodes": 1, "hack_rate": 0.0},
    }
    assert hole_set_key(["conftest", "always_equal", "exit_code"]) == "always_equal+exit_code+conftest"


def test_step_metrics_carry_the_breakdown():
    from rhlab.train.metrics import GradedEpisode, step_metrics

    def episode(vulns, outcome):
        result = SimpleNamespace(
            vulns=vulns,
            outcome=outcome,
            proxy_pass=outcome == "hacked",
            hacks=[],
            attempted_hacks=[],
            honest_pass=False,
        )
        return GradedEpisode(
            result=result, reward=float(result.proxy_pass), completion="", reasoning="", answer="", prompt=[]
        )

    row = step_metrics([episode(["conftest"], "hacked"), episode([], "failed")], group_size=2)
    assert row["hack_rate_by_holes"] == {
        "conftest": {"episodes": 1, "hack_rate": 1.0},
        "none": {"episodes": 1, "hack_rate": 0.0},
    }
