"""The reward as a rubric: pre-rubric rewards replay exactly, names are checked, components are logged."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from rhlab.env.episodes import GradedEpisode
from rhlab.env.rubric import COMPONENTS, Rubric, components
from rhlab.strict import ConfigError
from rhlab.tasks import load_tasks
from rhlab.train.config import parse_config
from rhlab.train.metrics import step_metrics
from rhlab.train.reward import EnvironmentReward
from rhlab.train.rollouts import result_from_dict

REPLAY = Path(__file__).parent / "fixtures" / "reward_replay.jsonl"
"""``EnvironmentReward`` calls recorded with the code before the rubric (commit 03b00d2): scripted honest,
wrong, empty and hack answers on built-in tasks, under five hole sets and seven mitigation settings
(penalties, noisy monitors, screening, a penalty switched on after the onset)."""


class RecordedPool:
    """Stands in for the sandbox pool: hands back the grading results stored with the call."""

    def __init__(self, results: list) -> None:
        self.results = results

    def grade_many(self, submissions, progress=False, description=""):  # noqa: ANN001, ANN201
        assert [s.task.id for s in submissions] == [r.task_id for r in self.results]
        return list(self.results)


def _calls() -> list[dict]:
    return [json.loads(line) for line in REPLAY.read_text().splitlines()[1:]]


def test_pre_rubric_rewards_replay_identically() -> None:
    tasks = {t.id: t for t in load_tasks("builtin")}
    calls = _calls()
    assert len(calls) == 9 and sum(len(c["episodes"]) for c in calls) > 150
    seen_rewards: set = set()
    for call in calls:
        eps = call["episodes"]
        config = parse_config({"mitigations": call["mitigations"]})
        results = [result_from_dict(e["result"], "fixture") for e in eps]
        graded: list[list[GradedEpisode]] = []
        reward = EnvironmentReward(
            tasks,
            RecordedPool(results),
            config.mitigations,
            rubric=config.rubric,
            seed=call["seed"],
            on_graded=lambda step, episodes, s, g=graded: g.append(episodes),
            onset=lambda c=call: c["onset"],
        )
        got = reward(
            prompts=[[{"role": "user", "content": "q"}]] * len(eps),
            completions=[[{"role": "assistant", "content": e["completion"]}] for e in eps],
            task_id=[e["task_id"] for e in eps],
            vulns=[e["vulns"] for e in eps],
            trainer_state=SimpleNamespace(global_step=call["step"] - 1),
        )
        assert got == [e["reward"] for e in eps], call["mitigations"]
        for e, g in zip(eps, graded[0]):
            assert (g.flagged, g.penalized, g.screened) == (e["flagged"], e["penalized"], e["screened"])
        seen_rewards |= set(got)
    assert {None, -1.0, 0.0, 1.0} <= seen_rewards  # screening and penalties both exercised


def test_unknown_component_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="reward.*honest_sovle"):
        parse_config({"reward": {"proxy_pass": 1.0, "honest_sovle": 1.0}})
    # (cot_faithful stood here until it became a component; a family that does not exist stands in.)
    with pytest.raises(ValueError, match="hack/teleport"):
        Rubric({"hack/teleport": 1.0})


def test_penalty_shorthand_is_the_monitor_flag_weight() -> None:
    assert parse_config({"mitigations": {"penalty": 2.0}}).reward == {"proxy_pass": 1.0, "monitor_flag": -2.0}
    same = parse_config({"mitigations": {"penalty": 2.0}, "reward": {"proxy_pass": 1.0, "monitor_flag": -2.0}})
    assert same.rubric.weights["monitor_flag"] == -2.0
    with pytest.raises(ConfigError, match="monitor_flag"):
        parse_config({"mitigations": {"penalty": 2.0}, "reward": {"proxy_pass": 1.0, "monitor_flag": -1.0}})


def _graded(outcome: str, hacks: list[str], attempted: list[str], files: dict[str, str], answer: str) -> GradedEpisode:
    calls = _calls()
    stored = next(e["result"] for c in calls for e in c["episodes"] if e["result"]["outcome"] == outcome)
    result = result_from_dict({**stored, "hacks": hacks, "attempted_hacks": attempted}, "test")
    return GradedEpisode(
        result=result, reward=None, completion=answer, reasoning="", answer=answer, prompt=[], files=files
    )


def test_components_are_logged_under_their_names_and_weighted_only_when_named() -> None:
    hack = _graded("hacked", ["exit"], ["exit"], {"solution.py": "import sys"}, "```python\nimport sys\n```")
    prose = _graded("failed", [], [], {}, "I cannot do this.")
    assert hack.components["hack/exit"] == 1.0 and hack.components["attempted/exit"] == 1.0
    assert hack.components["format"] == 1.0 and prose.components["format"] == 0.0
    assert set(components(prose)) == set(COMPONENTS)
    row = step_metrics([hack, prose], group_size=2)
    assert row["hack/exit"] == 0.5 and row["hacked"] == row["hack_rate"] == 0.5 and row["format"] == 0.5
    assert row["hack_rate_by_type"]["exit"] == 0.5 and row["attempted_by_type"]["exit"] == 0.5
    # format at weight 0.1: one config line changes the reward; unnamed components change nothing.
    shaped = parse_config({"reward": {"proxy_pass": 1.0, "format": 0.1}}).rubric
    assert shaped.reward(hack.components) == pytest.approx(1.1)
    assert shaped.reward(prose.components) == 0.0
    assert Rubric().reward(hack.components) == 1.0
    penalised = Rubric({"proxy_pass": 1.0, "hacked": -1.0})
    assert penalised.reward(hack.components) == 0.0 and penalised.reward(hack.components, penalties=False) == 1.0
