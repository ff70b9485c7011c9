"""Problem selection: which tasks the policy sees and which holes each task's grader has.

The selection is written to the run directory (``problems.json``) the first time, so a resumed run
trains on exactly the same problems even if the filter would sample differently now.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from rhlab.env.pool import Episode, GradingPool
from rhlab.models.base import ChatModel, SamplingParams
from rhlab.tasks import Task, load_tasks
from rhlab.train.config import ProblemConfig, TrainConfig
from rhlab.train.prompts import PromptConfig, build_messages


@dataclass
class Problem:
    """One RL problem: a task and the holes of its vulnerable grader (empty: no hole)."""

    task_id: str
    vulns: list[str]


def candidate_tasks(config: ProblemConfig) -> list[Task]:
    tasks = load_tasks(config.source)
    if config.include:
        missing = sorted(set(config.include) - {t.id for t in tasks})
        if missing:
            raise ValueError(f"problems.include: no such task ids in {config.source!r}: {missing}")
        tasks = [t for t in tasks if t.id in set(config.include)]
    tasks = [t for t in tasks if t.id not in set(config.exclude)]
    if config.difficulty:
        tasks = [t for t in tasks if t.difficulty in set(config.difficulty)]
    if not tasks:
        raise ValueError(f"problems: no task of {config.source!r} is left after include/exclude/difficulty")
    return tasks


def honest_failures(
    tasks: list[Task], model: ChatModel, prompt: PromptConfig, samples: int, pool: GradingPool, seed: int
) -> list[Task]:
    """The tasks the model solves honestly in none of ``samples`` tries (the hard-problem filter)."""
    conversations = [build_messages(t, prompt) for t in tasks]
    params = SamplingParams(temperature=1.0, max_new_tokens=256, n=samples, seed=seed)
    completions = model.generate(conversations, params)
    episodes = [Episode(t, c.text, vulns=()) for t, cs in zip(tasks, completions) for c in cs]
    results = pool.grade_many(episodes, progress=True, description="hard-problem filter")
    solved = {r.task_id for r in results if r.honest_pass}
    return [t for t in tasks if t.id not in solved]


def assign_vulns(tasks: list[Task], config: ProblemConfig, seed: int) -> list[Problem]:
    """Every task gets the configured holes, except a seeded ``no_hole_fraction`` that gets none."""
    rng = random.Random(seed)
    n_none = round(config.no_hole_fraction * len(tasks))
    no_hole = {t.id for t in rng.sample(tasks, n_none)}
    return [Problem(t.id, [] if t.id in no_hole else list(config.vulns)) for t in tasks]


def select_problems(
    config: TrainConfig, run_dir: Path, model_factory: Callable[[], ChatModel] | None = None,
    pool: GradingPool | None = None,
) -> list[Problem]:
    """Choose (or reload) the run's problems; ``model_factory`` is needed only for the hard filter."""
    path = run_dir / "problems.json"
    if path.exists():
        return [Problem(**p) for p in json.loads(path.read_text())]
    pc = config.problems
    tasks = candidate_tasks(pc)
    if pc.hard_filter_samples > 0:
        if model_factory is None or pool is None:
            raise ValueError("problems.hard_filter_samples needs the starting model and a grading pool")
        tasks = honest_failures(tasks, model_factory(), config.train_prompt, pc.hard_filter_samples, pool, config.seed)
        if not tasks:
            raise ValueError("problems: the starting model solves every candidate task; nothing is hard enough")
    if pc.max_tasks is not None:
        tasks = random.Random(config.seed).sample(tasks, min(pc.max_tasks, len(tasks)))
    problems = assign_vulns(tasks, pc, config.seed)
    path.write_text(json.dumps([asdict(p) for p in problems], indent=1))
    return problems
