"""Problem selection: which tasks the policy sees and which holes each task's grader has.

The selection is written to the run directory (``RunDir.problems``) the first time, so a resumed run
trains on exactly the same problems even if the filter would sample differently now.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from rhlab.env.pool import GradingPool
from rhlab.models.base import ChatModel
from rhlab.rundir import RunDir
from rhlab.tasks import Task, load_tasks
from rhlab.train.config import ProblemConfig, TrainConfig
from rhlab.train.env_eval import sample_graded


@dataclass
class Problem:
    """One RL problem: a task and the holes of its vulnerable grader (empty: no hole)."""

    task_id: str
    vulns: list[str]


def candidate_tasks(config: ProblemConfig) -> list[Task]:
    tasks = load_tasks(config.source, config.transform)
    include, exclude, difficulty = set(config.include), set(config.exclude), set(config.difficulty)
    if include:
        missing = sorted(include - {t.id for t in tasks})
        if missing:
            raise ValueError(f"problems.include: no such task ids in {config.source!r}: {missing}")
        tasks = [t for t in tasks if t.id in include]
    tasks = [t for t in tasks if t.id not in exclude]
    if difficulty:
        tasks = [t for t in tasks if t.difficulty in difficulty]
    if not tasks:
        raise ValueError(f"problems: no task of {config.source!r} is left after include/exclude/difficulty")
    return tasks


def honest_failures(
    tasks: list[Task], model: ChatModel, config: TrainConfig, samples: int, pool: GradingPool, seed: int
) -> list[Task]:
    """The tasks the model solves honestly in none of ``samples`` tries (the hard-problem filter).

    The model is sampled exactly as GRPO will sample it - training prompt (with its reasoning
    request), ``max_completion_length``, ``temperature`` - and graded on the answer after the
    reasoning. A shorter budget than training's would fail tasks the policy can solve, and the
    filter would keep nearly everything.
    """
    graded = sample_graded(
        model,
        [(t, ()) for t in tasks],
        config.train_prompt,
        config,
        samples=samples,
        pool=pool,
        seed=seed,
        description="hard-problem filter",
    )
    solved = {e.result.task_id for e in graded if e.result.honest_pass}
    return [t for t in tasks if t.id not in solved]


def assign_vulns(tasks: list[Task], config: ProblemConfig, seed: int) -> list[Problem]:
    """Holes per task from ``problems.holes`` (see ``rhlab.train.holes``); a seeded ``no_hole_fraction`` gets none."""
    from rhlab.train.holes import assign_holes

    holes = assign_holes([t.id for t in tasks], config.vulns, config.holes, config.no_hole_fraction, seed)
    return [Problem(t.id, h) for t, h in zip(tasks, holes)]


def select_problems(
    config: TrainConfig,
    run_dir: Path,
    model_factory: Callable[[], ChatModel] | None = None,
    pool: GradingPool | None = None,
) -> list[Problem]:
    """Choose (or reload) the run's problems; ``model_factory`` is needed only for the hard filter."""
    run = RunDir(run_dir)
    saved = run.read_problems()
    if saved is not None:
        return [Problem(**p) for p in saved]
    pc = config.problems
    tasks = candidate_tasks(pc)
    if pc.hard_filter_samples > 0:
        if model_factory is None or pool is None:
            raise ValueError("problems.hard_filter_samples needs the starting model and a grading pool")
        tasks = honest_failures(tasks, model_factory(), config, pc.hard_filter_samples, pool, config.seed)
        if not tasks:
            raise ValueError("problems: the starting model solves every candidate task; nothing is hard enough")
    if pc.max_tasks is not None:
        tasks = random.Random(config.seed).sample(tasks, min(pc.max_tasks, len(tasks)))
    problems = assign_vulns(tasks, pc, config.seed)
    run.write_problems([asdict(p) for p in problems])
    return problems
