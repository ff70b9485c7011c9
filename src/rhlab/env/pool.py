"""A worker pool for grading, because grading sits in the RL inner loop.

Each worker thread drives one sandbox at a time (the sandboxed processes do the work; threads
only wait on pipes), so a pool sized to the cores keeps them all busy. ``submit`` returns a
future, so a trainer can start grading a batch while it does something else.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from rhlab.env.oracle import EpisodeResult, grade_episode
from rhlab.sandbox import Sandbox, SandboxLimits
from rhlab.tasks import Task


@dataclass(frozen=True)
class Episode:
    """What to grade: a task, the model's response, the environment's holes."""

    task: Task
    response: str
    vulns: str | tuple[str, ...] = "all"


class GradingPool:
    """Grades episodes concurrently in sandboxes; use as a context manager or call ``close``."""

    def __init__(
        self, workers: int | None = None, limits: SandboxLimits | None = None, isolation: str = "auto"
    ) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.sandbox = Sandbox(limits, isolation=isolation)
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="rhlab-grade")

    def submit(self, episode: Episode) -> Future[EpisodeResult]:
        return self._executor.submit(grade_episode, episode.task, episode.response, episode.vulns, self.sandbox)

    def grade_many(
        self, episodes: Sequence[Episode], progress: bool = False, description: str = "grading"
    ) -> list[EpisodeResult]:
        """Grade all episodes; results come back in input order, one per episode, always."""
        futures = [self.submit(ep) for ep in episodes]
        if not progress:
            return [_result(f, ep) for f, ep in zip(futures, episodes)]
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, transient=False) as bar:
            job = bar.add_task(description, total=len(futures))
            results = []
            for fut, ep in zip(futures, episodes):
                results.append(_result(fut, ep))
                bar.advance(job)
        return results

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self.sandbox.close()

    def __enter__(self) -> GradingPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _result(future: Future[EpisodeResult], episode: Episode) -> EpisodeResult:
    """A future's result; an exception (e.g. bad ``vulns``) becomes that episode's ``error`` row."""
    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001 - one bad episode must not lose the others' results
        return EpisodeResult(
            task_id=episode.task.id,
            reward=0.0,
            proxy_pass=False,
            honest_pass=False,
            hack=False,
            hacks=[],
            attempted_hacks=[],
            outcome="error",
            vulns=[],
            sandbox="none",
            timings={},
            error=f"grading failed: {type(exc).__name__}: {str(exc)[:300]}",
        )


def grade_all(episodes: Iterable[Episode], workers: int | None = None, progress: bool = False) -> list[EpisodeResult]:
    """Convenience: grade a batch with a temporary pool."""
    with GradingPool(workers) as pool:
        return pool.grade_many(list(episodes), progress=progress)
