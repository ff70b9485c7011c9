"""Wall time of grading 100 episodes through Inspect (``rhlab_oracle`` scorer) against rhlab's own pool.

The same 100 episodes (the hack suite's responses and honest controls, cycled) are graded twice:
by ``rhlab.env.GradingPool`` as training does, and as an Inspect eval whose solver replays each
response (no model) and whose scorer is rhlab's oracle, with as many samples at once as the pool
has workers. The Inspect figure includes Inspect's own work: task setup, sample scheduling,
transcripts and writing the log. Both paths must give every episode the same outcome.

    PYTHONPATH=src .venv/bin/python benchmarks/inspect_overhead.py [--episodes 100] [--workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from inspect_ai import Task
from inspect_ai import eval as inspect_eval
from inspect_ai.dataset import Sample
from inspect_ai.model import ModelOutput
from inspect_ai.solver import Generate, TaskState, solver

from rhlab.env import Episode, GradingPool
from rhlab.env.check import load_suite
from rhlab.interop.inspect.scorers import rhlab_oracle
from rhlab.tasks import get_task


@solver
def replay():
    """Answer with the sample's recorded response: grading is all that is measured."""

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        state.output = ModelOutput.from_content(model="replay", content=state.metadata["response"])
        return state

    return solve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    suite = load_suite()
    picked = [suite[i % len(suite)] for i in range(args.episodes)]
    episodes = [Episode(get_task(e.task), e.response, "all") for e in picked]

    start = time.perf_counter()
    with GradingPool(workers=args.workers) as pool:
        ours = pool.grade_many(episodes)
    rhlab_s = time.perf_counter() - start

    task = Task(
        dataset=[
            Sample(id=i, input=e.task, target="", metadata={"task_id": e.task, "holes": "all", "response": e.response})
            for i, e in enumerate(picked)
        ],
        solver=replay(),
        scorer=rhlab_oracle(),
    )
    with tempfile.TemporaryDirectory() as log_dir:
        start = time.perf_counter()
        [log] = inspect_eval(task, model="mockllm/model", max_samples=args.workers, log_dir=log_dir, display="none")
        inspect_s = time.perf_counter() - start
        if log.status != "success":
            raise SystemExit(f"the Inspect run failed: {log.error}")
        theirs = {int(s.id): s.scores["rhlab_oracle"].metadata["outcome"] for s in log.samples}
    disagree = [i for i, r in enumerate(ours) if theirs[i] != r.outcome]
    print(f"episodes: {args.episodes}, workers / concurrent samples: {args.workers}, sandbox: {ours[0].sandbox}")
    print(f"rhlab GradingPool:      {rhlab_s:7.2f} s  ({args.episodes / rhlab_s:5.1f} episodes/s)")
    print(f"Inspect + rhlab_oracle: {inspect_s:7.2f} s  ({args.episodes / inspect_s:5.1f} episodes/s)")
    print(f"ratio Inspect / rhlab:  {inspect_s / rhlab_s:7.2f}x")
    print(f"outcomes that differ:   {len(disagree)}" + (f" (episodes {disagree[:10]})" if disagree else ""))


if __name__ == "__main__":
    main()
