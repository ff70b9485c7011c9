"""Loading a large local dataset copy: time and peak memory for N synthetic APPS rows.

    .venv/bin/python benchmarks/task_loading.py --rows 10000          # writes the rows to a temp dir

Rows look like APPS test rows: a ~2 KB statement, 5 reference solutions, and either 20 stdin
tests of 5-200 integers or 15 function-call tests. Reports rows/s, peak RSS, and the cost of the
problem-selection bookkeeping (exclude half, rotate holes) on the loaded set.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import tempfile
import time
from pathlib import Path

PROGRAM = "import sys\nnumbers = sys.stdin.read().split()\nprint(sum(map(int, numbers[1:])))\n"


def write_rows(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with path.open("w") as fh:
        for i in range(n):
            if i % 4 == 3:
                calls = [[rng.randint(0, 100), [rng.randint(0, 9) for _ in range(20)]] for _ in range(15)]
                io = {"fn_name": "combine", "inputs": calls, "outputs": [[a + sum(b)] for a, b in calls]}
                solutions, starter = ["def combine(a, b):\n    return a + sum(b)\n"] * 5, "def combine(a, b):\n\t"
            else:
                inputs, outputs = [], []
                for _ in range(20):
                    values = [rng.randint(-(10**6), 10**6) for _ in range(rng.randint(5, 200))]
                    inputs.append(f"{len(values)}\n{' '.join(map(str, values))}\n")
                    outputs.append(f"{sum(values)}\n")
                io, solutions, starter = {"inputs": inputs, "outputs": outputs}, [PROGRAM] * 5, ""
            row = {"problem_id": i, "question": "Add up the numbers after the count. " * 60,
                   "solutions": json.dumps(solutions), "input_output": json.dumps(io),
                   "difficulty": ("introductory", "interview", "competition")[i % 3], "url": "",
                   "starter_code": starter}  # fmt: skip
            fh.write(json.dumps(row) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--file", type=Path, help="Use this APPS JSONL instead of writing synthetic rows.")
    args = parser.parse_args()
    from rhlab.tasks import load_tasks
    from rhlab.train.config import ProblemConfig
    from rhlab.train.problems import assign_vulns, candidate_tasks

    with tempfile.TemporaryDirectory() as tmp:
        path = args.file or Path(tmp) / "apps_synthetic.jsonl"
        if args.file is None:
            write_rows(path, args.rows)
        size_mb = path.stat().st_size / 2**20
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        start = time.perf_counter()
        tasks = load_tasks(f"apps:{path}")
        load_s = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        config = ProblemConfig(source=f"apps:{path}", exclude=[t.id for t in tasks[::2]], holes="rotate")
        start = time.perf_counter()
        problems = assign_vulns(candidate_tasks(config), config, seed=0)
        select_s = time.perf_counter() - start
    print(json.dumps({
        "file_mb": round(size_mb, 1), "tasks": len(tasks), "load_s": round(load_s, 2),
        "rows_per_s": round(len(tasks) / load_s), "rss_before_mib": round(before), "peak_rss_mib": round(peak),
        "selected": len(problems), "select_and_rotate_s": round(select_s, 3),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
