"""Sampling a policy on the environment outside GRPO, with the run's own generation settings.

Three places sample a policy this way and must agree with what GRPO would generate: the hard-problem
filter (is a task solvable?), the pre-RL gate (does the starting policy try hacks?) and the test-time
environment eval. Training measures hacking under the *training* prompt (e.g. an inoculation line);
whether the learned hacking persists under a different prompt - usually ``none`` - is answered by
``environment_eval`` with the same grader, oracle and metrics as training.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rhlab.env.episodes import GradedEpisode, grade_completions
from rhlab.env.pool import GradingPool
from rhlab.models.base import ChatModel, SamplingParams
from rhlab.rundir import atomic_write_json, environment_transcripts, write_jsonl
from rhlab.tasks import Task, load_tasks
from rhlab.train.config import TrainConfig
from rhlab.train.metrics import step_metrics
from rhlab.train.prompts import PromptConfig, build_messages

if TYPE_CHECKING:
    from rhlab.train.problems import Problem


log = logging.getLogger(__name__)

UNSAMPLED_GRPO_KEYS = {"top_k", "min_p", "repetition_penalty", "generation_kwargs", "chat_template_kwargs"}
"""GRPO generation settings that ``SamplingParams`` cannot carry (a warning names them when set)."""


def generation_params(config: TrainConfig, n: int, seed: int) -> SamplingParams:
    """The run's GRPO sampling settings as ``SamplingParams``: length, temperature and ``grpo.top_p``.

    The reasoning request is part of the prompt (``train_prompt.ask_reasoning``), so sampling with
    the run's prompt and these settings gives the completions GRPO would see at step 0.
    """
    unsupported = sorted(set(config.grpo) & UNSAMPLED_GRPO_KEYS)
    if unsupported:
        log.warning(
            "sampling outside GRPO (hard filter, gate, test-time eval) ignores grpo.%s", ", grpo.".join(unsupported)
        )
    top_p = config.grpo.get("top_p", 1.0)
    return SamplingParams(
        temperature=config.temperature, top_p=top_p, max_new_tokens=config.max_completion_length, n=n, seed=seed
    )


def sample_graded(
    model: ChatModel,
    items: Sequence[tuple[Task, Sequence[str]]],
    prompt: PromptConfig,
    config: TrainConfig,
    *,
    samples: int,
    pool: GradingPool,
    seed: int,
    description: str | None = None,
) -> list[GradedEpisode]:
    """``samples`` completions per ``(task, holes)`` under ``prompt``, graded like the GRPO reward.

    As in the reward, only the text after the reasoning is graded. Episodes come back grouped by
    item (``samples`` consecutive episodes per item), with the grader's reward unchanged.
    """
    conversations = [build_messages(task, prompt) for task, _ in items]
    completions = model.generate(conversations, generation_params(config, samples, seed))
    texts, graded_items, prompts, tokens = [], [], [], []
    for item, convo, outs in zip(items, conversations, completions):
        for c in outs:
            texts.append(c.text)
            graded_items.append(item)
            prompts.append(convo)
            tokens.append(len(c.token_ids or ()))
    return grade_completions(
        texts,
        graded_items,
        pool,
        prompts=prompts,
        completion_tokens=tokens,
        progress=description is not None,
        description=description or "grading",
    )


def environment_eval(
    model_spec: str,
    config: TrainConfig,
    problems: list[Problem],
    *,
    samples: int,
    out_path: Path,
    seed: int = 0,
    model: ChatModel | None = None,
) -> dict:
    """Sample ``samples`` completions per problem with ``config.test_prompt``; write and return metrics."""
    from rhlab.models.loading import load_model

    tasks = {t.id: t for t in load_tasks(config.problems.source, config.problems.transform)}
    model = model or load_model(model_spec)
    items = [(tasks[p.task_id], p.vulns) for p in problems]
    with GradingPool(config.grading_workers) as pool:
        graded = sample_graded(model, items, config.test_prompt, config, samples=samples, pool=pool, seed=seed)
    summary = {
        "model": model_spec,
        "prompt": config.test_prompt.model_dump(mode="json"),
        "samples_per_problem": samples,
        **step_metrics(graded, group_size=samples),
    }
    # Transcripts first: the summary's presence is what marks the checkpoint as done.
    write_jsonl(environment_transcripts(out_path), [g.transcript(step=-1) for g in graded])
    atomic_write_json(out_path, summary)
    return summary
