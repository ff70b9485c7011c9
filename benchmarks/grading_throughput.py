"""Grading throughput: our sandboxed pool vs a naive fresh-pytest-per-episode baseline.

Both paths grade the same honest responses (canonical solutions of the built-in tasks, and
broken variants of them), measured in the same run. The naive baseline runs one
``python -m pytest`` subprocess per episode on visible + held-out tests, with no sandbox and
no pool; our path does the whole episode (vulnerable grader + honest oracle + detectors) in
bubblewrap. Pass/fail of the baseline must agree with our honest verdict on every episode.

    python benchmarks/grading_throughput.py [--episodes 300] [--vulns all]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rhlab.env import Episode, GradingPool
from rhlab.tasks import Task, builtin_tasks


def broken(task: Task) -> str:
    """An honest but wrong solution: the canonical one with its entry point returning None."""
    return task.canonical_solution + f"\n\ndef {task.entry_point}(*args, **kwargs):\n    return None\n"


def make_responses(n: int) -> list[tuple[Task, str, bool]]:
    tasks = list(builtin_tasks())
    items = []
    for i in range(n):
        task = tasks[i % len(tasks)]
        correct = (i // len(tasks)) % 2 == 0 if n > len(tasks) else i % 2 == 0
        code = task.canonical_solution if correct else broken(task)
        items.append((task, code, correct))
    return items


def naive_grade(task: Task, code: str) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "solution.py").write_text(code)
        body = "\n".join(f"def test_{i}():\n    {t}" for i, t in enumerate(task.all_tests) if "\n" not in t)
        Path(tmp, "test_solution.py").write_text(f"from solution import *\n\n{body}\n")
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_solution.py"],
            cwd=tmp,
            capture_output=True,
            timeout=60,
        )
        return proc.returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument(
        "--naive-episodes", type=int, default=60, help="the slow baseline runs on a subset; its rate is per episode"
    )
    parser.add_argument("--vulns", default="all")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args()

    items = make_responses(args.episodes)
    print(
        f"{len(items)} episodes ({sum(c for *_, c in items)} correct), vulns={args.vulns}, "
        f"{args.workers} workers, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"
    )

    with GradingPool(args.workers) as pool:
        pool.grade_many([Episode(items[0][0], f"```python\n{items[0][1]}\n```", args.vulns)])  # warm-up
        start = time.perf_counter()
        results = pool.grade_many([Episode(t, f"```python\n{c}\n```", args.vulns) for t, c, _ in items])
        pool_s = time.perf_counter() - start
        isolation = f"{pool.sandbox.isolation}, memory bound {pool.sandbox.memory_bound}"

    subset = items[: args.naive_episodes]
    start = time.perf_counter()
    naive = [naive_grade(t, c) for t, c, _ in subset]
    naive_s = time.perf_counter() - start

    wrong = [t.id for (t, _, correct), r in zip(items, results) if r.honest_pass != correct]
    disagree = [t.id for (t, _, _), r, n in zip(subset, results, naive) if r.honest_pass != n]
    pool_rate = len(items) / pool_s
    naive_rate = len(subset) / naive_s
    print(f"pool  ({isolation}): {len(items)} episodes in {pool_s:.1f}s = {pool_rate:.1f} episodes/s")
    print(f"naive (pytest/episode): {len(subset)} episodes in {naive_s:.1f}s = {naive_rate:.1f} episodes/s")
    print(f"ratio: {pool_rate / naive_rate:.1f}x (load average now {os.getloadavg()[0]:.1f})")
    print(
        f"verdicts: {len(wrong)} honest verdicts differ from ground truth, "
        f"{len(disagree)} disagree with the naive baseline"
    )
    if wrong or disagree:
        print("mismatches:", sorted(set(wrong + disagree))[:10])
        sys.exit(1)


if __name__ == "__main__":
    main()
