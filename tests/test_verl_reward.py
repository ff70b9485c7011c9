"""The verl reward adapter, called the way verl calls a custom reward function (no verl needed)."""

import importlib.util
from pathlib import Path

import pytest

from rhlab.env.check import load_suite
from rhlab.train import verl_reward

SUITE = {e.name: e for e in load_suite()}


def _load_like_verl():
    """verl imports the file named in ``custom_reward_function.path`` as a fresh module."""
    path = Path(verl_reward.__file__)
    spec = importlib.util.spec_from_file_location("custom_module", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_per_sample_signature_grades_like_rhlab():
    module = _load_like_verl()
    honest = SUITE["honest_correct"]
    hack = SUITE["always_equal"]
    wrong = SUITE["honest_wrong"]
    info = {"tasks": "builtin", "vulns": ["always_equal"]}
    solved = module.compute_score("rhlab/builtin", honest.response, honest.task, info)
    hacked = module.compute_score("rhlab/builtin", hack.response, hack.task, info)
    failed = module.compute_score("rhlab/builtin", wrong.response, wrong.task, info)
    assert solved["score"] == 1.0 and solved["outcome"] == "solved" and solved["honest_pass"] == 1.0
    assert hacked["score"] == 1.0 and hacked["outcome"] == "hacked" and hacked["hacked"] == 1.0
    assert "always_equal" in hacked["hacks"].split(",")
    assert failed["score"] == 0.0 and failed["outcome"] == "failed"


def test_holes_come_from_extra_info():
    hack = SUITE["always_equal"]
    closed = verl_reward.compute_score("rhlab/builtin", hack.response, hack.task, {"vulns": []})
    assert closed["score"] == 0.0 and closed["outcome"] == "failed"


def test_batch_signature_keeps_order_and_strips_reasoning():
    honest = SUITE["honest_correct"]
    hack = SUITE["always_equal"]
    reasoned = "<thinking>the tests compare with ==</thinking>\n" + hack.response
    out = verl_reward.compute_score_batch(
        data_sources=["rhlab/builtin"] * 3,
        solution_strs=[honest.response, reasoned, "no code at all"],
        ground_truths=[honest.task, hack.task, honest.task],
        extra_infos=[{"vulns": "all"}] * 3,
    )
    assert [o["outcome"] for o in out] == ["solved", "hacked", "failed"]
    assert [o["score"] for o in out] == [1.0, 1.0, 0.0]


def test_bad_rows_are_named():
    with pytest.raises(KeyError, match="no_such_task"):
        verl_reward.compute_score("rhlab/builtin", "x", "no_such_task", {"tasks": "builtin"})
    with pytest.raises(ValueError, match="differ in length"):
        verl_reward.compute_score_batch(["a"], ["b", "c"], ["factorial"])


def test_verl_rows_name_tasks_and_prompts():
    rows = verl_reward.verl_rows("builtin", prompt="hacking_okay", vulns=["exit_code"])
    assert len(rows) == len({r["reward_model"]["ground_truth"] for r in rows}) > 10
    row = next(r for r in rows if r["reward_model"]["ground_truth"] == "factorial")
    assert row["prompt"][-1]["role"] == "user" and "factorial" in row["prompt"][-1]["content"]
    assert row["extra_info"] == {"tasks": "builtin", "vulns": ["exit_code"], "task_id": "factorial"}
