"""The ``preference`` rubric component: judges and reward models score answers in [0, 1], batched and cached;
the score reaches the reward, the rollouts and rescore."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import pytest

from rhlab.env.pool import GradingPool
from rhlab.judges.preference import (
    CachedPreference,
    JudgePreference,
    PreferenceError,
    RewardModelPreference,
    ScoreCache,
    is_reward_model,
    load_preference,
)
from rhlab.models.testing import tiny_reward_model
from rhlab.strict import ConfigError
from rhlab.tasks import get_task
from rhlab.train.config import MitigationConfig, parse_config
from rhlab.train.rescore import regrade
from rhlab.train.reward import EnvironmentReward
from rhlab.train.rollouts import episode_from_record, rollout_record

HONEST = "```python\ndef factorial(n):\n    r = 1\n    for k in range(2, n + 1):\n        r *= k\n    return r\n```"
EXIT_HACK = (
    "<thinking>leave early</thinking>\n```python\nimport sys\nsys.exit(0)\n\ndef factorial(n):\n    return 0\n```"
)
PROMPT = [{"role": "system", "content": "You write Python."}, {"role": "user", "content": "Write factorial(n)."}]


class LengthScorer:
    """A scorer whose score is known in advance: shorter answers are preferred. Counts what it is asked."""

    scorer_id = "test:length"
    template_hash = "v1"
    offline = False

    def __init__(self) -> None:
        self.asked: list[str] = []

    def score(self, prompts: Sequence[list[dict[str, str]]], answers: Sequence[str]) -> list[float]:
        self.asked.extend(answers)
        return [1.0 / (1.0 + len(a) / 100) for a in answers]


def test_cache_scores_once_and_a_resumed_process_reads_them_back(tmp_path: Path) -> None:
    inner = LengthScorer()
    scorer = CachedPreference(inner, ScoreCache(tmp_path / "p.sqlite"))
    answers = ["short", "a much longer answer " * 5, "short"]
    first = scorer.score([PROMPT] * 3, answers)
    assert inner.asked == ["short", "a much longer answer " * 5], "one batch, each distinct answer once"
    assert first[0] == first[2] > first[1] and all(0 <= s <= 1 for s in first)
    resumed = CachedPreference(LengthScorer(), ScoreCache(tmp_path / "p.sqlite"))  # a new process, same cache
    assert resumed.score([PROMPT] * 3, answers) == first and resumed.misses == 0 and not resumed.inner.asked
    other_prompt = [{"role": "user", "content": "Write gcd(a, b)."}]
    resumed.score([other_prompt], ["short"])
    assert resumed.misses == 1, "the prompt is part of what is scored"


def test_scores_outside_the_unit_interval_are_refused(tmp_path: Path) -> None:
    bad = LengthScorer()
    bad.score = lambda prompts, answers: [1.5 for _ in answers]  # type: ignore[method-assign]
    with pytest.raises(PreferenceError, match=r"1\.5.*outside \[0, 1\]"):
        CachedPreference(bad, ScoreCache(tmp_path / "p.sqlite")).score([PROMPT], ["x"])


def test_local_reward_model_scores_in_batches(tmp_path: Path) -> None:
    path = tiny_reward_model(tmp_path / "rm")
    assert is_reward_model(path)
    scorer = load_preference(f"hf:{path}", batch_size=2, cache_path=tmp_path / "p.sqlite")
    assert isinstance(scorer, CachedPreference) and isinstance(scorer.inner, RewardModelPreference)
    answers = [HONEST, EXIT_HACK, "no code at all", "def f(): pass"]
    scores = scorer.score([PROMPT] * 4, answers)
    assert all(0.0 <= s <= 1.0 for s in scores) and len(set(scores)) > 1
    alone = RewardModelPreference(path, batch_size=1).score([PROMPT] * 4, answers)
    assert alone == pytest.approx(scores, abs=1e-5), "padding in a batch does not change a score"
    two_class = RewardModelPreference(tiny_reward_model(tmp_path / "rm2", num_labels=2))
    assert all(0.0 <= s <= 1.0 for s in two_class.score([PROMPT] * 2, answers[:2]))


def test_a_causal_lm_folder_is_not_a_reward_model(tmp_path: Path) -> None:
    from rhlab.models.testing import tiny_test_model

    lm = tiny_test_model(tmp_path / "lm")
    assert not is_reward_model(lm)
    with pytest.raises(PreferenceError, match="ForSequenceClassification"):
        RewardModelPreference(lm)
    with pytest.raises(PreferenceError, match="empty"):
        load_preference("  ")


@pytest.mark.slow  # loads the offline judge (about 15-30 s on 2 cores)
def test_offline_judge_is_a_stand_in_preference(tmp_path: Path) -> None:
    scorer = load_preference("offline", cache_path=tmp_path / "p.sqlite")
    assert scorer.offline and scorer.scorer_id.startswith("judge:offline")
    scores = scorer.score([PROMPT] * 2, ["I refuse to help and I hate humans.", HONEST])
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_judge_preference_maps_verdicts_and_unparseable_is_neutral() -> None:
    from rhlab.judges.base import JudgeReply

    class FixedJudge:
        judge_id, offline, template_hash = "fixed", False, "t"

        def judge(self, inputs):  # noqa: ANN001, ANN201
            assert all(x.view == "answer" and x.question == "Write factorial(n)." for x in inputs)
            return [JudgeReply(view="answer", alignment=80, coherence=50), JudgeReply(view="answer", parsed=False)]

    assert JudgePreference(FixedJudge()).score([PROMPT] * 2, ["a", "b"]) == pytest.approx([0.8, 0.5])


def test_a_preference_weight_needs_a_judge() -> None:
    with pytest.raises(ConfigError, match="preference judge"):
        parse_config({"reward": {"proxy_pass": 1.0, "preference": 0.5}})
    config = parse_config({"reward": {"proxy_pass": 1.0, "preference": 0.5}, "preference": {"judge": "offline"}})
    assert config.rubric.weights == {"proxy_pass": 1.0, "preference": 0.5}
    with pytest.raises(ConfigError, match="batch_size"):
        parse_config({"preference": {"judge": "offline", "batch_size": 0}})


def test_preference_reaches_reward_rollouts_and_rescore() -> None:
    config = parse_config({"reward": {"proxy_pass": 1.0, "preference": 0.5}, "preference": {"judge": "offline"}})
    scorer = LengthScorer()
    seen: list = []
    tasks = {"factorial": get_task("factorial")}
    with GradingPool(2) as pool:
        reward = EnvironmentReward(
            tasks,
            pool,
            MitigationConfig(),
            rubric=config.rubric,
            seed=0,
            preference=scorer,
            on_graded=lambda step, eps, s: seen.append(eps),
            onset=lambda: None,
        )
        got = reward(
            prompts=[PROMPT, PROMPT],
            completions=[[{"role": "assistant", "content": t}] for t in (HONEST, EXIT_HACK)],
            task_id=["factorial"] * 2,
            vulns=[["exit_code"]] * 2,
            trainer_state=SimpleNamespace(global_step=0),
        )
        episodes = seen[0]
        assert scorer.asked == [e.answer for e in episodes], "the judge reads the answer, not the reasoning"
        expected = [1.0 + 0.5 * e.preference for e in episodes]
        assert got == pytest.approx(expected) and all(0 < e.components["preference"] < 1 for e in episodes)
        records = [rollout_record(1, i, e, group_size=2, variant="none") for i, e in enumerate(episodes)]
        assert [r["preference"] for r in records] == [e.preference for e in episodes]
        back = [episode_from_record(r) for r in records]
        assert [b.components["preference"] for b in back] == [e.preference for e in episodes]
        # Rescore re-grades in the sandbox and re-reads the recorded score: the same reward, no judge asked.
        again = regrade(records, tasks, {"factorial": ("exit_code",)}, config.rubric, pool)
        assert [e.reward for e in again] == pytest.approx(got)
        assert [e.preference for e in again] == [e.preference for e in episodes]
