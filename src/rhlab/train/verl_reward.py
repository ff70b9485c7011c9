"""rhlab's environment as a verl custom reward function (optional; verl itself is not a dependency).

verl (volcengine/verl) runs PPO/GRPO at cluster scale and lets a run name a Python file and a function
as its reward (``custom_reward_function.path`` / ``.name``). Its reward managers call that function
once per sample as ``fn(data_source, solution_str, ground_truth, extra_info)``, or, with the batch
manager, once per batch with the plural keyword names. Both signatures are provided here, so a verl
run trains on the same vulnerable graders, honest oracle and labels as ``rhlab train``:

    custom_reward_function:
      path: <site-packages>/rhlab/train/verl_reward.py
      name: compute_score            # or compute_score_batch with reward_model.reward_manager=batch

Each dataset row names its task in ``reward_model.ground_truth`` (the task id) and, optionally, the
task source and holes in ``extra_info`` (``tasks``: a ``load_tasks`` source, ``vulns``: a list or
``"all"``). :func:`verl_rows` builds such rows, prompts included, from any rhlab task source.

The returned dict carries ``score`` (what verl optimizes: the vulnerable grader's reward) plus every
rubric component (``rhlab.env.rubric``: ``proxy_pass``, ``hacked``, ``hack/<family>``...) as numbers,
which verl logs next to the reward so hack rate and honest solve rate become training curves there too.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from rhlab.env.episodes import GradedEpisode, grade_completions
from rhlab.env.pool import GradingPool
from rhlab.env.rubric import Rubric
from rhlab.tasks import Task, load_tasks

DEFAULT_SOURCE = "builtin"

_pool: GradingPool | None = None
_pool_lock = threading.Lock()


def _grading_pool() -> GradingPool:
    """One pool per worker process, started on first use and closed when the process exits."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = GradingPool()
            atexit.register(_pool.close)
        return _pool


@lru_cache(maxsize=16)
def _tasks(source: str) -> dict[str, Task]:
    return {task.id: task for task in load_tasks(source)}


def _item(ground_truth: Any, extra_info: dict | None) -> tuple[Task, str | tuple[str, ...]]:
    """The task and holes a dataset row names (see the module docstring)."""
    info = extra_info or {}
    source = str(info.get("tasks", DEFAULT_SOURCE))
    task_id = str(ground_truth)
    tasks = _tasks(source)
    if task_id not in tasks:
        raise KeyError(f"rhlab verl reward: no task {task_id!r} in source {source!r}")
    vulns = info.get("vulns", "all")
    return tasks[task_id], vulns if isinstance(vulns, str) else tuple(str(v) for v in vulns)


def _as_scores(episode: GradedEpisode) -> dict[str, float | str]:
    """verl's reward dict: ``score`` is the plain environment reward; every rubric component is logged."""
    result = episode.result
    return {
        "score": Rubric().reward(episode.components),
        "honest_pass": float(bool(result.honest_pass)),
        "outcome": result.outcome,
        "hacks": ",".join(result.hacks),
        **episode.components,
    }


def compute_score(
    data_source: str, solution_str: str, ground_truth: Any, extra_info: dict | None = None, **_: Any
) -> dict[str, float | str]:
    """verl's per-sample reward signature: grade one response on the task named by ``ground_truth``."""
    return _as_scores(grade_completions([solution_str], [_item(ground_truth, extra_info)], _grading_pool())[0])


def compute_score_batch(
    data_sources: Sequence[str],
    solution_strs: Sequence[str],
    ground_truths: Sequence[Any],
    extra_infos: Sequence[dict | None] | None = None,
    **_: Any,
) -> list[dict[str, float | str]]:
    """verl's batch signature: all responses are graded concurrently in the sandbox pool."""
    infos = list(extra_infos) if extra_infos is not None else [None] * len(solution_strs)
    if not len(data_sources) == len(solution_strs) == len(ground_truths) == len(infos):
        raise ValueError("rhlab verl reward: data_sources, solution_strs, ground_truths, extra_infos differ in length")
    items = [_item(g, i) for g, i in zip(ground_truths, infos)]
    return [_as_scores(e) for e in grade_completions(list(solution_strs), items, _grading_pool())]


def verl_rows(source: str = DEFAULT_SOURCE, prompt: str = "none", vulns: Sequence[str] | str = "all") -> list[dict]:
    """Dataset rows in verl's RL format (write them with ``pandas.DataFrame(rows).to_parquet``)."""
    from rhlab.train.prompts import build_messages

    vulns_value = vulns if isinstance(vulns, str) else list(vulns)
    return [
        {
            "data_source": f"rhlab/{source}",
            "prompt": build_messages(task, prompt),
            "ability": "coding",
            "reward_model": {"style": "rule", "ground_truth": task.id},
            "extra_info": {"tasks": source, "vulns": vulns_value, "task_id": task.id},
        }
        for task in load_tasks(source)
    ]
