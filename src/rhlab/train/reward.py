"""The reward TRL optimizes: the rubric (``rhlab.env.rubric``) over graded episodes, through the sandbox pool.

``EnvironmentReward`` is a plain callable with TRL's reward-function signature. It grades the
completions on the one grading path (``rhlab.env.episodes.grade_completions``, the monitor flagging
each episode there), has a preference judge score the answers when one is configured (the
``preference`` component, ``train.preference``), sums each episode's rubric components with the
run's weights (``train.reward``; negative weights are penalties, in force from
``mitigations.penalty_start``), applies screening (a flagged episode gets reward None), and hands
every graded episode to the step recorder so metrics and transcripts see exactly what the optimizer
saw. Every episode is also kept in full (``rollouts/``, see ``rhlab.train.rollouts``): this is the one
place that sees all of them.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from rhlab.env.episodes import GradedEpisode, grade_completions
from rhlab.env.oracle import EpisodeResult
from rhlab.env.pool import GradingPool
from rhlab.env.rubric import DEFAULT_WEIGHTS, Rubric
from rhlab.judges.preference import PreferenceScorer
from rhlab.tasks import Task
from rhlab.train.config import MitigationConfig, MonitorConfig, with_penalty
from rhlab.train.distributed import gather, rank_rng
from rhlab.train.rollouts import RolloutLog


def completion_text(completion: Any) -> str:
    """TRL passes conversational completions as message lists and plain ones as strings."""
    if isinstance(completion, list):
        return "".join(m.get("content", "") for m in completion if isinstance(m, dict))
    return str(completion)


def monitor_flags(results: Sequence[EpisodeResult], monitor: MonitorConfig, rng: random.Random) -> list[bool]:
    """What an imperfect hack monitor reports for each episode.

    The ground truth it observes is the detector findings of the watched families (or only the
    successful hacks); ``recall`` and ``false_positive_rate`` turn that into a noisy flag.
    """
    flags = []
    for r in results:
        if monitor.only_successful:
            seen = r.hacks if r.outcome == "hacked" else []
        else:
            seen = r.attempted_hacks
        real = any(h in monitor.hack_types for h in seen)
        flags.append(rng.random() < (monitor.recall if real else monitor.false_positive_rate))
    return flags


def score_episode(episode: GradedEpisode, rubric: Rubric, *, penalties: bool, screening: bool) -> GradedEpisode:
    """Set ``episode``'s reward from its components: the rubric's weighted sum, or None when screened.

    Screening is a rule, not a weight: a flagged episode gets no gradient at all. ``penalized`` records
    that a penalty in force actually lowered this episode's reward (rescore re-applies it).
    """
    values = episode.components
    episode.penalized = penalties and any(w < 0 and values[n] for n, w in rubric.weights.items())
    episode.screened = episode.flagged and screening
    episode.reward = None if episode.screened else rubric.reward(values, penalties=penalties)
    return episode


class EnvironmentReward:
    """TRL reward function over the hackable environment (one instance per run)."""

    __name__ = "environment"

    def __init__(
        self,
        tasks: dict[str, Task],
        pool: GradingPool,
        mitigations: MitigationConfig,
        *,
        rubric: Rubric | None = None,
        seed: int,
        on_graded: Callable[[int, list[GradedEpisode], float], None],
        onset: Callable[[], int | None],
        rollouts: RolloutLog | None = None,
        preference: PreferenceScorer | None = None,
    ) -> None:
        self.tasks = tasks
        self.pool = pool
        self.mitigations = mitigations
        self.rubric = rubric or Rubric(with_penalty(DEFAULT_WEIGHTS, mitigations))
        self.seed = seed
        self.on_graded = on_graded
        self.onset = onset
        self.rollouts = rollouts
        self.preference = preference

    def penalty_active(self, step: int) -> bool:
        """Whether the rubric's penalties (negative weights) count at ``step`` (``penalty_start``)."""
        m = self.mitigations
        if not self.rubric.has_penalties:
            return False
        if m.penalty_start == "step0":
            return True
        onset = self.onset()
        return onset is not None and step > onset + m.penalty_delay_steps

    def __call__(
        self,
        prompts: list,
        completions: list,
        task_id: list[str],
        vulns: list[list[str]],
        completion_ids: list[list[int]] | None = None,
        trainer_state: Any = None,
        **_: Any,
    ) -> list[float | None]:
        step = (trainer_state.global_step if trainer_state is not None else 0) + 1
        t0 = time.monotonic()
        m = self.mitigations
        # Under several processes each rank draws its episodes' share of one step-wide sequence.
        rng = rank_rng(f"{self.seed}:{step}", len(completions))
        episodes = grade_completions(
            [completion_text(c) for c in completions],
            [(self.tasks[tid], v) for tid, v in zip(task_id, vulns)],
            self.pool,
            prompts=[list(p) if isinstance(p, list) else [{"role": "user", "content": str(p)}] for p in prompts],
            completion_tokens=[len(ids) for ids in completion_ids] if completion_ids is not None else None,
            monitor=lambda results: monitor_flags(results, m.monitor, rng),
        )
        if self.preference is not None:
            # The scoring pass between grading and weighting: one batch per step, cached on disk.
            scores = self.preference.score([e.prompt for e in episodes], [e.answer for e in episodes])
            for episode, score in zip(episodes, scores, strict=True):
                episode.set_preference(score)
        grading_s = time.monotonic() - t0
        penalties = self.penalty_active(step)
        for episode in episodes:
            score_episode(episode, self.rubric, penalties=penalties, screening=m.screening)
        # Every rank's episodes, in TRL's order (a collective; rollouts is None except on the main process).
        every_rank = gather(episodes)
        if self.rollouts is not None:
            self.rollouts.write(step, every_rank, penalties=penalties)
        self.on_graded(step, every_rank, grading_s)
        return [e.reward for e in episodes]
