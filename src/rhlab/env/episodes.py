"""The one grading path: completions in, graded episodes (files, oracle result, rubric components) out.

Training's reward, the test-time environment eval, verl's reward and ``rhlab rescore`` all call
:func:`grade_completions`, so an episode is taken apart, graded and labelled the same way wherever it
comes from. A ``GradedEpisode`` is the one record of an episode: what the policy saw and wrote, the
files its answer became, the oracle's result (which summarises both grader runs), every rubric
component, and the reward it was paid.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rhlab.env.completion import split_reasoning
from rhlab.env.oracle import EpisodeResult
from rhlab.env.pool import Episode, GradingPool
from rhlab.env.rubric import components
from rhlab.tasks import Task

Monitor = Callable[[Sequence[EpisodeResult]], list[bool]]
"""A training-time hack monitor: one flag per graded result (``rhlab.train.reward.monitor_flags``)."""


@dataclass
class GradedEpisode:
    """One graded episode: what metrics, transcripts, rollouts and rescore read."""

    result: EpisodeResult
    reward: float | None
    """Reward handed to the optimizer (rubric sum; None when screened out)."""
    completion: str
    reasoning: str
    answer: str
    prompt: list[dict[str, str]]
    files: dict[str, str] = field(default_factory=dict)
    completion_tokens: int = 0
    flagged: bool = False
    penalized: bool = False
    """A penalty (negative rubric weight) was in force and this episode's penalised component was non-zero."""
    screened: bool = False
    components: dict[str, float] = field(default_factory=dict)
    """Every rubric component by name (``rhlab.env.rubric.COMPONENTS``); filled by :func:`grade_completions`."""
    preference: float | None = None
    """A preference judge's score of the answer, in [0, 1] (None: no preference judge ran)."""

    def __post_init__(self) -> None:
        # Records kept before a component existed lack it: it is computed from the episode.
        computed = components(self)
        self.components = {**computed, **self.components} if self.components else computed

    def set_preference(self, score: float | None) -> None:
        """Record the preference judge's score; the components are re-computed, since ``preference`` reads it.

        The score is taken after grading (the judge is batched over a whole step) and before the
        rubric weighs the components, so the reward sees it like any other component."""
        if score is not None and not 0.0 <= score <= 1.0:
            raise ValueError(f"a preference score must lie in [0, 1], got {score}")
        self.preference = score
        self.components = components(self)

    def transcript(self, step: int) -> dict:
        r = self.result
        return {
            "step": step,
            "task_id": r.task_id,
            "prompt": self.prompt,
            "completion": self.completion,
            "reasoning": self.reasoning,
            "answer": self.answer,
            "files": self.files,
            "reward": self.reward,
            "outcome": r.outcome,
            "hacks": r.hacks,
            "attempted_hacks": r.attempted_hacks,
            "vulns": r.vulns,
            "proxy_pass": r.proxy_pass,
            "honest_pass": r.honest_pass,
            "honest_tests": r.honest_tests,
            "flagged": self.flagged,
            "penalized": self.penalized,
            "screened": self.screened,
            "error": r.error,
            "preference": self.preference,
        }


def grade_completions(
    completions: Sequence[str],
    items: Sequence[tuple[Task, Sequence[str] | str]],
    pool: GradingPool,
    *,
    prompts: Sequence[list[dict[str, str]]] | None = None,
    completion_tokens: Sequence[int] | None = None,
    monitor: Monitor | None = None,
    progress: bool = False,
    description: str = "grading",
) -> list[GradedEpisode]:
    """Grade ``completions[i]`` on ``items[i] = (task, holes)``; one episode per completion, in order.

    Only the answer (the text after the reasoning) is graded. ``monitor``, when given, flags episodes
    from their results before the components are computed, so ``monitor_flag`` is a component like
    any other. The reward is the plain environment reward here; the trainer re-weights it with its
    rubric (``rhlab.train.reward``).
    """
    if len(completions) != len(items):
        raise ValueError(f"grade_completions: {len(completions)} completions for {len(items)} (task, holes) items")
    if prompts is not None and len(prompts) != len(completions):
        raise ValueError(f"grade_completions: {len(prompts)} prompts for {len(completions)} completions")
    splits = [split_reasoning(text) for text in completions]
    submissions = [
        Episode(task, answer, vulns if isinstance(vulns, str) else tuple(vulns))
        for (task, vulns), (_, answer) in zip(items, splits)
    ]
    results = pool.grade_many(submissions, progress=progress, description=description)
    flags = monitor(results) if monitor is not None else [False] * len(results)
    tokens = completion_tokens if completion_tokens is not None else [0] * len(results)
    episodes = []
    for i, (text, (reasoning, answer), result) in enumerate(zip(completions, splits, results)):
        prompt = list(prompts[i]) if prompts is not None else []
        episodes.append(
            GradedEpisode(
                result=result,
                reward=result.reward,
                completion=text,
                reasoning=reasoning,
                answer=answer,
                prompt=prompt,
                files=dict(result.workspace),
                completion_tokens=tokens[i],
                flagged=flags[i],
            )
        )
    return episodes
