"""Per-step time split of GRPO at the quickstart settings, and grading's share of it.

Runs a few real GRPO steps (TRL, the embedded model, the sandboxed reward) into a temporary run
directory and prints generation / grading / update seconds per step from its ``metrics.jsonl``.
The target: grading stays under 15 % of step time, so the environment never bottlenecks RL.

    python benchmarks/rl_step.py [--config configs/quickstart.yaml] [--steps 4] [--keep-warmup]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from rhlab.train.config import load_config
from rhlab.train.metrics import read_metrics
from rhlab.train.trainer import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/quickstart.yaml")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--keep-warmup", action="store_true", help="run the config's SFT warm-up first (slower)")
    args = parser.parse_args()
    overrides = {"steps": args.steps, "checkpoint_every": args.steps}
    config = load_config(args.config, overrides)
    if not args.keep_warmup:
        config = config.model_copy(update={"warmup": None})
    with tempfile.TemporaryDirectory(prefix="rhlab-rl-step-") as tmp:
        train(config, Path(tmp) / "run")
        rows = read_metrics(Path(tmp) / "run" / "metrics.jsonl")
    print(f"\n{'step':>4} {'generation s':>13} {'grading s':>10} {'update s':>9} {'total s':>8} {'grading %':>10}")
    for r in rows:
        share = r["time_grading_s"] / r["time_step_s"]
        print(f"{r['step']:>4} {r['time_generation_s']:>13.2f} {r['time_grading_s']:>10.2f} "
              f"{r['time_update_s']:>9.2f} {r['time_step_s']:>8.2f} {share:>10.1%}")  # fmt: skip
    steady = rows[1:] or rows  # the first step pays one-off warm-up costs (sandbox servers, kernels)
    total = sum(r["time_step_s"] for r in steady)
    grading = sum(r["time_grading_s"] for r in steady)
    mean_step = statistics.fmean(r["time_step_s"] for r in steady)
    print(f"\nepisodes per step: {config.episodes_per_step}; mean step {mean_step:.1f} s")
    print(f"grading share of step time (steps 2+): {grading / total:.1%}  (target < 15 %)")


if __name__ == "__main__":
    main()
