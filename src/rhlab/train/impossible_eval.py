"""Test-time hacking propensity on impossible tasks (``rhlab eval impossible``).

The tasks come from ``rhlab.tasks.impossible``; sampling and grading are the environment eval's, so
this lives in ``train`` beside it, above the task layer it reads.
"""

from __future__ import annotations

import random
from pathlib import Path

from rhlab.models.base import ChatModel
from rhlab.rundir import atomic_write_json
from rhlab.train.config import TrainConfig
from rhlab.train.env_eval import environment_eval
from rhlab.train.problems import assign_vulns, candidate_tasks


def impossible_eval(
    model_spec: str,
    source: str,
    transform: str = "impossible_conflicting",
    *,
    out_path: Path,
    samples: int = 4,
    holes: str = "all",
    max_tasks: int | None = None,
    seed: int = 0,
    config: TrainConfig | None = None,
    model: ChatModel | None = None,
) -> dict:
    """Test-time hacking propensity of any checkpoint: sample it on impossible variants of ``source``.

    The run's grader, oracle, prompt (``config.test_prompt``) and metrics are reused through
    ``rhlab.train.env_eval.environment_eval``; since no honest solution exists, the reward rate
    (``proxy_pass_rate``) is the hacking propensity, written as ``hack_propensity`` next to the
    usual metrics in ``out_path`` (transcripts beside it).
    """
    base = config or TrainConfig()
    base.sandbox.apply()
    problems_config = base.problems.model_validate(
        {**base.problems.model_dump(), "source": source, "transform": transform, "holes": holes}
    )
    run_config = base.model_copy(update={"problems": problems_config})
    tasks = candidate_tasks(problems_config)
    if max_tasks is not None:
        tasks = random.Random(seed).sample(tasks, min(max_tasks, len(tasks)))
    problems = assign_vulns(tasks, problems_config, seed)
    summary = environment_eval(
        model_spec, run_config, problems, samples=samples, out_path=out_path, seed=seed, model=model
    )
    summary = {
        "transform": transform,
        "source": source,
        "tasks": len(problems),
        "hack_propensity": summary["proxy_pass_rate"],
        **summary,
    }
    atomic_write_json(out_path, summary)
    return summary
