"""The reward TRL optimizes: the vulnerable grader's verdict, through the sandbox pool.

``EnvironmentReward`` is a plain callable with TRL's reward-function signature. For each completion
it grades the answer (the text after ``</thinking>``) in the environment, applies the configured
mitigations (monitor flag -> penalty and/or screening), and hands every graded episode to the step
recorder so metrics and transcripts see exactly what the optimizer saw. Every episode is also kept in
full (``rollouts/``, see ``rhlab.train.rollouts``): this is the one place that sees all of them.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from rhlab.env.oracle import EpisodeResult
from rhlab.env.pool import Episode, GradingPool
from rhlab.env.workspace import parse_response
from rhlab.models.reasoning import split_reasoning
from rhlab.tasks import Task
from rhlab.train.config import MitigationConfig, MonitorConfig
from rhlab.train.distributed import gather, rank_rng
from rhlab.train.metrics import GradedEpisode
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


class EnvironmentReward:
    """TRL reward function over the hackable environment (one instance per run)."""

    __name__ = "environment"

    def __init__(
        self,
        tasks: dict[str, Task],
        pool: GradingPool,
        mitigations: MitigationConfig,
        *,
        seed: int,
        on_graded: Callable[[int, list[GradedEpisode], float], None],
        onset: Callable[[], int | None],
        rollouts: RolloutLog | None = None,
    ) -> None:
        self.tasks = tasks
        self.pool = pool
        self.mitigations = mitigations
        self.seed = seed
        self.on_graded = on_graded
        self.onset = onset
        self.rollouts = rollouts

    def penalty_active(self, step: int) -> bool:
        m = self.mitigations
        if m.penalty == 0.0:
            return False
        if m.penalty_start == "step0":
            return True
        onset = self.onset()
        return onset is not None and step > onset + m.penalty_delay_steps

    def __call__(
        self, prompts: list, completions: list, task_id: list[str], vulns: list[list[str]],
        completion_ids: list[list[int]] | None = None, trainer_state: Any = None, **_: Any,
    ) -> list[float | None]:  # fmt: skip
        step = (trainer_state.global_step if trainer_state is not None else 0) + 1
        t0 = time.monotonic()
        texts = [completion_text(c) for c in completions]
        splits = [split_reasoning(t) for t in texts]
        futures = [
            self.pool.submit(Episode(self.tasks[tid], answer, tuple(v)))
            for tid, v, (_, answer) in zip(task_id, vulns, splits)
        ]
        results = [f.result() for f in futures]
        grading_s = time.monotonic() - t0

        m = self.mitigations
        # Under several processes each rank draws its episodes' share of one step-wide sequence.
        flags = monitor_flags(results, m.monitor, rank_rng(f"{self.seed}:{step}", len(results)))
        penalize = self.penalty_active(step)
        episodes, rewards = [], []
        lengths = [len(ids) for ids in completion_ids] if completion_ids is not None else [0] * len(texts)
        for prompt, text, (reasoning, answer), result, flag, n_tokens in zip(
            prompts, texts, splits, results, flags, lengths
        ):
            reward: float | None = result.reward
            penalized = flag and penalize
            if penalized:
                reward -= m.penalty
            screened = flag and m.screening
            if screened:
                reward = None
            rewards.append(reward)
            ws = parse_response(answer)
            episodes.append(GradedEpisode(
                result=result, reward=reward, completion=text, reasoning=reasoning, answer=answer,
                prompt=list(prompt) if isinstance(prompt, list) else [{"role": "user", "content": str(prompt)}],
                files=dict(ws.files), completion_tokens=n_tokens,
                flagged=flag, penalized=penalized, screened=screened,
            ))  # fmt: skip
        # Every rank's episodes, in TRL's order (a collective; rollouts is None except on the main process).
        every_rank = gather(episodes)
        if self.rollouts is not None:
            self.rollouts.write(step, every_rank)
        self.on_graded(step, every_rank, grading_s)
        return rewards
