"""One GRPO step at the quickstart settings: the stock fp32 configuration against the new default.

Both run in this process on the same prompts, from the same weights, alternating so that background
load on a shared machine hits both alike; the best of ``--repeats`` is kept. A step is split into
generation (sampling ``group_size`` completions per prompt) and update (log-probs, loss, backward,
optimizer step) on one shared batch. Grading is left out: it is the same sandbox work in both and
is measured by ``benchmarks/grading_throughput.py``. Rewards are synthetic (0/1 alternating inside
each group) so every group carries signal and the update really runs; a batch without signal,
which the new default skips, is timed separately.

    baseline  TRL GRPOTrainer as configured before: fp32, every row through the model on its own
    new       the config's defaults: shared prompt prefixes, compact LM head, ``precision`` (auto:
              bf16 autocast only on CPUs with AMX/AVX512-BF16), no update on a batch without signal

    python benchmarks/rl_step.py [--config configs/quickstart.yaml] [--repeats 2] [--static-cache]

The last line reads ``rl_step speedup S.SS (baseline B.B s, new N.N s, generation G.G s, update U.U s)``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from rhlab.models.loading import trainable_weights
from rhlab.tasks import load_tasks
from rhlab.train.config import TrainConfig, load_config
from rhlab.train.precision import cpu_supports_bf16, resolve_precision
from rhlab.train.problems import candidate_tasks
from rhlab.train.prompts import build_messages
from rhlab.train.trainer import StepTimer, grpo_args, make_trainer_class


def alternating(completions: list, **_: Any) -> list[float]:
    """Synthetic reward: 0, 1, 0, 1 ... so every group of two or more has non-zero variance."""
    return [float(i % 2) for i in range(len(completions))]


def build(config: TrainConfig, weights: Path, out: Path, *, fast: bool) -> Any:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not fast:
        config = config.model_copy(update={"precision": "fp32", "shared_prefix": False, "skip_flat_updates": False})
    tokenizer = AutoTokenizer.from_pretrained(weights)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(weights, dtype=torch.float32)
    trainer = make_trainer_class()(
        model=model, reward_funcs=[alternating], args=grpo_args(config, out), processing_class=tokenizer,
        train_dataset=Dataset.from_list([{"prompt": [{"role": "user", "content": "x"}]}]), timer=StepTimer(),
        skip_zero_variance=False, shared_prefix=config.shared_prefix, skip_flat=config.skip_flat_updates,
    )  # fmt: skip
    trainer.create_optimizer_and_scheduler(num_training_steps=config.steps)
    trainer.current_gradient_accumulation_steps = 1
    model.train()
    return trainer


def generate(trainer: Any, inputs: list[dict], seed: int) -> tuple[dict, float]:
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    batch = trainer._generate_and_score_completions(inputs)
    return batch, time.perf_counter() - t0


def update(trainer: Any, batch: dict) -> dict[str, float]:
    """One optimizer step on ``batch``, split into loss (forward), backward and optimizer."""
    model = trainer.model
    t0 = time.perf_counter()
    with trainer.compute_loss_context_manager():
        loss = trainer.compute_loss(model, batch)
    t1 = time.perf_counter()
    trainer.accelerator.backward(loss)
    t2 = time.perf_counter()
    trainer.accelerator.clip_grad_norm_(model.parameters(), trainer.args.max_grad_norm)
    trainer.optimizer.step()
    trainer.lr_scheduler.step()
    model.zero_grad(set_to_none=True)
    t3 = time.perf_counter()
    return {"forward": t1 - t0, "backward": t2 - t1, "optimizer": t3 - t2, "total": t3 - t0, "loss": loss.item()}


def static_cache_generation(trainer: Any, inputs: list[dict], seed: int) -> float:
    """TRL's own generation path with a static KV cache instead of the dynamic one."""
    trainer.generation_config.cache_implementation = "static"
    try:
        return generate(trainer, inputs, seed)[1]
    finally:
        trainer.generation_config.cache_implementation = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/quickstart.yaml")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--static-cache", action="store_true", help="also time generation with a static KV cache")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's, one per core)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    config = load_config(args.config)
    weights = trainable_weights(config.model)
    tasks = {t.id: t for t in load_tasks(config.problems.source)}
    chosen = [t.id for t in candidate_tasks(config.problems)][: config.prompts_per_step]
    prompts = [build_messages(tasks[i], config.train_prompt) for i in chosen]
    inputs = [{"prompt": p} for p in prompts for _ in range(config.group_size)]
    precision = resolve_precision(config.precision, torch.cuda.is_available())
    print(f"{config.prompts_per_step} prompts x {config.group_size} completions, <= {config.max_completion_length} "
          f"tokens | torch {torch.get_num_threads()} threads | CPU bf16 units: {cpu_supports_bf16()} | "
          f"new precision: {precision}")  # fmt: skip

    with tempfile.TemporaryDirectory(prefix="rhlab-rl-step-") as tmp:
        base = build(config, weights, Path(tmp) / "base", fast=False)
        new = build(config, weights, Path(tmp) / "new", fast=True)
        times: dict[str, list] = {k: [] for k in ("gen_base", "gen_new", "upd_base", "upd_new", "gen_static")}
        same = None
        for rep in range(args.repeats):
            batch, seconds = generate(base, inputs, args.seed + rep)
            times["gen_base"].append(seconds)
            new_batch, seconds = generate(new, inputs, args.seed + rep)
            times["gen_new"].append(seconds)
            if rep == 0:
                same = sum(
                    torch.equal(a[m.bool()], b[n.bool()])
                    for a, m, b, n in zip(batch["completion_ids"], batch["completion_mask"],
                                          new_batch["completion_ids"], new_batch["completion_mask"], strict=True)
                )  # fmt: skip
                shape = (tuple(batch["prompt_ids"].shape), tuple(batch["completion_ids"].shape))
                tokens = int(batch["prompt_mask"].sum()), int(batch["completion_mask"].sum())
            if args.static_cache:
                times["gen_static"].append(static_cache_generation(base, inputs, args.seed + rep))
            times["upd_base"].append(update(base, batch))
            times["upd_new"].append(update(new, batch))
            print(f"repeat {rep + 1}: generation {times['gen_base'][-1]:.1f} s -> {times['gen_new'][-1]:.1f} s, "
                  f"update {times['upd_base'][-1]['total']:.1f} s -> {times['upd_new'][-1]['total']:.1f} s",
                  flush=True)  # fmt: skip
        flat = {**batch, "advantages": torch.zeros_like(batch["advantages"])}
        flat_new = update(new, flat)

    best = {k: min(v, key=lambda x: x["total"] if isinstance(x, dict) else x) for k, v in times.items() if v}
    print(f"batch: prompt ids {shape[0]}, completion ids {shape[1]}; real tokens: prompt {tokens[0]}, "
          f"completion {tokens[1]}; same completions from both generators: {same}/{len(inputs)}")  # fmt: skip
    print(f"best of {args.repeats} (machine may be shared: compare the two columns, not across runs)")
    print(f"{'':>22} {'baseline s':>11} {'new s':>8}")
    print(f"{'generation':>22} {best['gen_base']:>11.2f} {best['gen_new']:>8.2f}")
    for part in ("forward", "backward", "optimizer", "total"):
        print(f"{'update ' + part:>22} {best['upd_base'][part]:>11.2f} {best['upd_new'][part]:>8.2f}")
    print(f"{'loss':>22} {best['upd_base']['loss']:>11.5f} {best['upd_new']['loss']:>8.5f}")
    if "gen_static" in best:
        print(f"generation with a static KV cache (TRL path): {best['gen_static']:.2f} s")
    print(f"batch without signal (all advantages 0): new update {flat_new['total']:.3f} s (skipped), "
          f"baseline would spend {best['upd_base']['total']:.1f} s")  # fmt: skip
    baseline = best["gen_base"] + best["upd_base"]["total"]
    fast = best["gen_new"] + best["upd_new"]["total"]
    print(f"rl_step speedup {baseline / fast:.2f} (baseline {baseline:.1f} s, new {fast:.1f} s, "
          f"generation {best['gen_new']:.1f} s, update {best['upd_new']['total']:.1f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
