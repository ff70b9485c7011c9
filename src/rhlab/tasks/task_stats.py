"""Counts over a task set: what ``rhlab tasks stats`` prints, computed in one pass."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from rhlab.tasks.formats import GENERATED_FORMATS
from rhlab.tasks.schema import Task
from rhlab.tasks.vacuous import vacuous_reason


@dataclass
class TaskStats:
    tasks: int = 0
    by_difficulty: Counter = field(default_factory=Counter)
    by_kind: Counter = field(default_factory=Counter)
    """``stdin`` (converted programs), ``function`` or ``other`` (tasks from other sources)."""
    visible_tests: list[int] = field(default_factory=list)
    heldout_tests: list[int] = field(default_factory=list)
    no_heldout: int = 0
    with_canonical: int = 0
    dropped_tests: int = 0
    """Tests the loaders left out because no answer can fail them (``Task.dropped_tests``)."""
    tasks_with_dropped_tests: int = 0
    vacuous_tests: int = 0
    """Tests still in the set that no answer can fail (0 unless a source bypassed the loaders' check)."""

    def as_dict(self) -> dict:
        def spread(values: list[int]) -> dict:
            if not values:
                return {"total": 0, "mean": 0.0, "min": 0, "median": 0, "max": 0}
            return {
                "total": sum(values),
                "mean": round(statistics.fmean(values), 2),
                "min": min(values),
                "median": statistics.median(values),
                "max": max(values),
            }

        return {
            "tasks": self.tasks,
            "by_difficulty": dict(self.by_difficulty),
            "by_kind": dict(self.by_kind),
            "visible_tests": spread(self.visible_tests),
            "heldout_tests": spread(self.heldout_tests),
            "no_heldout": self.no_heldout,
            "with_canonical_solution": self.with_canonical,
            "dropped_tests": self.dropped_tests,
            "tasks_with_dropped_tests": self.tasks_with_dropped_tests,
            "vacuous_tests": self.vacuous_tests,
        }


def task_stats(tasks: Iterable[Task]) -> TaskStats:
    stats = TaskStats()
    for task in tasks:
        stats.tasks += 1
        stats.by_difficulty[task.difficulty or "unrated"] += 1
        kind = "stdin" if "stdin" in task.tags else "function" if "function" in task.tags else "other"
        stats.by_kind[kind] += 1
        stats.visible_tests.append(len(task.visible_tests))
        stats.heldout_tests.append(len(task.heldout_tests))
        stats.no_heldout += not task.heldout_tests
        stats.with_canonical += task.canonical_solution is not None
        stats.dropped_tests += len(task.dropped_tests)
        stats.tasks_with_dropped_tests += bool(task.dropped_tests)
        if task.source not in GENERATED_FORMATS:  # those tests are assert CALL == LITERAL by construction
            stats.vacuous_tests += sum(vacuous_reason(t, task.entry_point) is not None for t in task.all_tests)
    return stats
